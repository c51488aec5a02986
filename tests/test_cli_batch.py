"""Batch forms: `unitgen render|check|package A B C` handle many services in one process."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path, PurePosixPath

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


def inodes(path: Path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.lstat().st_ino for p in [path, *sorted(path.rglob("*"))]}


def modes(path: Path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.lstat().st_mode for p in [path, *sorted(path.rglob("*"))]}


def test_a_rerender_of_unchanged_specs_keeps_their_trees(specs: Path) -> None:
    """Same spec, same files: the tree already is what a replacement would write, so it stays
    (no 12 mkdir + 12 rmdir per service); --json still reports every file."""
    assert unitgen("render", *EXAMPLES, cwd=specs).returncode == 0
    before = {name: inodes(specs / "build" / name) for name in EXAMPLES}
    result = unitgen("render", *EXAMPLES, "--json", cwd=specs)
    assert result.returncode == 0, result.stderr
    assert {name: inodes(specs / "build" / name) for name in EXAMPLES} == before
    assert all(service["files"] for service in json.loads(result.stdout)["services"])
    assert sorted(p.name for p in (specs / "build").iterdir()) == sorted(EXAMPLES)  # no temporaries


LAUNCHER = "usr/libexec/hello/hello-launcher"
UNIT = "usr/lib/systemd/system/hello.service"


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda t: (t / UNIT).write_text("edited\n"), id="content"),
        pytest.param(lambda t: (t / UNIT).write_bytes((t / UNIT).read_bytes() + b"\n"), id="longer"),
        pytest.param(lambda t: (t / LAUNCHER).chmod(0o644), id="file-mode"),
        pytest.param(lambda t: (t / "usr/lib").chmod(0o700), id="directory-mode"),
        pytest.param(lambda t: t.chmod(0o700), id="root-mode"),
        pytest.param(lambda t: (t / "usr/extra.txt").write_text("mine\n"), id="extra-file"),
        pytest.param(lambda t: (t / "usr/lib/empty").mkdir(), id="extra-directory"),
        pytest.param(lambda t: (t / UNIT).unlink(), id="missing-file"),
        pytest.param(lambda t: (t / "usr/share").rename(t / "share"), id="moved-directory"),
        pytest.param(lambda t: (t / ".unitgen-output").write_text("marker, edited\n"), id="marker"),
        pytest.param(
            lambda t: ((t / UNIT).rename(t / "elsewhere"), (t / UNIT).symlink_to(t / "elsewhere")), id="symlink"
        ),
        pytest.param(lambda t: _fifo(t / UNIT), id="fifo"),
    ],
)
def test_a_changed_tree_is_replaced_whole(specs: Path, tmp_path: Path, change: Callable[[Path], object]) -> None:
    """Anything a fresh write would not leave (bytes, modes, entries, types) and the tree is
    replaced as before: afterwards it equals a fresh render, nothing of the change left."""
    assert unitgen("render", "hello", cwd=specs).returncode == 0
    fresh = tmp_path / "fresh"
    assert unitgen("render", "hello", "--out", str(fresh), cwd=specs).returncode == 0
    stage = specs / "build/hello"
    change(stage)
    result = unitgen("render", "hello", cwd=specs)
    assert result.returncode == 0, result.stderr
    assert tree(stage) == tree(fresh)
    assert modes(stage) == modes(fresh)
    assert sorted(p.name for p in (specs / "build").iterdir()) == ["hello"]


def test_a_batch_removes_the_leftovers_of_every_service(specs: Path) -> None:
    """build/ is listed once for the whole batch, and what a killed run left is still found for
    every service: the ones rendered after the first as well."""
    assert unitgen("render", *EXAMPLES, cwd=specs).returncode == 0
    for name in EXAMPLES:
        leftover = specs / "build" / f".{name}.unitgen-killed"
        (leftover / "usr").mkdir(parents=True)
        (leftover / ".unitgen-output").write_text("marker\n")
    result = unitgen("render", *EXAMPLES, cwd=specs)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (specs / "build").iterdir()) == sorted(EXAMPLES)


def test_a_leftover_made_between_two_writes_in_one_process_is_removed(tmp_path: Path) -> None:
    from unitgen.render.units import RenderedFile
    from unitgen.staging.tree import write_tree

    files = [RenderedFile(PurePosixPath("usr/share/doc/x/README"), b"x")]
    write_tree(files, tmp_path / "a")
    write_tree(files, tmp_path / "b")
    (tmp_path / ".b.unitgen-killed").mkdir()  # empty: killed before its marker
    write_tree([RenderedFile(PurePosixPath("usr/share/doc/x/README"), b"y")], tmp_path / "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


MODULES_AFTER = """
import sys
from unitgen.cli import main
code = main(sys.argv[1:])
print(" ".join(sorted(sys.modules)))
raise SystemExit(code)
"""


def test_a_deb_package_run_loads_no_code_it_does_not_use(specs: Path) -> None:
    """Imports are most of a small `unitgen package` (issue 12 item a): logging without --debug,
    the rpm writer for a .deb, ctypes (zstd, renameat2) when the staging tree stays, and
    importlib.resources (unitgen's files are read by path) stay unloaded."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-c", MODULES_AFTER, "package", "hello", "--format", "deb"]
    assert unitgen("package", "hello", "--format", "deb", cwd=specs).returncode == 0  # the tree, once
    result = subprocess.run(argv, cwd=specs, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    assert "unitgen.package.deb" in loaded  # it did build
    unused = {"logging", "unitgen.package.rpm", "unitgen.package.zstd", "ctypes", "unitgen.run", "importlib.resources"}
    assert loaded & unused == set()


def _choices(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_the_parser_set_up_for_one_command_equals_the_full_one() -> None:
    """Only the asked-for command's options are set up (a few ms of every run): its help, the
    list of commands and the top-level help are exactly those of the parser with every command."""
    from unitgen.cli import _parser

    full = _parser()
    names = list(_choices(full))
    assert {"init", "render", "check", "package", "completion"} <= set(names)
    for name in names:
        lazy = _parser(name)
        assert lazy.format_help() == full.format_help()
        assert list(_choices(lazy)) == names
        assert _choices(lazy)[name].format_help() == _choices(full)[name].format_help()
