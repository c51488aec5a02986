"""Issue 11.9: the [app] paths are checked when the spec is loaded, relative to the spec file,
so `render` and `check` report a wrong path at once, not only `package` after a build."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from unitgen.spec import load_spec
from unitgen.spec.fields import SpecError

ROOT = Path(__file__).resolve().parent.parent
HEAD = 'description = "Web"\nentry = "web.app:main"\n[app]\n'


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A spec directory with a valid app project, a wheel, a lock file and a wheelhouse."""
    spec_dir = tmp_path / "svc"
    (spec_dir / "src").mkdir(parents=True)
    (spec_dir / "src" / "pyproject.toml").write_text("[project]\nname = 'web'\nversion = '1'\n")
    (spec_dir / "web-1-py3-none-any.whl").write_bytes(b"PK")
    (spec_dir / "requirements.txt").write_text("")
    (spec_dir / "wheelhouse").mkdir()
    (spec_dir / "notes.txt").write_text("")
    return spec_dir


def write_spec(spec_dir: Path, app: str) -> Path:
    path = spec_dir / "web.toml"
    path.write_text(HEAD + app, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("app", "key", "problem"),
    [
        pytest.param('project = "missing"', "app.project", "is not a directory", id="project-missing"),
        pytest.param('project = "notes.txt"', "app.project", "is not a directory", id="project-is-a-file"),
        pytest.param('project = "wheelhouse"', "app.project", "has no pyproject.toml", id="project-no-pyproject"),
        pytest.param('wheels = ["nope-1-py3-none-any.whl"]', "app.wheels[0]", "does not exist", id="wheel-missing"),
        pytest.param('wheels = ["notes.txt"]', "app.wheels[0]", "not a wheel", id="not-a-wheel"),
        pytest.param('project = "src"\nrequirements = "lock.txt"', "app.requirements", "not a file", id="no-lock"),
        pytest.param('project = "src"\nrequirements = "wheelhouse"', "app.requirements", "not a file", id="lock-dir"),
        pytest.param(
            'project = "src"\nfind_links = ["wheelhouse", "gone"]', "app.find_links[1]", "not a dir", id="links"
        ),
    ],
)
def test_bad_app_paths_are_reported_at_load(project: Path, app: str, key: str, problem: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(write_spec(project, app))
    assert caught.value.key == key
    assert problem in str(caught.value)
    assert str(project) in str(caught.value)  # the resolved path, so the user sees where it looked


def test_app_paths_are_relative_to_the_spec_file_not_the_working_directory(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = write_spec(project, 'project = "src"\nwheels = ["web-1-py3-none-any.whl"]\nfind_links = ["wheelhouse"]\n')
    monkeypatch.chdir(tmp_path)  # "src" does not exist here
    app = load_spec(spec.relative_to(tmp_path)).app
    assert app is not None
    assert app.project == str(project / "src")
    assert app.find_links == (str(project / "wheelhouse"),)


def test_render_reports_a_wrong_app_path_and_writes_nothing(project: Path) -> None:
    write_spec(project, 'project = "missing"\n')
    result = subprocess.run(
        [sys.executable, "-m", "unitgen", "render", "web", "--out", "out"],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "app.project" in result.stderr and "is not a directory" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "out").exists()
