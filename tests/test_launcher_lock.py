"""The launcher's lock: one instance, exact holder, no stale pid files, survives exec, not forks."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.launcher_helpers import (
    DEBIAN_PYTHON,
    HELPERS,
    LAUNCHER_PY,
    Receiver,
    build_c,
    can_lock,
    env,
    holder,
    journal_entries,
    launcher_argv,
    make_settings,
    read_line,
    run,
    short_tmpdir,
    start,
    stop,
    wait_for_holder,
    wait_until,
)
from unitgen.launcher.runtime import EXIT_ALREADY_RUNNING, EXIT_LOCK_ERROR, LOCK_FD_ENV, MESSAGE_ID_LOCK_ERROR

APPS = str(HELPERS / "apps")


@pytest.fixture
def work() -> Iterator[Path]:
    with short_tmpdir() as path:
        yield path


@pytest.fixture
def lock(work: Path) -> Path:
    return work / "demo.pid"


def python_app(code: str) -> list[str]:
    return [DEBIAN_PYTHON, "-I", "-c", code]


def start_holder(lock: Path, **overrides: object) -> subprocess.Popen[str]:
    """A launcher that got the lock and exec'd its app (sleep by default)."""
    settings = make_settings(lock, **overrides)
    if settings["mode"] == "python":
        proc = start(launcher_argv(settings, isolated=False), env(PYTHONPATH=APPS))
    else:
        proc = start(launcher_argv(settings))
    wait_for_holder(lock, proc.pid)
    return proc


def contend(lock: Path, **extra_env: str) -> subprocess.CompletedProcess[str]:
    return run(launcher_argv(make_settings(lock, argv=["/bin/true"])), env(**extra_env))


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({}, id="exec-mode-holder"),
        pytest.param({"mode": "python", "entry": "demoapp:sleep"}, id="python-mode-holder"),
    ],
)
def test_contender_reports_the_exact_holder_pid_and_exits_already_running(
    lock: Path, overrides: dict[str, object]
) -> None:
    proc = start_holder(lock, **overrides)
    try:
        before = lock.stat()
        content = lock.read_bytes()
        result = contend(lock)
        assert result.returncode == EXIT_ALREADY_RUNNING
        assert f"demo is already running as PID {proc.pid} (lock {lock})" in result.stderr
        after = lock.stat()
        assert lock.read_bytes() == content == f"{proc.pid}\n".encode()
        assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size)
        assert holder(lock) == proc.pid
    finally:
        stop(proc)


def test_sigkilled_holder_leaves_no_stale_lock(lock: Path) -> None:
    first = start_holder(lock)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=20)
    assert lock.read_text() == f"{first.pid}\n", "the dead holder's PID is still in the file"
    second = start_holder(lock)
    try:
        assert lock.read_text() == f"{second.pid}\n"
    finally:
        stop(second)


def test_lock_survives_exec_into_the_app(lock: Path) -> None:
    app = (
        "import os, sys, time\n"
        f"fd = int(os.environ['{LOCK_FD_ENV}'])\n"
        "same = os.fstat(fd).st_ino == os.stat(sys.argv[1]).st_ino\n"
        "print(os.getpid(), fd, same, flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = start(launcher_argv(make_settings(lock, argv=[*python_app(app), str(lock)])))
    try:
        pid, _fd, same = read_line(proc).split()
        assert int(pid) == proc.pid, "the app runs under the launcher's PID"
        assert same == "True", f"{LOCK_FD_ENV} must name an fd open on the lock file"
        wait_for_holder(lock, proc.pid)
        result = contend(lock)
        assert result.returncode == EXIT_ALREADY_RUNNING
        assert f"as PID {proc.pid} " in result.stderr
    finally:
        stop(proc)


def test_python_mode_keeps_the_lock_when_the_app_opens_and_closes_the_lock_path(lock: Path) -> None:
    settings = make_settings(lock, mode="python", entry="demoapp:open_close_lock")
    proc = start(launcher_argv(settings, isolated=False), env(PYTHONPATH=APPS, DEMO_LOCK=str(lock)))
    try:
        line = read_line(proc)
        assert line.split() == ["closed", str(proc.pid)]
        assert holder(lock) == proc.pid
        assert not can_lock(lock)
    finally:
        stop(proc)


def test_python_mode_private_fd_table_works_under_memory_deny_write_execute(work: Path, lock: Path) -> None:
    """The unit sets MemoryDenyWriteExecute=yes; unshare() goes through ctypes on Python 3.11."""
    mdwe = build_c(work, "mdwe")
    if subprocess.run([str(mdwe), "true"], check=False).returncode == 3:
        pytest.skip("kernel without PR_SET_MDWE")
    settings = make_settings(lock, mode="python", entry="demoapp:open_close_lock")
    proc = start([str(mdwe), *launcher_argv(settings, isolated=False)], env(PYTHONPATH=APPS, DEMO_LOCK=str(lock)))
    try:
        assert read_line(proc).split() == ["closed", str(proc.pid)]
        assert holder(lock) == proc.pid
    finally:
        stop(proc)


def test_exec_mode_app_that_closes_the_lock_path_loses_the_lock_as_documented(lock: Path) -> None:
    """Classic POSIX locks: closing any fd of the file drops the process's lock (the documented rule)."""
    app = "import sys, time\nopen(sys.argv[1]).close()\nprint('closed', flush=True)\ntime.sleep(60)\n"
    proc = start(launcher_argv(make_settings(lock, argv=[*python_app(app), str(lock)])))
    try:
        assert read_line(proc) == "closed\n"
        assert holder(lock) is None
        assert "never open-and-close the lock path" in " ".join(LAUNCHER_PY.read_text().split())
    finally:
        stop(proc)


def test_python_mode_without_unshare_falls_back_and_says_so(work: Path, lock: Path) -> None:
    """If seccomp refuses unshare(CLONE_FILES), the lock is held the classic way and a warning says
    what that means; opening and closing the lock path then drops the lock (the exec-mode rule)."""
    deny_unshare = build_c(work, "deny_unshare")
    journal = Receiver(work / "journal")
    try:
        settings = make_settings(lock, mode="python", entry="demoapp:open_close_lock")
        environment = env(PYTHONPATH=APPS, DEMO_LOCK=str(lock), UNITGEN_JOURNAL_SOCKET=journal.env_value)
        proc = start([str(deny_unshare), *launcher_argv(settings, isolated=False)], environment)
        try:
            assert read_line(proc).split() == ["closed", str(proc.pid)]
            assert holder(lock) is None
        finally:
            stop(proc)
        (warning,) = journal_entries(journal)
    finally:
        journal.close()
    assert warning["PRIORITY"] == "4"
    assert "unshare(CLONE_FILES) failed (Operation not permitted)" in warning["MESSAGE"]
    assert f"the app must not open and close {lock}" in warning["MESSAGE"]


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param(
            {
                "argv": python_app(
                    "import os, time\npid = os.fork()\n"
                    "if pid == 0:\n    time.sleep(60)\n    os._exit(0)\n"
                    "print('worker', pid, flush=True)\n"
                )
            },
            id="exec-mode",
        ),
        pytest.param({"mode": "python", "entry": "demoapp:fork_worker"}, id="python-mode"),
    ],
)
def test_forked_worker_outliving_the_main_process_does_not_keep_the_lock(
    lock: Path, overrides: dict[str, object]
) -> None:
    settings = make_settings(lock, **overrides)
    proc = start(launcher_argv(settings, isolated=settings["mode"] == "exec"), env(PYTHONPATH=APPS))
    line = read_line(proc)
    worker = int(line.split()[1])
    try:
        assert proc.wait(timeout=20) == 0
        os.kill(worker, 0)  # the worker is still alive ...
        assert holder(lock) is None  # ... and holds no lock
        assert can_lock(lock)
    finally:
        os.kill(worker, signal.SIGKILL)
        proc.communicate(timeout=20)


RACERS = 50
ROUNDS = 5


@pytest.mark.parametrize("round_", [pytest.param(n, id=f"round-{n}") for n in range(ROUNDS)])
def test_of_many_simultaneous_launchers_exactly_one_wins(lock: Path, round_: int) -> None:
    import json

    read_end, write_end = os.pipe()
    settings = json.dumps(make_settings(lock))
    racer = [DEBIAN_PYTHON, str(HELPERS / "race.py"), str(read_end), settings]
    racer_env = env(PYTHONPATH=str(LAUNCHER_PY.parent))  # import unitgen/launcher/runtime.py from its .pyc
    procs = [
        subprocess.Popen(
            racer, env=racer_env, pass_fds=[read_end], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(RACERS)
    ]
    os.close(read_end)
    try:
        os.close(write_end)  # start!
        wait_until(lambda: sum(p.poll() is not None for p in procs) >= RACERS - 1, what="the losers to exit")
        running = [p for p in procs if p.poll() is None]
        codes = sorted(p.returncode for p in procs if p.returncode is not None)
        assert len(running) == 1, f"{len(running)} winners"
        assert codes == [EXIT_ALREADY_RUNNING] * (RACERS - 1)
        assert holder(lock) == running[0].pid
        assert lock.read_text() == f"{running[0].pid}\n"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def test_contender_without_write_access_still_reports_the_holder(work: Path, lock: Path) -> None:
    """An operator who may read but not write the pid file learns that the service runs."""
    proc = start_holder(lock)
    try:
        if os.geteuid() == 0:
            work.chmod(0o755)
            argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *launcher_argv(make_settings(lock))]
        else:
            pytest.skip("needs a second user")
        result = run(argv)
        assert result.returncode == EXIT_ALREADY_RUNNING, result.stderr
        assert f"as PID {proc.pid} " in result.stderr
    finally:
        stop(proc)


# ---------------------------------------------------------------------------------------------
# Lock paths that cannot work: exit EXIT_LOCK_ERROR, PRIORITY=3, and say what to fix.


def symlink_to_elsewhere(work: Path) -> Path:
    (work / "elsewhere").mkdir()
    link = work / "demo.pid"
    link.symlink_to(work / "elsewhere" / "target.pid")
    return link


def missing_directory(work: Path) -> Path:
    return work / "not-there" / "demo.pid"


def a_directory(work: Path) -> Path:
    (work / "demo.pid").mkdir()
    return work / "demo.pid"


def a_fifo(work: Path) -> Path:
    os.mkfifo(work / "demo.pid")
    return work / "demo.pid"


@pytest.mark.parametrize(
    ("make_path", "hint"),
    [
        pytest.param(symlink_to_elsewhere, "is a symbolic link", id="symlink"),
        pytest.param(missing_directory, "does not exist: create it (RuntimeDirectory=", id="missing-directory"),
        pytest.param(a_directory, "not a regular file", id="directory"),
        pytest.param(a_fifo, "not a regular file", id="fifo"),
    ],
)
def test_unusable_lock_path_is_a_lock_error_with_a_hint(work: Path, make_path: object, hint: str) -> None:
    assert callable(make_path)
    path: Path = make_path(work)
    with_journal = Receiver(work / "journal")
    try:
        result = run(launcher_argv(make_settings(path)), env(UNITGEN_JOURNAL_SOCKET=with_journal.env_value))
        (entry,) = journal_entries(with_journal)
    finally:
        with_journal.close()
    assert result.returncode == EXIT_LOCK_ERROR
    assert entry["PRIORITY"] == "3"
    assert entry["MESSAGE_ID"] == MESSAGE_ID_LOCK_ERROR
    assert entry["LOCK_PATH"] == str(path)
    assert hint in entry["MESSAGE"]
    assert not (work / "elsewhere" / "target.pid").exists(), "the symlink must not be followed"


def test_directory_not_writable_for_the_service_user(work: Path) -> None:
    locked_dir = work / "ro"
    locked_dir.mkdir(mode=0o555)
    work.chmod(0o755)
    argv = launcher_argv(make_settings(locked_dir / "demo.pid"))
    if os.geteuid() == 0:
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    result = run(argv)
    assert result.returncode == EXIT_LOCK_ERROR
    assert f"permission denied creating or opening lock file {locked_dir}/demo.pid" in result.stderr
    assert f"make {locked_dir} writable" in result.stderr


@pytest.mark.root
def test_read_only_file_system(work: Path) -> None:
    """A tmpfs mounted read-only in a private mount namespace (the host sees nothing)."""
    mnt = work / "ro"
    mnt.mkdir()
    argv = launcher_argv(make_settings(mnt / "demo.pid"))
    script = f'mount -t tmpfs -o ro,mode=0755 tmpfs "{mnt}" && exec "$@"'
    result = run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *argv])
    assert result.returncode == EXIT_LOCK_ERROR, result.stderr
    assert f"lock directory {mnt} is on a read-only file system" in result.stderr
    assert "ReadWritePaths=" in result.stderr


def test_holder_of_an_ofd_lock_is_reported_as_unknown(lock: Path) -> None:
    """Open file description locks conflict with ours, but F_GETLK reports l_pid -1 for them."""
    code = (
        "import fcntl, os, struct, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)\n"
        "fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack('hhqqi4x', fcntl.F_WRLCK, 0, 0, 0, 0))\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n"
    )
    ofd_holder = start([DEBIAN_PYTHON, "-I", "-c", code, str(lock)])
    try:
        assert read_line(ofd_holder) == "locked\n"
        result = contend(lock)
        assert result.returncode == EXIT_ALREADY_RUNNING
        assert f"demo is already running (holder PID unknown) (lock {lock})" in result.stderr
    finally:
        stop(ofd_holder)


@pytest.mark.root
def test_holder_in_another_pid_namespace_is_reported_as_unknown(lock: Path) -> None:
    """F_GETLK reports l_pid 0 for a holder we cannot see; the message must not invent a PID."""
    proc = start_holder(lock)
    try:
        argv = ["unshare", "--pid", "--fork", "--mount-proc", *launcher_argv(make_settings(lock))]
        result = run(argv)
        assert result.returncode == EXIT_ALREADY_RUNNING, result.stderr
        assert f"demo is already running (holder PID unknown) (lock {lock})" in result.stderr
    finally:
        stop(proc)


@pytest.mark.root
def test_root_started_instance_leaves_the_file_to_the_directory_owner(work: Path) -> None:
    """Run by hand as root, the launcher must not leave a pid file the service user cannot open."""
    run_dir = work / "run"
    run_dir.mkdir()
    os.chown(run_dir, 65534, 65534)
    proc = start_holder(run_dir / "demo.pid", user="nobody")
    try:
        st = (run_dir / "demo.pid").stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (65534, 65534, 0o644)
    finally:
        stop(proc)


# ---------------------------------------------------------------------------------------------
# Run by hand or from cron as root, the lock path must not be steerable by another user: no
# symbolic link anywhere in it, every directory root's or the service user's, and a lock
# directory nobody else can write (issue 9, items 3 and 4).

NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def owned_dir(path: Path, uid: int = 0, mode: int = 0o755) -> Path:
    path.mkdir()
    os.chown(path, uid, uid)
    path.chmod(mode)
    return path


def symlinked_lock_directory(work: Path) -> tuple[Path, Path]:
    """work/x -> work/etc: root would create x.pid inside work/etc."""
    target = owned_dir(work / "etc")
    (work / "x").symlink_to(target)
    os.lchown(work / "x", NOBODY, NOBODY)  # made by the unprivileged user
    return work / "x" / "x.pid", target / "x.pid"


def symlinked_ancestor(work: Path) -> tuple[Path, Path]:
    """work/x -> work/etc, lock in work/x/demo/demo.pid: a link higher up the path."""
    target = owned_dir(work / "etc")
    owned_dir(target / "demo")
    (work / "x").symlink_to(target)
    return work / "x" / "demo" / "demo.pid", target / "demo" / "demo.pid"


def symlinked_lock_file_in_own_directory(work: Path) -> tuple[Path, Path]:
    """The service user's own directory, the lock file a link to a file elsewhere."""
    run_dir = owned_dir(work / "run", NOBODY)
    target = owned_dir(work / "etc", NOBODY) / "passwd"
    target.write_text("keep\n")
    os.chown(target, NOBODY, NOBODY)
    (run_dir / "demo.pid").symlink_to(target)
    return run_dir / "demo.pid", target


@pytest.mark.root
@pytest.mark.parametrize(
    ("make_paths", "as_user"),
    [
        pytest.param(symlinked_lock_directory, False, id="directory-link-root"),
        pytest.param(symlinked_lock_directory, True, id="directory-link-user"),
        pytest.param(symlinked_ancestor, False, id="ancestor-link-root"),
        pytest.param(symlinked_lock_file_in_own_directory, True, id="file-link-user"),
        pytest.param(symlinked_lock_file_in_own_directory, False, id="file-link-root"),
    ],
)
def test_symbolic_links_in_the_lock_path_are_refused_not_followed(
    work: Path, journal: Receiver, make_paths: object, as_user: bool
) -> None:
    assert callable(make_paths)
    work.chmod(0o755)
    Path(journal.env_value).chmod(0o777)  # nobody may send to it
    lock, target = make_paths(work)
    before = target.read_bytes() if target.exists() else None
    argv = launcher_argv(make_settings(lock, user="nobody"))
    result = run([*AS_NOBODY, *argv] if as_user else argv, env(UNITGEN_JOURNAL_SOCKET=journal.env_value))
    assert result.returncode == EXIT_LOCK_ERROR, result.stderr
    (entry,) = journal_entries(journal)
    assert "symbolic link" in entry["MESSAGE"], entry["MESSAGE"]
    assert entry["MESSAGE_ID"] == MESSAGE_ID_LOCK_ERROR
    assert (target.read_bytes() if target.exists() else None) == before, "the link was followed"


def systemd_dynamic_user_layout(work: Path, parent_mode: int = 0o755, target: str = "private/demo") -> Path:
    """What systemd makes for DynamicUser= with RuntimeDirectory=demo: run/private (root, 0700),
    run/private/demo (the dynamic UID) and the root-owned relative link run/demo -> private/demo."""
    run_dir = owned_dir(work / "run", mode=parent_mode)
    owned_dir(owned_dir(run_dir / "private", mode=0o700) / "demo", 61184)
    (run_dir / "demo").symlink_to(target)
    return run_dir / "demo" / "demo.pid"


@pytest.mark.root
def test_systemds_own_dynamic_user_link_is_followed(work: Path, journal: Receiver) -> None:
    work.chmod(0o755)
    lock = systemd_dynamic_user_layout(work)
    result = run(launcher_argv(make_settings(lock, argv=["/bin/true"])), env(UNITGEN_JOURNAL_SOCKET=journal.env_value))
    assert result.returncode == 0, result.stderr
    assert (work / "run/private/demo/demo.pid").is_file()


@pytest.mark.root
@pytest.mark.parametrize(
    ("parent_mode", "target", "link_owner"),
    [
        pytest.param(0o1777, "private/demo", 0, id="in-a-directory-others-can-write"),
        pytest.param(0o755, "private/demo", NOBODY, id="made-by-another-user"),
        pytest.param(0o755, "private/../private/demo", 0, id="climbing-with-dot-dot"),
    ],
)
def test_other_links_like_systemds_are_still_refused(
    work: Path, journal: Receiver, parent_mode: int, target: str, link_owner: int
) -> None:
    work.chmod(0o755)
    lock = systemd_dynamic_user_layout(work, parent_mode, target)
    os.lchown(lock.parent, link_owner, link_owner)
    result = run(launcher_argv(make_settings(lock, argv=["/bin/true"])), env(UNITGEN_JOURNAL_SOCKET=journal.env_value))
    assert result.returncode == EXIT_LOCK_ERROR, result.stderr
    (entry,) = journal_entries(journal)
    assert "symbolic link" in entry["MESSAGE"], entry["MESSAGE"]
    assert not (work / "run/private/demo/demo.pid").exists()


@pytest.mark.root
@pytest.mark.parametrize(
    ("user", "uid", "allowed"),
    [
        pytest.param(None, NOBODY, False, id="another-users-directory"),
        pytest.param("nobody", NOBODY, True, id="the-service-users-directory"),
        pytest.param(None, 61184, True, id="dynamic-user-directory"),
        pytest.param("nobody", 1234, False, id="not-the-service-user"),
    ],
)
def test_root_uses_only_directories_of_root_or_the_service_user(
    work: Path, user: str | None, uid: int, allowed: bool
) -> None:
    lock = owned_dir(work / "run", uid) / "demo.pid"
    result = run(launcher_argv(make_settings(lock, argv=["/bin/true"], user=user)))
    if allowed:
        assert result.returncode == 0, result.stderr
        assert lock.stat().st_uid == uid, "the lock file is handed to the directory's owner"
        return
    assert result.returncode == EXIT_LOCK_ERROR
    assert f"{lock.parent} (in lock path {lock}) belongs to " in result.stderr
    assert f"uid {uid}" in result.stderr and "not to root or the service user" in result.stderr
    assert not lock.exists()


def lock_as_nobody(lock: Path) -> subprocess.Popen[str]:
    """Another user creates the lock file first and holds a POSIX lock on it."""
    code = (
        "import fcntl, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)\n"
        "fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n"
    )
    return start([*AS_NOBODY, DEBIAN_PYTHON, "-I", "-c", code, str(lock)])


@pytest.mark.root
@pytest.mark.parametrize(
    ("mode", "who"),
    [
        pytest.param(0o777, "others", id="world-writable"),
        pytest.param(0o1777, "others", id="sticky-world-writable"),
        pytest.param(0o775, "its group", id="group-writable"),
    ],
)
def test_lock_directory_writable_by_others_is_refused(work: Path, journal: Receiver, mode: int, who: str) -> None:
    work.chmod(0o755)
    run_dir = owned_dir(work / "run", 0, mode)
    os.chown(run_dir, 0, NOBODY)  # for the group-writable case: nobody's group may write
    lock = run_dir / "demo.pid"
    squatter = lock_as_nobody(lock)
    try:
        assert read_line(squatter) == "locked\n"
        assert lock.stat().st_uid == NOBODY
        result = run(launcher_argv(make_settings(lock)), env(UNITGEN_JOURNAL_SOCKET=journal.env_value))
        assert result.returncode == EXIT_LOCK_ERROR, "another user's lock must not pass as 'already running'"
        (entry,) = journal_entries(journal)
        assert f"lock directory {run_dir} is writable by {who} (mode {mode:04o})" in entry["MESSAGE"]
        assert entry["PRIORITY"] == "3"
    finally:
        stop(squatter)


@pytest.mark.root
@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"argv": [DEBIAN_PYTHON, "-c", "import demoapp; demoapp.report_lock()"]}, id="exec-mode"),
        pytest.param({"mode": "python", "entry": "demoapp:report_lock"}, id="python-mode"),
    ],
)
def test_full_run_keeps_the_lock_and_runs_the_service_with_a_warning(
    work: Path, journal: Receiver, overrides: dict[str, object]
) -> None:
    """A full /run: the lock file is created and locked, but its PID cannot be written (issue 11.3).

    The lock is what keeps other instances out, so the service runs (it used to exit 73, "cannot
    be opened or locked", which was not what happened). A one-page tmpfs, filled, in a private
    mount namespace: the host sees nothing."""
    mnt = work / "run"
    mnt.mkdir()
    lock = mnt / "demo.pid"
    settings = make_settings(lock, **overrides)
    argv = launcher_argv(settings, isolated=settings["mode"] == "exec")
    script = (
        f'mount -t tmpfs -o size=4k,mode=0755 tmpfs "{mnt}" && '
        f'(dd if=/dev/zero of="{mnt}/fill" bs=4096 count=64 2>/dev/null; true) && exec "$@"'
    )
    environment = env(PYTHONPATH=APPS, DEMO_LOCK=str(lock), UNITGEN_JOURNAL_SOCKET=journal.env_value)
    result = run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *argv], environment)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "held ''\n", "the app runs holding the lock; the file names no one"
    (warning,) = journal_entries(journal)
    assert warning["PRIORITY"] == "4"
    assert warning["LOCK_PATH"] == str(lock)
    assert f"demo holds lock {lock} but could not write its PID into it (No space left on device)" in warning["MESSAGE"]
    assert "running anyway" in warning["MESSAGE"]
