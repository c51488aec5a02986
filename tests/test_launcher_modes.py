"""exec mode and python mode: what runs, with which arguments, and how start-up failures are reported."""

from __future__ import annotations

import subprocess
import sysconfig
from pathlib import Path

import pytest

from tests.launcher_helpers import (
    DEBIAN_PYTHON,
    HELPERS,
    LAUNCHER_PY,
    Receiver,
    env,
    holder,
    journal_entries,
    launcher_argv,
    make_settings,
    read_line,
    rendered_launcher,
    run,
    start,
    stop,
    wait_for_holder,
)
from unitgen.launcher.runtime import EXIT_APP_ERROR, EXIT_CONFIG_ERROR, EXIT_USAGE, LOCK_FD_ENV

APPS = str(HELPERS / "apps")
PRINT_ARGV = [DEBIAN_PYTHON, "-c", "import os, sys; print(os.getpid(), *sys.argv[1:])"]


@pytest.mark.parametrize(
    ("args", "printed"),
    [
        pytest.param([], "a b", id="rendered-argv"),
        pytest.param(["c"], "a b c", id="extra-args-appended"),
        pytest.param(
            ["--", DEBIAN_PYTHON, "-c", "import os; print(os.getpid(), 'override')"], "override", id="override"
        ),
    ],
)
def test_exec_mode_command_line(work: Path, args: list[str], printed: str) -> None:
    settings = make_settings(work / "demo.pid", argv=[*PRINT_ARGV, "a", "b"])
    proc = start(launcher_argv(settings, *args))
    out, _ = proc.communicate(timeout=20)
    pid, _, words = out.strip().partition(" ")
    assert (proc.returncode, int(pid), words) == (0, proc.pid, printed)


def test_exec_mode_passes_only_the_lock_fd(work: Path) -> None:
    """The lock fd is inherited (and named); no other launcher fd leaks into the service."""
    code = (
        "import os\n"
        "def is_open(fd):\n"
        "    try:\n        os.fstat(fd)\n    except OSError:\n        return False\n    return True\n"
        f"print(os.environ['{LOCK_FD_ENV}'], *[fd for fd in range(1024) if is_open(fd)])\n"
    )
    settings = make_settings(work / "demo.pid", argv=[DEBIAN_PYTHON, "-c", code])
    result = run(launcher_argv(settings))
    lock_fd, *open_fds = result.stdout.split()
    assert result.returncode == 0
    assert open_fds == ["0", "1", "2", lock_fd]


@pytest.mark.parametrize(
    ("program", "why"),
    [
        pytest.param("no-such-program", "No such file or directory", id="missing"),
        pytest.param("not-executable", "Permission denied", id="not-executable"),
        pytest.param("no-such-command-on-path", "No such file or directory", id="path-lookup"),
    ],
)
def test_exec_failure_is_an_app_error_and_never_ready(work: Path, journal: Receiver, program: str, why: str) -> None:
    (work / "not-executable").write_text("#!/bin/sh\n")
    command = program if program == "no-such-command-on-path" else str(work / program)
    notify_socket = Receiver(work / "notify")
    try:
        settings = make_settings(work / "demo.pid", argv=[command])
        environment = env(UNITGEN_JOURNAL_SOCKET=journal.env_value, NOTIFY_SOCKET=notify_socket.env_value)
        result = run(launcher_argv(settings), environment)
        notified = notify_socket.drain()
    finally:
        notify_socket.close()
    assert result.returncode == EXIT_APP_ERROR
    (entry,) = journal_entries(journal)
    assert entry["PRIORITY"] == "3"
    assert entry["MESSAGE"] == f"demo cannot start: cannot execute {command}: {why}"
    if program != "no-such-command-on-path":  # found only by exec's PATH search, after READY=1
        assert not any("READY" in d.fields for d in notified)


def test_python_mode_runs_the_entry_in_the_main_thread_holding_the_lock(work: Path) -> None:
    lock = work / "demo.pid"
    settings = make_settings(lock, mode="python", entry="demoapp:sleep")
    proc = start(launcher_argv(settings, "--verbose", isolated=False), env(PYTHONPATH=APPS))
    try:
        assert read_line(proc).split() == ["started", str(proc.pid), "True", "demo", "--verbose"]
        wait_for_holder(lock, proc.pid)
        assert lock.read_text() == f"{proc.pid}\n"
    finally:
        stop(proc)


@pytest.mark.parametrize("code", [pytest.param(0, id="zero"), pytest.param(3, id="three")])
def test_python_mode_exit_status_is_the_entry_return_value(work: Path, code: int) -> None:
    settings = make_settings(work / "demo.pid", mode="python", entry="demoapp:exit_code")
    result = run(launcher_argv(settings, isolated=False), env(PYTHONPATH=APPS, DEMO_EXIT=str(code)))
    assert result.returncode == code
    assert holder(work / "demo.pid") is None


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        pytest.param("brokenapp:main", "ModuleNotFoundError: No module named 'not_installed_dependency", id="import"),
        pytest.param("no_such_app:main", "ModuleNotFoundError: No module named 'no_such_app'", id="missing"),
        pytest.param("demoapp:nope", "AttributeError", id="no-attribute"),
        pytest.param("demoapp:not_callable", "TypeError: demoapp:not_callable is not callable", id="not-callable"),
    ],
)
def test_python_mode_entry_that_cannot_be_loaded(work: Path, journal: Receiver, entry: str, why: str) -> None:
    settings = make_settings(work / "demo.pid", mode="python", entry=entry)
    environment = env(PYTHONPATH=APPS, UNITGEN_JOURNAL_SOCKET=journal.env_value)
    result = run(launcher_argv(settings, isolated=False), environment)
    assert result.returncode == EXIT_APP_ERROR
    (entry_fields,) = journal_entries(journal)
    assert entry_fields["PRIORITY"] == "3"
    assert entry_fields["PYTHON_ENTRY"] == entry
    assert why in entry_fields["MESSAGE"]
    assert "install the app into the environment of" in entry_fields["MESSAGE"]
    assert entry_fields["TRACEBACK"].startswith("Traceback (most recent call last):\n")  # a multi-line field


def test_rendered_launcher_is_isolated_from_pythonpath(work: Path) -> None:
    """-I in the shebang: PYTHONPATH cannot inject modules into the service's interpreter."""
    settings = make_settings(work / "demo.pid", mode="python", entry="demoapp:sleep")
    script = rendered_launcher(work, settings)
    result = run([str(script)], env(PYTHONPATH=APPS))
    assert result.returncode == EXIT_APP_ERROR
    assert "No module named 'demoapp'" in result.stderr and "runs with -I" in result.stderr


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        pytest.param({"mode": "fork"}, "mode must be exec or python", id="mode"),
        pytest.param({"argv": []}, "exec mode needs argv", id="no-argv"),
        pytest.param({"lock_file": "demo.pid"}, "lock_file must be an absolute path", id="relative-lock"),
        pytest.param({"ready": "tcp:http"}, "ready must be immediate, notify", id="ready"),
        pytest.param({"on_contention": "kill"}, "on_contention must be exit or wait", id="contention"),
        pytest.param({"wait_timeout_sec": -1}, "wait_timeout_sec must be a number >= 0", id="timeout"),
        pytest.param({"colour": "blue"}, "unknown ['colour']", id="unknown-key"),
    ],
)
def test_invalid_settings_are_a_config_error(work: Path, change: dict[str, object], problem: str) -> None:
    settings = {**make_settings(work / "demo.pid"), **change}
    result = run(launcher_argv(settings))  # type: ignore[arg-type]
    assert result.returncode == EXIT_CONFIG_ERROR
    assert problem in result.stderr
    assert not (work / "demo.pid").exists(), "nothing is locked with broken settings"


@pytest.mark.parametrize(
    "args",
    [pytest.param([], id="no-args"), pytest.param(["--settings", "{not json"], id="bad-json")],
)
def test_direct_run_usage_errors(args: list[str]) -> None:
    result = run([DEBIAN_PYTHON, "-I", str(LAUNCHER_PY), *args])
    assert result.returncode == EXIT_USAGE


def test_python_mode_finds_the_app_in_the_interpreters_site_packages(work: Path) -> None:
    """The stub runs `python -IS` (no site at start-up): python mode loads site itself before
    importing the app, so a venv's site-packages and its .pth files (editable installs) count."""
    venv = work / "venv"
    subprocess.run([DEBIAN_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = sysconfig.get_path("purelib", vars={"base": str(venv)})
    extra = work / "extra"
    extra.mkdir()
    (extra / "sitedapp.py").write_text("def main():\n    print('found via site', flush=True)\n")
    (Path(purelib) / "sitedapp.pth").write_text(f"{extra}\n")  # processed by site only
    settings = make_settings(work / "demo.pid", mode="python", entry="sitedapp:main")
    script = rendered_launcher(work, settings, python=str(venv / "bin" / "python"))
    result = run([str(script)])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "found via site\n"


# Not a Python app: Python would ignore SIGPIPE itself. awk prints the signals its process ignores.
IGNORED_SIGNALS = ["/usr/bin/awk", "/^SigIgn:/ { print $2 }", "/proc/self/status"]


@pytest.mark.parametrize(
    ("environment", "pipe_ignored"),
    [
        pytest.param({}, False, id="by-hand-or-cron"),
        pytest.param({"INVOCATION_ID": "0123456789abcdef0123456789abcdef"}, True, id="systemd-IgnoreSIGPIPE"),
    ],
)
def test_exec_mode_app_gets_the_signal_dispositions_it_would_have_without_python(
    work: Path, environment: dict[str, str], pipe_ignored: bool
) -> None:
    """Python ignores SIGPIPE and SIGXFSZ and exec keeps that: the app must not inherit it."""
    settings = make_settings(work / "demo.pid", argv=IGNORED_SIGNALS)
    result = run(launcher_argv(settings), env(**environment))
    ignored = int(result.stdout, 16)
    assert (result.returncode, bool(ignored & 1 << (13 - 1)), bool(ignored & 1 << (25 - 1))) == (0, pipe_ignored, False)


def test_exec_mode_pipeline_ends_quietly_when_its_reader_goes(work: Path) -> None:
    """`yes | head -n1` in an app run by hand: yes dies of SIGPIPE, no 'Broken pipe' error."""
    settings = make_settings(work / "demo.pid", argv=["/bin/sh", "-c", "yes | head -n1"])
    result = run(launcher_argv(settings))
    assert (result.returncode, result.stdout, result.stderr) == (0, "y\n", "")
