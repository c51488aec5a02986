"""`install` and `uninstall`: the staging tree onto a host and off it again, by its manifest.

install: render the staging tree (and build the app's venv) in a temporary directory, read this
service's manifest and every other one, list every refusal (`plan.refusals`) and stop there if
there is any, having written nothing. Then: the manifest in state "installing", the bytecode of
the old version removed (an upgrade), every directory and file put in place (each atomically),
the files the new version no longer has removed (only when unchanged), the final manifest, and
the systemd steps (`steps`). Re-installing the same name is the upgrade. The spec's [config]
files follow `conffiles`: an edited one is kept, the new default goes beside it.

uninstall: stop, disable, remove the bytecode and exactly the manifest's files and links that
are unchanged (an edited one is kept and reported), the directories the install created when
empty, daemon-reload; --purge also removes the state directories the first install created and
the config files, edited or not. Without --purge, a manifest in state "removed" stays behind
with the state directories and the edited config files kept (dpkg's "config-files" state), so
that a later `uninstall --purge` still knows them.

A command that times out (`timeouts`: the units' own TimeoutStartSec=/TimeoutStopSec= plus a
margin, or --timeout) fails the command where it stands, with what it leaves. install: once the
files are in place, like a service that does not start: installed, the manifest complete, and
`uninstall` removes it; before (stopping the units an upgrade drops), nothing of the new version
is written and running install again goes on. uninstall: a stop or disable that times out
removes nothing (the service may still run from those files), so that the admin can run it again;
after the files went (the catalog, daemon-reload), running it again finishes.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from unitgen.errors import UnitgenError
from unitgen.install import conffiles
from unitgen.install import manifest as manifests
from unitgen.install.manifest import COMPLETE, INSTALLING, Entry, Manifest
from unitgen.install.plan import collect, refusals, rendered
from unitgen.install.rootfs import Root, SymlinkInPathError, tmp_base
from unitgen.install.steps import Steps, live_systemd
from unitgen.render.config import CATALOG_DIR
from unitgen.render.units import UNIT_DIR, launcher_compile_argv, render
from unitgen.spec.ownership import validate_name

if TYPE_CHECKING:
    from unitgen.app.payload import AppPayload
    from unitgen.spec import Spec

REMOVED = "removed"  # a manifest kept by uninstall without --purge, for the state directories only
Say = Callable[[str], None]


@dataclass
class InstallResult:
    name: str
    root: Path
    manifest: str
    upgrade: bool
    live: bool
    entries: tuple[Entry, ...] = ()
    removed: list[str] = field(default_factory=list)  # files of the old version, gone
    kept: list[str] = field(default_factory=list)  # files of the old version, edited, left in place
    steps: list[str] = field(default_factory=list)
    state: str = ""  # ActiveState of the main unit after the install ("" offline)
    config: list[conffiles.Outcome] = field(default_factory=list)  # the spec's [config] files

    def notes(self) -> list[str]:
        return [n for o in self.config if (n := o.note())]


@dataclass
class UninstallResult:
    name: str
    root: Path
    live: bool
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    purged: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    config: list[conffiles.Outcome] = field(default_factory=list)  # the [config] files


def require_root(command: str) -> None:
    if os.geteuid() != 0:
        raise UnitgenError(
            f"unitgen {command} must run as root: it writes under /usr, /var/lib and runs systemctl",
            hint=f"sudo unitgen {command} ...",
        )


def _units(staging: Path, spec: Spec) -> tuple[list[str], list[str], list[str]]:
    """(the unit files, every unit they make, the units to enable/start): the timer of a timer job, else the
    socket and the service; for a template, one name per listed instance. Drop-in directories
    (NAME@INSTANCE.service.d) are not units."""
    unit_dir = staging / UNIT_DIR
    kinds = (".service", ".timer", ".socket")
    files = sorted(p.name for p in unit_dir.iterdir() if p.is_file() and p.suffix in kinds) if unit_dir.is_dir() else []

    def named(unit: str) -> list[str]:
        stem, dot, suffix = unit.partition(".")
        if stem.endswith("@"):
            return [f"{stem}{i.name}{dot}{suffix}" for i in spec.instances]
        return [unit]

    units = [u for f in files for u in named(f)]
    wanted = [u for u in units if u.endswith(".timer")] or [u for u in units if u.endswith((".socket", ".service"))]
    return files, units, wanted


def _purge_candidates(spec: Spec) -> list[str]:
    # What the packages' purge removes (the same list as unitgen.package.from_spec), so
    # `uninstall --purge` and `apt purge` agree.
    from unitgen.package.from_spec import _purge_paths

    return list(_purge_paths(spec))


def _exists(root: Root, path: PurePosixPath) -> bool:
    try:
        return root.lstat(path) is not None
    except SymlinkInPathError:
        return True  # not ours to create, so never ours to remove


def install(
    spec: Spec,
    root_dir: Path,
    *,
    template_dirs: Sequence[Path] = (),
    inputs: Sequence[Path] = (),
    say: Say = print,
    timeout: float | None = None,
) -> InstallResult:
    import tempfile

    from unitgen.staging.build import stage

    require_root("install")
    root_dir = root_dir.absolute()  # systemd-sysusers --root= and the messages see the same path
    with Root(root_dir) as root, tempfile.TemporaryDirectory(prefix="unitgen-install.") as tmp:
        if spec.app is not None:
            # The rendered files first: a refusal should not wait for a venv build.
            files = conffiles.mark(rendered(render(spec, template_dirs=template_dirs), [spec.app.venv]), spec)
            own = manifests.read(root, spec.name)
            news = conffiles.plan(root, files, own.by_path() if own is not None else {}).new
            _refuse(spec.name, refusals(root, [*files, *news], own, manifests.others(root, spec.name), []))
        staging = Path(tmp) / "tree"
        _, payload = stage(spec, staging, template_dirs=template_dirs, inputs=inputs)
        root.lock(say)  # after the (maybe long) venv build; held until the service is started
        planned = conffiles.mark(collect(staging), spec)
        unit_files, units, wanted = _units(staging, spec)
        own = manifests.read(root, spec.name)
        old = own.by_path() if own is not None else {}
        config = conffiles.plan(root, planned, old)
        others = manifests.others(root, spec.name)
        _refuse(spec.name, refusals(root, [*planned, *config.new], own, others, [*unit_files, *units]))
        upgrade = own is not None and own.state != REMOVED
        live = live_systemd(root_dir)
        again = f"nothing of the new version is in place yet; 'unitgen install {spec.name}' again goes on"
        steps = Steps(root_dir, live, say, _service(units, spec.name), timeout, left=again)
        result = InstallResult(spec.name, root_dir, root.show(manifests.manifest_path(spec.name)), upgrade, live)

        old_created = {e.path for e in old.values() if e.type == "dir" and e.created}
        entries = tuple(
            replace(e, created=e.path in old_created or not _exists(root, e.path)) if e.type == "dir" else e
            for e in planned
        )
        # What the manifest lists afterwards: the new version's entries, the FILE.unitgen-new
        # beside edited config files, and the edited config files the new version dropped.
        listed = tuple(sorted((*entries, *config.new, *config.carry), key=lambda e: str(e.path).encode()))
        new_paths = {e.path for e in listed}
        leaving = [e for e in old.values() if e.path not in new_paths]
        purge = (
            own.purge
            if own is not None
            else tuple(p for p in _purge_candidates(spec) if not _exists(root, PurePosixPath(p.lstrip("/"))))
        )
        final = Manifest(spec.name, COMPLETE, listed, purge, tuple(units), tuple(wanted),
                         {"version": spec.package.version if spec.package else "", "spec": spec.source})  # fmt: skip

        # Before the first file: what a crash from here on may leave, so uninstall can clean it.
        # A file kept as it is (an edited config file, a carried entry) keeps its old record, so
        # that it still counts as edited if the install dies.
        carried = {e.path for e in config.carry}
        in_progress = tuple(
            old[e.path]
            if e.path in config.edited or e.path in carried
            else replace(e, previous=root.sha256(e.path) or "")
            if e.type == "file" and e.path in old
            else e
            for e in listed
        )
        manifests.write(root, replace(final, state=INSTALLING, entries=in_progress + tuple(leaving)))
        if own is not None:
            # Units the new version no longer has (a timer dropped): stopped and disabled
            # before their files go, or systemd keeps a dangling enable link and a loaded unit.
            steps.stop([u for u in own.units if u not in units])
            steps.disable([u for u in own.enable if u not in wanted])
            _remove_bytecode(root, own.entries)
            _remove_tmp_leftovers(root, own.entries)

        created: list[PurePosixPath] = []
        for entry in entries:
            if entry.type == "dir":
                root.make_dirs(entry.path, created)
            elif entry.type == "file":
                if entry.path not in config.keep:
                    root.write_file(entry.path, staging / entry.path, entry.mode, created)
            else:
                root.symlink(entry.path, entry.target, created)
        for entry in config.new:
            root.write_file(entry.path, staging / config.source(entry), entry.mode, created)
        result.removed, result.kept = _remove_entries(root, leaving)
        result.kept += [o.path for o in config.outcomes if o.dropped and o.action is conffiles.Action.KEPT]
        result.config = config.outcomes
        manifests.write(root, final)
        result.entries = entries
        # From here a timeout leaves what a service that does not start leaves.
        steps.left = f"{spec.name} is installed but may not run; 'unitgen uninstall {spec.name}' removes it"
        _configure(spec, steps, payload, wanted, upgrade=upgrade, catalog=_has_catalog(listed))
    result.steps = steps.done
    if live:
        result.state = steps.active_state(wanted[0] if wanted else f"{spec.name}.service")
    return result


def _service(units: Sequence[str], name: str) -> str:
    """The unit the hints name: the first service (an instance of a template), else NAME.service."""
    return next((u for u in units if u.endswith(".service")), f"{name}.service")


def _refuse(name: str, problems: Sequence[str]) -> None:
    if problems:
        raise UnitgenError(
            f"refusing to install {name}; nothing was written:\n  " + "\n  ".join(problems),
            hint="unitgen install replaces only the files its manifest lists, unchanged;"
            " move the others aside (or remove the package that owns them) first",
        )


def _has_catalog(entries: Sequence[Entry]) -> bool:
    return any(e.path.parent == CATALOG_DIR and e.path.suffix == ".catalog" for e in entries)


def _configure(
    spec: Spec, steps: Steps, payload: AppPayload | None, wanted: list[str], *, upgrade: bool, catalog: bool
) -> None:
    """What the deb postinst (and the catalog trigger) does once the files are in place."""
    steps.sysusers([f"{spec.name}.conf"] if spec.user else [])
    steps.tmpfiles([f"{spec.name}.conf"])
    if catalog:
        steps.update_catalog()
    steps.commands([*([payload.compile_argv] if payload else []), launcher_compile_argv(spec)])
    steps.daemon_reload()
    steps.enable(wanted)
    if upgrade:
        steps.start(wanted, restart=True, only_running=not spec.start_on_install)
    elif spec.start_on_install:
        steps.start(wanted, restart=False)


def _remove_entries(root: Root, entries: Sequence[Entry]) -> tuple[list[str], list[str]]:
    """Remove files and links still as installed, then the created directories left empty
    (deepest first). Returns (removed, kept): kept are files changed since."""
    removed, kept = [], []
    for entry in entries:
        if entry.type == "dir":
            continue
        if entry.matches(root):
            root.unlink(entry.path)
            removed.append(root.show(entry.path))
        elif _exists(root, entry.path):
            kept.append(root.show(entry.path))
    for entry in sorted((e for e in entries if e.type == "dir" and e.created), key=lambda e: -len(e.path.parts)):
        if root.rmdir(entry.path):
            removed.append(root.show(entry.path))
    return removed, kept


def _remove_bytecode(root: Root, entries: Sequence[Entry]) -> None:
    """The __pycache__ the compile step made in the directories the install created (not in the
    manifest: compiled on the host), with nothing but *.pyc files in it. A directory that was
    there before (/usr/lib/systemd, /usr/libexec) may hold someone else's bytecode: never touched."""
    listed = {e.path for e in entries}
    for entry in entries:
        cache = entry.path / "__pycache__"
        if entry.type != "dir" or not entry.created or cache in listed:
            continue
        try:
            names = root.listdir(cache)
        except SymlinkInPathError:
            continue
        if names and all(n.endswith(".pyc") for n in names):
            for name in names:
                st = root.lstat(cache / name)
                if st is not None and stat.S_ISREG(st.st_mode):
                    root.unlink(cache / name)
        root.rmdir(cache)


def _remove_tmp_leftovers(root: Root, entries: Sequence[Entry]) -> None:
    """Temporary files of an install killed while writing (`.FILE.unitgen-XXXXXXXX` beside FILE)."""
    by_dir: dict[PurePosixPath, set[str]] = {}
    for entry in entries:
        if entry.type != "dir":
            by_dir.setdefault(entry.path.parent, set()).add(entry.path.name)
    for directory, names in by_dir.items():
        try:
            present = root.listdir(directory)
        except SymlinkInPathError:
            continue
        for name in present:
            # (a listed name is no leftover: .FILE.unitgen-new, the newer default of a config file .FILE)
            if tmp_base(name) in names and name not in names:
                root.unlink(directory / name)


def _holding(root: Root, entries: Sequence[Entry], files: Sequence[Entry]) -> list[Entry]:
    """The directories the install created that still hold one of `files`."""
    return [
        e
        for e in entries
        if e.type == "dir" and e.created and _exists(root, e.path) and any(f.path.is_relative_to(e.path) for f in files)
    ]


def uninstall(
    name: str, root_dir: Path, *, purge: bool = False, say: Say = print, timeout: float | None = None
) -> UninstallResult:
    validate_name(name)
    require_root("uninstall")
    root_dir = root_dir.absolute()
    with Root(root_dir) as root:
        root.lock(say)
        own = manifests.read(root, name)
        if own is None:
            raise UnitgenError(
                f"{name} is not installed by unitgen: there is no {root.show(manifests.manifest_path(name))}",
                hint="a service installed from a package is removed with apt or dnf",
            )
        if own.state == REMOVED and not purge:
            left = [root.show(e.path) for e in own.entries if e.config] + list(own.purge)
            raise UnitgenError(
                f"{name} was uninstalled already; what is left of it: {', '.join(left)}",
                hint=f"'unitgen uninstall {name} --purge' removes that too",
            )
        live = live_systemd(root_dir)
        # Until the files go, a timeout removes nothing: the service may still run from them.
        nothing = f"nothing was removed (the service may still run from its files); 'unitgen uninstall {name}' again"
        steps = Steps(root_dir, live, say, _service(own.units, name), timeout, left=nothing)
        result = UninstallResult(name, root_dir, live)
        steps.stop(own.units)
        steps.disable(own.enable)
        steps.left = f"its files are removed; 'unitgen uninstall {name}{' --purge' if purge else ''}' again finishes"
        _remove_bytecode(root, own.entries)
        _remove_tmp_leftovers(root, own.entries)
        # The config files first, so that the directories holding them can go after them.
        config = conffiles.remove(root, own.entries, purge=purge)
        result.removed, result.kept = _remove_entries(root, [e for e in own.entries if not e.config])
        result.removed[:0], result.kept[:0], result.config = config.removed, config.kept, config.outcomes
        if _has_catalog(own.entries):
            steps.update_catalog()  # its entries leave the database (other services' stay)
        steps.daemon_reload()
        if purge:
            result.purged = [p for p in own.purge if root.rmtree(PurePosixPath(p.lstrip("/")))]
        # Without --purge, what a later purge needs: the state directories and the edited config
        # files kept, with the directories the install made for them (dpkg's config-files state).
        remaining = [*config.remaining, *_holding(root, own.entries, config.remaining)]
        if (own.purge or remaining) and not purge:
            entries = tuple(sorted(remaining, key=lambda e: str(e.path).encode()))
            manifests.write(root, replace(own, state=REMOVED, entries=entries, units=(), enable=()))
        else:
            manifests.remove(root, name)
        result.steps = steps.done
    return result
