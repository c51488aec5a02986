"""What a sandbox is made of: the host's cgroup hierarchies and the plan PID 1 follows before exec'ing systemd.

`boot_plan()` lists every step between unshare(2) and systemd, in order, as `Operation`s;
`describe_plan()` prints them as a dry run. The constants say which systemd runs, with which
arguments and units masked, and which capabilities it never gets. Standard library only.
"""

# ruff: noqa: S108  (/tmp, /var/tmp, /dev/shm here are mount points inside the sandbox, not temp files)
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from unitgen.sandbox.operations import (
    BindConsole,
    CheckMarker,
    CheckMounts,
    MakeDirectory,
    MakeNode,
    Mount,
    Operation,
    PivotRoot,
    Symlink,
    WriteFile,
)
from unitgen.sandbox.syscalls import (
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_SHARED,
)

STATE_ROOT = Path("/run/unitgen/sandbox")
SYSTEMD = "/lib/systemd/systemd"
TARGET = "unitgen-sandbox.target"
CONTAINER = "unitgen"  # $container, the container manager's name (systemd's CONTAINER_INTERFACE)
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CGROUP_PREFIX = "unitgen-sandbox-"

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
        # Shared propagation inside, as systemd itself sets it when booted by the kernel (and
        # nspawn does for containers): in a container PID 1 leaves it to the manager (mount_setup()
        # in systemd's mount-setup.c). systemd mounts a unit's LoadCredential= files in a child
        # mount namespace and moves them onto /run/credentials/UNIT from there (setup_credentials()
        # in execute.c); with private mounts that move never reaches PID 1's namespace, and the
        # service found $CREDENTIALS_DIRECTORY empty. The peer groups made here are new and local
        # to this namespace (everything was made private first), so nothing propagates to the host.
        Mount(None, "/", None, MS_REC | MS_SHARED),
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
    lines += [f"join new cgroup {h.mountpoint}{cgroup_child(h, 'XXXXXXXX')}" for h in hierarchies]
    lines += [op.describe() for op in boot_plan(name, state, hierarchies, "0" * 32, "/dev/pts/N")]
    lines.append(f"drop capabilities from the bounding set: {', '.join(DROPPED_CAPABILITIES)}")
    lines.append(f"exec env container={CONTAINER} {SYSTEMD} {' '.join(SYSTEMD_ARGS)}")
    return "\n".join(lines)


def cgroup_child(h: Hierarchy, sid: str) -> str:
    """Where a sandbox with id suffix `sid` has its cgroup in hierarchy `h` (relative to its mount)."""
    return f"{h.path.rstrip('/')}/{CGROUP_PREFIX}{sid}"
