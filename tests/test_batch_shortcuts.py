"""The shortcuts a batch render takes (issue 12: 500 specs in one process) give the answers of the
long way they replace: checked against that long way, value by value."""

from __future__ import annotations

from pathlib import Path

import pytest

from unitgen.errors import UnitgenError
from unitgen.spec.fields import longer_than, utf8_length
from unitgen.staging.tree import check_out_dir


@pytest.mark.parametrize(
    ("value", "limit"),
    [
        pytest.param("a" * 10, 10, id="ascii-at-limit"),
        pytest.param("a" * 11, 10, id="ascii-over"),
        pytest.param("\U0001f600" * 3, 12, id="4-byte-at-limit"),
        pytest.param("\U0001f600" * 3, 11, id="4-byte-over-by-one"),
        pytest.param("\u20ac" * 4, 12, id="3-byte-at-limit"),
        pytest.param("\u20ac" * 4 + "a", 12, id="3-byte-over"),
        pytest.param("\ud800" * 4, 11, id="surrogate-over"),
        pytest.param("", 0, id="empty"),
    ],
)
def test_longer_than_is_utf8_length_over_the_limit(value: str, limit: int) -> None:
    # Encoding is skipped only for values too short to exceed the limit at 4 bytes a character.
    assert longer_than(value, limit) == (utf8_length(value) > limit)


def test_the_working_directory_taken_as_resolved_is_still_protected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # check_out_dir skips realpath() for the working directory (getcwd(3) is resolved already),
    # also when the shell reached it through a symbolic link: it and its parents stay refused.
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    monkeypatch.chdir(tmp_path / "link")
    assert Path.cwd() == real  # getcwd(3): the link resolved
    with pytest.raises(UnitgenError, match="refusing to replace a directory that is "):
        check_out_dir(real, [Path.cwd()])
    with pytest.raises(UnitgenError, match="refusing to replace a directory that contains "):
        check_out_dir(tmp_path, [Path.cwd()])
    check_out_dir(real / "out", [Path.cwd()])  # below it is allowed, as before
