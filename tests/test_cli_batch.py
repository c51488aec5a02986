"""Batch forms: `unitgen render|check|package A B C` handle many services in one process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
EXAMPLES = ["hello", "quiet", "ticker"]


def unitgen(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "unitgen", *argv], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    for name in EXAMPLES:
        shutil.copy(ROOT / "examples" / name / f"{name}.toml", tmp_path / f"{name}.toml")
    return tmp_path


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_render_of_several_names_equals_one_render_each(specs: Path, tmp_path: Path) -> None:
    result = unitgen("render", *EXAMPLES, cwd=specs)
    assert result.returncode == 0, result.stderr
    for name in EXAMPLES:
        alone = tmp_path / "alone" / name
        single = unitgen("render", name, "--spec", str(specs / f"{name}.toml"), "--out", str(alone), cwd=specs)
        assert single.returncode == 0, single.stderr
        assert tree(specs / "build" / name) == tree(alone)


def test_one_bad_spec_among_several_writes_nothing(specs: Path) -> None:
    (specs / "quiet.toml").write_text('description = "x"\nexec = ["/bin/true"]\nbogus = 1\n')
    result = unitgen("render", *EXAMPLES, cwd=specs)
    assert result.returncode == 1
    assert "quiet.toml" in result.stderr and "bogus" in result.stderr
    assert not (specs / "build").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param(["--spec", "hello.toml"], "--spec names the files of one service", id="spec"),
        pytest.param(["--out", "elsewhere"], "--out names the files of one service", id="out"),
        pytest.param(["hello"], "named twice", id="duplicate"),
    ],
)
def test_options_for_one_service_are_refused_with_several(specs: Path, extra: list[str], message: str) -> None:
    result = unitgen("render", "hello", "quiet", *extra, cwd=specs)
    assert result.returncode == 1
    assert message in result.stderr
    assert not (specs / "build").exists() and not (specs / "elsewhere").exists()


def test_check_of_several_runs_verify_once(specs: Path) -> None:
    assert unitgen("render", *EXAMPLES, cwd=specs).returncode == 0
    result = unitgen("--debug", "check", *EXAMPLES, "--threshold", "9.9", cwd=specs)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in EXAMPLES:
        assert f"== {name}" in result.stdout
    commands = [line for line in result.stderr.splitlines() if line.startswith("+ systemd-analyze")]
    assert sum(" verify " in c for c in commands) == 1, commands
    assert sum(" security " in c for c in commands) == len(EXAMPLES), commands


def test_check_of_several_names_the_failing_one(specs: Path) -> None:
    assert unitgen("render", *EXAMPLES, cwd=specs).returncode == 0
    unit = specs / "build/quiet/usr/lib/systemd/system/quiet.service"
    unit.write_text(unit.read_text() + "NoSuchSetting=1\n")
    result = unitgen("check", *EXAMPLES, "--threshold", "9.9", cwd=specs)
    assert result.returncode == 1
    quiet = result.stdout.split("== quiet", 1)[1].split("== ", 1)[0]
    hello = result.stdout.split("== hello", 1)[1].split("== ", 1)[0]
    assert "NoSuchSetting" in quiet
    assert "verify: clean" in hello
    assert "ERROR systemd-analyze verify reports problems in the units of quiet" in result.stderr
