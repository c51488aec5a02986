"""The helper process that builds a sandbox: joins cgroups, unshares, forks PID 1, relays its console.

`Sandbox` starts it as a fresh interpreter, `python -I -S -c "from unitgen.sandbox.stage2 import
main; main()"`, never by forking the caller; its instructions (the encoded boot plan) come as JSON
on stdin. Its child becomes PID 1 of the new namespaces, executes the plan and execs systemd.
Standard library only, like everything it imports (`syscalls`, `operations`, `plan`).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import sys
from pathlib import Path
from typing import Any, NoReturn

from unitgen.sandbox.operations import decode
from unitgen.sandbox.plan import CONTAINER, DROPPED_CAPABILITIES, PATH
from unitgen.sandbox.syscalls import (
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUTS,
    PR_CAPBSET_DROP,
    PR_SET_PDEATHSIG,
    prctl,
    unshare,
)


def main() -> NoReturn:
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
        unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWCGROUP)
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
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the helper's death kills PID 1 from now on
        os.umask(0)
        for data in spec["plan"]:
            decode(data).execute()
        os.umask(0o022)
        socket.sethostname(spec["name"])
        for number in DROPPED_CAPABILITIES.values():
            prctl(PR_CAPBSET_DROP, number)
        if not spec["detach"]:
            # Set last: changing credentials may clear it. If the helper dies, so does the sandbox.
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        env = {"container": CONTAINER, "PATH": PATH, "LANG": "C.UTF-8"}
        argv = spec["exec"]
        os.execve(argv[0], argv, env)  # noqa: S606 (no shell: exec PID 1 itself)
    except BaseException as exc:
        _report(status, f"error {exc}")
    os._exit(1)
