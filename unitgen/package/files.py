"""The shared file pipeline: a staging tree in, one sorted, normalised list of entries out.

Both writers consume the same `Entry` list, so reproducibility rules live here once: owner root,
modes normalised (0755 for directories and executables, 0644 otherwise), every parent directory
present, mtimes clamped to SOURCE_DATE_EPOCH, sorted by path (byte order, which is also the order
RPM's header needs and keeps each parent before its children). Entries under /etc are config
files; entries under /run are ghosts (created at boot by tmpfiles.d, never shipped as content).
"""

from __future__ import annotations

import enum
import io
import os
import posixpath
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from unitgen.errors import UnitgenError
from unitgen.reproducible import build_time


class Kind(enum.Enum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"


# Directories that belong to the base system. An RPM must not own them (they belong to the
# `filesystem` package and friends); a .deb lists them, as dpkg-deb does, and dpkg shares them.
SYSTEM_DIRS = frozenset(
    {
        "",
        "etc",
        "etc/default",
        "etc/systemd",
        "etc/systemd/system",
        "etc/sysusers.d",
        "etc/tmpfiles.d",
        "etc/logrotate.d",
        "etc/cron.d",
        "etc/profile.d",
        "etc/sudoers.d",
        "opt",
        "srv",
        "run",
        "var",
        "var/lib",
        "var/log",
        "var/cache",
        "var/spool",
        "var/run",
        "usr",
        "usr/bin",
        "usr/sbin",
        "usr/lib",
        "usr/lib64",
        "usr/libexec",
        "usr/include",
        "usr/lib/systemd",
        "usr/lib/systemd/system",
        "usr/lib/systemd/user",
        "usr/lib/systemd/system-preset",
        "usr/lib/systemd/catalog",
        "usr/lib/sysusers.d",
        "usr/lib/tmpfiles.d",
        "usr/lib/python3",
        "usr/lib/python3/dist-packages",
        "usr/share",
        "usr/share/doc",
        "usr/share/licenses",
        "usr/share/man",
        "usr/share/man/man1",
        "usr/share/man/man5",
        "usr/share/man/man8",
        "usr/share/bash-completion",
        "usr/share/bash-completion/completions",
        "usr/local",
        "usr/local/bin",
        "usr/local/lib",
    }
)


@dataclass(frozen=True)
class Entry:
    path: str
    """Relative POSIX path without a leading slash ("usr/lib/x"); "" is never an entry."""
    kind: Kind
    mode: int
    """Permission bits only (the writers add the file type bits their format wants)."""
    mtime: int
    size: int = 0
    source: Path | None = None
    """Where a FILE's content is on disk, or None when `data` holds it (generated files)."""
    data: bytes | None = None
    target: str = ""
    """A SYMLINK's target, verbatim."""
    config: bool = False
    """Under /etc: a deb conffile, an rpm %config(noreplace)."""
    ghost: bool = False
    """Under /run: rpm %ghost, left out of the deb."""
    system: bool = False
    """A DIR that belongs to the base system: rpm does not own it."""

    def open(self) -> BinaryIO:
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.source is not None
        return self.source.open("rb")

    @property
    def abspath(self) -> str:
        return "/" + self.path


def _normal_mode(st_mode: int, is_dir: bool) -> int:
    executable = is_dir or bool(st_mode & 0o111)
    if not st_mode & 0o004:
        # Keep secrets secret: a file the author made unreadable to others stays so.
        return 0o700 if executable else 0o600
    return 0o755 if executable else 0o644


def collect(
    staging: Path,
    *,
    epoch: int | None,
    extra: Mapping[str, tuple[bytes, int]] | None = None,
) -> list[Entry]:
    """Walk `staging` (a tree mirroring the target file system) into a sorted entry list.

    `extra` adds generated files, path -> (content, mode), e.g. the Debian copyright file;
    a collision with a staged file is an error rather than a silent overwrite.
    """
    if not staging.is_dir():
        raise UnitgenError(f"staging directory does not exist: {staging}")
    now = build_time(epoch)

    def clamp(mtime: float) -> int:
        return int(mtime) if epoch is None else min(int(mtime), epoch)

    entries: dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(staging):
        dirnames.sort()
        base = Path(dirpath)
        for name in [*dirnames, *filenames]:
            full = base / name
            rel = full.relative_to(staging).as_posix()
            if rel in (".unitgen-output", ".unitgen-stamp"):  # unitgen.staging.tree.NOT_CONTENT: unitgen's, not content
                continue
            st = full.lstat()
            if stat.S_ISLNK(st.st_mode):
                target = link_target(rel, str(full.readlink()))
                entries[rel] = Entry(rel, Kind.SYMLINK, 0o777, clamp(st.st_mtime), target=target)
            elif stat.S_ISDIR(st.st_mode):
                entries[rel] = Entry(rel, Kind.DIR, _normal_mode(st.st_mode, True), clamp(st.st_mtime))
            elif stat.S_ISREG(st.st_mode):
                entries[rel] = Entry(
                    rel,
                    Kind.FILE,
                    _normal_mode(st.st_mode, False),
                    clamp(st.st_mtime),
                    size=st.st_size,
                    source=full,
                )
            else:
                raise UnitgenError(
                    f"cannot package {full}: not a file, directory or symlink",
                    hint="device nodes, sockets and fifos belong in tmpfiles.d",
                )
    for rel, (data, mode) in sorted((extra or {}).items()):
        rel = rel.strip("/")
        if rel in entries:
            raise UnitgenError(
                f"the staging tree already has /{rel}, which the packager generates",
                hint="remove it from the staging tree",
            )
        entries[rel] = Entry(rel, Kind.FILE, mode, now, size=len(data), data=data)
    _add_parents(entries, now if epoch is not None else clamp(staging.stat().st_mtime))
    return [_classify(e) for _, e in sorted(entries.items(), key=lambda kv: kv[0].encode())]


def link_target(path: str, target: str) -> str:
    """A symlink's target as Debian policy 10.5 (and dh_link) want it: relative within one
    top-level directory (/usr/lib/x -> /usr/bin/y becomes ../../bin/y), absolute across them."""
    if not target.startswith("/"):
        return target
    target = posixpath.normpath(target)
    if target.split("/")[1] != path.split("/")[0]:
        return target
    return posixpath.relpath(target, "/" + posixpath.dirname(path))


def _add_parents(entries: dict[str, Entry], mtime: int) -> None:
    for rel in list(entries):
        parent = rel.rpartition("/")[0]
        while parent and parent not in entries:
            entries[parent] = Entry(parent, Kind.DIR, 0o755, mtime)
            parent = parent.rpartition("/")[0]


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top + "/")


def _classify(entry: Entry) -> Entry:
    ghost = _under(entry.path, "run") or _under(entry.path, "var/run")
    config = entry.kind is not Kind.DIR and _under(entry.path, "etc")
    system = entry.kind is Kind.DIR and entry.path in SYSTEM_DIRS
    if ghost and entry.kind is Kind.FILE and entry.size:
        raise UnitgenError(
            f"/{entry.path} has content, but /run is a tmpfs emptied at boot",
            hint="create it with a tmpfiles.d entry (or RuntimeDirectory=) instead",
        )
    return replace(entry, ghost=ghost, config=config, system=system)


def installed_size_kib(entries: Iterable[Entry]) -> int:
    """Debian's Installed-Size: file sizes rounded up to KiB, one KiB per other inode (dpkg-gencontrol)."""
    total = 0
    for e in entries:
        total += (e.size + 1023) // 1024 if e.kind is Kind.FILE else 1
    return total
