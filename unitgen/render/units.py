"""Rendering is pure: a `Spec` in, the staging tree's files (path, bytes, mode) out.

The staging tree mirrors the target file system, so packaging and `unitgen try` take it as
it is. Writing it to disk is `unitgen.staging.tree.write_tree`, a separate, atomic step.

Layout (FHS; /usr/libexec is allowed by FHS 3.0 and Debian policy 9.1.1):
    usr/lib/systemd/system/NAME.service   (and NAME.timer for a timer job)
    usr/lib/sysusers.d/NAME.conf           (static user only)
    usr/lib/tmpfiles.d/NAME.conf           (the lock directory, from boot on)
    usr/libexec/NAME/NAME-launcher         (the single-instance launcher's stub, 0755)
    usr/libexec/NAME/unitgen_launcher.py   (the launcher module it runs; bytecode compiled at install)
    usr/share/doc/NAME/README.unitgen      (how to operate the service)
"""

from __future__ import annotations

import functools
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import jinja2

from unitgen import __version__, escape
from unitgen.errors import UnitgenError
from unitgen.launcher import fleet_guard
from unitgen.launcher.runtime import EXIT_ALREADY_RUNNING, LOCK_FD_ENV, MESSAGE_ID_ALREADY_RUNNING
from unitgen.launcher.script import (
    cleanup_argv,
    compile_argv,
    install_dir,
    launcher_source,
    module_file,
    notify_access,
    render_launcher,
)
from unitgen.render import config, instances
from unitgen.render.hardening import hardening_directives, limit_directives
from unitgen.resources import bytecode_cache, launcher_file, template_root
from unitgen.spec import ReadyKind, Spec

if TYPE_CHECKING:
    from unitgen.launcher.runtime import LauncherSettings


UNIT_DIR = PurePosixPath("usr/lib/systemd/system")


@dataclass(frozen=True)
class RenderedFile:
    path: PurePosixPath  # relative to the staging root
    content: bytes
    mode: int = 0o644


def launcher_path(spec: Spec) -> PurePosixPath:
    return PurePosixPath(install_dir(spec.name), f"{spec.name}-launcher")


def launcher_module_path(spec: Spec) -> PurePosixPath:
    return PurePosixPath(module_file(str(launcher_path(spec).parent)))


def launcher_compile_argv(spec: Spec) -> tuple[str, ...]:
    """Compile the launcher module's bytecode on the target (package postinst/%posttrans, `try`),
    with the interpreter that runs the launcher: the unit's /usr is read-only at run time."""
    return compile_argv(spec.python, str(launcher_path(spec).parent))


def launcher_cleanup_argv(spec: Spec) -> tuple[str, ...]:
    """Remove that bytecode (before removal or an upgrade, and before compiling afresh)."""
    return cleanup_argv(str(launcher_path(spec).parent))


def doc_path(spec: Spec) -> PurePosixPath:
    return PurePosixPath("/usr/share/doc", spec.name, "README.unitgen")


def launcher_settings(spec: Spec) -> LauncherSettings:
    settings: LauncherSettings = {
        "name": spec.name,
        "mode": "python" if spec.is_python_mode else "exec",
        "argv": list(spec.exec or ()),
        "entry": spec.entry,
        "lock_file": spec.lock_file,
        "ready": str(spec.ready),
        "ready_timeout_sec": spec.ready_timeout,
        "on_contention": spec.on_contention.value,
        "wait_timeout_sec": spec.wait_timeout,
        "oneshot": spec.timer is not None,
        "user": spec.user,
    }
    if spec.lock.is_fleet:  # only then: a host-scope launcher is rendered exactly as before
        settings["fleet_etcd"] = list(spec.lock.etcd)
        settings["fleet_key"] = spec.lock.key
        settings["fleet_ttl"] = spec.lock.ttl
    return settings


def _notify_access(spec: Spec) -> str:
    if spec.lock.is_fleet and not spec.is_python_mode and spec.ready.kind is ReadyKind.NOTIFY:
        return "all"  # the launcher stays as the main process: READY=1 comes from its child, the app
    return notify_access(launcher_settings(spec))


def fleet_modules(spec: Spec) -> list[tuple[str, PurePosixPath]]:
    """With lock.scope = "fleet": the etcd client and the launcher's guard (their names in
    unitgen.launcher, their paths) next to the launcher module, whose compile step covers them."""
    if not spec.lock.is_fleet:
        return []
    directory = launcher_path(spec).parent
    return [(module, directory / f"{deployed}.py") for module, deployed in fleet_guard.DEPLOYED_NAMES.items()]


@functools.cache
def _launcher_module() -> bytes:
    # The same ~44 KB for every service: encoded once per process, not once per service.
    return launcher_source().encode("utf-8")


@functools.cache
def _fleet_source(module: str) -> bytes:
    return launcher_file(f"{module}.py")


# Unicode's category Cc, exactly: C0 controls, DEL and C1 controls (one regex search, not a
# unicodedata lookup per character: this runs on every value of every template).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _refuse_control_characters(value: Any) -> Any:
    """Jinja2 `finalize`: the last guard before text reaches a unit. Spec parsing already
    refuses control characters; this catches a template or code path that forgot to."""
    if isinstance(value, str) and _CONTROL.search(value):
        raise UnitgenError(f"refusing to render a value with a control character: {value!r}")
    return value


# The templates `render` reads, so the ones a --templates directory can override.
OVERRIDABLE = ("units/", "system/", "doc/")


def _environment(template_dirs: Sequence[Path]) -> jinja2.Environment:
    for directory in template_dirs:
        _check_overrides(Path(directory))
    return _cached_environment(tuple(str(Path(d).absolute()) for d in template_dirs))


@functools.cache
def _builtin_names() -> frozenset[str]:
    return frozenset(p.relative_to(template_root()).as_posix() for p in template_root().rglob("*.j2"))


def _check_overrides(directory: Path) -> None:
    """Every *.j2 in an override directory must replace a built-in template by its relative name:
    a misplaced one (the flat names of unitgen 0.1, a typo) would otherwise be silently ignored."""
    builtin = _builtin_names()
    for path in sorted(directory.rglob("*.j2")):
        name = path.relative_to(directory).as_posix()
        if name in builtin and name.startswith(OVERRIDABLE):
            continue
        known = sorted(n for n in builtin if n.startswith(OVERRIDABLE))
        moved = [n for n in known if n.rsplit("/", 1)[-1] == name]
        hint = f"move it to {directory / moved[0]}" if moved else f"the templates render uses: {', '.join(known)}"
        raise UnitgenError(f"{path} does not override any template render uses", hint=hint)


@functools.lru_cache(maxsize=16)
def _cached_environment(template_dirs: tuple[str, ...]) -> jinja2.Environment:
    # One environment per set of override directories: Jinja compiles a template once per
    # environment (95% of a render's time), so a batch of services shares the compiled units.
    # The loader still notices a template file changed on disk (auto_reload, by mtime).
    env = jinja2.Environment(
        bytecode_cache=bytecode_cache(),
        loader=jinja2.FileSystemLoader([*template_dirs, str(template_root())]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - output is unit files, not HTML; escaping is per setting
        finalize=_refuse_control_characters,
    )
    env.filters.update(
        specifiers=escape.specifiers,
        exec_line=escape.exec_line,
        environment=escape.environment,
        seconds=escape.seconds,
    )
    return env


def _runs_python(spec: Spec) -> bool:
    return spec.is_python_mode or PurePosixPath((spec.exec or ("",))[0]).name.startswith("python")


def _context(spec: Spec, launcher: PurePosixPath) -> dict[str, Any]:
    exec_start = [str(launcher)]
    if spec.exec is not None:
        # The command is in the unit (not only baked into the launcher) so that
        # `systemctl cat` shows it and an admin can change it with a drop-in.
        exec_start += ["--", *spec.exec]
    environment = list(spec.environment)
    if _runs_python(spec):
        environment.insert(0, ("PYTHONUNBUFFERED", "1"))
    extra: dict[str, list[tuple[str, str]]] = {section: [] for section in ("Unit", "Service", "Install", "Timer")}
    for section, directives in spec.extra:
        extra[section] = [(d, v) for d, values in directives for v in values]
    documentation = list(spec.documentation) or [f"file:{doc_path(spec)}"]
    if spec.package and spec.package.homepage and not spec.documentation:
        documentation.append(spec.package.homepage)
    after, wants = list(spec.after), list(spec.wants)
    if spec.lock.is_fleet:
        # etcd is across the network: start once it is up (systemd.special(7), network-online.target).
        after += [u for u in ("network-online.target",) if u not in after]
        wants += [u for u in ("network-online.target",) if u not in wants]
    requires = list(spec.requires)
    socket_unit = instances.socket_unit(spec)
    if socket_unit is not None:  # the service runs on the sockets systemd holds (issue 14)
        after += [socket_unit]
        requires += [socket_unit]
    return {
        "requires": requires,
        "instance_env": instances.INSTANCE_ENV,
        "unit_stem": spec.unit_stem,
        "exec_start_line": instances.exec_line(exec_start),
        "listen_streams": instances.listen_streams(spec),
        "reuse_port": instances.reuse_port(spec),
        "socket_ip_address_allow": instances.socket_ip_address_allow(spec),
        "spec": spec,
        "name": spec.name,
        "after": after,
        "wants": wants,
        # TLS files reach the launcher through $CREDENTIALS_DIRECTORY (systemd.exec(5), LoadCredential=):
        # readable by the service alone whatever their mode on disk, never in the environment.
        "credentials": list(spec.lock.credentials()) if spec.lock.is_fleet else [],
        # Issue 15 (unitgen.render.config): the spec's own credentials and the check naming a missing file.
        "spec_credentials": list(spec.credentials),
        "encrypted_credentials": list(spec.encrypted_credentials),
        "credential_check": config.credential_check_line(spec),
        "fleet_message_ids": {
            "acquired": fleet_guard.MESSAGE_ID_FLEET_ACQUIRED,
            "lost": fleet_guard.MESSAGE_ID_FLEET_LOST,
            "unreachable": fleet_guard.MESSAGE_ID_FLEET_UNREACHABLE,
        },
        "version": __version__,
        "source_name": Path(spec.source).name,
        "timer": spec.timer,
        "exec_start": exec_start,
        "notify_access": _notify_access(spec),
        "exit_already_running": EXIT_ALREADY_RUNNING,
        "message_id": MESSAGE_ID_ALREADY_RUNNING,
        "lock_fd_env": LOCK_FD_ENV,
        "launcher_path": launcher,
        "environment": environment,
        "documentation": documentation,
        "directories": [
            ("state_directory", "StateDirectory"),
            ("cache_directory", "CacheDirectory"),
            ("logs_directory", "LogsDirectory"),
            ("configuration_directory", "ConfigurationDirectory"),
        ],
        # The symlink systemd makes for a DynamicUser= RuntimeDirectory= (relative, from its parent).
        "runtime_link": posixpath.relpath(
            f"/run/private/{spec.runtime_directory}", posixpath.dirname(f"/run/{spec.runtime_directory}")
        ),
        "hardening": hardening_directives(spec),
        "limits": limit_directives(spec),
        "extra": extra,
    }


def render(spec: Spec, *, template_dirs: Sequence[Path] = ()) -> list[RenderedFile]:
    """All files of the staging tree, sorted by path. Same spec, same bytes."""
    env = _environment(template_dirs)
    # Built once per service (five uses below): a batch renders hundreds, and PurePosixPath
    # construction was a tenth of a render.
    launcher = launcher_path(spec)
    # Template.render() copies its variables twice (into a dict, then merged with the globals) for
    # every template; here that merge is made once per service and passed as it is (shared=True:
    # a template's own {% set %} goes to its context's vars, never into this dict).
    ctx = {**env.globals, **_context(spec, launcher)}

    def text(template: str) -> bytes:
        try:
            compiled = env.get_template(template)
            try:
                out: str = env.concat(compiled.root_render_func(compiled.new_context(ctx, shared=True)))
            except Exception:
                env.handle_exception()  # what render() does: Jinja's traceback, the same exception
            return out.encode("utf-8")
        except jinja2.TemplateError as exc:
            raise UnitgenError(f"template {template}: {exc}", hint="check your --templates directory") from exc

    # Paths as text, each parsed once: PurePosixPath joins and relative_to("/") were a sixth of a
    # render. The launcher's and the doc's are absolute ('/usr/...'), the tree's relative.
    unit_dir, name = str(UNIT_DIR), spec.name
    files = [
        RenderedFile(PurePosixPath(f"{unit_dir}/{spec.unit_stem}.service"), text("units/service.j2")),
        RenderedFile(PurePosixPath(f"usr/lib/tmpfiles.d/{name}.conf"), text("system/tmpfiles.j2")),
        RenderedFile(
            PurePosixPath(str(launcher)[1:]),
            render_launcher(launcher_settings(spec), python=spec.python).encode("utf-8"),
            0o755,
        ),
        RenderedFile(PurePosixPath(module_file(str(launcher.parent))[1:]), _launcher_module()),
        RenderedFile(PurePosixPath(f"usr/share/doc/{name}/README.unitgen"), text("doc/README.unitgen.j2")),
    ]
    for module, path in fleet_modules(spec):
        files.append(RenderedFile(path.relative_to("/"), _fleet_source(module)))
    if spec.timer is not None:
        files.append(RenderedFile(UNIT_DIR / f"{spec.unit_stem}.timer", text("units/timer.j2")))
    if spec.listen:
        files.append(RenderedFile(UNIT_DIR / f"{spec.unit_stem}.socket", text("units/socket.j2")))
    for path, content in instances.instance_drop_ins(spec):
        files.append(RenderedFile(UNIT_DIR / path, content.encode("utf-8")))
    if spec.user is not None:
        files.append(RenderedFile(PurePosixPath(f"usr/lib/sysusers.d/{name}.conf"), text("system/sysusers.j2")))
    extra = [config.catalog_file(spec), *config.config_files(spec)]
    extra += config.credentials_module(spec, launcher.parent)
    files += [RenderedFile(path, content, mode) for path, content, mode in extra]
    return sorted(files, key=lambda f: f.path.parts)  # PurePath's order, compared as tuples (in C)
