"""Where unitgen keeps compiled templates: only in a directory of its own user that nobody else can write."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from unitgen import resources

ROOT = Path(__file__).parent.parent
NOBODY = 65534


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    resources.bytecode_cache.cache_clear()
    yield tmp_path / "cache"
    resources.bytecode_cache.cache_clear()


def test_a_render_fills_the_cache_and_the_next_one_reads_it(cache_home: Path, tmp_path: Path) -> None:
    shutil.copy(ROOT / "examples/hello/hello.toml", tmp_path / "hello.toml")
    env = {**os.environ, "XDG_CACHE_HOME": str(cache_home), "PYTHONPATH": str(ROOT)}
    outputs = []
    for out in ("first", "second"):
        argv = [sys.executable, "-m", "unitgen", "render", "hello", "--out", out]
        subprocess.run(argv, cwd=tmp_path, env=env, check=True, capture_output=True)
        tree = tmp_path / out
        outputs.append({p.relative_to(tree): p.read_bytes() for p in tree.rglob("*") if p.is_file()})
    directory = cache_home / "unitgen/jinja"
    assert directory.stat().st_mode & 0o777 == 0o700
    assert len(list(directory.iterdir())) >= 4  # service, tmpfiles, README, launcher at least
    assert outputs[0] == outputs[1]  # the cached code renders the same bytes


def make_cache_dir(cache_home: Path, mode: int = 0o700, uid: int | None = None) -> Path:
    directory = cache_home / "unitgen/jinja"
    directory.mkdir(parents=True)
    directory.chmod(mode)
    if uid is not None:
        os.chown(directory, uid, uid)
    return directory


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777, 0o1777], ids=oct)
def test_a_cache_others_can_write_is_not_used(cache_home: Path, mode: int) -> None:
    make_cache_dir(cache_home, mode)
    assert resources.bytecode_cache() is None


@pytest.mark.root
def test_a_cache_of_another_user_is_not_used(cache_home: Path) -> None:
    make_cache_dir(cache_home, uid=NOBODY)
    assert resources.bytecode_cache() is None


def test_a_symbolic_link_in_place_of_the_cache_is_not_used(cache_home: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (cache_home / "unitgen").mkdir(parents=True)
    (cache_home / "unitgen/jinja").symlink_to(elsewhere)
    assert resources.bytecode_cache() is None


def test_an_unwritable_cache_home_only_costs_speed(cache_home: Path) -> None:
    cache_home.parent.mkdir(exist_ok=True)
    cache_home.write_text("not a directory\n")
    assert resources.bytecode_cache() is None
