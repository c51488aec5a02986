"""`unitgen try` as a person runs it: a real process, a real sandboxed systemd, its output read."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.cli_helpers import try_example
from unitgen.launcher.runtime import EXIT_ALREADY_RUNNING, MESSAGE_ID_ALREADY_RUNNING
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
    out = try_example("hello", tmp_path).stdout
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


def test_try_as_a_normal_user_says_root_is_needed_and_builds_nothing(tmp_path: Path, unitgen_for_anyone: Path) -> None:
    # The user reads a copy of the package and the spec: a checkout in a 0700 home is closed to them.
    lib = unitgen_for_anyone
    tmp_path.chmod(0o777)
    spec = lib / "hello.toml"  # not in tmp_path: pytest's base directory is 0700
    shutil.copyfile(ROOT / "examples/hello/hello.toml", spec)
    spec.chmod(0o644)
    # Debian's interpreter (it has jinja2), so the user needs no access to root's home.
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
         "/usr/bin/python3", "-m", "unitgen", "try", "hello", "--spec", str(spec)],
        cwd=tmp_path, capture_output=True, text=True, check=False, timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(lib)},
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("ERROR a systemd sandbox needs root")
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_try_a_timer_job_shows_the_timer_and_skips_an_overlapping_run(tmp_path: Path) -> None:
    result = try_example("ticker", tmp_path)
    assert "ticker.timer: active, next run " in result.stdout
    assert "ticker.service: activating (start)" in result.stdout  # the run started now
    assert "lock:       /run/ticker/ticker.pid: POSIX write lock held by PID" in result.stdout
    assert f"exit code {EXIT_ALREADY_RUNNING} (expected" in result.stdout


EXAMPLES = sorted(p.name for p in (ROOT / "examples").iterdir() if (p / f"{p.name}.toml").is_file())


@pytest.mark.parametrize("example", EXAMPLES)
def test_try_succeeds_on_every_example(example: str, tmp_path: Path) -> None:
    result = try_example(example, tmp_path)
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


# --- interrupted at a random moment: the next run's clean-up leaves nothing -------------------


def leftovers(name: str, pid: int) -> list[str]:
    """What a killed `unitgen try NAME` could leave on the host, after `Sandbox.clean_stale()`."""
    from unitgen.sandbox import CGROUP_PREFIX, RECORD_SUFFIX, STATE_ROOT
    from unitgen.sandbox.leftovers import sandbox_cgroups

    ours = sorted(str(p) for p in STATE_ROOT.glob(f"*try-{name}.*")) if STATE_ROOT.is_dir() else []
    recorded = {p.name.removesuffix(RECORD_SUFFIX).rsplit(".", 1)[1] for p in STATE_ROOT.glob(f"*{RECORD_SUFFIX}")}
    # Any sandbox cgroup (another test's included) must belong to a recorded sandbox.
    orphans = [str(c) for c in sandbox_cgroups() if c.name.removeprefix(CGROUP_PREFIX) not in recorded]
    mounts = [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(STATE_ROOT) in line]
    apps = [str(p) for p in Path(tempfile.gettempdir()).glob(f"unitgen-app-{pid}.*")]
    return ours + orphans + mounts + apps


SIGNALS = {"TERM": signal.SIGTERM, "HUP": signal.SIGHUP, "INT": signal.SIGINT, "KILL": signal.SIGKILL}
KILLS = [
    pytest.param(sig, example, seed, id=f"{sig}-{example}-{seed}")
    for sig in SIGNALS
    for example, seed in (("hello", 1), ("hello", 2), ("webapp", 3))
]


@pytest.mark.parametrize(("sig", "example", "seed"), KILLS)
def test_try_killed_at_a_random_moment_leaves_nothing_after_the_next_clean_up(
    sig: str, example: str, seed: int, tmp_path: Path
) -> None:
    name = f"{example}-{sig.lower()}-{seed}"
    shutil.copytree(ROOT / "examples" / example, tmp_path / "src")
    (tmp_path / "src" / f"{example}.toml").rename(tmp_path / "src" / f"{name}.toml")
    delay = random.Random(seed).uniform(  # noqa: S311 - a reproducible moment, not a secret
        0.0, 4.0 if example == "hello" else 8.0
    )
    with subprocess.Popen(
        [sys.executable, "-m", "unitgen", "try", name, "--out", str(tmp_path / "stage")],
        cwd=tmp_path / "src", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=default_signals,
    ) as proc:  # fmt: skip
        time.sleep(delay)
        proc.send_signal(SIGNALS[sig])
        _, err = proc.communicate(timeout=60)  # TERM, HUP and INT: try tears down and exits by itself
    # 0 or 1: it finished before the signal. 128 + N: the CLI turned the signal into an
    # interrupt, cleaned up and exited as a shell would report it (130 INT, 143 TERM, 129 HUP).
    # Killed by the signal itself: it came before the CLI's handler was installed (interpreter
    # start); what it left then is for clean_stale to find, like after a SIGKILL.
    assert proc.returncode in (0, 1, 128 + SIGNALS[sig], -SIGNALS[sig]), err
    assert "Traceback" not in err
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and group_alive(proc.pid):
        time.sleep(0.05)  # what it started (pip, nsenter) ends with it
    Sandbox.clean_stale()
    assert leftovers(name, proc.pid) == []


def default_signals() -> None:
    """As at a terminal: a shell's background job (or nohup) would start it with INT or HUP ignored."""
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
