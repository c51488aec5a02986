"""SIGTERM, SIGHUP and SIGINT stop `unitgen` cleanly, and a SIGKILLed run's leftovers are
removed by the next run (issue 11.11, the CLI part): real processes, real signals."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unitgen.staging.tree import MARKER

ROOT = Path(__file__).parent.parent
SPEC = 'description = "demo"\nexec = ["/bin/true"]\n\n[package]\nversion = "1.0"\nmaintainer = "A <a@example.com>"\n'

# An app whose in-tree build backend says when it has started, then waits until its parent
# (pip) is gone (30 s at most): a moment deep inside `package` (the staging tree half built,
# pip running) that the test can hit for sure.
SLOW_BACKEND = """\
import os, pathlib, time
def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    parent = os.getppid()
    pathlib.Path(os.environ["SLOW_BACKEND_STARTED"]).write_text(str(os.getpid()))
    deadline = time.monotonic() + 30
    while os.getppid() == parent and time.monotonic() < deadline:
        time.sleep(0.05)
    raise SystemExit(1)
"""
SLOW_PYPROJECT = """\
[build-system]
requires = []
build-backend = "slow_backend"
backend-path = ["."]

[project]
name = "slowapp"
version = "1.0"
"""


def start(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "unitgen", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def leftovers(project: Path) -> list[str]:
    """Temporary trees and half-written packages: what an interrupted run must not leave."""
    found = [p.name for p in project.glob(".stage.*")]
    found += [p.name for p in (project / "dist").glob(".*")] if (project / "dist").is_dir() else []
    return sorted(found)


def assert_stage_is_whole_or_absent(project: Path) -> None:
    stage = project / "stage"
    if stage.exists():
        assert (stage / MARKER).is_file()
        assert (stage / "usr/lib/systemd/system/demo.service").is_file()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "demo.toml").write_text(SPEC)
    return tmp_path


STOP_SIGNALS = [
    pytest.param(signal.SIGTERM, id="SIGTERM"),
    pytest.param(signal.SIGHUP, id="SIGHUP"),
    pytest.param(signal.SIGINT, id="SIGINT"),
]


@pytest.mark.parametrize("signum", STOP_SIGNALS)
def test_a_signal_during_the_app_build_cleans_up_and_exits_128_plus_n(project: Path, signum: int) -> None:
    app = project / "slowapp"
    app.mkdir()
    (app / "slow_backend.py").write_text(SLOW_BACKEND)
    (app / "pyproject.toml").write_text(SLOW_PYPROJECT)
    (project / "demo.toml").write_text(
        SPEC.replace('exec = ["/bin/true"]', 'entry = "slowapp:main"')
        + '\n[app]\nproject = "slowapp"\nno_index = true\nfind_links = ["wheels"]\n'
    )
    (project / "wheels").mkdir()  # offline: nothing to download, the backend is in the tree
    started = project / "backend-started"
    proc = start(project, "package", "demo", "--out", "stage", env={"SLOW_BACKEND_STARTED": str(started)})
    deadline = time.monotonic() + 60
    while not started.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the build backend never started"
        time.sleep(0.05)
    assert [p.name for p in project.glob(".stage.unitgen-*")], "the staging tree is being built"
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 128 + signum, stderr
    assert f"interrupted ({signal.Signals(signum).name})" in stderr
    assert "Traceback" not in stderr
    assert leftovers(project) == []
    assert not (project / "stage").exists()


def run_to_end(project: Path) -> float:
    began = time.monotonic()
    proc = start(project, "package", "demo", "--out", "stage", "--dist", "dist")
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    return time.monotonic() - began


@pytest.mark.parametrize("signum", [*STOP_SIGNALS, pytest.param(signal.SIGKILL, id="SIGKILL")])
def test_signals_at_random_moments_leave_nothing_behind(project: Path, signum: int) -> None:
    """A few runs per signal, each stopped at a random moment of a whole `package` run (the
    earliest ones land before unitgen has started, which must be harmless too). After SIGKILL,
    nothing can clean up: the next run must."""
    duration = run_to_end(project)  # also: re-packaging into our own output works
    rng = random.Random(signum)  # noqa: S311 - moments to interrupt at, not secrets
    for _ in range(4):
        proc = start(project, "package", "demo", "--out", "stage", "--dist", "dist")
        time.sleep(rng.uniform(0, duration))
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=30)
        # A SIGINT landing while the interpreter itself starts (site import) gets Python's own
        # report, before any unitgen code runs; a traceback through unitgen is never right.
        assert proc.returncode in (0, 1, -signum, 128 + signum) or "init_import_site" in stderr, stderr
        assert proc.returncode != 1 or "init_import_site" in stderr, stderr
        assert not re.search(r'File ".*/unitgen/', stderr), stderr
        if signum != signal.SIGKILL:
            assert leftovers(project) == []
        assert_stage_is_whole_or_absent(project)
    run_to_end(project)
    assert leftovers(project) == []
    assert_stage_is_whole_or_absent(project)
