"""`unitgen try` as a person runs it: a real process, a real sandboxed systemd, its output read."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from unitgen.launcher import EXIT_ALREADY_RUNNING, MESSAGE_ID_ALREADY_RUNNING
from unitgen.sandbox import Sandbox

ROOT = Path(__file__).parent.parent
pytestmark = pytest.mark.root


def unitgen(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "unitgen", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=300
    )


def sandboxes_left() -> list[str]:
    return [sb.name for sb in Sandbox.running()]


def test_try_shows_a_running_service_and_a_refused_second_instance(tmp_path: Path) -> None:
    spec = ROOT / "examples/hello/hello.toml"
    result = unitgen("try", "hello", "--spec", str(spec), "--out", str(tmp_path / "stage"), cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "hello.service: active (running)" in out
    assert "lock:       /run/hello/hello.pid: POSIX write lock held by PID" in out
    assert "GET http://127.0.0.1:8080/ -> 200 OK" in out
    assert f"exit code {EXIT_ALREADY_RUNNING} (expected {EXIT_ALREADY_RUNNING}" in out
    assert "journal: hello is already running as PID" in out
    assert f"journalctl MESSAGE_ID={MESSAGE_ID_ALREADY_RUNNING}" in out
    assert "security:   1." in out or "security:   0." in out


def test_try_fails_with_the_journal_when_the_service_does_not_come_up(tmp_path: Path) -> None:
    spec = tmp_path / "broken.toml"
    spec.write_text('description = "exits at once"\nexec = ["/bin/sh", "-c", "echo cannot start >&2; exit 3"]\n')
    result = unitgen("try", "broken", cwd=tmp_path)

    assert result.returncode == 1
    assert "Failed with result 'exit-code'" in result.stdout
    assert "cannot start" in result.stdout  # the journal lines that explain why
    assert "did not come up" in result.stdout


def test_try_keep_then_teardown(tmp_path: Path) -> None:
    spec = ROOT / "examples/quiet/quiet.toml"
    kept = unitgen("try", "quiet", "--spec", str(spec), "--keep", cwd=tmp_path)
    try:
        assert kept.returncode == 0, kept.stdout + kept.stderr
        assert "the sandbox keeps running" in kept.stdout
        assert "try-quiet" in sandboxes_left()
    finally:
        down = unitgen("try", "quiet", "--spec", str(spec), "--teardown", cwd=tmp_path)
    assert down.returncode == 0
    assert "tore down" in down.stdout
    assert "try-quiet" not in sandboxes_left()


def test_try_as_a_normal_user_says_root_is_needed_and_builds_nothing(tmp_path: Path) -> None:
    tmp_path.chmod(0o777)
    spec = ROOT / "examples/hello/hello.toml"
    # Debian's interpreter (it has jinja2), so the user needs no access to root's home.
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
         "/usr/bin/python3", "-m", "unitgen", "try", "hello", "--spec", str(spec)],
        cwd=tmp_path, capture_output=True, text=True, check=False, timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("ERROR a systemd sandbox needs root")
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_try_a_timer_job_shows_the_timer_and_skips_an_overlapping_run(tmp_path: Path) -> None:
    spec = ROOT / "examples/ticker/ticker.toml"
    result = unitgen("try", "ticker", "--spec", str(spec), "--out", str(tmp_path / "stage"), cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "ticker.timer: active, next run " in result.stdout
    assert "ticker.service: activating (start)" in result.stdout  # the run started now
    assert "lock:       /run/ticker/ticker.pid: POSIX write lock held by PID" in result.stdout
    assert f"exit code {EXIT_ALREADY_RUNNING} (expected" in result.stdout


EXAMPLES = sorted(p.name for p in (ROOT / "examples").iterdir() if (p / f"{p.name}.toml").is_file())


@pytest.mark.parametrize("example", EXAMPLES)
def test_try_succeeds_on_every_example(example: str, tmp_path: Path) -> None:
    spec = ROOT / "examples" / example / f"{example}.toml"
    result = unitgen("try", example, "--spec", str(spec), "--out", str(tmp_path / "stage"), cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "ERROR" not in result.stdout + result.stderr
    assert "journal: " in result.stdout  # the second instance's contention entry


QUICK_TIMER = '[timer]\non_calendar = "minutely"\n'
KINDS = [
    pytest.param(
        f'exec = ["/bin/true"]\n{QUICK_TIMER}', 0,
        ["last run:   finished, exit status 0 (result success)", "a stand-in process takes the lock",
         f"exit code {EXIT_ALREADY_RUNNING} (expected {EXIT_ALREADY_RUNNING}"],
        id="quick-timer-job",
    ),
    pytest.param(
        f'exec = ["/bin/sh", "-c", "echo run failed >&2; exit 3"]\n{QUICK_TIMER}', 1,
        ["last run:   finished, exit status 3 (result exit-code)", "run failed",
         "ERROR the run of kind.service failed"],
        id="failing-quick-timer-job",
    ),
    pytest.param(
        f'exec = ["/bin/true"]\non_contention = "wait"\n{QUICK_TIMER}', 0,
        ["last run:   finished, exit status 0", "still waiting after 2 s", "LOCK_CONTENTION_ACTION\": \"wait\""],
        id="quick-timer-job-wait-mode",
    ),
    pytest.param(
        'exec = ["/bin/sleep", "1000"]\non_contention = "wait"\n', 0,
        ["kind.service: active (running)", "still waiting after 2 s", "waiting for it to exit"],
        id="wait-mode-service",
    ),
    pytest.param(
        'exec = ["/bin/sleep", "1000"]\non_contention = "wait"\nwait_timeout = 1\n', 0,
        ["still waiting after 0.5 s", "waiting for it to exit"],
        id="wait-mode-service-with-wait-timeout",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("body", "code", "expected"), KINDS)
def test_try_judges_every_kind_by_what_happened(body: str, code: int, expected: list[str], tmp_path: Path) -> None:
    (tmp_path / "kind.toml").write_text(f'description = "one kind of service"\n{body}')
    started = time.monotonic()
    result = unitgen("try", "kind", "--timeout", "20", cwd=tmp_path)

    assert result.returncode == code, result.stdout + result.stderr
    for line in expected:
        assert line in result.stdout, result.stdout
    assert time.monotonic() - started < 30  # judged by the run, never by waiting for the calendar
