"""The steps of a boot plan: each one system call (or a check), able to `execute()` and `describe()` itself.

`execute()` runs in the helper process (`unitgen.sandbox.stage2`), `describe()` makes the dry run
of `describe_plan()`; `encode`/`decode` carry operations to the helper as JSON. Standard library only.
"""

# ruff: noqa: S108  (/tmp, /var/tmp here are mount points inside the sandbox, not temp files)
from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from unitgen.sandbox.syscalls import (
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_SHARED,
    mount,
    pivot_root,
    umount2,
)

_FLAG_NAMES = (
    (MS_RDONLY, "ro"),
    (MS_NOSUID, "nosuid"),
    (MS_NODEV, "nodev"),
    (MS_NOEXEC, "noexec"),
    (MS_REMOUNT, "remount"),
    (MS_BIND, "bind"),
    (MS_REC, "rec"),
    (MS_PRIVATE, "private"),
    (MS_SHARED, "shared"),
)


@dataclasses.dataclass(frozen=True)
class Mount:
    """One mount(2) call."""

    what: str | None
    where: str
    fstype: str | None = None
    flags: int = 0
    options: str | None = None
    optional: bool = False  # skip when `where` does not exist (e.g. no /proc/sysrq-trigger)

    def execute(self) -> None:
        if self.optional and not Path(self.where).exists():
            return
        mount(self.what, self.where, self.fstype, self.flags, self.options)

    def describe(self) -> str:
        opts = [name for bit, name in _FLAG_NAMES if self.flags & bit]
        if self.options:
            opts.append(self.options)
        parts = ["mount"]
        if self.fstype:
            parts += ["-t", self.fstype]
        if opts:
            parts += ["-o", ",".join(opts)]
        parts += [self.what or "none", self.where]
        return " ".join(parts)


@dataclasses.dataclass(frozen=True)
class MakeDirectory:
    path: str
    mode: int = 0o755

    def execute(self) -> None:
        with contextlib.suppress(FileExistsError):
            Path(self.path).mkdir(self.mode)

    def describe(self) -> str:
        return f"mkdir -m {self.mode:o} {self.path}"


@dataclasses.dataclass(frozen=True)
class MakeNode:
    """A character device node in the sandbox's own /dev tmpfs."""

    path: str
    major: int
    minor: int
    mode: int = 0o666

    def execute(self) -> None:
        os.mknod(self.path, stat.S_IFCHR | self.mode, os.makedev(self.major, self.minor))

    def describe(self) -> str:
        return f"mknod -m {self.mode:o} {self.path} c {self.major} {self.minor}"


@dataclasses.dataclass(frozen=True)
class Symlink:
    target: str
    path: str

    def execute(self) -> None:
        Path(self.path).symlink_to(self.target)

    def describe(self) -> str:
        return f"ln -s {self.target} {self.path}"


@dataclasses.dataclass(frozen=True)
class WriteFile:
    """Write a file; only used after pivot_root, so no path can resolve into the host."""

    path: str
    content: str
    mode: int = 0o644

    def execute(self) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # Replace a symbolic link rather than write through it.
        Path(self.path).unlink(missing_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, self.mode)
        with os.fdopen(fd, "w") as f:
            f.write(self.content)

    def describe(self) -> str:
        return f"write {self.path} ({len(self.content)} bytes, mode {self.mode:o})"


@dataclasses.dataclass(frozen=True)
class BindConsole:
    """Bind a pseudo-terminal of the host over the sandbox's /dev/console.

    systemd as PID 1 writes its status and early log to /dev/console, and only to a terminal; the
    helper process copies the other end into `console.log`, so a failed boot can be explained.
    Done before pivot_root: a bind source must be a mount of the caller's namespace.
    """

    tty: str
    path: str

    def execute(self) -> None:
        WriteFile(self.path, "", 0o600).execute()
        mount(self.tty, self.path, None, MS_BIND, None)

    def describe(self) -> str:
        return f"mount -o bind {self.tty} {self.path}"


@dataclasses.dataclass(frozen=True)
class PivotRoot:
    """Make `new_root` the root and detach the old one (the pivot_root(".", ".") idiom)."""

    new_root: str

    def execute(self) -> None:
        os.chdir(self.new_root)
        pivot_root(".", ".")
        umount2(".", MNT_DETACH, "umount old root")
        os.chdir("/")

    def describe(self) -> str:
        return f"pivot_root {self.new_root} (old root detached)"


@dataclasses.dataclass(frozen=True)
class CheckMarker:
    """Refuse to go on unless a file written into `root` stays invisible at the host's `/`."""

    root: str

    def execute(self) -> None:
        name = f".unitgen-sandbox-marker-{secrets.token_hex(8)}"
        marker = Path(self.root, name)
        marker.write_text("overlay\n")
        leaked = Path("/", name).exists()
        marker.unlink()
        if leaked:
            raise OSError(0, f"{self.root} is not an overlay: a marker written there appeared on the host")

    def describe(self) -> str:
        return f"check that a marker written in {self.root} does not appear in the host's /"


@dataclasses.dataclass(frozen=True)
class CheckMounts:
    """After pivot_root: / must be the overlay and the volatile directories fresh tmpfs."""

    expected: tuple[tuple[str, str], ...] = (
        ("/", "overlay"),
        ("/run", "tmpfs"),
        ("/tmp", "tmpfs"),
        ("/var/tmp", "tmpfs"),
        ("/dev", "tmpfs"),
    )

    def execute(self) -> None:
        found: dict[str, str] = {}
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            left, right = line.split(" - ", 1)
            found[left.split()[4]] = right.split()[0]  # the last mount on a path wins
        for where, fstype in self.expected:
            if found.get(where) != fstype:
                raise OSError(0, f"refusing to boot: {where} is {found.get(where)!r}, expected {fstype}")

    def describe(self) -> str:
        return "check mounts: " + ", ".join(f"{w} is {t}" for w, t in self.expected)


Operation = Mount | MakeDirectory | MakeNode | Symlink | WriteFile | BindConsole | PivotRoot | CheckMarker | CheckMounts
_OPERATIONS: dict[str, type[Operation]] = {
    cls.__name__: cls
    for cls in (Mount, MakeDirectory, MakeNode, Symlink, WriteFile, BindConsole, PivotRoot, CheckMarker, CheckMounts)
}


def encode(op: Operation) -> dict[str, Any]:
    """An operation as JSON-able data, for the helper process's instructions."""
    return {"op": type(op).__name__, **dataclasses.asdict(op)}


def decode(data: dict[str, Any]) -> Operation:
    """The operation `encode` made `data` from."""
    fields = dict(data)
    cls = _OPERATIONS[fields.pop("op")]
    if cls is CheckMounts:
        return CheckMounts(tuple((w, t) for w, t in fields["expected"]))
    return cls(**fields)
