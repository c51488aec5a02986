"""Journal entries from the launcher, checked field by field at a native-protocol receiver socket."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.launcher_helpers import (
    DEBIAN_PYTHON,
    VENV_PYTHON,
    Receiver,
    env,
    journal_entries,
    launcher_argv,
    make_settings,
    parse_journal_entry,
    run,
    start,
    stop,
    stuck_socket,
    wait_for_holder,
)
from unitgen.launcher import runtime as launcher
from unitgen.launcher.runtime import EXIT_ALREADY_RUNNING, MESSAGE_ID_ALREADY_RUNNING


@pytest.fixture
def holder(work: Path) -> Iterator[subprocess.Popen[str]]:
    """A running instance of "demo" (exec mode, sleeping) holding work/demo.pid."""
    proc = start(launcher_argv(make_settings(work / "demo.pid")))
    wait_for_holder(work / "demo.pid", proc.pid)
    yield proc
    stop(proc)


def expected_contention_entry(lock: Path, holder: subprocess.Popen[str]) -> dict[str, str]:
    return {
        "MESSAGE": f"demo is already running as PID {holder.pid} (lock {lock})",
        "PRIORITY": "4",
        "SYSLOG_IDENTIFIER": "demo",
        "MESSAGE_ID": MESSAGE_ID_ALREADY_RUNNING,
        "LOCK_PATH": str(lock),
        "LOCK_HOLDER_PID": str(holder.pid),
        "LOCK_HOLDER_COMM": "sleep",
        "LOCK_HOLDER_CMDLINE": "/bin/sleep 60",
        "LOCK_CONTENTION_ACTION": "exit",
    }


def without_unit(entry: dict[str, str]) -> dict[str, str]:
    """LOCK_HOLDER_UNIT depends on the test machine's cgroups (checked where it is known)."""
    return {key: value for key, value in entry.items() if key != "LOCK_HOLDER_UNIT"}


@pytest.mark.parametrize(
    "python", [pytest.param(DEBIAN_PYTHON, id="debian-python"), pytest.param(VENV_PYTHON, id="venv")]
)
def test_contention_entry_field_by_field(
    work: Path, journal: Receiver, holder: subprocess.Popen[str], python: str
) -> None:
    lock = work / "demo.pid"
    result = run(launcher_argv(make_settings(lock), python=python), env(UNITGEN_JOURNAL_SOCKET=journal.env_value))
    assert result.returncode == EXIT_ALREADY_RUNNING
    assert result.stderr == "", "with a journal and no terminal, nothing goes to stderr"
    (entry,) = journal_entries(journal)
    assert without_unit(entry) == expected_contention_entry(lock, holder)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        pytest.param("hello", b"MESSAGE=hello\n", id="plain"),
        pytest.param("", b"MESSAGE=\n", id="empty"),
        pytest.param("Grüße ✓", "MESSAGE=Grüße ✓\n".encode(), id="utf-8"),
        pytest.param("two\nlines", b"MESSAGE\n\x09\x00\x00\x00\x00\x00\x00\x00two\nlines\n", id="multi-line"),
        pytest.param("a=b=c", b"MESSAGE=a=b=c\n", id="equals-in-value"),
    ],
)
def test_native_protocol_encoding(value: str, encoded: bytes) -> None:
    assert launcher.journal_payload([("MESSAGE", value)]) == encoded
    assert parse_journal_entry(encoded) == {"MESSAGE": value}


@pytest.mark.parametrize(
    ("key", "name"),
    [
        pytest.param("MESSAGE", "MESSAGE", id="valid"),
        pytest.param("lock_path", "LOCK_PATH", id="lower-case"),
        pytest.param("lock-holder.pid", "LOCK_HOLDER_PID", id="punctuation"),
        pytest.param("_PID", "PID", id="trusted-prefix"),
        pytest.param("2FA_CODE", "FA_CODE", id="leading-digit"),
        pytest.param("X" * 80, "X" * 64, id="too-long"),
        pytest.param("ÜBER", "BER", id="non-ascii"),
        pytest.param("", None, id="empty"),
        pytest.param("__", None, id="only-underscores"),
    ],
)
def test_field_names_are_made_valid(key: str, name: str | None) -> None:
    assert launcher.journal_field_name(key) == name


def test_entries_too_large_for_a_datagram_go_through_a_sealed_memfd(work: Path, journal: Receiver) -> None:
    big = "x" * (1024 * 1024) + "\nend"
    launcher.journal_send_native(str(journal.env_value), [("MESSAGE", "big one"), ("BLOB", big)])
    (datagram,) = journal.drain()
    assert datagram.data == b"" and len(datagram.fds) == 1, "an empty datagram carrying one fd"
    assert journal_entries(journal) == [{"MESSAGE": "big one", "BLOB": big}]  # checks the seals too


def test_an_entry_that_fits_is_one_datagram(journal: Receiver) -> None:
    launcher.journal_send_native(str(journal.env_value), [("MESSAGE", "m"), ("BLOB", "y" * 100_000)])
    (datagram,) = journal.drain()
    assert datagram.fds == []
    assert parse_journal_entry(datagram.data) == {"MESSAGE": "m", "BLOB": "y" * 100_000}


@pytest.mark.parametrize(
    "journal_socket",
    [
        pytest.param("missing", id="no-socket"),
        pytest.param("regular-file", id="not-a-socket"),
        pytest.param("stream-socket", id="wrong-socket-type"),
    ],
)
def test_without_a_journal_a_plain_line_goes_to_stderr(
    work: Path, holder: subprocess.Popen[str], journal_socket: str
) -> None:
    path = work / journal_socket
    if journal_socket == "regular-file":
        path.write_text("not a socket")
    if journal_socket == "stream-socket":
        import socket

        stream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stream.bind(str(path))
        stream.listen()
    try:
        lock = work / "demo.pid"
        result = run(launcher_argv(make_settings(lock)), env(UNITGEN_JOURNAL_SOCKET=str(path)))
    finally:
        if journal_socket == "stream-socket":
            stream.close()
    assert result.returncode == EXIT_ALREADY_RUNNING
    assert result.stderr == f"demo: demo is already running as PID {holder.pid} (lock {lock})\n"


def test_logging_failures_never_crash_the_launcher(work: Path, holder: subprocess.Popen[str]) -> None:
    """No journal and stderr closed: the launcher still does its job and exits with its code."""
    argv = ["sh", "-c", 'exec 2>&-; exec "$@"', "sh", *launcher_argv(make_settings(work / "demo.pid"))]
    result = run(argv, env(UNITGEN_JOURNAL_SOCKET=str(work / "missing")))
    assert result.returncode == EXIT_ALREADY_RUNNING


def test_on_a_terminal_the_line_also_goes_to_stderr(
    work: Path, journal: Receiver, holder: subprocess.Popen[str]
) -> None:
    """Someone running the launcher by hand sees why it exited, even though the journal has it."""
    controller, terminal = os.openpty()
    try:
        result = subprocess.run(
            launcher_argv(make_settings(work / "demo.pid")),
            env=env(UNITGEN_JOURNAL_SOCKET=journal.env_value),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=terminal,
            timeout=20,
            check=False,
        )
        os.close(terminal)
        shown = os.read(controller, 4096).decode()
    finally:
        os.close(controller)
    assert result.returncode == EXIT_ALREADY_RUNNING
    assert f"demo is already running as PID {holder.pid}" in shown
    assert len(journal_entries(journal)) == 1


@pytest.mark.parametrize(
    ("cgroup", "unit"),
    [
        pytest.param("0::/system.slice/demo.service\n", "demo.service", id="v2-service"),
        pytest.param("0::/system.slice/demo.service/worker\n", "demo.service", id="v2-sub-cgroup"),
        pytest.param("0::/user.slice/user-0.slice/session-4.scope\n", "session-4.scope", id="v2-session"),
        pytest.param(
            "12:cpu,cpuacct:/\n1:name=systemd:/system.slice/cron.service\n0::/system.slice/cron.service\n",
            "cron.service",
            id="hybrid",
        ),
        pytest.param("0::/\n", None, id="root-cgroup"),
        pytest.param("3:memory:/docker/abc\n", None, id="no-systemd-hierarchy"),
    ],
)
def test_holder_unit_from_proc_cgroup(cgroup: str, unit: str | None) -> None:
    assert launcher.unit_from_cgroup(cgroup) == unit


def test_holder_fields_of_a_running_process(holder: subprocess.Popen[str]) -> None:
    fields = launcher.holder_fields(holder.pid)
    expected_unit = launcher.unit_from_cgroup(Path(f"/proc/{holder.pid}/cgroup").read_text())
    assert fields.get("LOCK_HOLDER_UNIT") == expected_unit
    assert (fields["LOCK_HOLDER_PID"], fields["LOCK_HOLDER_COMM"]) == (str(holder.pid), "sleep")


@pytest.mark.parametrize("pid", [pytest.param(0, id="unknown"), pytest.param(2**22 + 1, id="gone")])
def test_holder_fields_of_an_unknown_or_vanished_holder(pid: int) -> None:
    assert launcher.holder_fields(pid) == {"LOCK_HOLDER_PID": str(pid)}


# ---------------------------------------------------------------------------------------------
# At the real journal socket path, through systemd-python and without it. A private mount
# namespace puts a tmpfs on /run/systemd (the host's stays untouched) and binds our receiver to
# /run/systemd/journal/socket.


def systemd_python_dir(python: str) -> str:
    code = "import systemd, os; print(os.path.dirname(systemd.__file__))"
    return subprocess.run([python, "-I", "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def in_journal_namespace(receiver: Path, argv: list[str], hide: str | None) -> list[str]:
    script = (
        "set -e\n"
        "mount -t tmpfs -o mode=0755 tmpfs /run/systemd\n"
        "mkdir /run/systemd/journal\n"
        ": > /run/systemd/journal/socket\n"
        'mount --bind "$RECEIVER" /run/systemd/journal/socket\n'
        'if [ -n "$HIDE" ]; then mount -t tmpfs tmpfs "$HIDE"; fi\n'
        'exec "$@"\n'
    )
    setup = ["env", f"RECEIVER={receiver}", f"HIDE={hide or ''}"]
    return ["unshare", "--mount", "--propagation", "private", *setup, "sh", "-c", script, "sh", *argv]


@pytest.mark.root
@pytest.mark.parametrize(
    "python", [pytest.param(DEBIAN_PYTHON, id="debian-python"), pytest.param(VENV_PYTHON, id="venv")]
)
@pytest.mark.parametrize(
    "systemd_python", [pytest.param(True, id="systemd-python-installed"), pytest.param(False, id="hidden")]
)
def test_entry_at_the_real_journal_socket(
    work: Path, journal: Receiver, holder: subprocess.Popen[str], python: str, systemd_python: bool
) -> None:
    """Native protocol whether or not systemd-python is importable: its sendv() cannot be bounded."""
    lock = work / "demo.pid"
    hide = None if systemd_python else systemd_python_dir(python)
    argv = launcher_argv(make_settings(lock), python=python)
    argv.insert(1, "-v")  # reports each extension module it loads
    result = run(in_journal_namespace(work / "journal", argv, hide))
    assert result.returncode == EXIT_ALREADY_RUNNING, result.stderr
    assert "systemd._journal" not in result.stderr
    (entry,) = journal_entries(journal)
    assert without_unit(entry) == expected_contention_entry(lock, holder)


# ---------------------------------------------------------------------------------------------
# journald not reading its socket (issue 11.7): a log line waits a bounded time (1 s for the
# entry, 1 s for the stderr line), so a contender exits 17 promptly and SIGTERM always works.

BOUND = 8.0


def timed_run(argv: list[str], environment: dict[str, str] | None = None) -> tuple[int, float, str]:
    began = time.monotonic()
    result = run(argv, environment)
    return result.returncode, time.monotonic() - began, result.stderr


@pytest.mark.root
@pytest.mark.parametrize(
    "python",
    [pytest.param(DEBIAN_PYTHON, id="debian-python-with-systemd-python"), pytest.param(VENV_PYTHON, id="venv")],
)
def test_stuck_journal_at_the_real_socket_contender_exits_promptly(
    work: Path, holder: subprocess.Popen[str], python: str
) -> None:
    lock = work / "demo.pid"
    with stuck_socket(work / "stuck") as stuck:
        argv = in_journal_namespace(Path(stuck.env_value), launcher_argv(make_settings(lock), python=python), None)
        code, took, stderr = timed_run(argv)
    assert code == EXIT_ALREADY_RUNNING, stderr
    assert took < BOUND, f"took {took:.1f} s"
    assert f"demo is already running as PID {holder.pid}" in stderr, "the entry was lost: the line goes to stderr"


def test_stuck_journal_contender_exits_promptly(work: Path, holder: subprocess.Popen[str]) -> None:
    with stuck_socket(work / "stuck") as stuck:
        argv = launcher_argv(make_settings(work / "demo.pid"))
        code, took, stderr = timed_run(argv, env(UNITGEN_JOURNAL_SOCKET=stuck.env_value))
    assert (code, took < BOUND) == (EXIT_ALREADY_RUNNING, True), (code, took, stderr)


def test_stuck_journal_and_stderr_sigterm_ends_a_waiting_contender(work: Path, holder: subprocess.Popen[str]) -> None:
    """stderr is journald's stream socket under systemd: a stuck one must not hang the line either."""
    import socket

    stream, peer = socket.socketpair()  # nobody reads `peer`: fill it until a write would block
    stream.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while True:
            stream.send(b"x" * 4096)
    stream.setblocking(True)
    notify = Receiver(work / "notify")
    try:
        with stuck_socket(work / "stuck") as stuck:
            settings = make_settings(work / "demo.pid", on_contention="wait")
            waiter = subprocess.Popen(
                launcher_argv(settings),
                env=env(UNITGEN_JOURNAL_SOCKET=stuck.env_value, NOTIFY_SOCKET=notify.env_value),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stream.fileno(),
            )
            try:
                # Past the contention entry (journal 1 s, then the stderr line 1 s): it waits.
                assert notify.with_field("EXTEND_TIMEOUT_USEC", timeout=BOUND).pid == waiter.pid
                waiter.send_signal(signal.SIGTERM)
                assert waiter.wait(timeout=BOUND) == -signal.SIGTERM
                assert notify.with_field("STOPPING", "1").pid == waiter.pid
            finally:
                if waiter.poll() is None:
                    waiter.kill()
                waiter.wait()
    finally:
        notify.close()
        stream.close()
        peer.close()
