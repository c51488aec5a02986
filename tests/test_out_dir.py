"""`--out DIR` replaces only what unitgen wrote (issue 9.1): a real `unitgen` process, a scratch
directory, a fake HOME; everything that is refused is left exactly as it was."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from unitgen.package.files import collect
from unitgen.render.units import RenderedFile
from unitgen.staging.tree import MARKER, write_tree

SPEC = 'description = "demo"\nexec = ["/bin/true"]\n\n[package]\nversion = "1.0"\nmaintainer = "A <a@example.com>"\n'
UNIT = "usr/lib/systemd/system/demo.service"


ROOT = Path(__file__).parent.parent


def unitgen(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH: this checkout's unitgen, whatever the venv's editable install points at.
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "unitgen", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def snapshot(root: Path) -> dict[str, str]:
    """Every path under root with its type and content (or link target)."""
    seen = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            seen[rel] = "-> " + str(path.readlink())
        elif path.is_dir():
            seen[rel] = "dir"
        else:
            seen[rel] = path.read_text(errors="replace")
    return seen


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """tmp_path/home (the fake HOME, empty) and tmp_path/p with demo.toml and notes.txt."""
    (tmp_path / "home").mkdir()
    p = tmp_path / "p"
    p.mkdir()
    (p / "demo.toml").write_text(SPEC)
    (p / "notes.txt").write_text("keep\n")
    return p


def mkdirs(base: Path, *rels: str) -> None:
    for rel in rels:
        (base / rel).mkdir(parents=True, exist_ok=True)


def marked(base: Path, rel: str) -> None:
    mkdirs(base, rel)
    (base / rel / MARKER).write_text("unitgen\n")


def link_to(base: Path, make: Callable[[Path, str], None], name: str) -> None:
    """p/link -> p/NAME, a directory made by `make` (marked or empty): replaceable but for the link."""
    make(base, f"p/{name}")
    (base / "p/link").symlink_to(name)


# (set-up run in tmp_path, --out relative to tmp_path/p, the word the error must contain)
REFUSED = [
    pytest.param(lambda t: None, ".", "is ", id="cwd-with-the-spec"),
    pytest.param(lambda t: marked(t, "p"), ".", "is ", id="cwd-even-with-a-marker"),
    pytest.param(lambda t: None, "..", "contains", id="parent-of-cwd"),
    pytest.param(lambda t: None, "/", "is /", id="root"),
    pytest.param(lambda t: None, "../home", "is ", id="home-even-empty"),
    pytest.param(lambda t: marked(t, "home"), "../home", "is ", id="home-even-with-a-marker"),
    pytest.param(
        lambda t: (t / "p/keepme").mkdir() or (t / "p/keepme/data").write_text("mine\n"),
        "keepme",
        "did not write",
        id="non-empty-without-marker",
    ),
    pytest.param(
        lambda t: (t / "p/keepme").mkdir() or (t / "p/keepme/.hidden").write_text("mine\n"),
        "keepme",
        "did not write",
        id="only-a-hidden-file",
    ),
    pytest.param(lambda t: (t / "p/file").write_text("x\n"), "file", "not a directory", id="a-file"),
    pytest.param(lambda t: link_to(t, marked, "own"), "link", "symbolic link", id="symlink-to-own"),
    pytest.param(lambda t: link_to(t, mkdirs, "empty"), "link", "symbolic link", id="symlink-to-empty"),
    pytest.param(lambda t: (t / "p/link").symlink_to("gone"), "link", "symbolic link", id="dangling-symlink"),
]


COMMANDS = [
    pytest.param(["render"], id="render"),
    pytest.param(["package", "--dist", "../dist"], id="package"),
    # try checks for root first; the refusal comes before any sandbox is booted.
    pytest.param(["try"], id="try", marks=pytest.mark.root),
]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(("setup", "out", "word"), REFUSED)
def test_out_dir_that_is_not_unitgens_is_refused_and_untouched(
    project: Path, command: list[str], setup: Callable[[Path], object], out: str, word: str
) -> None:
    tmp = project.parent
    setup(tmp)
    before = snapshot(tmp)
    result = unitgen(command[0], "demo", "--out", out, *command[1:], cwd=project, home=tmp / "home")
    assert result.returncode == 1, result.stdout + result.stderr
    first, *rest = result.stderr.splitlines()
    assert first.startswith("ERROR --out ")
    assert word in first
    assert all(line.startswith("  hint:") for line in rest), result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(tmp) == before


def test_the_issue_reproduction_keeps_the_spec_and_notes(tmp_path: Path) -> None:
    p = tmp_path / "p"
    p.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    assert unitgen("init", "demo", cwd=p, home=home).returncode == 0
    (p / "notes.txt").write_text("keep\n")
    result = unitgen("render", "demo", "--out", ".", cwd=p, home=home)
    assert result.returncode == 1
    assert sorted(x.name for x in p.iterdir()) == ["demo.toml", "notes.txt"]
    assert (p / "notes.txt").read_text() == "keep\n"


def test_parent_of_the_spec_is_refused_even_with_a_marker(tmp_path: Path) -> None:
    marked(tmp_path, "specs")
    (tmp_path / "specs/x").mkdir()
    (tmp_path / "specs/x/demo.toml").write_text(SPEC)
    mkdirs(tmp_path, "work", "home")
    before = snapshot(tmp_path)
    result = unitgen(
        "render", "demo", "--spec", "../specs/x/demo.toml", "--out", "../specs", cwd=tmp_path / "work",
        home=tmp_path / "home",
    )  # fmt: skip
    assert result.returncode == 1
    assert "contains" in result.stderr and "demo.toml" in result.stderr
    assert snapshot(tmp_path) == before


def test_rerender_into_own_output_replaces_it(project: Path) -> None:
    home = project.parent / "home"
    assert unitgen("render", "demo", "--out", "stage", cwd=project, home=home).returncode == 0
    assert (project / "stage" / MARKER).is_file()
    (project / "stage/stale.txt").write_text("from before\n")
    result = unitgen("render", "demo", "--out", "stage", cwd=project, home=home)
    assert result.returncode == 0, result.stderr
    assert (project / "stage" / UNIT).is_file()
    assert not (project / "stage/stale.txt").exists()  # replaced whole, as the marker says
    assert sorted(x.name for x in project.iterdir()) == ["demo.toml", "notes.txt", "stage"]  # no temporaries


def test_an_existing_empty_directory_is_used(project: Path) -> None:
    (project / "empty").mkdir()
    result = unitgen("render", "demo", "--out", "empty", cwd=project, home=project.parent / "home")
    assert result.returncode == 0, result.stderr
    assert (project / "empty" / UNIT).is_file()
    assert (project / "empty" / MARKER).is_file()


def test_the_marker_is_not_packaged(tmp_path: Path) -> None:
    write_tree([RenderedFile(Path("usr/share/doc/x/README"), b"x")], tmp_path / "out")  # type: ignore[arg-type]
    assert (tmp_path / "out" / MARKER).is_file()
    paths = [e.path for e in collect(tmp_path / "out", epoch=0)]
    assert MARKER not in paths
    assert paths == ["usr", "usr/share", "usr/share/doc", "usr/share/doc/x", "usr/share/doc/x/README"]


def test_leftovers_of_a_killed_run_are_removed_by_the_next_run(project: Path) -> None:
    """Only our name pattern, marked or empty, real directories, not locked by a live run."""
    marked(project, ".stage.unitgen-killed1")  # a SIGKILLed build: marked, half-written
    (project / ".stage.unitgen-killed1/usr").mkdir()
    mkdirs(project, ".stage.unitgen-killed2")  # killed between mkdtemp and the marker
    marked(project, ".stage.unitgen-live")  # a concurrent run still building
    mkdirs(project, ".stage.unitgen-mine")  # the user's own, not ours
    (project / ".stage.unitgen-mine/data").write_text("mine\n")
    marked(project, "own")
    (project / ".stage.unitgen-link").symlink_to("own")
    fd = os.open(project / ".stage.unitgen-live", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        result = unitgen("render", "demo", "--out", "stage", cwd=project, home=project.parent / "home")
    finally:
        os.close(fd)
    assert result.returncode == 0, result.stderr
    assert sorted(x.name for x in project.glob(".stage.*")) == [
        ".stage.unitgen-link",
        ".stage.unitgen-live",
        ".stage.unitgen-mine",
    ]
    assert (project / ".stage.unitgen-mine/data").read_text() == "mine\n"
    assert (project / "own" / MARKER).is_file()
