"""Writing the package into --dist: never through a name someone else prepared there."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.test_package_helpers import make_info, make_staging
from unitgen.package import PackageInfo, build_deb, build_rpm

Builder = Callable[[Path, PackageInfo, Path], Path]
BUILDERS = [pytest.param(build_deb, id="deb"), pytest.param(build_rpm, id="rpm")]


@pytest.mark.parametrize("build", BUILDERS)
def test_a_planted_symlink_at_the_old_temporary_name_is_neither_followed_nor_removed(
    tmp_path: Path, build: Builder
) -> None:
    staging, dist, victim = make_staging(tmp_path / "staging"), tmp_path / "dist", tmp_path / "victim"
    victim.write_text("precious\n")
    dist.mkdir()
    target = build(staging, make_info(), tmp_path / "probe")  # learn the package's file name
    # The names the writers used to open with open("wb"), following whatever was there.
    planted = [dist / f".{target.name}.tmp", dist / f".{target.name}.tmp.x"]
    for link in planted:
        link.symlink_to(victim)
    built = build(staging, make_info(), dist)
    assert victim.read_text() == "precious\n"
    assert all(link.is_symlink() for link in planted)  # not ours: left alone
    assert built.read_bytes() == target.read_bytes()
    assert sorted(p.name for p in dist.iterdir()) == sorted([built.name, *(p.name for p in planted)])


@pytest.mark.parametrize("build", BUILDERS)
def test_the_package_is_readable_by_everyone_as_the_umask_allows(tmp_path: Path, build: Builder) -> None:
    old = os.umask(0o022)
    try:
        built = build(make_staging(tmp_path / "staging"), make_info(), tmp_path / "dist")
    finally:
        os.umask(old)
    assert built.stat().st_mode & 0o777 == 0o644
