"""Issue 14: `unitgen try` of a template tries its first listed instance and names it, and of a
socket-activated service starts it under its socket."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from unitgen.launcher.runtime import EXIT_ALREADY_RUNNING

ROOT = Path(__file__).parent.parent
pytestmark = pytest.mark.root


def unitgen(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "unitgen", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=300
    )


def test_try_a_template_names_the_instance(tmp_path: Path) -> None:
    spec = ROOT / "examples/pool/pool.toml"
    result = unitgen("try", "pool", "--spec", str(spec), "--out", str(tmp_path / "stage"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "pool@a.service: active (running)" in out
    assert "lock:       /run/pool/a.pid: POSIX write lock held by PID" in out
    assert f"exit code {EXIT_ALREADY_RUNNING} (expected {EXIT_ALREADY_RUNNING}" in out
    assert "journal: pool@a is already running as PID" in out
    assert '"UNITGEN_INSTANCE": "a"' in out


def test_try_a_socket_activated_service(tmp_path: Path) -> None:
    spec = ROOT / "examples/echo/echo.toml"
    result = unitgen("try", "echo", "--spec", str(spec), "--out", str(tmp_path / "stage"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "echo.service: active (running)" in result.stdout
    assert "journal: echo is already running as PID" in result.stdout
