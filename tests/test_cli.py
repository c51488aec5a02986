"""The command line as a user runs it: a real `unitgen` process in a scratch directory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from unitgen.cli import RAISE_INTERNAL_ERRORS as RAISE

ROOT = Path(__file__).parent.parent


def unitgen(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH: this checkout's unitgen, whatever the venv's editable install points at.
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "unitgen", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def test_init_render_check_from_scratch(tmp_path: Path) -> None:
    assert unitgen("init", "myservice", cwd=tmp_path).returncode == 0
    assert (tmp_path / "myservice.toml").is_file()

    rendered = unitgen("render", "myservice", cwd=tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    printed = rendered.stdout.split()
    assert str(tmp_path / "build/myservice/usr/lib/systemd/system/myservice.service") in printed
    assert all(Path(p).is_file() for p in printed)

    checked = unitgen("check", "myservice", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "systemd-analyze verify: clean" in checked.stdout
    assert "OK" in checked.stdout or "SAFE" in checked.stdout


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "svc.toml").write_text("mine\n")
    result = unitgen("init", "svc", cwd=tmp_path)
    assert result.returncode == 1
    assert "already exists" in result.stderr
    assert (tmp_path / "svc.toml").read_text() == "mine\n"


def test_render_honours_spec_and_out_options(tmp_path: Path) -> None:
    spec = tmp_path / "specs" / "other.toml"
    spec.parent.mkdir()
    spec.write_text('description = "x"\nexec = ["/bin/true"]\n')
    result = unitgen("render", "svc", "--spec", str(spec), "--out", "stage", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "stage/usr/lib/systemd/system/svc.service").is_file()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param(
            'description = "x"\nexec = ["/bin/true"]\nnetwrok = false\n',
            "svc.toml: netwrok: unknown key\n  hint: did you mean 'network'?",
            id="typo",
        ),
        pytest.param(
            'description = "x"\nexec = ["/bin/true"]\nready = "later"\n',
            "svc.toml: ready: 'later' is not a readiness condition",
            id="bad-value",
        ),
        pytest.param(
            'description = "x\\nExecStartPre=/bin/sh"\nexec = ["/bin/true"]\n',
            "svc.toml: description: contains the control character U+000A",
            id="injection",
        ),
        pytest.param("description = [\n", "svc.toml: not valid TOML", id="not-toml"),
    ],
)
def test_bad_spec_fails_clearly_and_writes_nothing(tmp_path: Path, spec: str, message: str) -> None:
    (tmp_path / "svc.toml").write_text(spec)
    result = unitgen("render", "svc", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("ERROR ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "build").exists()


def test_failed_render_keeps_the_previous_tree(tmp_path: Path) -> None:
    (tmp_path / "svc.toml").write_text('description = "x"\nexec = ["/bin/true"]\n')
    assert unitgen("render", "svc", cwd=tmp_path).returncode == 0
    unit = tmp_path / "build/svc/usr/lib/systemd/system/svc.service"
    before = unit.read_bytes()
    (tmp_path / "svc.toml").write_text('description = "x"\nexec = ["relative"]\n')
    assert unitgen("render", "svc", cwd=tmp_path).returncode == 1
    assert unit.read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "build").iterdir()) == ["svc"]


@pytest.mark.parametrize(
    ("hardening", "threshold", "limit"),
    [
        # The case: systemd calls the default's score (1.1-1.2) "OK"; that word must not
        # stand beside a failing score.
        pytest.param("", ["--threshold", "0.5"], "0.5", id="ok-by-systemd-over-ours"),
        pytest.param("[hardening]\nsystem_call_filter = false\n", [], "1.5", id="opt-out-over-default"),
    ],
)
def test_check_over_threshold_says_error_and_not_ok(
    tmp_path: Path, hardening: str, threshold: list[str], limit: str
) -> None:
    (tmp_path / "svc.toml").write_text(f'description = "x"\nexec = ["/bin/true"]\n{hardening}')
    assert unitgen("render", "svc", cwd=tmp_path).returncode == 0
    result = unitgen("check", "svc", *threshold, cwd=tmp_path)
    assert result.returncode == 1
    assert "systemd-analyze verify: clean" in result.stdout  # only the score fails
    line = next(x for x in result.stdout.splitlines() if x.startswith("systemd-analyze security:"))
    match = re.fullmatch(rf"systemd-analyze security: ([0-9.]+), over the threshold {limit}", line)
    assert match is not None, line
    assert float(match.group(1)) > float(limit)
    assert result.stderr.startswith(
        f"ERROR svc.service: exposure score {match.group(1)} is over the threshold {limit}\n"
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["--debug", "render", "svc"], id="before-the-command"),
        pytest.param(["render", "svc", "--debug"], id="after-the-command-as-the-readme-writes-it"),
        pytest.param(["render", "--debug", "svc"], id="between"),
    ],
)
def test_debug_is_accepted_before_and_after_the_command(tmp_path: Path, argv: list[str]) -> None:
    (tmp_path / "svc.toml").write_text('description = "x"\nexec = ["/bin/true"]\n')
    (tmp_path / "templates/units").mkdir(parents=True)
    (tmp_path / "templates/units/service.j2").write_text("{{ 1 // 0 }}\n")
    result = unitgen(*argv, "--templates", "templates", cwd=tmp_path, env={RAISE: "0"})
    assert result.returncode == 1
    assert "Traceback" in result.stderr  # --debug took effect: the crash shows where it was
    assert "ZeroDivisionError" in result.stderr


def test_templates_must_be_an_existing_directory(tmp_path: Path) -> None:
    (tmp_path / "svc.toml").write_text('description = "x"\nexec = ["/bin/true"]\n')
    (tmp_path / "file.j2").write_text("x\n")
    for templates in ("/nonexistent", "file.j2"):
        result = unitgen("render", "svc", "--templates", templates, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert f"argument --templates: '{templates}' is not a directory" in result.stderr
        assert not (tmp_path / "build").exists()


def test_an_internal_error_is_one_line_without_a_traceback(tmp_path: Path) -> None:
    """A real unexpected exception: a user template that divides by zero, which nothing in
    unitgen expects. Without --debug (and without the suite's raise switch) it is one line."""
    (tmp_path / "svc.toml").write_text('description = "x"\nexec = ["/bin/true"]\n')
    (tmp_path / "templates/units").mkdir(parents=True)
    (tmp_path / "templates/units/service.j2").write_text("{{ 1 // 0 }}\n")
    result = unitgen("render", "svc", "--templates", "templates", cwd=tmp_path, env={RAISE: "0"})
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "ERROR internal error: ZeroDivisionError: integer division or modulo by zero"
        " (a bug in unitgen; run with --debug for the traceback)"
    ]
    assert not (tmp_path / "build").exists()
    # The suite's switch (tests/conftest.py) turns the same crash into a traceback.
    raised = unitgen("render", "svc", "--templates", "templates", cwd=tmp_path)
    assert "Traceback" in raised.stderr
