"""A publish removes old pool files by the names its indices give: never anything outside its pool."""

from __future__ import annotations

from pathlib import Path

import pytest

from unitgen.publish import apt
from unitgen.publish.pool import pool_file


@pytest.mark.parametrize(
    "name",
    ["../victim", "pool/../../victim", "/etc/passwd", "pool/./x.deb", "pool//x.deb", "pool", "dists/x", ""],
)
def test_names_outside_the_pool_are_not_ours(tmp_path: Path, name: str) -> None:
    assert pool_file(tmp_path, name, "pool") is None


def test_a_pool_name_is(tmp_path: Path) -> None:
    assert (
        pool_file(tmp_path, "pool/main/h/hello/hello_1.0_all.deb", "pool")
        == tmp_path / "pool/main/h/hello/hello_1.0_all.deb"
    )


def test_an_index_naming_a_file_outside_the_pool_removes_nothing(tmp_path: Path) -> None:
    repo, victim = tmp_path / "repo", tmp_path / "victim"
    (repo / "pool").mkdir(parents=True)
    victim.write_text("not the repository's\n")
    apt._remove_from_pool(repo, "../victim")  # what a planted or corrupted old index could name
    assert victim.read_text() == "not the repository's\n"
    own = repo / "pool/main/h/hello/hello_1.0_all.deb"
    own.parent.mkdir(parents=True)
    own.write_bytes(b"deb")
    apt._remove_from_pool(repo, "pool/main/h/hello/hello_1.0_all.deb")
    assert not own.exists() and not own.parent.exists()
