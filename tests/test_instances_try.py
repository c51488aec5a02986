"""Issue 14: `unitgen try` of a template tries its first listed instance and names it, and of a
socket-activated service starts it under its socket."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_helpers import try_example
from unitgen.launcher.runtime import EXIT_ALREADY_RUNNING

pytestmark = pytest.mark.root


def test_try_a_template_names_the_instance(tmp_path: Path) -> None:
    out = try_example("pool", tmp_path).stdout
    assert "pool@a.service: active (running)" in out
    assert "lock:       /run/pool/a.pid: POSIX write lock held by PID" in out
    assert f"exit code {EXIT_ALREADY_RUNNING} (expected {EXIT_ALREADY_RUNNING}" in out
    assert "journal: pool@a is already running as PID" in out
    assert '"UNITGEN_INSTANCE": "a"' in out


def test_try_a_socket_activated_service(tmp_path: Path) -> None:
    result = try_example("echo", tmp_path)
    assert "echo.service: active (running)" in result.stdout
    assert "journal: echo is already running as PID" in result.stdout
