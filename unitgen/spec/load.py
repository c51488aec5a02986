"""Reading a spec: the file (size-bounded), the TOML, and every check that spans keys, into one `Spec`.

`load_spec` reads NAME.toml; `parse_spec` validates parsed TOML with the key tables of
`unitgen.spec.keys`, then checks what no single key can: exec or entry, the lock file and the
directories the service owns, the [app] inputs, [extra] sections and the length of every unit line.
"""

from __future__ import annotations

import difflib
import functools
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from unitgen import escape
from unitgen.spec import config, instances
from unitgen.spec.fields import (
    LINE_MAX,
    FieldError,
    Key,
    SpecError,
    absolute_path,
    longer_than,
    matching,
    one_or_many,
    parse_table,
    relative_dir,
    shown,
    shown_key,
    single_line,
    string_table,
    utf8_length,
)
from unitgen.spec.keys import (
    APP_KEYS,
    DIRECTIVE_PATTERN,
    EXTRA_SECTIONS,
    HARDENING_KEYS,
    LIMITS_KEYS,
    LOCK_KEYS,
    OVERRIDE_KEYS,
    PACKAGE_KEYS,
    TIMER_KEYS,
    TOP_KEYS,
)
from unitgen.spec.model import (
    App,
    FormatOverrides,
    Hardening,
    Limits,
    Lock,
    OnContention,
    Package,
    ReadyKind,
    Spec,
    Timer,
)
from unitgen.spec.ownership import own_directory, own_read_write_path, validate_name

# A spec is a few hundred bytes; this bounds what is read (`--spec /dev/zero` must not hang),
# with room for a file holding a megabyte value, so that its error names the key.
SPEC_FILE_MAX = 16 * 1024 * 1024
_FIRST_READ = 64 * 1024


def _read_spec(path: Path, where: str) -> str:
    try:
        with path.open("rb") as f:
            # read(n) allocates n bytes before reading: 16 MiB for every spec of a batch (~15 us
            # each). A first small read holds any real spec; only a larger file reads on to the bound.
            data = f.read(_FIRST_READ)
            if len(data) == _FIRST_READ:
                data += f.read(SPEC_FILE_MAX + 1 - _FIRST_READ)
    except FileNotFoundError:
        raise SpecError(where, "", "no such file", hint="create one with 'unitgen init NAME'") from None
    except OSError as exc:
        raise SpecError(where, "", f"cannot be read: {exc.strerror or exc}") from None
    if len(data) > SPEC_FILE_MAX:
        raise SpecError(where, "", f"is larger than {SPEC_FILE_MAX} bytes: not a spec")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(where, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def load_spec(path: Path, name: str | None = None) -> Spec:
    """Read and validate a spec file; the service name defaults to the file's stem."""
    where = str(path)
    content = _read_spec(path, where)
    try:
        raw = tomllib.loads(content)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's messages name a position, never echo the content.
        raise SpecError(where, "", f"not valid TOML: {exc}") from None
    except RecursionError:
        raise SpecError(
            where, "", "not a usable spec: arrays or tables nested too deeply", hint="a spec needs 3 levels at most"
        ) from None
    except Exception as exc:  # any other parser blow-up (e.g. a 5000-digit integer) is bad input too
        raise SpecError(where, "", f"not valid TOML ({type(exc).__name__})") from None
    return parse_spec(raw, name=name or path.stem, where=where, base_dir=path.parent)


def _sub_table(raw: dict[str, Any], key: str, where: str) -> dict[str, Any] | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SpecError(where, key, "must be a table", hint=f"write it as [{key}]")
    return value


_DIRECTORY_BASES = (
    ("state_directory", "/var/lib"),
    ("cache_directory", "/var/cache"),
    ("logs_directory", "/var/log"),
    ("configuration_directory", "/etc"),
)


def _directory(value: str | bool | None, name: str) -> str | None:
    if value is True:
        return name
    return value or None


def _parse_app(raw: dict[str, Any] | None, name: str, where: str, base_dir: Path) -> App | None:
    if raw is None:
        return None
    fields = parse_table(raw, APP_KEYS, where=where, prefix="app.")
    if fields["project"] is None and not fields["wheels"]:
        raise SpecError(where, "app", "needs 'project' or 'wheels': the Python app to install")
    if fields["no_index"] and not fields["find_links"]:
        raise SpecError(where, "app.no_index", "needs 'find_links': where else would the dependencies come from?")

    def resolve(path: str) -> str:
        return str((base_dir / path).absolute())

    venv = fields["venv"] or f"/usr/lib/{name}/venv"
    # The package owns the venv and its scripts remove its bytecode: /usr/lib/python3 or
    # /usr/lib/systemd would be another package's tree.
    own_directory(where, "app.venv", str(Path(venv).relative_to("/usr/lib")), name, "/usr/lib", venv)
    app = App(
        project=resolve(fields["project"]) if fields["project"] else None,
        wheels=tuple(resolve(w) for w in fields["wheels"]),
        requirements=resolve(fields["requirements"]) if fields["requirements"] else None,
        find_links=tuple(resolve(d) for d in fields["find_links"]),
        no_index=fields["no_index"],
        venv=venv,
    )
    _check_app_inputs(app, where)
    return app


def _check_app_inputs(app: App, where: str) -> None:
    """What `package` needs of the [app] paths, checked at load so that `render` and `check`
    report a wrong path too, not only a build minutes later (issue 11.9)."""
    if app.project is not None:
        project = Path(app.project)
        if not project.is_dir():
            raise SpecError(
                where,
                "app.project",
                f"{shown(app.project)} is not a directory",
                hint="'project' is the directory of the app's pyproject.toml, relative to the spec file",
            )
        if not (project / "pyproject.toml").is_file():
            raise SpecError(
                where,
                "app.project",
                f"{shown(app.project)} has no pyproject.toml",
                hint="point 'project' at the directory of the app's pyproject.toml, or list built 'wheels' instead",
            )
    for i, wheel in enumerate(app.wheels):
        if not wheel.endswith(".whl"):
            raise SpecError(where, f"app.wheels[{i}]", f"{shown(wheel)} is not a wheel (*.whl)")
        if not Path(wheel).is_file():
            raise SpecError(
                where,
                f"app.wheels[{i}]",
                f"{shown(wheel)} does not exist",
                hint="paths are relative to the spec file; build the wheel first, e.g. pip wheel --no-deps",
            )
    if app.requirements is not None and not Path(app.requirements).is_file():
        raise SpecError(
            where,
            "app.requirements",
            f"{shown(app.requirements)} is not a file",
            hint="paths are relative to the spec file",
        )
    for i, directory in enumerate(app.find_links):
        if not Path(directory).is_dir():
            raise SpecError(
                where,
                f"app.find_links[{i}]",
                f"{shown(directory)} is not a directory",
                hint="paths are relative to the spec file",
            )


def parse_spec(raw: dict[str, Any], *, name: str, where: str = "<spec>", base_dir: Path | None = None) -> Spec:
    validate_name(name)
    tables = {"limits", "hardening", "timer", "package", "extra", "app", "lock"}
    top = parse_table({k: v for k, v in raw.items() if k not in tables}, _top_keys(), where=where)
    for t in tables:
        top.pop(t, None)

    if (top["exec"] is None) == (top["entry"] is None):
        raise SpecError(
            where, "exec", "exactly one of 'exec' (run a command) and 'entry' (call a Python callable) is required"
        )
    if top["exec"] is not None:
        try:
            absolute_path(top["exec"][0])
        except FieldError as exc:
            raise SpecError(
                where, "exec[0]", exc.problem, hint="the program must be an absolute path, e.g. '/usr/bin/python3'"
            ) from None
    if top["reload"] is not None and top["reload_signal"] is not None:
        raise SpecError(where, "reload", "use either 'reload' or 'reload_signal', not both")
    if top["reload"] is not None:
        try:
            absolute_path(top["reload"][0])
        except FieldError as exc:
            raise SpecError(where, "reload[0]", exc.problem, hint="the program must be an absolute path") from None
        if any("$MAINPID" in arg or "${MAINPID}" in arg for arg in top["reload"]):
            # Spec values reach the service exactly as written ("$" is escaped), so systemd's
            # $MAINPID would arrive as the literal text.
            raise SpecError(
                where,
                "reload",
                "arguments are passed as written, so '$MAINPID' would not be expanded",
                hint="to signal the main process use reload_signal = 'SIGHUP' (or SIGUSR1, SIGUSR2)",
            )
    if top["wait_timeout"] is not None and top["on_contention"] is not OnContention.WAIT:
        raise SpecError(where, "wait_timeout", "only applies with on_contention = 'wait'")
    if top["watchdog"] is not None and top["exec"] is not None and top["ready"].kind is ReadyKind.IMMEDIATE:
        raise SpecError(
            where,
            "watchdog",
            "nothing would ping the watchdog: in exec mode with ready = 'immediate' the launcher is gone after exec",
            hint="use ready = 'notify' (the app sends WATCHDOG=1) or 'tcp:PORT'/'path:FILE' (the launcher probes)",
        )
    if top["group"] is not None and top["user"] is None:
        raise SpecError(where, "group", "needs 'user' (with DynamicUser=yes systemd picks the group)")

    lock_file = top["lock_file"] or instances.default_lock_file(name, top["instances"])
    parent = Path(lock_file).parent
    if parent == Path("/run") or not parent.is_relative_to("/run"):
        raise SpecError(
            where,
            "lock_file",
            f"{shown(lock_file)} must be inside a directory under /run",
            hint=f"e.g. '/run/{name}/{name}.pid' (that directory becomes RuntimeDirectory=)",
        )
    runtime_dir = str(parent.relative_to("/run"))
    try:
        relative_dir(runtime_dir)
    except FieldError as exc:
        raise SpecError(where, "lock_file", f"its directory {exc.problem}") from None
    # The lock's directory becomes RuntimeDirectory= (and a tmpfiles.d line): systemd and
    # tmpfiles chown and chmod it, so it must be the service's, never /run/lock or /run/user.
    own_directory(where, "lock_file", runtime_dir, name, "/run", lock_file)
    top["lock_file"] = lock_file
    for key, base in _DIRECTORY_BASES:
        top[key] = _directory(top[key], name)
        if top[key] is not None:
            own_directory(where, key, top[key], name, base)

    timer = None
    timer_raw = _sub_table(raw, "timer", where)
    if timer_raw is not None:
        timer = Timer(**parse_table(timer_raw, TIMER_KEYS, where=where, prefix="timer."))
        if not (timer.on_calendar or timer.on_boot_sec is not None or timer.on_unit_active_sec is not None):
            raise SpecError(where, "timer", "needs at least one of on_calendar, on_boot_sec, on_unit_active_sec")
        if top["ready"].kind is not ReadyKind.IMMEDIATE:
            raise SpecError(
                where,
                "ready",
                "a timer job runs to completion (Type=oneshot); readiness does not apply",
                hint="remove 'ready' or the [timer] table",
            )
        if top["watchdog"] is not None:
            raise SpecError(
                where, "watchdog", "does not apply to a timer job", hint="use timer.run_timeout to bound a run"
            )

    package = None
    package_raw = _sub_table(raw, "package", where)
    if package_raw is not None:
        fmt_tables = {f: _sub_table(package_raw, f, where + " [package]") for f in ("deb", "rpm")}
        fields = parse_table(
            {k: v for k, v in package_raw.items() if k not in fmt_tables}, PACKAGE_KEYS, where=where, prefix="package."
        )
        for fmt, sub in fmt_tables.items():
            fields[fmt] = FormatOverrides(
                **parse_table(sub or {}, OVERRIDE_KEYS, where=where, prefix=f"package.{fmt}.")
            )
        package = Package(**fields)

    instances.check(top, name, where, timer=timer is not None)
    app = _parse_app(_sub_table(raw, "app", where), name, where, base_dir or Path.cwd())
    if top["python"] is None:
        # With an app, the launcher runs on the app's venv interpreter so python mode can import it.
        top["python"] = f"{app.venv}/bin/python" if app else "/usr/bin/python3"

    hardening = Hardening(
        **parse_table(_sub_table(raw, "hardening", where) or {}, HARDENING_KEYS, where=where, prefix="hardening.")
    )
    for i, path in enumerate(hardening.read_write_paths):
        own_read_write_path(where, f"hardening.read_write_paths[{i}]", path, name)

    lock = _parse_lock(_sub_table(raw, "lock", where) or {}, name, where, top)
    reserved = tuple(cid for cid, _path in lock.credentials()) if lock.is_fleet else ()
    config.resolve(top, name, where, base_dir or Path.cwd(), reserved)
    spec = Spec(
        name=name,
        source=where,
        lock=lock,
        app=app,
        limits=Limits(
            **parse_table(_sub_table(raw, "limits", where) or {}, LIMITS_KEYS, where=where, prefix="limits.")
        ),
        hardening=hardening,
        timer=timer,
        package=package,
        extra=_parse_extra(_sub_table(raw, "extra", where) or {}, where),
        **top,
    )
    for key, line in _unit_lines(spec):
        if longer_than(line, LINE_MAX - 1):
            raise SpecError(
                where,
                key,
                f"is too long: its unit line would be {utf8_length(line)} bytes, at most {LINE_MAX - 1} allowed",
                hint="systemd recommends against long unit lines (systemd.syntax(7)); pass long data in an "
                "EnvironmentFile= or a file the service reads",
            )
    return spec


def _parse_lock(raw: dict[str, Any], name: str, where: str, top: dict[str, Any]) -> Lock:
    fields = parse_table(raw, LOCK_KEYS, where=where, prefix="lock.")
    fields["key"] = fields["key"] or f"/unitgen/locks/{name}"
    lock = Lock(**fields)
    if not lock.is_fleet:
        for key in ("etcd", "ttl", "key", "ca_file", "cert_file", "key_file"):
            if key in raw:
                raise SpecError(where, f"lock.{key}", "only applies with scope = 'fleet'",
                                hint="set lock.scope = 'fleet' to share the lock across hosts through etcd")
        return lock
    if not lock.etcd:
        raise SpecError(where, "lock.etcd", "is required with scope = 'fleet'",
                        hint="the etcd members' client URLs, e.g. ['https://10.0.0.1:2379', 'https://10.0.0.2:2379']")
    for i, endpoint in enumerate(lock.etcd):
        port = endpoint.rstrip("/").rpartition("]")[2].rpartition(":")[2]
        if port.isdigit() and not 1 <= int(port) <= 65535:
            raise SpecError(where, f"lock.etcd[{i}]", f"port {port} is out of range: allowed 1 to 65535")
    if not top["network"]:
        raise SpecError(where, "lock.scope", "'fleet' needs the network to reach etcd, and network = false",
                        hint="remove network = false, or use scope = 'host'")
    if top["watchdog"] is not None:
        raise SpecError(
            where, "watchdog", "cannot be combined with lock.scope = 'fleet', which uses systemd's watchdog itself",
            hint="the launcher sets WATCHDOG_USEC= while it holds the fleet lock, so that systemd kills a "
            "launcher frozen past its lease; remove 'watchdog'")
    tls = [key for key in ("ca_file", "cert_file", "key_file") if getattr(lock, key) is not None]
    plain = [e for e in lock.etcd if not e.startswith("https://")]
    if tls and plain:
        raise SpecError(where, f"lock.{tls[0]}", f"needs https:// endpoints, and {shown(plain[0])} is http",
                        hint="TLS material is only used over https")
    if (lock.cert_file is None) != (lock.key_file is None):
        missing = "key_file" if lock.key_file is None else "cert_file"
        raise SpecError(where, f"lock.{missing}", "is required with the other half of the client certificate")
    return lock


def _unit_lines(spec: Spec) -> Iterator[tuple[str, str]]:
    """The unit lines a spec's values become, escaped as `unitgen.render.units` writes them, each
    with the key it comes from; `parse_spec` holds every one to LINE_MAX."""
    # render's ExecStart= is the launcher, "--" and the command.
    launcher = f"/usr/libexec/{spec.name}/{spec.name}-launcher"
    if spec.exec is not None:
        yield "exec", "ExecStart=" + escape.exec_line([launcher, "--", *spec.exec])
    if spec.reload is not None:
        yield "reload", "ExecReload=" + escape.exec_line(spec.reload)
    yield "description", "Description=" + escape.specifiers(spec.description)
    for key, directive in (("after", "After"), ("wants", "Wants"), ("requires", "Requires")):
        yield key, f"{directive}=" + " ".join(getattr(spec, key))
    for i, doc in enumerate(spec.documentation):
        yield f"documentation[{i}]", "Documentation=" + escape.specifiers(doc)
    for env_name, value in spec.environment:
        yield f"environment.{env_name}", "Environment=" + escape.environment(env_name, value)
    for key, directive in (("working_directory", "WorkingDirectory="), ("environment_file", "EnvironmentFile=-")):
        if getattr(spec, key) is not None:
            yield key, directive + escape.specifiers(getattr(spec, key))
    h = spec.hardening
    yield "hardening.read_write_paths", "ReadWritePaths=" + escape.word_list(h.read_write_paths)
    yield "hardening.capabilities", "CapabilityBoundingSet=" + " ".join(h.capabilities)
    yield (
        "hardening.address_families",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 " + " ".join(h.address_families),
    )
    yield "hardening.ip_address_allow", "IPAddressAllow=" + " ".join(h.ip_address_allow or ())
    if spec.timer is not None:
        for i, calendar in enumerate(spec.timer.on_calendar):
            yield f"timer.on_calendar[{i}]", "OnCalendar=" + calendar
    for section, directives in spec.extra:
        for directive, values in directives:
            for value in values:
                yield f"extra.{section}.{directive}", f"{directive}={value}"


def _table_placeholders() -> tuple[Key[Any], ...]:
    # The sub-tables are parsed separately; listing them keeps "did you mean" aware of them.
    return tuple(Key(t, lambda v: v, "") for t in ("limits", "hardening", "timer", "package", "extra", "app", "lock"))


@functools.cache
def _top_keys() -> tuple[Key[Any], ...]:
    # One tuple for every spec of a batch: parse_table keeps its name map per key sequence.
    return TOP_KEYS + _table_placeholders()


def _parse_extra(raw: dict[str, Any], where: str) -> tuple[tuple[str, tuple[tuple[str, tuple[str, ...]], ...]], ...]:
    """[extra.Service] Directive = "value" or ["v1", "v2"]: the escape hatch for directives
    unitgen has no key for. Values go into the unit verbatim (specifiers work), but each is one
    line, so they cannot add other directives or sections."""
    parse_section = string_table(
        matching(DIRECTIVE_PATTERN, "directive name like 'LimitCORE'"), one_or_many(single_line)
    )
    out = []
    for section, body in raw.items():
        if section not in EXTRA_SECTIONS:
            close = difflib.get_close_matches(section, EXTRA_SECTIONS, n=1)
            raise SpecError(
                where,
                f"extra.{section}",
                "unknown unit section",
                hint=f"did you mean {close[0]!r}?" if close else "allowed: " + ", ".join(EXTRA_SECTIONS),
            )
        try:
            out.append((section, parse_section(body)))
        except FieldError as exc:
            if exc.subkey is None:
                raise SpecError(where, f"extra.{section}", exc.problem, hint=exc.hint) from None
            raise SpecError(
                where,
                f"extra.{section}.{exc.subkey}",
                exc.problem.removeprefix(f"{shown_key(exc.subkey)}: "),
                hint=exc.hint,
            ) from None
    return tuple(out)
