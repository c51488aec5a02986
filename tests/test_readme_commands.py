"""The README's first command, as a newcomer runs it, keeps working (the second one is this suite)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.root
def test_scripts_example_renders_packages_installs_and_starts_the_webapp() -> None:
    result = subprocess.run(
        [str(ROOT / "scripts/example")], cwd=ROOT, capture_output=True, text=True, check=False, timeout=900
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "systemd-analyze verify: clean" in out
    assert "dist/webapp_1.0.0-1_all.deb" in out and "dist/webapp-1.0.0-1.noarch.rpm" in out
    assert "after install: webapp.service is enabled and active (the package's scripts)" in out
    assert "GET http://127.0.0.1:8090/ -> 200 OK" in out
    assert "exit code 17 (expected 17: already running)" in out
