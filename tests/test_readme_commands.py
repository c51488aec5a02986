"""The README's first command, as a newcomer runs it, keeps working (the second one is this suite)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def scripts_example(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "scripts/example"), *args], cwd=ROOT, capture_output=True, text=True, check=False, timeout=900
    )


@pytest.mark.root
def test_scripts_example_renders_packages_installs_and_starts_the_webapp() -> None:
    result = scripts_example()
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "systemd-analyze verify: clean" in out
    assert "dist/webapp_1.0.0-1_all.deb" in out and "dist/webapp-1.0.0-1.noarch.rpm" in out
    assert "after install: webapp.service is enabled and active (the package's scripts)" in out
    assert "GET http://127.0.0.1:8090/ -> 200 OK" in out
    assert "exit code 17 (expected 17: already running)" in out


@pytest.mark.root
@pytest.mark.parametrize(
    ("example", "shown"),
    [
        pytest.param("hello", "after install: hello.service is enabled and active", id="hello"),
        # No [package] table: the script tries the staging tree instead of a package.
        pytest.param("quiet", "no [package] table", id="quiet-without-package"),
        pytest.param("ticker", "after install: ticker.timer is enabled and active", id="ticker"),
    ],
)
def test_scripts_example_runs_every_other_example_the_readme_lists(example: str, shown: str) -> None:
    result = scripts_example(example)
    assert result.returncode == 0, result.stdout + result.stderr
    assert shown in result.stdout
    assert "exit code 17 (expected 17: already running)" in result.stdout


def test_scripts_example_names_the_examples_when_one_does_not_exist() -> None:
    result = scripts_example("nosuch")
    assert result.returncode == 1
    assert "no example called 'nosuch'" in result.stderr
    assert "hello" in result.stderr and "webapp" in result.stderr
