"""What an install puts where, and the refusals checked before anything is written.

`collect` turns a staging tree into manifest entries (files with their hashes, symbolic links,
and every parent directory). `refusals` lists, for the whole plan at once, every path the
install must not touch:

- a symbolic link (or a file) in place of a directory on the way to a path;
- a file, link or directory at a path the plan needs of another type;
- an existing file that is not unitgen's own (in this service's manifest, unchanged): an admin's
  file, another program's;
- a path another service's manifest lists;
- a path a package owns (`dpkg-query -S`, `rpm -qf`; Debian records /lib, /bin and /sbin for
  files under /usr since merged /usr, so both names are asked), present on disk or not;
- a unit of the same name elsewhere on systemd's search path (an admin's unit or mask in
  /etc/systemd/system, a packaged one in /lib/systemd/system on an unmerged system, ...),
  which would shadow or be shadowed by the installed one.

A file unitgen installed and an admin then edited is refused too, on upgrade as on install:
the edit would otherwise be lost (replacing it) or leave the service half old, half new
(keeping it). The README says so: changes belong in a drop-in (`systemctl edit NAME`) or the
spec; restore the file or remove it to go on. The spec's [config] files are the exception:
editing them is what they are for, so an edited one is kept (`unitgen.install.conffiles`); only
a FILE.unitgen-new that is not unitgen's, or that someone changed, refuses the upgrade.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

from unitgen.install.manifest import CONFIG_FILE, Entry, Manifest
from unitgen.install.rootfs import Root, SymlinkInPathError, sha256_fd
from unitgen.render.units import RenderedFile
from unitgen.run import run
from unitgen.staging.tree import NOT_CONTENT

UNIT_DIRS = ("etc/systemd/system", "run/systemd/system", "usr/local/lib/systemd/system", "lib/systemd/system")
# merged /usr: dpkg's database still names these (Debian 12 ships units in /lib/systemd/system).
_ALIASES = {"usr/bin": "bin", "usr/sbin": "sbin", "usr/lib": "lib", "usr/lib64": "lib64"}


def collect(staging: Path) -> list[Entry]:
    """Entries for every file, link and directory of `staging`, parents first."""
    entries: list[Entry] = []
    for dirpath, dirnames, filenames in os.walk(staging):
        dirnames.sort()
        base = Path(dirpath)
        for name in [*dirnames, *sorted(filenames)]:
            full = base / name
            rel = PurePosixPath(full.relative_to(staging).as_posix())
            if rel.as_posix() in NOT_CONTENT:
                continue
            st = full.lstat()
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                entries.append(Entry(rel, "symlink", 0o777, target=str(full.readlink())))
            elif stat.S_ISDIR(st.st_mode):
                entries.append(Entry(rel, "dir", mode))
            else:
                fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                try:
                    entries.append(Entry(rel, "file", mode, sha256=sha256_fd(fd)))
                finally:
                    os.close(fd)
    return sorted(entries, key=lambda e: str(e.path).encode())


def rendered(files: Iterable[RenderedFile], more_dirs: Iterable[str] = ()) -> list[Entry]:
    """Entries for rendered files (and their parents) before any staging tree exists: what
    `collect` will find, minus the app's venv, so a refusal comes before a venv build."""
    entries = {f.path: Entry(f.path, "file", f.mode, sha256=hashlib.sha256(f.content).hexdigest()) for f in files}
    for path in [*list(entries), *(PurePosixPath(d.strip("/")) / "x" for d in more_dirs)]:
        for parent in path.parents:
            if parent != PurePosixPath("."):
                entries.setdefault(parent, Entry(parent, "dir", 0o755))
    return sorted(entries.values(), key=lambda e: str(e.path).encode())


def _kind(st: os.stat_result) -> str:
    if stat.S_ISLNK(st.st_mode):
        return "symlink"
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    return "file" if stat.S_ISREG(st.st_mode) else "special file"


def refusals(
    root: Root,
    entries: Sequence[Entry],
    own: Manifest | None,
    others: dict[PurePosixPath, str],
    units: Sequence[str],
) -> list[str]:
    """Every reason not to install, one line each (empty: go ahead)."""
    problems: list[str] = []
    mine = own.by_path() if own is not None else {}
    for entry in entries:
        try:
            st = root.lstat(entry.path)
        except SymlinkInPathError as exc:
            if exc.message not in problems:
                problems.append(exc.message)
            continue
        where = root.show(entry.path)
        if entry.path in others and entry.type != "dir":
            problems.append(f"{where} is listed in the manifest of the service {others[entry.path]} (unitgen install)")
            continue
        if st is None:
            continue
        kind = _kind(st)
        if entry.type == "dir":
            if kind != "dir":
                problems.append(f"{where} is a {kind}, where a directory is needed")
            continue
        old = mine.get(entry.path)
        if old is None or old.type == "dir":
            problems.append(f"{where} exists and is not unitgen's (an admin's file, or another program's)")
        elif entry.config != CONFIG_FILE and (old.type != kind or not old.matches(root)):
            problems.append(
                f"{where} was changed since unitgen installed it; unitgen replaces only its own, unchanged files"
            )
    problems += [f"{root.show(path)} belongs to {who}" for path, who in owners(root, entries)]
    problems += _units_elsewhere(root, units)
    return problems


def _units_elsewhere(root: Root, units: Sequence[str]) -> list[str]:
    found = []
    lib = root.path / "lib"
    for unit_dir in UNIT_DIRS:
        if unit_dir.startswith("lib/") and lib.is_symlink():
            continue  # merged /usr: the same directory as usr/lib/systemd/system
        for unit in units:
            path = PurePosixPath(unit_dir, unit)
            try:
                st = root.lstat(path)
            except SymlinkInPathError:
                continue  # not a directory systemd reads units from then
            if st is not None:
                what = "masked (a link to /dev/null)" if root.readlink(path) == "/dev/null" else "another unit"
                found.append(f"{root.show(path)}: {unit} already exists there ({what}); it would shadow or be"
                             " shadowed by the installed one")  # fmt: skip
    return found


def _aliases(path: PurePosixPath) -> Iterable[str]:
    yield f"/{path}"
    for merged, old in _ALIASES.items():
        if str(path).startswith(merged + "/"):
            yield f"/{old}/{str(path)[len(merged) + 1 :]}"


def owners(root: Root, entries: Sequence[Entry]) -> list[tuple[PurePosixPath, str]]:
    """(path, "the package P (dpkg)") for every file or link of the plan a package owns."""
    names = {alias: e.path for e in entries if e.type != "dir" for alias in _aliases(e.path)}
    if not names:
        return []
    found: dict[PurePosixPath, str] = {}
    admindir = root.path / "var/lib/dpkg"
    if (admindir / "status").is_file() and shutil.which("dpkg-query"):
        result = run(["dpkg-query", f"--admindir={admindir}", "-S", *sorted(names)], check=False)
        for line in result.stdout.splitlines():
            packages, sep, path = line.rpartition(": ")
            if sep and path in names:
                who = packages.removeprefix("diversion by ").removesuffix(" from").removesuffix(" to")
                found.setdefault(names[path], f"the package {who} (dpkg)")
    if any((root.path / db).is_dir() for db in ("var/lib/rpm", "usr/lib/sysimage/rpm")) and shutil.which("rpm"):
        found.update(_rpm_owners(root, names))
    return sorted(found.items())


def _rpm_owners(root: Root, names: dict[str, PurePosixPath]) -> dict[PurePosixPath, str]:
    argv = ["rpm", f"--root={root.path}", "-qf", "--queryformat", "%{NAME}\n"]
    result = run([*argv, *sorted(names)], check=False)
    if all(" is not owned by any package" in line for line in result.stdout.splitlines()):
        return {}  # the usual case: one call for the whole plan
    found = {}
    for alias, path in sorted(names.items()):  # which ones: one call each, only when some are owned
        one = run([*argv, alias], check=False)
        if one.returncode == 0 and one.stdout.strip():
            found[path] = f"the package {one.stdout.split()[0]} (rpm)"
    return found
