"""Issue 14, the launcher: one lock per instance from $UNITGEN_INSTANCE, and systemd's sockets passed
through (exec mode: the same PID, so $LISTEN_PID stays true; python mode: listen_sockets()).

The sockets are real listening sockets put at fd 3 of a real launcher process by `bash`, with
LISTEN_PID set to the PID the launcher will have (bash's own, which exec keeps), as systemd does.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.launcher_helpers import (
    DEBIAN_PYTHON,
    HELPERS,
    Receiver,
    env,
    journal_entries,
    launcher_argv,
    make_settings,
    read_line,
    run,
    short_tmpdir,
    start,
    stop,
    wait_for_holder,
)
from unitgen.launcher.runtime import (
    EXIT_ALREADY_RUNNING,
    EXIT_CONFIG_ERROR,
    MESSAGE_ID_ALREADY_RUNNING,
    LauncherSettings,
)

APPS = str(HELPERS / "apps")
# Prints what it got, then answers one connection on fd 3 with its PID.
SERVE_FD3 = (
    "import os, socket, sys\n"
    "print(os.getpid(), os.environ.get('LISTEN_PID'), os.environ.get('LISTEN_FDS'),"
    " os.environ.get('LISTEN_FDNAMES'), os.environ.get('UNITGEN_INSTANCE'), *sys.argv[1:], flush=True)\n"
    "s = socket.socket(fileno=3)\n"
    "c, _ = s.accept()\n"
    "c.sendall(b'%d\\n' % os.getpid())\n"
    "c.close()\n"
    "import time; time.sleep(60)\n"
)


@pytest.fixture
def work() -> Iterator[Path]:
    with short_tmpdir() as path:
        path.chmod(0o755)
        yield path


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock
    sock.close()


def with_sockets(argv: list[str], sock: socket.socket, names: str = "web") -> list[str]:
    """argv started the way systemd starts a socket-activated service: the socket at fd 3,
    LISTEN_FDS=1, LISTEN_FDNAMES, and LISTEN_PID = the PID the program runs as."""
    fd = sock.fileno()
    script = f'LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES={names} exec "$@" 3<&{fd} {fd}<&-'
    return ["/bin/bash", "-c", script, "bash", *argv]  # dash takes one-digit fds only


def template_settings(work: Path, **overrides: object) -> LauncherSettings:
    return make_settings(work / "{instance}.pid", **overrides)


def test_each_instance_holds_its_own_lock_and_gets_its_name(work: Path) -> None:
    app = ["/bin/sh", "-c", 'echo "$UNITGEN_INSTANCE $0"; exec sleep 60', "q-{instance}"]
    settings = template_settings(work, argv=app)
    procs = {i: start(launcher_argv(settings), env(UNITGEN_INSTANCE=i)) for i in ("a", "b")}
    try:
        for instance, proc in procs.items():
            assert read_line(proc).split() == [instance, f"q-{instance}"]
            wait_for_holder(work / f"{instance}.pid", proc.pid)
        assert not (work / "{instance}.pid").exists()
    finally:
        for proc in procs.values():
            stop(proc)


def test_a_contender_for_the_same_instance_exits_17_and_names_the_instance(work: Path) -> None:
    settings = template_settings(work)
    holder = start(launcher_argv(settings), env(UNITGEN_INSTANCE="a"))
    journal = Receiver(work / "journal")
    try:
        wait_for_holder(work / "a.pid", holder.pid)
        result = run(launcher_argv(settings), env(UNITGEN_INSTANCE="a", UNITGEN_JOURNAL_SOCKET=str(work / "journal")))
        assert result.returncode == EXIT_ALREADY_RUNNING
        (entry,) = [e for e in journal_entries(journal) if e.get("MESSAGE_ID") == MESSAGE_ID_ALREADY_RUNNING]
        assert entry["MESSAGE"] == f"demo@a is already running as PID {holder.pid} (lock {work}/a.pid)"
        assert entry["UNITGEN_INSTANCE"] == "a" and entry["SYSLOG_IDENTIFIER"] == "demo"
        other = start(launcher_argv(settings), env(UNITGEN_INSTANCE="b"))
        wait_for_holder(work / "b.pid", other.pid)  # another instance is no contender
        stop(other)
    finally:
        journal.close()
        stop(holder)


@pytest.mark.parametrize(
    "instance",
    [
        pytest.param(None, id="unset"),
        pytest.param("", id="empty"),
        pytest.param("..", id="dotdot"),
        pytest.param(".hidden", id="leading-dot"),
        pytest.param("a/b", id="slash"),
        pytest.param("a b", id="space"),
        pytest.param("x" * 201, id="too-long"),
    ],
)
def test_an_instance_that_cannot_name_a_lock_file_is_refused(work: Path, instance: str | None) -> None:
    settings = template_settings(work)
    environment = env() if instance is None else env(UNITGEN_INSTANCE=instance)
    result = run(launcher_argv(settings), environment)
    assert result.returncode == EXIT_CONFIG_ERROR
    assert "UNITGEN_INSTANCE" in result.stderr
    assert sorted(p.name for p in work.iterdir()) == []


def test_an_admin_added_instance_with_systemd_escapes_works(work: Path) -> None:
    # `systemctl start demo@a\x2db:1` gives %i = 'a\x2db:1': unit-name characters, a valid file name.
    settings = template_settings(work)
    proc = start(launcher_argv(settings), env(UNITGEN_INSTANCE="a\\x2db:1"))
    try:
        wait_for_holder(work / "a\\x2db:1.pid", proc.pid)
    finally:
        stop(proc)


def test_exec_mode_passes_the_sockets_through_with_listen_pid_its_own(work: Path, listener: socket.socket) -> None:
    settings = template_settings(work, argv=[DEBIAN_PYTHON, "-I", "-c", SERVE_FD3, "{instance}"])
    proc = start(
        with_sockets(launcher_argv(settings), listener), env(UNITGEN_INSTANCE="a"), pass_fds=(listener.fileno(),)
    )
    try:
        pid, listen_pid, fds, names, instance, arg = read_line(proc).split()
        assert int(pid) == int(listen_pid) == proc.pid  # exec kept the PID: LISTEN_PID is still true
        assert (fds, names, instance, arg) == ("1", "web", "a", "a")
        wait_for_holder(work / "a.pid", proc.pid)  # the lock first, then the app accepted
        with socket.create_connection(listener.getsockname(), timeout=10) as client:
            assert client.makefile().readline() == f"{proc.pid}\n"
    finally:
        stop(proc)


def test_a_contender_closes_and_accepts_nothing_it_was_given(work: Path, listener: socket.socket) -> None:
    settings = make_settings(work / "demo.pid")
    holder = start(launcher_argv(settings))
    try:
        wait_for_holder(work / "demo.pid", holder.pid)
        waiting = socket.create_connection(listener.getsockname(), timeout=10)  # queued in the backlog
        result = subprocess.run(
            with_sockets(launcher_argv(settings), listener),
            env=env(),
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
            pass_fds=(listener.fileno(),),
        )
        assert result.returncode == EXIT_ALREADY_RUNNING, result.stderr
        assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1  # still listening
        listener.settimeout(5)
        conn, peer = listener.accept()  # the queued client was left for the holder
        assert peer == waiting.getsockname()
        conn.close()
        waiting.close()
    finally:
        stop(holder)


def test_python_mode_returns_the_sockets_from_the_documented_call(work: Path, listener: socket.socket) -> None:
    settings = template_settings(work, mode="python", entry="listenapp:serve")
    proc = start(
        with_sockets(launcher_argv(settings, isolated=False), listener, names="api"),
        env(UNITGEN_INSTANCE="b", PYTHONPATH=APPS),
        pass_fds=(listener.fileno(),),
    )
    try:
        assert read_line(proc).split() == ["sockets", str(proc.pid), "api", "b"]
        with socket.create_connection(listener.getsockname(), timeout=10) as client:
            # Served by the launcher's own process; the socket is close-on-exec for what the app runs.
            assert client.makefile().readline() == f"{proc.pid} False\n"
        assert proc.wait(timeout=20) == 0
    finally:
        stop(proc)


def test_no_sockets_without_a_matching_listen_pid() -> None:
    code = (
        "import os, sys; sys.path.insert(0, sys.argv[1]); import runtime as r\n"
        "os.environ.update(LISTEN_PID=str(os.getpid() + 1), LISTEN_FDS='1'); print(r.listen_fds())\n"
        "os.environ['LISTEN_PID'] = str(os.getpid()); os.environ['LISTEN_FDNAMES'] = 'a'; print(r.listen_fds())\n"
    )
    from unitgen.launcher import runtime

    out = subprocess.run(
        [DEBIAN_PYTHON, "-I", "-c", code, str(Path(runtime.__file__).parent)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out == ["[]", "[(3, 'a')]"]
