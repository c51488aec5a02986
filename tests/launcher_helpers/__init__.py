"""Shared helpers for the launcher tests: settings, ways to run the launcher, fake systemd sockets.

Everything here is real: launchers run as separate processes, the notify and journal receivers are
AF_UNIX datagram sockets, and who holds a lock is read from /proc/locks (independently of the
launcher's own F_GETLK code).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from unitgen.errors import UnitgenError
from unitgen.launcher import runtime as launcher
from unitgen.launcher.runtime import LauncherSettings
from unitgen.launcher.script import compile_argv, launcher_source, module_file, render_launcher, stub_source

HELPERS = Path(__file__).parent


def _readable_copy(source: Path) -> Path:
    """The launcher module as a file every user can read: tests run it as nobody (65534), who
    cannot read a checkout in a 0700 home (root's; Debian's adduser default)."""
    directory = Path(tempfile.mkdtemp(prefix="unitgen-test-launcher-"))
    directory.chmod(0o755)
    atexit.register(shutil.rmtree, directory, True)
    copy = directory / source.name
    shutil.copyfile(source, copy)
    copy.chmod(0o644)
    return copy


LAUNCHER_PY = _readable_copy(Path(launcher.__file__))
DEBIAN_PYTHON = "/usr/bin/python3"
VENV_PYTHON = sys.executable
BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
TIMEOUT = 20.0


def install_module(directory: Path, *, compiled: bool = True) -> Path:
    """The launcher module in `directory` as the package installs it (0644) and, with `compiled`,
    its bytecode compiled the way the package's postinst does. Returns the module's path."""
    module = Path(module_file(str(directory)))
    module.write_text(launcher_source(), encoding="utf-8")
    module.chmod(0o644)
    if compiled:
        subprocess.run(compile_argv(DEBIAN_PYTHON, str(directory)), check=True)
    return module


# One installed launcher module (compiled) for the whole session; each launcher_argv() writes a
# stub next to it, so every test runs the launcher in its installed shape.
INSTALLED = LAUNCHER_PY.parent / "installed"
INSTALLED.mkdir(mode=0o755)
INSTALLED.chmod(0o755)
install_module(INSTALLED)


def make_settings(lock_file: Path | str, **overrides: object) -> LauncherSettings:
    """Exec-mode settings for a service called "demo" that sleeps, with `overrides` applied."""
    settings: dict[str, object] = {
        "name": "demo",
        "mode": "exec",
        "argv": ["/bin/sleep", "60"],
        "entry": None,
        "lock_file": str(lock_file),
        "ready": "immediate",
        "ready_timeout_sec": 10.0,
        "on_contention": "exit",
        "wait_timeout_sec": None,
        "oneshot": False,
        "user": None,
    }
    settings.update(overrides)
    if settings["mode"] == "python":
        settings["argv"] = []
    return settings  # type: ignore[return-value]


def stub_text(settings: LauncherSettings, python: str) -> str:
    """The rendered stub; settings that render_launcher refuses (the tests of the launcher's own
    checks) go into the same template unchecked."""
    try:
        return render_launcher(settings, python=python)
    except UnitgenError:
        return stub_source(python, repr(dict(settings)))


def launcher_argv(
    settings: LauncherSettings, *args: str, python: str = DEBIAN_PYTHON, isolated: bool = True
) -> list[str]:
    """Run the launcher as installed: its stub, next to the compiled launcher module.

    isolated: run the stub itself (its shebang: `python -IS`); otherwise `python STUB`, so that
    PYTHONPATH reaches a python-mode app (tests keep their apps in launcher_helpers/apps)."""
    stub = INSTALLED / f"{uuid.uuid4().hex}-launcher"
    stub.write_text(stub_text(settings, python), encoding="utf-8")
    stub.chmod(0o755)
    return [str(stub), *args] if isolated else [python, str(stub), *args]


def rendered_launcher(
    directory: Path, settings: LauncherSettings, python: str = DEBIAN_PYTHON, *, compiled: bool = True
) -> Path:
    """Write the launcher as the package installs it (the stub, the module next to it and, with
    `compiled`, the module's bytecode) and return the stub's path."""
    path = directory / f"{settings['name']}-launcher"
    path.write_text(render_launcher(settings, python=python), encoding="utf-8")
    path.chmod(0o755)
    install_module(directory, compiled=compiled)
    return path


def env(**extra: str) -> dict[str, str]:
    """A clean environment: nothing from the test runner's NOTIFY_SOCKET/WATCHDOG_* leaks in."""
    return {**BASE_ENV, **extra}


def start(argv: list[str], environment: dict[str, str] | None = None, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        argv,
        env=environment if environment is not None else env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def run(argv: list[str], environment: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        env=environment if environment is not None else env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def stop(proc: subprocess.Popen[str]) -> None:
    """Kill a process this test started (by its PID) and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=TIMEOUT)


@contextlib.contextmanager
def short_tmpdir() -> Iterator[Path]:
    """A directory with a short path: AF_UNIX socket paths are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="ug-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def read_line(proc: subprocess.Popen[str], timeout: float = TIMEOUT) -> str:
    """The next line of a process's stdout, failing (not hanging) if none comes in time."""
    lines: list[str] = []
    assert proc.stdout is not None
    stdout = proc.stdout
    reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not lines:
        raise AssertionError(f"no output line from PID {proc.pid} within {timeout} s")
    return lines[0]


def wait_until(condition: Callable[[], bool], timeout: float = TIMEOUT, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# ---------------------------------------------------------------------------------------------
# Who holds the lock, seen from outside: /proc/locks.


def posix_lock_holders(path: Path) -> list[int]:
    """PIDs holding a POSIX (classic, not OFD/flock) lock on `path`, from /proc/locks."""
    inode = path.stat().st_ino
    holders = []
    for line in Path("/proc/locks").read_text().splitlines():
        parts = line.split()
        if "->" in parts:
            continue  # a blocked waiter, not a holder
        # "1: POSIX  ADVISORY  WRITE 1234 00:2d:5678 0 EOF"
        kind, pid, where = parts[1], parts[4], parts[5]
        if kind == "POSIX" and int(where.rsplit(":", 1)[1]) == inode:
            holders.append(int(pid))
    return holders


def holder(path: Path) -> int | None:
    holders = posix_lock_holders(path)
    assert len(holders) <= 1, holders
    return holders[0] if holders else None


def wait_for_holder(path: Path, pid: int) -> None:
    """Until `pid` holds the lock and has recorded itself in the file (it does so right after)."""

    def held() -> bool:
        return path.exists() and holder(path) == pid and path.read_text() == f"{pid}\n"

    wait_until(held, what=f"PID {pid} to hold {path}")


def can_lock(path: Path) -> bool:
    """Can another process take the lock right now? (asked from a separate process)"""
    code = (
        "import fcntl, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "try:\n    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept OSError:\n    sys.exit(1)\n"
    )
    return subprocess.run([DEBIAN_PYTHON, "-I", "-c", code, str(path)], check=False).returncode == 0


# ---------------------------------------------------------------------------------------------
# Fake systemd sockets.


@dataclass
class Datagram:
    data: bytes
    pid: int
    fds: list[int] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.data.decode("utf-8")

    @property
    def fields(self) -> dict[str, str]:
        """sd_notify assignments, one per line."""
        return dict(line.split("=", 1) for line in self.text.splitlines() if line)


class Receiver:
    """An AF_UNIX datagram socket that records each datagram with its sender's PID (SO_PASSCRED)."""

    def __init__(self, address: Path | str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        if isinstance(address, Path):
            self.sock.bind(str(address))
            self.env_value = str(address)
        else:  # an abstract name
            self.sock.bind("\0" + address)
            self.env_value = "@" + address
        self.received: list[Datagram] = []

    @classmethod
    def abstract(cls) -> Receiver:
        return cls(f"unitgen-test-{uuid.uuid4().hex}")

    def close(self) -> None:
        for datagram in self.received:
            for fd in datagram.fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.sock.close()

    def poll(self, timeout: float) -> Datagram | None:
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return None
        ancillary = socket.CMSG_SPACE(struct.calcsize("iII")) + socket.CMSG_SPACE(16 * 4)
        data, ancdata, _, _ = self.sock.recvmsg(1 << 20, ancillary)
        pid, fds = 0, list[int]()
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", payload[: struct.calcsize("iII")])[0]
            elif level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                usable = len(payload) - len(payload) % 4
                fds.extend(struct.unpack(f"{usable // 4}i", payload[:usable]))
        datagram = Datagram(data, pid, fds)
        self.received.append(datagram)
        return datagram

    def wait_for(self, predicate: Callable[[Datagram], bool], timeout: float = TIMEOUT) -> Datagram:
        for seen in self.received:
            if predicate(seen):
                return seen
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            datagram = self.poll(left)
            if datagram is not None and predicate(datagram):
                return datagram
        raise AssertionError(f"no matching datagram; got {[d.data for d in self.received]}")

    def drain(self, settle: float = 0.2) -> list[Datagram]:
        while self.poll(settle) is not None:
            pass
        return self.received

    def with_field(self, key: str, value: str | None = None, timeout: float = TIMEOUT) -> Datagram:
        return self.wait_for(lambda d: key in d.fields and value in (None, d.fields[key]), timeout)


def parse_journal_entry(data: bytes) -> dict[str, str]:
    """Parse one native-protocol entry (systemd's "Native Journal Protocol"), strictly."""
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        end = data.index(b"\n", pos)
        line = data[pos:end]
        if b"=" in line:
            name, value = line.split(b"=", 1)
            pos = end + 1
        else:
            name = line
            size = int.from_bytes(data[end + 1 : end + 9], "little")
            value = data[end + 9 : end + 9 + size]
            assert data[end + 9 + size : end + 10 + size] == b"\n", "binary field not newline-terminated"
            pos = end + 10 + size
        key = name.decode("ascii")
        assert key not in fields, f"field {key} sent twice"
        fields[key] = value.decode("utf-8")
    return fields


def journal_entry(datagram: Datagram) -> dict[str, str]:
    """The entry in a datagram, or in the sealed memfd it carries."""
    if datagram.data:
        return parse_journal_entry(datagram.data)
    (fd,) = datagram.fds
    seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    required = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
    assert seals & required == required, f"memfd not sealed: {seals:#x}"
    size = os.fstat(fd).st_size
    return parse_journal_entry(os.pread(fd, size, 0))


def journal_entries(receiver: Receiver, settle: float = 0.2) -> list[dict[str, str]]:
    return [journal_entry(d) for d in receiver.drain(settle)]


# ---------------------------------------------------------------------------------------------
# Small C programs, compiled in the test.


def build_c(directory: Path, name: str) -> Path:
    """Compile tests/launcher_helpers/NAME.c into `directory`."""
    if shutil.which("gcc") is None:
        raise AssertionError("gcc is needed for this test (scripts/bootstrap installs it)")
    binary = directory / name
    subprocess.run(
        ["gcc", "-O2", "-Wall", "-Werror", "-o", str(binary), str(HELPERS / f"{name}.c")],
        check=True,
        capture_output=True,
    )
    return binary


def build_apue(directory: Path) -> Path:
    """The classic APUE already_running() program."""
    return build_c(directory, "apue_lock")


class StuckSocket:
    """An AF_UNIX datagram socket nobody reads, its queue filled until senders get EAGAIN:
    what the launcher sees when systemd or journald stops reading. A sender that waits for room
    blocks for ever here."""

    def __init__(self, address: Path | str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if isinstance(address, Path):
            self.sock.bind(str(address))
            address.chmod(0o777)
            self.target, self.env_value = str(address), str(address)
        else:
            self.sock.bind("\0" + address)
            self.target, self.env_value = "\0" + address, "@" + address
        self.fillers: list[socket.socket] = []
        # A sender's own send buffer can run out before the receiver's queue is full: keep adding
        # senders until a fresh one is refused, which means the receiver's queue itself is full.
        while self._fresh_sender_gets_through():
            filler = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            filler.connect(self.target)
            self.fillers.append(filler)
            with contextlib.suppress(BlockingIOError):
                while True:
                    filler.send(b"x", socket.MSG_DONTWAIT)
            assert len(self.fillers) < 1000, "the queue never filled"

    def _fresh_sender_gets_through(self) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
            probe.connect(self.target)
            try:
                probe.send(b"probe", socket.MSG_DONTWAIT)
            except BlockingIOError:
                return False
            return True

    def close(self) -> None:
        for filler in self.fillers:
            filler.close()
        self.sock.close()


@contextlib.contextmanager
def stuck_socket(address: Path | str) -> Iterator[StuckSocket]:
    stuck = StuckSocket(address)
    try:
        yield stuck
    finally:
        stuck.close()
