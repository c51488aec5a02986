"""sd_notify from the launcher: datagram contents and sender PID, readiness, watchdog, stop, reload, wait."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import launcher_helpers
from tests.launcher_helpers import (
    DEBIAN_PYTHON,
    HELPERS,
    Datagram,
    Receiver,
    env,
    journal_entries,
    launcher_argv,
    make_settings,
    read_line,
    run,
    start,
    stop,
    stuck_socket,
    wait_for_holder,
    wait_until,
)
from unitgen.launcher import runtime as launcher
from unitgen.launcher.runtime import EXIT_ALREADY_RUNNING, EXIT_READY_TIMEOUT, EXIT_WAIT_TIMEOUT
from unitgen.launcher.script import notify_access

APPS = str(HELPERS / "apps")
LISTEN_APP = [DEBIAN_PYTHON, "-c", "import demoapp; demoapp.listen_when_told()"]


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request: pytest.FixtureRequest, work: Path) -> Iterator[Receiver]:
    receiver = Receiver(work / "notify") if request.param == "path" else Receiver.abstract()
    yield receiver
    receiver.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def accepts(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def is_ready(datagram: Datagram) -> bool:
    return datagram.fields.get("READY") == "1"


# ---------------------------------------------------------------------------------------------
# notify() itself


@pytest.mark.parametrize(
    "address",
    [
        pytest.param(None, id="unset"),
        pytest.param("", id="empty"),
        pytest.param("vsock:2:1234", id="vsock"),
        pytest.param("relative/notify", id="relative"),
        pytest.param("/nonexistent/notify", id="missing-socket"),
    ],
)
def test_notify_without_a_usable_socket_returns_false(monkeypatch: pytest.MonkeyPatch, address: str | None) -> None:
    if address is None:
        monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    else:
        monkeypatch.setenv("NOTIFY_SOCKET", address)
    assert launcher.notify("READY=1") is False


def test_notify_sends_all_fields_in_one_utf8_datagram(monkeypatch: pytest.MonkeyPatch, notify_socket: Receiver) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.env_value)
    assert launcher.notify("READY=1\nSTATUS=Grüße ✓ from demo") is True
    datagram = notify_socket.wait_for(lambda d: True)
    assert datagram.data == "READY=1\nSTATUS=Grüße ✓ from demo".encode()
    assert datagram.pid == os.getpid()


# ---------------------------------------------------------------------------------------------
# exec mode


def test_immediate_readiness_comes_from_the_service_pid(work: Path, notify_socket: Receiver) -> None:
    lock = work / "demo.pid"
    proc = start(launcher_argv(make_settings(lock)), env(NOTIFY_SOCKET=notify_socket.env_value))
    try:
        datagram = notify_socket.wait_for(is_ready)
        assert datagram.fields == {"READY": "1", "STATUS": "demo is running"}
        assert datagram.pid == proc.pid  # the launcher, which is now the app (same PID)
        wait_for_holder(lock, proc.pid)
    finally:
        stop(proc)


def test_contention_sends_status(work: Path, notify_socket: Receiver) -> None:
    lock = work / "demo.pid"
    holder = start(launcher_argv(make_settings(lock)))
    try:
        wait_for_holder(lock, holder.pid)
        contender = start(launcher_argv(make_settings(lock)), env(NOTIFY_SOCKET=notify_socket.env_value))
        assert contender.wait(timeout=20) == EXIT_ALREADY_RUNNING
        stop(contender)
        datagram = notify_socket.with_field("STATUS")
        assert datagram.fields == {"STATUS": f"demo is already running as PID {holder.pid} (lock {lock})"}
        assert datagram.pid == contender.pid
        assert not any(is_ready(d) for d in notify_socket.drain())
    finally:
        stop(holder)


def test_tcp_readiness_waits_for_the_port_and_is_sent_by_a_watcher(work: Path, notify_socket: Receiver) -> None:
    port = free_port()
    settings = make_settings(work / "demo.pid", argv=LISTEN_APP, ready=f"tcp:127.0.0.1:{port}")
    go, stop_file = work / "go", work / "stop"
    environment = env(
        NOTIFY_SOCKET=notify_socket.env_value,
        PYTHONPATH=APPS,
        DEMO_PORT=str(port),
        DEMO_GO=str(go),
        DEMO_STOP=str(stop_file),
    )
    proc = start(launcher_argv(settings), environment)
    try:
        assert read_line(proc).split() == ["started", str(proc.pid)]
        assert not any(is_ready(d) for d in notify_socket.drain(0.5)), "READY=1 before the port accepts"
        go.touch()
        datagram = notify_socket.wait_for(is_ready)
        assert accepts(port)
        assert datagram.fields["STATUS"] == f"demo is ready: 127.0.0.1:{port} accepts connections"
        assert datagram.pid not in (0, proc.pid), "sent by the watcher, hence NotifyAccess=all"
        assert notify_access(settings) == "all"
    finally:
        stop(proc)


def test_path_readiness_waits_for_the_path(work: Path, notify_socket: Receiver) -> None:
    flag = work / "ready-flag"
    settings = make_settings(work / "demo.pid", ready=f"path:{flag}")
    proc = start(launcher_argv(settings), env(NOTIFY_SOCKET=notify_socket.env_value))
    try:
        wait_for_holder(work / "demo.pid", proc.pid)
        assert not any(is_ready(d) for d in notify_socket.drain(0.5)), "READY=1 before the path exists"
        flag.touch()
        assert notify_socket.wait_for(is_ready).fields["STATUS"] == f"demo is ready: {flag} exists"
    finally:
        stop(proc)


def test_readiness_timeout_stops_the_service_and_logs_why(
    work: Path, notify_socket: Receiver, journal: Receiver
) -> None:
    settings = make_settings(work / "demo.pid", ready=f"tcp:{free_port()}", ready_timeout_sec=0.5)
    environment = env(NOTIFY_SOCKET=notify_socket.env_value, UNITGEN_JOURNAL_SOCKET=journal.env_value)
    proc = start(launcher_argv(settings), environment)
    assert proc.wait(timeout=20) == -signal.SIGTERM
    stop(proc)
    (entry,) = journal_entries(journal)
    assert entry["PRIORITY"] == "3"
    assert entry["READY_CONDITION"] == settings["ready"]
    assert "did not become ready" in entry["MESSAGE"] and "ready_timeout_sec" in entry["MESSAGE"]
    assert not any(is_ready(d) for d in notify_socket.drain())


@pytest.mark.parametrize(
    ("watchdog_pid", "expect_pings"),
    [pytest.param(None, True, id="no-WATCHDOG_PID"), pytest.param("1", False, id="WATCHDOG_PID-not-ours")],
)
def test_watchdog_pings_at_half_the_interval_while_healthy(
    work: Path, notify_socket: Receiver, watchdog_pid: str | None, expect_pings: bool
) -> None:
    port = free_port()
    go, stop_file = work / "go", work / "stop"
    go.touch()
    settings = make_settings(work / "demo.pid", argv=LISTEN_APP, ready=f"tcp:{port}")
    extra = {"WATCHDOG_PID": watchdog_pid} if watchdog_pid else {}
    environment = env(
        NOTIFY_SOCKET=notify_socket.env_value,
        WATCHDOG_USEC="200000",
        PYTHONPATH=APPS,
        DEMO_PORT=str(port),
        DEMO_GO=str(go),
        DEMO_STOP=str(stop_file),
        **extra,
    )
    proc = start(launcher_argv(settings), environment)
    try:
        assert read_line(proc).split() == ["started", str(proc.pid)]
        notify_socket.wait_for(is_ready)
        time.sleep(1.0)
        pings = [d for d in notify_socket.drain(0.05) if d.fields.get("WATCHDOG") == "1"]
        if not expect_pings:
            assert pings == []
            return
        assert len(pings) >= 4, f"{len(pings)} pings in a second at WATCHDOG_USEC=200000"
        stop_file.touch()  # the app stops listening: unhealthy, so the pings must stop
        assert read_line(proc) == "listening\n"
        assert read_line(proc) == "closed\n"
        notify_socket.drain(0.3)
        before = len(notify_socket.received)
        time.sleep(0.6)
        late = [d for d in notify_socket.drain(0.05)[before:] if d.fields.get("WATCHDOG") == "1"]
        assert late == [], "WATCHDOG=1 sent while the port no longer accepts connections"
    finally:
        stop(proc)


def test_watchdog_interval_is_half_of_watchdog_usec(monkeypatch: pytest.MonkeyPatch, notify_socket: Receiver) -> None:
    """Timing of the ping loop itself, with generous bounds (this machine is shared)."""
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.env_value)
    monkeypatch.setenv("WATCHDOG_USEC", "100000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    settings = make_settings("/unused", ready="immediate")
    times: list[float] = []

    def alive(seconds: float) -> bool:
        time.sleep(seconds)
        times.append(time.monotonic())
        return len(times) < 10

    launcher.keep_watchdog(settings, os.getpid(), alive, lambda: True)
    pings = [d for d in notify_socket.drain(0.05) if d.data == b"WATCHDOG=1"]
    assert len(pings) == 10
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert 0.04 <= statistics.median(gaps) <= 0.1


# ---------------------------------------------------------------------------------------------
# python mode, oneshot, notify


def python_mode(work: Path, entry: str, receiver: Receiver, **overrides: object) -> subprocess.Popen[str]:
    settings = make_settings(work / "demo.pid", mode="python", entry=entry, **overrides)
    environment = env(NOTIFY_SOCKET=receiver.env_value, PYTHONPATH=APPS)
    return start(launcher_argv(settings, isolated=False), environment)


def test_python_mode_sigterm_sends_stopping_and_lets_the_app_clean_up(work: Path, notify_socket: Receiver) -> None:
    proc = python_mode(work, "demoapp:graceful", notify_socket)
    try:
        assert read_line(proc).split() == ["started", str(proc.pid)]
        assert notify_socket.wait_for(is_ready).pid == proc.pid
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert read_line(proc) == "cleanup\n"
        stopping = notify_socket.with_field("STOPPING", "1")
        assert stopping.pid == proc.pid
    finally:
        stop(proc)


def test_python_mode_sighup_reloads(work: Path, notify_socket: Receiver) -> None:
    proc = python_mode(work, "demoapp:sleep", notify_socket)
    try:
        read_line(proc)
        notify_socket.wait_for(is_ready)
        sent_at = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        proc.send_signal(signal.SIGHUP)
        reloading = notify_socket.with_field("RELOADING", "1")
        assert abs(int(reloading.fields["MONOTONIC_USEC"]) - sent_at) < 10_000_000
        assert reloading.pid == proc.pid
        assert read_line(proc) == "reloaded\n", "the app's unitgen_reload() hook ran"
        wait_until(lambda: [d.fields.get("READY") for d in notify_socket.drain(0.05)][-1:] == ["1"], what="READY=1")
        assert sum(is_ready(d) for d in notify_socket.received) == 2, "READY=1 again after RELOADING=1"
        assert proc.poll() is None
    finally:
        stop(proc)


def test_python_mode_readiness_timeout_exits_with_its_code(work: Path, notify_socket: Receiver) -> None:
    proc = python_mode(work, "demoapp:graceful", notify_socket, ready=f"tcp:{free_port()}", ready_timeout_sec=0.3)
    assert proc.wait(timeout=20) == EXIT_READY_TIMEOUT
    stop(proc)
    assert not any(is_ready(d) for d in notify_socket.drain())


def test_python_mode_watchdog_pings_from_the_main_pid(work: Path, notify_socket: Receiver) -> None:
    settings = make_settings(work / "demo.pid", mode="python", entry="demoapp:sleep")
    environment = env(NOTIFY_SOCKET=notify_socket.env_value, PYTHONPATH=APPS, WATCHDOG_USEC="100000")
    proc = start(launcher_argv(settings, isolated=False), environment)
    try:
        ping = notify_socket.with_field("WATCHDOG", "1")
        assert ping.pid == proc.pid
        assert notify_access(settings) == "main"
    finally:
        stop(proc)


def test_oneshot_never_sends_ready(work: Path, notify_socket: Receiver) -> None:
    settings = make_settings(work / "demo.pid", argv=["/bin/true"], oneshot=True)
    result = run(launcher_argv(settings), env(NOTIFY_SOCKET=notify_socket.env_value))
    assert result.returncode == 0
    assert not any("READY" in d.fields or "WATCHDOG" in d.fields for d in notify_socket.drain())


def test_notify_readiness_is_left_to_the_app(work: Path, notify_socket: Receiver) -> None:
    app = [DEBIAN_PYTHON, "-c", "import demoapp; demoapp.notify_ready()"]
    settings = make_settings(work / "demo.pid", argv=app, ready="notify")
    proc = start(launcher_argv(settings), env(NOTIFY_SOCKET=notify_socket.env_value, PYTHONPATH=APPS))
    try:
        datagram = notify_socket.wait_for(is_ready)
        assert datagram.fields == {"READY": "1", "STATUS": "demo app says hello"}
        assert datagram.pid == proc.pid
        assert [d for d in notify_socket.drain() if is_ready(d)] == [datagram], "only the app says READY=1"
        assert notify_access(settings) == "main"
    finally:
        stop(proc)


# ---------------------------------------------------------------------------------------------
# on_contention = "wait"


@pytest.mark.parametrize(
    "overrides",
    [pytest.param({}, id="exec-mode"), pytest.param({"mode": "python", "entry": "demoapp:sleep"}, id="python-mode")],
)
def test_waiting_for_the_lock_keeps_systemd_informed(
    work: Path, notify_socket: Receiver, overrides: dict[str, object]
) -> None:
    lock = work / "demo.pid"
    first = start(launcher_argv(make_settings(lock)))
    try:
        wait_for_holder(lock, first.pid)
        settings = make_settings(lock, on_contention="wait", **overrides)
        environment = env(NOTIFY_SOCKET=notify_socket.env_value, PYTHONPATH=APPS)
        second = start(launcher_argv(settings, isolated=settings["mode"] == "exec"), environment)
        waiting = notify_socket.with_field("EXTEND_TIMEOUT_USEC")
        assert waiting.pid == second.pid
        assert int(waiting.fields["EXTEND_TIMEOUT_USEC"]) > 0
        assert waiting.fields["STATUS"].startswith(f"Waiting for lock {lock} held by PID {first.pid}")
        assert not any(is_ready(d) for d in notify_socket.received)
        stop(first)
        ready = notify_socket.wait_for(is_ready)
        assert ready.pid == second.pid
        wait_for_holder(lock, second.pid)
        stop(second)
    finally:
        stop(first)


def test_waiting_gives_up_after_wait_timeout(work: Path, journal: Receiver) -> None:
    lock = work / "demo.pid"
    first = start(launcher_argv(make_settings(lock)))
    try:
        wait_for_holder(lock, first.pid)
        settings = make_settings(lock, on_contention="wait", wait_timeout_sec=0.3)
        result = run(launcher_argv(settings), env(UNITGEN_JOURNAL_SOCKET=journal.env_value))
        assert result.returncode == EXIT_WAIT_TIMEOUT
        waiting, gave_up = journal_entries(journal)
        assert (waiting["PRIORITY"], waiting["LOCK_CONTENTION_ACTION"]) == ("4", "wait")
        assert gave_up["PRIORITY"] == "3"
        assert gave_up["MESSAGE"].endswith("gave up waiting after 0.3 s (wait_timeout_sec)")
    finally:
        stop(first)


def test_sigterm_while_waiting_sends_stopping(work: Path, notify_socket: Receiver) -> None:
    lock = work / "demo.pid"
    first = start(launcher_argv(make_settings(lock)))
    try:
        wait_for_holder(lock, first.pid)
        settings = make_settings(lock, on_contention="wait")
        second = start(launcher_argv(settings), env(NOTIFY_SOCKET=notify_socket.env_value))
        notify_socket.with_field("EXTEND_TIMEOUT_USEC")
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=20) == -signal.SIGTERM
        stop(second)
        assert notify_socket.with_field("STOPPING", "1").pid == second.pid
    finally:
        stop(first)


# ---------------------------------------------------------------------------------------------
# A service manager that does not read: $NOTIFY_SOCKET's queue is full (issue 11.6). Every send
# is bounded (1 s), so the launcher never hangs: it runs the app, a contender exits 17, SIGTERM
# stops it. BOUND leaves room for this shared machine; a hang would run into it for ever.

BOUND = 8.0
PRINT_AND_SLEEP = [DEBIAN_PYTHON, "-I", "-c", "import time; print('started', flush=True); time.sleep(60)"]


def test_full_notify_queue_the_starter_still_runs_the_app(work: Path, journal: Receiver) -> None:
    lock = work / "demo.pid"
    with stuck_socket(work / "notify") as notify_sock:
        environment = env(NOTIFY_SOCKET=notify_sock.env_value, UNITGEN_JOURNAL_SOCKET=journal.env_value)
        proc = start(launcher_argv(make_settings(lock, argv=PRINT_AND_SLEEP)), environment)
        try:
            assert read_line(proc, timeout=BOUND) == "started\n"
            wait_for_holder(lock, proc.pid)
        finally:
            stop(proc)
    (warning,) = journal_entries(journal)
    assert warning["PRIORITY"] == "4"
    assert "dropped 'READY=1' and going on" in warning["MESSAGE"]
    assert warning["NOTIFY_SOCKET"] == str(work / "notify")


def test_full_notify_queue_a_contender_exits_promptly(work: Path) -> None:
    lock = work / "demo.pid"
    holder = start(launcher_argv(make_settings(lock)))
    try:
        wait_for_holder(lock, holder.pid)
        with stuck_socket(work / "notify") as notify_sock:
            contender = start(launcher_argv(make_settings(lock)), env(NOTIFY_SOCKET=notify_sock.env_value))
            try:
                assert contender.wait(timeout=BOUND) == EXIT_ALREADY_RUNNING
            finally:
                stop(contender)
    finally:
        stop(holder)


def test_full_notify_queue_python_mode_starts_and_stops_on_sigterm(work: Path) -> None:
    settings = make_settings(work / "demo.pid", mode="python", entry="demoapp:graceful")
    with stuck_socket(work / "notify") as notify_sock:
        environment = env(NOTIFY_SOCKET=notify_sock.env_value, PYTHONPATH=APPS)
        proc = start(launcher_argv(settings, isolated=False), environment)
        try:
            assert read_line(proc, timeout=BOUND).split() == ["started", str(proc.pid)]
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=BOUND) == 0, "STOPPING=1 must not keep SIGTERM from ending the app"
            assert read_line(proc) == "cleanup\n"
        finally:
            stop(proc)


def test_full_notify_queue_sigterm_ends_a_waiting_contender(work: Path) -> None:
    lock = work / "demo.pid"
    holder = start(launcher_argv(make_settings(lock)))
    try:
        wait_for_holder(lock, holder.pid)
        with stuck_socket(work / "notify") as notify_sock:
            settings = make_settings(lock, on_contention="wait")
            waiter = start(launcher_argv(settings), env(NOTIFY_SOCKET=notify_sock.env_value))
            try:
                time.sleep(1.5)  # past the dropped contention STATUS= (1 s): in the wait loop, handler set
                waiter.send_signal(signal.SIGTERM)
                assert waiter.wait(timeout=BOUND) == -signal.SIGTERM
            finally:
                stop(waiter)
    finally:
        stop(holder)


# ---------------------------------------------------------------------------------------------
# tcp: readiness means *this service* listens (issue 11.1): someone else's listener on the port
# is not READY=1; the app then dies with "Address already in use" or times out, and a journal
# entry says who holds the port.


@pytest.fixture
def foreign_listener() -> Iterator[tuple[int, socket.socket]]:
    """A listener of another process (this test) on a free loopback port."""
    sock = socket.create_server(("127.0.0.1", 0))
    yield sock.getsockname()[1], sock
    sock.close()


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"argv": LISTEN_APP}, id="exec-mode"),
        pytest.param({"mode": "python", "entry": "demoapp:listen_when_told"}, id="python-mode"),
    ],
)
def test_someone_elses_listener_is_not_readiness(
    work: Path,
    notify_socket: Receiver,
    journal: Receiver,
    foreign_listener: tuple[int, socket.socket],
    overrides: dict[str, object],
) -> None:
    port, _ = foreign_listener
    settings = make_settings(work / "demo.pid", ready=f"tcp:127.0.0.1:{port}", **overrides)
    go = work / "go"
    environment = env(
        NOTIFY_SOCKET=notify_socket.env_value,
        UNITGEN_JOURNAL_SOCKET=journal.env_value,
        PYTHONPATH=APPS,
        DEMO_PORT=str(port),
        DEMO_GO=str(go),
        DEMO_STOP=str(work / "stop"),
    )
    proc = start(launcher_argv(settings, isolated=settings["mode"] == "exec"), environment)
    try:
        assert read_line(proc).split() == ["started", str(proc.pid)]
        warning = journal.with_field("PORT_HOLDER")  # the port accepts, but the app does not listen yet
        go.touch()  # now the app tries to listen, and fails: the port is taken
        assert proc.wait(timeout=20) == 1  # the app's traceback, and the start fails
        assert "Address already in use" in (proc.stderr.read() if proc.stderr else "")
    finally:
        stop(proc)
    assert not any(is_ready(d) for d in notify_socket.drain()), "READY=1 for someone else's listener"
    entry = launcher_helpers.journal_entry(warning)
    assert entry["PRIORITY"] == "4"
    assert entry["PORT_HOLDER"] == f"PID {os.getpid()} ({Path('/proc/self/comm').read_text().strip()})"
    assert f"127.0.0.1:{port} accepts connections, but the listening socket is not demo's" in entry["MESSAGE"]


def test_a_listener_of_a_child_of_the_app_is_readiness(work: Path, notify_socket: Receiver) -> None:
    """The service's processes are the app and its descendants (a shell running the server)."""
    port = free_port()
    go, stop_file = work / "go", work / "stop"
    go.touch()
    app = ["/bin/sh", "-c", f"{DEBIAN_PYTHON} -c 'import demoapp; demoapp.listen_when_told()'; exit 0"]
    settings = make_settings(work / "demo.pid", argv=app, ready=f"tcp:127.0.0.1:{port}")
    environment = env(
        NOTIFY_SOCKET=notify_socket.env_value,
        PYTHONPATH=APPS,
        DEMO_PORT=str(port),
        DEMO_GO=str(go),
        DEMO_STOP=str(stop_file),
    )
    proc = start(launcher_argv(settings), environment)
    child = int(read_line(proc).split()[1])
    try:
        assert child != proc.pid, "the server runs in a child of the service's main process"
        notify_socket.wait_for(is_ready)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)  # first: it holds the stdout pipe stop() reads to the end
        stop(proc)
