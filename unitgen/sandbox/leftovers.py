"""What sandboxes leave on the host (cgroups, processes, state directories, app build directories) and how to remove it.

Teardown removes a sandbox's cgroups here; `Sandbox.clean_stale()` uses the rest to find what
killed runs left behind. A process is told apart from a later one with the same PID by its start
time (`starttime`), so a record never mistakes a new process for its dead owner.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

from unitgen.sandbox.plan import CGROUP_PREFIX, host_hierarchies

LEGACY_BOOT_GRACE = 120  # seconds an unrecorded state directory may be a boot in progress of an older unitgen


def starttime(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: tells a process apart from a later one with the same PID."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(text.rsplit(")", 1)[1].split()[19])


def kill_cgroup(directory: Path) -> None:
    """SIGKILL every process in a sandbox's cgroup tree (host PIDs; only the sandbox's own).

    Catches what killing PID 1 cannot: a PID 1 still being set up when its boot was abandoned.
    """
    for procs in directory.rglob("cgroup.procs") if directory.is_dir() else []:
        with contextlib.suppress(OSError):
            for pid in procs.read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)


def remove_cgroup(directory: Path, deadline: float) -> None:
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
        kill_cgroup(directory)
        time.sleep(0.01)


def pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def sandbox_cgroups() -> list[Path]:
    """Every sandbox cgroup next to where this process would create one, in every hierarchy."""
    found: list[Path] = []
    for h in host_hierarchies():
        parent = Path(h.mountpoint + h.path)
        found += sorted(parent.glob(f"{CGROUP_PREFIX}*")) if parent.is_dir() else []
    return found


def legacy_in_use(state: Path) -> bool:
    """A state directory without a record, from an older unitgen that wrote its record last: in
    use while its systemd runs, or while it may still be booting (young, no record yet)."""
    with contextlib.suppress(OSError, ValueError, KeyError):
        info = json.loads((state / "info.json").read_text())
        return bool(starttime(info["pid"]) == info["starttime"])
    with contextlib.suppress(OSError):
        return time.time() - state.stat().st_mtime < LEGACY_BOOT_GRACE
    return False


def remove_dead_app_builds() -> None:
    """The scratch directories `unitgen.app.payload.build_app` names after its process, if it was killed."""
    for work in Path(tempfile.gettempdir()).glob("unitgen-app-*.*"):
        pid = work.name.removeprefix("unitgen-app-").split(".", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)) and work.is_dir() and not work.is_symlink():
            shutil.rmtree(work, ignore_errors=True)
