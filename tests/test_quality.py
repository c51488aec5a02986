"""Lint and types are part of the test suite: ruff clean, mypy --strict clean, README current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from unitgen.spec.docs import END, START, reference

ROOT = Path(__file__).parent.parent


def tool(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, check=False)


def test_ruff_is_clean() -> None:
    result = tool("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean() -> None:
    result = tool("mypy")  # files and strictness come from pyproject.toml
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_spec_reference_is_generated_from_the_key_tables() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert START in readme and END in readme
    current = readme.split(START, 1)[1].split(END, 1)[0].strip()
    assert current == reference().strip(), "README.md is stale: run 'python -m unitgen.spec.docs'"
