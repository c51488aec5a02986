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
`os.unshare`), by a fresh interpreter (`stage2.main`), never by forking the caller. Each step is an
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

The modules, one job each (all standard library only, the host side also uses `unitgen.errors`
and `unitgen.run`):

- `syscalls`: the ctypes wrappers for mount, unshare, prctl, pivot_root, umount2;
- `operations`: the steps (`Mount`, `WriteFile`, `PivotRoot`, ...) and their JSON encoding;
- `plan`: the host's cgroup hierarchies, `boot_plan()`, `describe_plan()` and what they use;
- `stage2`: the helper process that unshares, becomes PID 1's parent and relays its console;
- `host`: `Sandbox`, the host side (boot, run, copy_in, journal, teardown, clean_stale);
- `leftovers`: finding and removing what a killed run left (cgroups, state, app builds).

This module re-exports what the rest of unitgen, the tests and the benchmarks use; the other
names (syscall constants, the operations, the plan's constants) are imported from their module.
"""

from __future__ import annotations

from unitgen.sandbox.host import RECORD_SUFFIX, Sandbox, require_root
from unitgen.sandbox.plan import CGROUP_PREFIX, MASKED_UNITS, STATE_ROOT, describe_plan, host_hierarchies

__all__ = [
    "CGROUP_PREFIX",
    "MASKED_UNITS",
    "RECORD_SUFFIX",
    "STATE_ROOT",
    "Sandbox",
    "describe_plan",
    "host_hierarchies",
    "require_root",
]
