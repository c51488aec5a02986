"""A real systemd booted as PID 1 of private namespaces, on a throw-away overlay of the host.

`Sandbox.boot()` starts `/lib/systemd/systemd` in new PID, mount, UTS, network, IPC and cgroup
namespaces. Its root file system is an overlay with the host's `/` as the read-only lower layer and
a tmpfs as the upper layer, so every write the sandbox makes (`/etc`, `/var`, `dpkg -i`, ...) lands
in memory and vanishes with it. Booting systemd over the host's own root would be destructive
(`systemd-tmpfiles --remove` empties `/tmp`, `systemd-sysctl` and `modprobe@.service` change the
host kernel), so the isolation is built in depth rather than trusted to unit masks alone:

- every write goes to the overlay's tmpfs upper layer or to fresh tmpfs mounts;
- `/proc/sys` and `/sys` are read-only, so PID 1 cannot bump host sysctls such as `fs.nr_open`
  (systemd does so at start, see `bump_file_max_and_nr_open()` in systemd's main.c);
- `/dev` is a fresh tmpfs with a handful of device nodes, not the host's devtmpfs;
- capabilities that reach global kernel state (modules, clock, raw I/O, syslog, MAC policy) are
  dropped from the bounding set of PID 1 and of every command run inside;
- each sandbox gets its own cgroup in every host hierarchy, so its units never meet another
  sandbox's cgroups, and teardown removes them;
- before exec'ing systemd, PID 1 checks that `/` is the overlay and that a marker written there
  is invisible on the host, and refuses to boot otherwise.

The namespaces and mounts are made with the raw system calls through `ctypes` (Python 3.11 has no
`os.unshare`), by a fresh interpreter (`_stage2_main`), never by forking the caller. Each step is an
`Operation` that can `execute()` and `describe()` itself, so `describe_plan()` shows a dry run.
Commands are run inside with util-linux `nsenter`; files are copied in with `tar` run inside, so
symbolic links are resolved against the sandbox root and never against the host's.

Usage (see `Sandbox` for the rest: `write_file`, `read_file`, `systemctl`, `show`, `wait_for`)::

    with Sandbox.boot("demo") as sb:           # ~0.4 s to `is-system-running` = running
        sb.copy_in(staging_tree)               # a tree mirroring the target file system
        sb.systemctl("daemon-reload")
        sb.systemctl("start", "demo.service")
        sb.journal("MESSAGE_ID=...", unit="demo.service")

Limits, on purpose:
- It keeps accidents away from the host; it is not a boundary against hostile code (PID 1 and
  commands run inside are real root with CAP_SYS_ADMIN in the host's user namespace).
- Only the host's root file system is visible inside: other host mounts (its /tmp, /run,
  /var/tmp, /dev/shm, any separate /home) are not. Copy what a test needs in with `copy_in`.
- No udev, no block devices, no /dev/kmsg, no logind or getty; D-Bus is socket-activated.
- Commands from `run()` are in the sandbox's namespaces but not in one of its units (they stay in
  the caller's cgroup); use `systemd-run` to start something under systemd.
"""

# ruff: noqa: S108  (/tmp, /var/tmp, /dev/shm here are mount points inside the sandbox, not temp files)
from __future__ import annotations

import atexit
import contextlib
import ctypes
import dataclasses
import io
import json
import os
import platform
import secrets
import select
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import tty
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, NoReturn

from unitgen.errors import UnitgenError
from unitgen.run import CommandError, run

STATE_ROOT = Path("/run/unitgen/sandbox")
SYSTEMD = "/lib/systemd/systemd"
TARGET = "unitgen-sandbox.target"
CONTAINER = "unitgen"  # $container, the container manager's name (systemd's CONTAINER_INTERFACE)
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CGROUP_PREFIX = "unitgen-sandbox-"
LEGACY_BOOT_GRACE = 120  # seconds an unrecorded state directory may be a boot in progress of an older unitgen
RECORD_SUFFIX = ".json"  # STATE_ROOT/ID.json: the owner record, next to the state directory STATE_ROOT/ID
# What systemd as PID 1 prints when it hits a fatal error and stops (freeze() in its main.c).
FROZEN = "Freezing execution"
TIMED_OUT = 124  # the exit status of timeout(1) when the time ran out

# Units that would touch the host (kernel state, clock, TPM, pstore, consoles) or only slow the
# boot down. Masked by runtime symlinks to /dev/null in the sandbox's own /run.
MASKED_UNITS = (
    "systemd-sysctl.service",
    "systemd-binfmt.service",
    "systemd-modules-load.service",
    "modprobe@.service",
    "proc-sys-fs-binfmt_misc.automount",
    "proc-sys-fs-binfmt_misc.mount",
    "systemd-remount-fs.service",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-kernel-config.mount",
    "sys-fs-fuse-connections.mount",
    "dev-hugepages.mount",
    "dev-mqueue.mount",
    "systemd-update-utmp.service",
    "systemd-journal-flush.service",
    "systemd-firstboot.service",
    "systemd-random-seed.service",
    "systemd-timesyncd.service",
    "systemd-pstore.service",
    "systemd-pcrphase.service",
    "systemd-pcrphase-sysinit.service",
    "systemd-repart.service",
    "systemd-hwdb-update.service",
    "systemd-udevd.service",
    "systemd-udev-trigger.service",
    "systemd-udev-settle.service",
    "systemd-boot-update.service",
    "systemd-ask-password-console.path",
    "apparmor.service",
    "getty.target",
    "console-getty.service",
)

# Capabilities dropped from the bounding set: each reaches state shared with the host kernel.
# (capability.h numbers; names as setpriv(1) spells them.)
DROPPED_CAPABILITIES = {
    "sys_module": 16,
    "sys_rawio": 17,
    "sys_pacct": 20,
    "sys_time": 25,
    "audit_control": 30,
    "mac_override": 32,
    "mac_admin": 33,
    "syslog": 34,
    "wake_alarm": 35,
    "block_suspend": 36,
}

# Arguments to PID 1. In a container systemd reads "kernel command line" options from its own
# argv (proc_cmdline() uses /proc/1/cmdline when detect_container() > 0).
SYSTEMD_ARGS = (
    f"--unit={TARGET}",
    "--show-status=yes",
    "fstab=no",
    "systemd.gpt_auto=no",
)

TARGET_UNIT = """\
[Unit]
Description=unitgen sandbox: sysinit, journald and a socket-activated D-Bus
Requires=sysinit.target systemd-journald.socket
After=sysinit.target systemd-journald.socket
# For tools that need the system bus (systemd-run --wait, busctl); the daemon starts on first use.
Wants=dbus.socket
After=dbus.socket
AllowIsolate=yes
"""

JOURNALD_DROPIN = """\
[Journal]
# Keep the journal in the sandbox's /run (never the host's /var/log/journal) and keep every
# message: tests look for specific entries.
Storage=volatile
RateLimitBurst=0
"""

# --- system calls --------------------------------------------------------------------------

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24

_FLAG_NAMES = (
    (MS_RDONLY, "ro"),
    (MS_NOSUID, "nosuid"),
    (MS_NODEV, "nodev"),
    (MS_NOEXEC, "noexec"),
    (MS_REMOUNT, "remount"),
    (MS_BIND, "bind"),
    (MS_REC, "rec"),
    (MS_PRIVATE, "private"),
)

# pivot_root(2) has no glibc wrapper.
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}

_libc: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(result: int, what: str) -> None:
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(what: str | None, where: str, fstype: str | None, flags: int, options: str | None) -> None:
    def b(s: str | None) -> bytes | None:
        return None if s is None else os.fsencode(s)

    result = _c().mount(b(what), b(where), b(fstype), ctypes.c_ulong(flags), b(options))
    _check(result, f"mount {where}")


def _unshare(flags: int) -> None:
    _check(_c().unshare(ctypes.c_int(flags)), "unshare")


def _prctl(option: int, arg: int) -> None:
    _check(_c().prctl(ctypes.c_int(option), ctypes.c_ulong(arg), 0, 0, 0), f"prctl {option}")


# --- operations ----------------------------------------------------------------------------


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
        _mount(self.what, self.where, self.fstype, self.flags, self.options)

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
        _mount(self.tty, self.path, None, MS_BIND, None)

    def describe(self) -> str:
        return f"mount -o bind {self.tty} {self.path}"


@dataclasses.dataclass(frozen=True)
class PivotRoot:
    """Make `new_root` the root and detach the old one (the pivot_root(".", ".") idiom)."""

    new_root: str

    def execute(self) -> None:
        number = _SYS_PIVOT_ROOT.get(platform.machine())
        if number is None:
            raise OSError(0, f"pivot_root: unknown system call number on {platform.machine()}")
        os.chdir(self.new_root)
        _check(_c().syscall(ctypes.c_long(number), b".", b"."), "pivot_root")
        _check(_c().umount2(b".", ctypes.c_int(MNT_DETACH)), "umount old root")
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


def _encode(op: Operation) -> dict[str, Any]:
    return {"op": type(op).__name__, **dataclasses.asdict(op)}


def _decode(data: dict[str, Any]) -> Operation:
    fields = dict(data)
    cls = _OPERATIONS[fields.pop("op")]
    if cls is CheckMounts:
        return CheckMounts(tuple((w, t) for w, t in fields["expected"]))
    return cls(**fields)


# --- the plan ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Hierarchy:
    """A host cgroup hierarchy mounted under /sys/fs/cgroup."""

    mountpoint: str  # e.g. /sys/fs/cgroup/cpu
    fstype: str  # cgroup or cgroup2
    options: str  # the controllers, e.g. "cpu" or "name=systemd"; "" for cgroup2
    path: str  # this process's cgroup in it, e.g. /process_api/abc


# Super options of a cgroup v1 mount that are not controllers.
_CGROUP_FLAGS = {"rw", "ro", "xattr", "noprefix", "clone_children", "cpuset_v2_mode", "favordynmods"}


def host_hierarchies() -> list[Hierarchy]:
    """The cgroup hierarchies of this process, with the place each is mounted on the host."""
    mounts: dict[str, tuple[str, str]] = {}  # controller set -> (mountpoint, fstype)
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, right = line.split(" - ", 1)
        fstype, _source, superopts = right.split()[:3]
        where = left.split()[4]
        if not where.startswith("/sys/fs/cgroup/"):
            continue
        if fstype == "cgroup2":
            mounts[""] = (where, fstype)
        elif fstype == "cgroup":
            ctrl = sorted(o for o in superopts.split(",") if o.startswith("name=") or o not in _CGROUP_FLAGS)
            mounts.setdefault(",".join(ctrl), (where, fstype))
    result = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _hid, controllers, path = line.split(":", 2)
        key = ",".join(sorted(controllers.split(","))) if controllers else ""
        if key in mounts:
            where, fstype = mounts[key]
            result.append(Hierarchy(where, fstype, controllers, path))
    return result


def boot_plan(
    name: str, state: Path, hierarchies: Sequence[Hierarchy], machine_id: str, console: str
) -> list[Operation]:
    """Every step PID 1 takes between unshare(2) and exec'ing systemd, in order."""
    mnt = str(state / "mnt")
    root = f"{mnt}/root"
    tmpfs_flags = MS_NOSUID | MS_NODEV
    plan: list[Operation] = [
        # Mounts made from here on must not propagate back to the host's namespace.
        Mount(None, "/", None, MS_REC | MS_PRIVATE),
        Mount("tmpfs", mnt, "tmpfs", tmpfs_flags, "mode=0700"),
        MakeDirectory(f"{mnt}/upper"),
        MakeDirectory(f"{mnt}/work"),
        MakeDirectory(root),
        Mount("overlay", root, "overlay", 0, f"lowerdir=/,upperdir={mnt}/upper,workdir={mnt}/work"),
        CheckMarker(root),
        # /dev is built before pivot_root: its console is a bind of the host-side log file.
        *_dev_plan(root, console),
        PivotRoot(root),
        # From here on every path is inside the new root.
        Mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC),
        Mount("/proc/sys", "/proc/sys", None, MS_BIND),
        Mount(None, "/proc/sys", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC),
        # The network sysctls belong to the sandbox's own network namespace.
        Mount("/proc/sys/net", "/proc/sys/net", None, MS_BIND),
        Mount(None, "/proc/sys/net", None, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_NOEXEC),
        Mount("/proc/sysrq-trigger", "/proc/sysrq-trigger", None, MS_BIND, optional=True),
        Mount(None, "/proc/sysrq-trigger", None, MS_BIND | MS_REMOUNT | MS_RDONLY, optional=True),
        Mount("sysfs", "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC),
        Mount("tmpfs", "/sys/fs/cgroup", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755"),
    ]
    for h in hierarchies:
        plan.append(MakeDirectory(h.mountpoint))
        # In the new cgroup namespace a fresh mount is rooted at this sandbox's own cgroup.
        plan.append(Mount(h.fstype, h.mountpoint, h.fstype, MS_NOSUID | MS_NODEV | MS_NOEXEC, h.options or None))
    plan += [
        Mount(None, "/sys/fs/cgroup", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755"),
        Mount("tmpfs", "/run", "tmpfs", tmpfs_flags, "mode=0755"),
        Mount("tmpfs", "/tmp", "tmpfs", tmpfs_flags, "mode=1777"),
        Mount("tmpfs", "/var/tmp", "tmpfs", tmpfs_flags, "mode=1777"),
    ]
    plan += [MakeDirectory("/run/systemd"), MakeDirectory("/run/systemd/system")]
    plan += [Symlink("/dev/null", f"/run/systemd/system/{unit}") for unit in MASKED_UNITS]
    plan += [
        WriteFile(f"/run/systemd/system/{TARGET}", TARGET_UNIT),
        WriteFile("/run/systemd/journald.conf.d/unitgen-sandbox.conf", JOURNALD_DROPIN),
        WriteFile("/etc/machine-id", machine_id + "\n", 0o444),
        WriteFile("/etc/hostname", name + "\n"),
        CheckMounts(),
    ]
    return plan


def _dev_plan(root: str, console: str) -> list[Operation]:
    """A fresh /dev on a tmpfs: a few device nodes, its own devpts, its own /dev/shm.

    Not the host's devtmpfs, so nothing in the sandbox can create or change host device nodes.
    `root` is the new root, before pivot_root; everything below is on the fresh tmpfs.
    """
    dev = f"{root}/dev"
    nodes = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0))
    return [
        Mount("tmpfs", dev, "tmpfs", MS_NOSUID, "mode=0755"),
        *(MakeNode(f"{dev}/{node}", major, minor) for node, major, minor in nodes),
        MakeDirectory(f"{dev}/pts"),
        Mount("devpts", f"{dev}/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620,gid=5"),
        Symlink("pts/ptmx", f"{dev}/ptmx"),
        MakeDirectory(f"{dev}/shm"),
        Mount("tmpfs", f"{dev}/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"),
        Symlink("/proc/self/fd", f"{dev}/fd"),
        *(Symlink(f"/proc/self/fd/{i}", f"{dev}/{n}") for i, n in enumerate(("stdin", "stdout", "stderr"))),
        BindConsole(console, f"{dev}/console"),
    ]


def describe_plan(name: str = "unitgen") -> str:
    """A dry run: what `Sandbox.boot(name)` does, one step a line."""
    state = STATE_ROOT / f"{name}.XXXXXXXX"
    hierarchies = host_hierarchies()
    lines = [f"unshare --pid --mount --uts --net --ipc --cgroup (state in {state})"]
    lines += [f"join new cgroup {h.mountpoint}{_cgroup_child(h, 'XXXXXXXX')}" for h in hierarchies]
    lines += [op.describe() for op in boot_plan(name, state, hierarchies, "0" * 32, "/dev/pts/N")]
    lines.append(f"drop capabilities from the bounding set: {', '.join(DROPPED_CAPABILITIES)}")
    lines.append(f"exec env container={CONTAINER} {SYSTEMD} {' '.join(SYSTEMD_ARGS)}")
    return "\n".join(lines)


def _cgroup_child(h: Hierarchy, sid: str) -> str:
    return f"{h.path.rstrip('/')}/{CGROUP_PREFIX}{sid}"


# --- the code that runs in the new namespaces (a separate interpreter) -------------------


def _stage2_main() -> NoReturn:
    """Entry point of the helper process: join cgroups, unshare, fork PID 1, report its PID.

    Its instructions come as JSON on stdin (not in argv, which `ps` shows to everyone).
    """
    spec = json.loads(sys.stdin.buffer.read())
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.close(null)
    if spec["detach"] and os.fork() != 0:
        os._exit(0)  # a detached helper is nobody's child: it outlives the process that booted it
    status = int(spec["status_fd"])
    lifeline = int(spec["lifeline_fd"])
    for fd in (status, spec["console_fd"], spec["console_slave_fd"], lifeline):
        if fd >= 0:
            os.set_inheritable(fd, False)  # PID 1 must not take them into systemd
    try:
        for directory in spec["cgroups"]:
            _join_cgroup(Path(directory))
        _unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWCGROUP)
        pid = os.fork()
    except BaseException as exc:
        _report(status, f"error {exc}")
        os._exit(1)
    if pid == 0:
        _pid1(spec, status)
    os.write(status, f"pid {pid}\n".encode())
    os.close(status)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _relay_console(int(spec["console_fd"]), pid, lifeline)
    _, wstatus = os.waitpid(pid, 0)
    os._exit(os.waitstatus_to_exitcode(wstatus) & 0xFF)


def _relay_console(master: int, pid: int, lifeline: int) -> None:
    """Copy PID 1's console (the pty master) to our stdout, the console log, until PID 1 exits.

    When the process that booted the sandbox is gone (every copy of the lifeline's write end is
    closed, however it died), kill PID 1: nothing would ever tear the sandbox down otherwise.
    """
    pidfd = os.pidfd_open(pid)
    watched = [master, pidfd] + ([lifeline] if lifeline >= 0 else [])
    while True:
        ready, _, _ = select.select(watched, [], [])
        if master in ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                data = b""
            if data:
                os.write(1, data.replace(b"\r", b""))  # systemd turns ONLCR back on and writes CRLF
            else:
                watched.remove(master)  # no terminal any more: only wait for the exit
        if lifeline in ready:
            os.kill(pid, signal.SIGKILL)
            watched.remove(lifeline)
        if pidfd in ready:
            return


def _report(fd: int, message: str) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, (message.replace("\n", " ") + "\n").encode())


def _join_cgroup(directory: Path) -> None:
    directory.mkdir()
    # A new cpuset cgroup (v1) starts with no CPUs and no memory nodes; nothing can join it.
    for name in ("cpuset.cpus", "cpuset.mems"):
        own = directory / name
        if own.exists() and not own.read_text().strip():
            own.write_text((directory.parent / name).read_text())
    (directory / "cgroup.procs").write_text(f"{os.getpid()}\n")


def _pid1(spec: dict[str, Any], status: int) -> NoReturn:
    try:
        if not spec["detach"]:
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the helper's death kills PID 1 from now on
        os.umask(0)
        for data in spec["plan"]:
            _decode(data).execute()
        os.umask(0o022)
        socket.sethostname(spec["name"])
        for number in DROPPED_CAPABILITIES.values():
            _prctl(PR_CAPBSET_DROP, number)
        if not spec["detach"]:
            # Set last: changing credentials may clear it. If the helper dies, so does the sandbox.
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        env = {"container": CONTAINER, "PATH": PATH, "LANG": "C.UTF-8"}
        argv = spec["exec"]
        os.execve(argv[0], argv, env)  # noqa: S606 (no shell: exec PID 1 itself)
    except BaseException as exc:
        _report(status, f"error {exc}")
    os._exit(1)


# --- the host side -------------------------------------------------------------------------


def require_root() -> None:
    if os.geteuid() != 0:
        raise UnitgenError(
            "a systemd sandbox needs root",
            hint="it boots systemd as PID 1 of new PID, mount, network and cgroup namespaces, mounts an "
            "overlay of / and creates cgroups; run it as root",
        )


def _check_name(name: str) -> None:
    ok = 0 < len(name) <= 48 and name[0].isalnum() and all(c.isalnum() or c in "-_." for c in name)
    if not ok or not name.isascii():
        raise UnitgenError(
            f"invalid sandbox name {name!r}",
            hint="use up to 48 ASCII letters, digits, '-', '_' or '.', starting with a letter or digit",
        )


def _starttime(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: tells a process apart from a later one with the same PID."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(text.rsplit(")", 1)[1].split()[19])


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _decode_field(value: Any) -> str:
    if isinstance(value, list):
        if all(isinstance(v, int) for v in value):
            return bytes(value).decode(errors="replace")
        return "\n".join(_decode_field(v) for v in value)
    return "" if value is None else str(value)


_live: set[Sandbox] = set()  # not detached and not yet torn down: torn down at exit


class Sandbox:
    """A running systemd in private namespaces; a context manager that always tears it down."""

    sandbox_env: ClassVar[Mapping[str, str]] = {
        "PATH": PATH,
        "LANG": "C.UTF-8",
        "SYSTEMD_PAGER": "",
        "SYSTEMD_COLORS": "0",
        "TERM": "dumb",
    }

    def __init__(self, name: str, state: Path, cgroups: Sequence[Path], *, detach: bool = False) -> None:
        self.name = name
        self.state = state
        self.cgroups = list(cgroups)
        self.detach = detach
        self.pid = 0
        self.boot_seconds = 0.0
        self._starttime: int | None = None
        self._helper: subprocess.Popen[bytes] | None = None
        self._lifeline = -1
        self._torn_down = False
        # The process that booted it, from its owner record: a record whose owner is dead (and
        # whose systemd is gone, or was not detached) belongs to a killed run.
        self.owner_pid = os.getpid()
        self._owner_starttime = _starttime(self.owner_pid)

    @property
    def record(self) -> Path:
        """The owner record, written before anything else of the sandbox exists."""
        return self.state.with_name(self.state.name + RECORD_SUFFIX)

    @property
    def id(self) -> str:
        return self.state.name

    @property
    def console_log(self) -> Path:
        """systemd's console output (PID 1's status and log lines)."""
        return self.state / "console.log"

    def __repr__(self) -> str:
        return f"<Sandbox {self.id} pid={self.pid}>"

    # -- life cycle --

    @classmethod
    def boot(cls, name: str = "unitgen", *, timeout: float = 30.0, detach: bool = False) -> Sandbox:
        """Boot a sandbox; return when `systemctl is-system-running --wait` says running/degraded.

        With `detach`, the sandbox outlives this process (find it again with `attach()`);
        otherwise it dies with the thread that booted it, even on SIGKILL.
        """
        require_root()
        _check_name(name)
        for tool in (SYSTEMD, "nsenter", "setpriv", "tar"):
            if shutil.which(tool, path=PATH) is None:
                raise UnitgenError(f"{tool}: not found", hint="install systemd and util-linux (scripts/bootstrap)")
        start = time.monotonic()
        cls.clean_stale()
        sandbox = cls._prepare(name, detach=detach)
        try:
            sandbox._start(start + timeout)
            sandbox._wait_running(start + timeout)
        except BaseException:
            sandbox.teardown()
            raise
        sandbox.boot_seconds = time.monotonic() - start
        return sandbox

    @classmethod
    def _prepare(cls, name: str, *, detach: bool = False) -> Sandbox:
        """A not yet started sandbox: its owner record first, then its state directory.

        The record names everything the sandbox will create (state directory, one cgroup per
        hierarchy) before any of it exists, so a run killed at any moment, even by SIGKILL, leaves
        nothing that `clean_stale()` cannot find.
        """
        _check_name(name)
        STATE_ROOT.mkdir(parents=True, exist_ok=True, mode=0o700)
        hierarchies = host_hierarchies()
        while True:
            sid = secrets.token_hex(4)
            sandbox = cls(
                name,
                STATE_ROOT / f"{name}.{sid}",
                [Path(h.mountpoint + _cgroup_child(h, sid)) for h in hierarchies],
                detach=detach,
            )
            if sandbox._write_record():
                break
        try:
            sandbox.state.mkdir(mode=0o700)
            (sandbox.state / "mnt").mkdir()
        except BaseException:
            sandbox.teardown()
            raise
        return sandbox

    def _write_record(self) -> bool:
        """Create the owner record atomically (complete or absent); False if the id is taken."""
        record = {
            "name": self.name,
            "owner_pid": self.owner_pid,
            "owner_starttime": self._owner_starttime,
            "state": str(self.state),
            "cgroups": [str(c) for c in self.cgroups],
            "detach": self.detach,
        }
        # The temporary file names its owner too, for the one moment before the link.
        scratch = STATE_ROOT / f".{self.id}.{self.owner_pid}{RECORD_SUFFIX}"
        scratch.write_text(json.dumps(record))
        try:
            os.link(scratch, self.record)
        except FileExistsError:
            return False
        finally:
            scratch.unlink()
        return True

    def _start(self, deadline: float, exec_argv: Sequence[str] = ()) -> None:
        read_end, write_end = os.pipe()
        # The lifeline's write end stays open in this process only (pipes are close-on-exec).
        life_read, self._lifeline = os.pipe() if not self.detach else (-1, -1)
        # The helper keeps both ends of PID 1's console open: a terminal whose slave side is
        # never closed does not hang up, and one whose master is read never blocks PID 1.
        master, slave = os.openpty()
        tty.setraw(slave)
        plan = boot_plan(self.name, self.state, host_hierarchies(), secrets.token_hex(16), os.ttyname(slave))
        spec = {
            "name": self.name,
            "exec": list(exec_argv) or [SYSTEMD, *SYSTEMD_ARGS],
            "status_fd": write_end,
            "console_fd": master,
            "console_slave_fd": slave,
            "lifeline_fd": life_read,
            "detach": self.detach,
            "cgroups": [str(c) for c in self.cgroups],
            "plan": [_encode(op) for op in plan],
        }
        package_parent = str(Path(__file__).resolve().parent.parent.parent)  # .../unitgen/sandbox/__init__.py
        code = (
            f"import sys; sys.path.insert(0, {package_parent!r}); "
            "from unitgen.sandbox import _stage2_main; _stage2_main()"
        )
        try:
            with self.console_log.open("ab") as console:
                self._helper = subprocess.Popen(
                    [sys.executable, "-I", "-S", "-c", code, f"unitgen-sandbox-helper {self.id}"],
                    stdin=subprocess.PIPE,
                    stdout=console,
                    stderr=console,
                    pass_fds=tuple(fd for fd in (write_end, master, slave, life_read) if fd >= 0),
                    start_new_session=True,  # a Ctrl-C on the terminal must not reach PID 1
                    env={"PATH": PATH, "LANG": "C.UTF-8"},
                )
        finally:
            for fd in (write_end, master, slave, life_read):
                if fd >= 0:
                    os.close(fd)
        if not self.detach:
            _live.add(self)
        if self._helper.stdin is not None:
            with contextlib.suppress(BrokenPipeError), self._helper.stdin as instructions:
                instructions.write(json.dumps(spec).encode())  # a helper that died says so below
        try:
            status = self._read_status(read_end, deadline)
        finally:
            os.close(read_end)
        if self.detach:
            self._helper.wait()  # the intermediate process; the helper itself was re-parented
            self._helper = None
        errors = [line[6:] for line in status if line.startswith("error ")]
        pids = [int(line[4:]) for line in status if line.startswith("pid ")]
        if pids:
            self.pid = pids[0]
            self._starttime = _starttime(self.pid)
        if errors or not pids:
            raise self._boot_error("; ".join(errors) or "the helper process exited before systemd started")
        self._write_info()

    def _read_status(self, fd: int, deadline: float) -> list[str]:
        data = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._boot_error("timed out setting up the namespaces")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:  # PID 1 exec'd systemd (close-on-exec) or died
                    return data.decode().splitlines()
                data += chunk

    def _write_info(self) -> None:
        info = {
            "name": self.name,
            "pid": self.pid,
            "starttime": self._starttime,
            "cgroups": [str(c) for c in self.cgroups],
            "detach": self.detach,
        }
        (self.state / "info.json").write_text(json.dumps(info))

    def _wait_running(self, deadline: float) -> None:
        private = Path(f"/proc/{self.pid}/root/run/systemd/private")
        state = ""
        while time.monotonic() < deadline:
            if not self.alive():
                raise self._boot_error("systemd exited during boot")
            if FROZEN in _tail(self.console_log, 5):
                raise self._boot_error("systemd gave up and froze")
            if private.exists():
                left = max(1.0, deadline - time.monotonic())
                try:
                    result = self.run(["systemctl", "is-system-running", "--wait"], check=False, timeout=left)
                except UnitgenError:
                    result = None
                if result is not None:
                    state = result.stdout.strip()
                    if state in ("running", "degraded"):
                        return
                    if state in ("maintenance", "stopping"):
                        raise self._boot_error(f"systemd is {state}")
            time.sleep(0.02)
        raise self._boot_error(f"timed out waiting for systemd to be running (last state: {state or 'none'})")

    def _boot_error(self, reason: str) -> UnitgenError:
        tail = _tail(self.console_log)
        message = f"sandbox {self.id} failed to boot: {reason}"
        if tail:
            message += f"\n--- {self.console_log} (last lines) ---\n{tail}"
        return UnitgenError(message, hint="the console log above is systemd's own output")

    @classmethod
    def probe(cls, argv: Sequence[str], *, name: str = "probe", timeout: float = 30.0) -> str:
        """Set up exactly what `boot()` sets up, but run `argv` as PID 1 instead of systemd.

        Returns its output. A dry run of the isolation: e.g. write files and show the mounts, then
        check on the host that nothing leaked.
        """
        require_root()
        sandbox = cls._prepare(name)
        try:
            sandbox._start(time.monotonic() + timeout, argv)
            if sandbox._helper is not None:
                sandbox._helper.wait(timeout)
            return sandbox.console_log.read_text(errors="replace")
        finally:
            sandbox.teardown()

    @classmethod
    def attach(cls, name_or_id: str) -> Sandbox:
        """A handle on a running (e.g. detached) sandbox, by its id or its unique name."""
        require_root()
        found = [s for s in cls.running() if name_or_id in (s.id, s.name)]
        if len(found) != 1:
            what = "no" if not found else "more than one"
            raise UnitgenError(
                f"{what} running sandbox called {name_or_id!r}",
                hint="list them with Sandbox.running(); use the id to choose",
            )
        return found[0]

    @classmethod
    def running(cls) -> list[Sandbox]:
        """Sandboxes whose PID 1 is alive, from their records in STATE_ROOT."""
        return [s for s in cls._recorded() if s.alive()]

    @classmethod
    def _recorded(cls) -> list[Sandbox]:
        """Every sandbox with an owner record, whatever its state (booting, running, abandoned)."""
        result = []
        for record in sorted(STATE_ROOT.glob(f"*{RECORD_SUFFIX}")) if STATE_ROOT.is_dir() else []:
            if record.name.startswith("."):
                continue
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                owner = json.loads(record.read_text())
                sandbox = cls(
                    owner["name"], Path(owner["state"]), [Path(c) for c in owner["cgroups"]], detach=owner["detach"]
                )
                sandbox.owner_pid, sandbox._owner_starttime = owner["owner_pid"], owner["owner_starttime"]
                with contextlib.suppress(OSError, ValueError, KeyError):
                    info = json.loads((sandbox.state / "info.json").read_text())
                    sandbox.pid, sandbox._starttime = info["pid"], info["starttime"]
                result.append(sandbox)
        return result

    @classmethod
    def owned(cls) -> list[Sandbox]:
        """Sandboxes this process booted (not detached) and has not torn down yet."""
        return sorted(_live, key=lambda s: s.id)

    @classmethod
    def clean_stale(cls) -> list[str]:
        """Remove everything left by sandboxes whose owner was killed; returns their ids.

        A sandbox is stale when its systemd is gone, or when its owner is dead and it was not
        detached (its systemd is dying with the owner anyway). Its processes are killed and its
        cgroups, state directory and owner record removed. Also removed: state directories and
        `unitgen-sandbox-*` cgroups that no record names (left by versions that wrote the record
        last), half-written records of dead owners, and the app build directories
        (`unitgen-app-PID.*`) of dead unitgen processes.
        """
        # Listed before the records: a boot writes its record before it creates anything else,
        # so what exists now and has no record now belongs to no live boot.
        cgroups = _sandbox_cgroups()
        states = sorted(p for p in STATE_ROOT.iterdir() if p.is_dir()) if STATE_ROOT.is_dir() else []
        scratch = sorted(STATE_ROOT.glob(f".*{RECORD_SUFFIX}")) if STATE_ROOT.is_dir() else []
        recorded = cls._recorded()
        stale = [s for s in recorded if not s._in_use()]
        for sandbox in stale:
            sandbox.teardown()
        known = {s.state for s in recorded}
        orphans = [state for state in states if state not in known and not _legacy_in_use(state)]
        # Names may contain dots; ids end in ".SID", the suffix of the cgroups' names.
        kept = {s.id.rsplit(".", 1)[1] for s in recorded} | {p.name.rsplit(".", 1)[1] for p in states}
        kept -= {p.name.rsplit(".", 1)[1] for p in orphans}
        deadline = time.monotonic() + 10
        for cgroup in cgroups:
            if cgroup.name.removeprefix(CGROUP_PREFIX) not in kept:
                _remove_cgroup(cgroup, deadline)
        for state in orphans:
            shutil.rmtree(state, ignore_errors=True)
        for path in scratch:  # ".ID.PID.json": a record being written when its owner died
            if not _pid_alive(int(path.name.removesuffix(RECORD_SUFFIX).rsplit(".", 1)[1])):
                path.unlink(missing_ok=True)
        _remove_dead_app_builds()
        return [s.id for s in stale] + [state.name for state in orphans]

    def _in_use(self) -> bool:
        owner_alive = _starttime(self.owner_pid) == self._owner_starttime
        if self.detach:
            return self.alive() or owner_alive
        return owner_alive

    def alive(self) -> bool:
        """Whether this sandbox's PID 1 is still running (and is still the same process)."""
        if not self.pid or self._starttime is None:
            return False
        if self._helper is not None and self._helper.poll() is not None:
            return False
        return _starttime(self.pid) == self._starttime

    def teardown(self) -> None:
        """Kill PID 1 (the kernel then kills everything in its PID namespace), wait, clean up.

        Idempotent, and safe on a half-booted sandbox.
        """
        if self._torn_down:
            return
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        if self._helper is not None:
            if self._helper.poll() is None and not self.pid:
                self._helper.kill()  # still setting up: there is no PID 1 yet
            with contextlib.suppress(subprocess.TimeoutExpired):
                # PID 1 exits once every process of its namespace has been reaped; one whose parent
                # is outside (a command run inside) waits for that parent. Never hang for ever.
                self._helper.wait(timeout=30)
        deadline = time.monotonic() + 10
        while self.pid and _starttime(self.pid) == self._starttime and time.monotonic() < deadline:
            time.sleep(0.01)
        if self._lifeline >= 0:
            os.close(self._lifeline)
            self._lifeline = -1
        for cgroup in self.cgroups:
            _remove_cgroup(cgroup, deadline)
        shutil.rmtree(self.state, ignore_errors=True)
        self.record.unlink(missing_ok=True)  # last: while anything of it is left, the record names it
        self._torn_down = True
        _live.discard(self)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.teardown()

    # -- talking to it --

    def enter_argv(self, argv: Sequence[str]) -> list[str]:
        """The host command line that runs `argv` inside (all namespaces, root = sandbox root).

        Useful for an interactive shell: `os.execvpe(a[0], a, Sandbox.sandbox_env)`.
        """
        drop = ",".join(f"-{name}" for name in DROPPED_CAPABILITIES)
        return [
            "nsenter", f"--target={self.pid}",
            "--mount", "--uts", "--ipc", "--net", "--pid", "--cgroup", "--root", "--wd",
            "--", "setpriv", f"--bounding-set={drop}", "--", *argv,
        ]  # fmt: skip

    def _bounded(self, argv: Sequence[str], timeout: float | None) -> list[str]:
        """`enter_argv`, with the time limit enforced inside by timeout(1).

        Killing nsenter on the host would hand its child inside to the host's reaper, and the
        sandbox's PID namespace cannot finish dying (teardown waits) until that one reaps it.
        """
        if timeout is None:
            return self.enter_argv(argv)
        return self.enter_argv(["timeout", "--kill-after=2", f"{timeout}s", *argv])

    def _timed_out(self, argv: Sequence[str], timeout: float | None) -> UnitgenError:
        return UnitgenError(f"timed out after {timeout:g}s in sandbox {self.id}: {shlex.join(argv)}")

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        input: str | None = None,
        timeout: float | None = 60,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside as root, with a clean environment (`sandbox_env` plus `env`).

        Raises `CommandError` (naming `argv`, with its stderr) when it fails and `check` is set,
        and `UnitgenError` when it runs longer than `timeout` seconds (it is killed then).
        """
        self._require_alive()
        started = time.monotonic()
        try:
            result = run(
                self._bounded(argv, timeout),
                check=False,
                input=input,
                timeout=None if timeout is None else timeout + 10,
                env={**self.sandbox_env, **(env or {})},
            )
        except subprocess.TimeoutExpired as exc:
            raise self._timed_out(argv, timeout) from exc
        if timeout is not None and result.returncode == TIMED_OUT and time.monotonic() - started >= timeout:
            raise self._timed_out(argv, timeout)
        if check and result.returncode != 0:
            raise CommandError(list(argv), result.returncode, result.stdout, result.stderr)
        return result

    def _run_bytes(self, argv: Sequence[str], data: bytes | None, timeout: float = 60) -> bytes:
        """`run()` for binary input/output (tar streams, file contents); unitgen.run is text-only."""
        self._require_alive()
        started = time.monotonic()
        try:
            result = subprocess.run(
                self._bounded(argv, timeout),
                input=data,
                stdin=None if data is not None else subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout + 10,
                env=dict(self.sandbox_env),
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise self._timed_out(argv, timeout) from exc
        if result.returncode == TIMED_OUT and time.monotonic() - started >= timeout:
            raise self._timed_out(argv, timeout)
        if result.returncode != 0:
            stdout, stderr = (b.decode(errors="replace") for b in (result.stdout, result.stderr))
            raise CommandError(list(argv), result.returncode, stdout, stderr)
        return result.stdout

    def _require_alive(self) -> None:
        if not self.alive():
            raise UnitgenError(
                f"sandbox {self.id} is not running"
                + ("" if self._torn_down else f"\n--- console ---\n{_tail(self.console_log)}")
            )

    def _extract(self, archive: bytes) -> None:
        # --no-overwrite-dir keeps the modes of /, /etc, ...; --keep-directory-symlink keeps /lib -> usr/lib.
        self._run_bytes(
            [
                "tar",
                "-x",
                "-p",
                "--same-owner",
                "--numeric-owner",
                "--no-overwrite-dir",
                "--keep-directory-symlink",
                "-C",
                "/",
                "-f",
                "-",
            ],
            archive,
        )

    def copy_in(self, src: Path, dest: str = "/") -> None:
        """Copy a host tree's contents (a staging tree mirroring the target fs) or a file in.

        A directory's contents are merged under `dest`; a file lands at `dest`, or in it when `dest`
        ends with '/'. Modes, owners and symbolic links are kept; existing directories keep theirs.
        """
        src = Path(src)
        if not dest.startswith("/"):
            raise ValueError(f"dest must be an absolute path in the sandbox: {dest!r}")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            if src.is_dir() and not src.is_symlink():
                base = dest.strip("/")
                for path in sorted(_walk(src)):
                    rel = path.relative_to(src).as_posix()
                    tar.add(path, arcname=f"{base}/{rel}" if base else rel, recursive=False)
            else:
                target = dest + src.name if dest.endswith("/") else dest
                tar.add(src, arcname=target.lstrip("/"), recursive=False)
        self._extract(buffer.getvalue())

    def write_file(self, path: str, content: str | bytes, mode: int = 0o644) -> None:
        """Write a file inside (parents created), owned by root."""
        if not path.startswith("/"):
            raise ValueError(f"path must be absolute: {path!r}")
        data = content.encode() if isinstance(content, str) else content
        info = tarfile.TarInfo(path.lstrip("/"))
        info.size, info.mode, info.mtime = len(data), mode, int(time.time())
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(info, io.BytesIO(data))
        self._extract(buffer.getvalue())

    def read_file(self, path: str) -> bytes:
        return self._run_bytes(["cat", "--", path], None)

    def journal(self, *matches: str, unit: str | None = None) -> list[dict[str, str]]:
        """Journal entries (journalctl -o json, after --sync), byte-array fields decoded.

        `matches` are journalctl matches such as "MESSAGE_ID=..." or "SYSLOG_IDENTIFIER=x".
        A field that occurs more than once has its values joined by newlines.
        """
        self.run(["journalctl", "--sync"])
        argv = ["journalctl", "-o", "json", "--no-pager", "--all"]
        if unit is not None:
            argv += ["-u", unit]
        result = self.run([*argv, *matches])
        return [
            {k: _decode_field(v) for k, v in json.loads(line).items()}
            for line in result.stdout.splitlines()
            if line.startswith("{")
        ]

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(["systemctl", *args], check=check)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        """`systemctl show -p PROP ... UNIT`, parsed; all properties when none are given."""
        argv = ["show"]
        for prop in props:
            argv += ["-p", prop]
        out = self.systemctl(*argv, "--", unit).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll `predicate` until it is true; raise UnitgenError naming `what` on timeout."""
        deadline = time.monotonic() + timeout
        delay = 0.01
        while not predicate():
            if not self.alive():
                raise UnitgenError(f"sandbox {self.id} died while waiting for {what}")
            if time.monotonic() >= deadline:
                raise UnitgenError(f"timed out after {timeout:g}s waiting for {what} in sandbox {self.id}")
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in [*dirnames, *filenames]:
            yield base / name


def _kill_cgroup(directory: Path) -> None:
    """SIGKILL every process in a sandbox's cgroup tree (host PIDs; only the sandbox's own).

    Catches what killing PID 1 cannot: a PID 1 still being set up when its boot was abandoned.
    """
    for procs in directory.rglob("cgroup.procs") if directory.is_dir() else []:
        with contextlib.suppress(OSError):
            for pid in procs.read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)


def _remove_cgroup(directory: Path, deadline: float) -> None:
    """Remove a sandbox's cgroup tree bottom-up, waiting for its dead processes to leave."""
    while directory.is_dir():
        subdirs = sorted((Path(d) for d, _, _ in os.walk(directory)), key=lambda p: len(p.parts), reverse=True)
        busy = False
        for sub in subdirs:
            try:
                sub.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                busy = True
        if not busy or time.monotonic() > deadline:
            return
        _kill_cgroup(directory)
        time.sleep(0.01)


def _pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _sandbox_cgroups() -> list[Path]:
    """Every sandbox cgroup next to where this process would create one, in every hierarchy."""
    found: list[Path] = []
    for h in host_hierarchies():
        parent = Path(h.mountpoint + h.path)
        found += sorted(parent.glob(f"{CGROUP_PREFIX}*")) if parent.is_dir() else []
    return found


def _legacy_in_use(state: Path) -> bool:
    """A state directory without a record, from an older unitgen that wrote its record last: in
    use while its systemd runs, or while it may still be booting (young, no record yet)."""
    with contextlib.suppress(OSError, ValueError, KeyError):
        info = json.loads((state / "info.json").read_text())
        return bool(_starttime(info["pid"]) == info["starttime"])
    with contextlib.suppress(OSError):
        return time.time() - state.stat().st_mtime < LEGACY_BOOT_GRACE
    return False


def _remove_dead_app_builds() -> None:
    """The scratch directories `unitgen.app.payload.build_app` names after its process, if it was killed."""
    for work in Path(tempfile.gettempdir()).glob("unitgen-app-*.*"):
        pid = work.name.removeprefix("unitgen-app-").split(".", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)) and work.is_dir() and not work.is_symlink():
            shutil.rmtree(work, ignore_errors=True)


def _teardown_leftovers() -> None:
    for sandbox in list(_live):
        with contextlib.suppress(Exception):
            sandbox.teardown()


atexit.register(_teardown_leftovers)
