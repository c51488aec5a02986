"""The yum repository `publish` writes under REPO/rpm, checked with the tools dnf relies on: gpgv for
repomd.xml.asc, rpmkeys for the packages signed on their way into the pool, createrepo_c's own
metadata read back. rpm runs with --dbpath in the test's directory, never the host's database."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from tests.test_package_helpers import make_info, make_staging
from tests.test_publish import snapshot
from tests.test_publish_helpers import TestKey, deb
from unitgen.errors import UnitgenError
from unitgen.package import build_rpm
from unitgen.publish import publish
from unitgen.publish.rpmfile import rpmvercmp
from unitgen.run import run


def rpm(tmp: Path, version: str, *, tag: str = "", **overrides: object) -> Path:
    staging = make_staging(tmp / f"rpm-staging-{version}{tag}", version + tag)
    return build_rpm(staging, make_info(version, **overrides), tmp / f"rpm-dist-{version}{tag}")


def listed(repo: Path) -> list[str]:
    """The package paths the primary.xml that repomd.xml names lists, in order."""
    repomd = (repo / "rpm/repodata/repomd.xml").read_text()
    [href] = re.findall(r'<data type="primary">.*?<location href="([^"]+)"', repomd, re.DOTALL)
    primary = repo / "rpm" / href
    return re.findall(r'<location href="([^"]+)"', gzip.decompress(primary.read_bytes()).decode())


def test_published_rpms_are_signed_indexed_and_the_metadata_signed(tmp_path: Path, signing_key: TestKey) -> None:
    package = rpm(tmp_path, "1.0")
    repo = tmp_path / "repo"
    done = publish([package], repo, key=signing_key.key)

    assert (repo / "rpm/repodata").readlink() == Path(".repodata.g1")
    assert listed(repo) == ["Packages/ugdemo-1.0-1.noarch.rpm"]
    run(
        [
            "gpgv",
            "--keyring",
            signing_key.keyring,
            repo / "rpm/repodata/repomd.xml.asc",
            repo / "rpm/repodata/repomd.xml",
        ]
    )
    # The pool copy carries the repository's signature (gpgcheck=1); the input was unsigned.
    db = tmp_path / "rpmdb"
    db.mkdir()
    run(["rpmkeys", "--dbpath", db, "--import", repo / "key.asc"])
    check = run(["rpmkeys", "--dbpath", db, "--checksig", "-v", repo / "rpm/Packages/ugdemo-1.0-1.noarch.rpm"])
    assert "Header V4 EdDSA/SHA512 Signature" in check.stdout, check.stdout
    assert "Signature" not in run(["rpmkeys", "--dbpath", db, "--checksig", "-v", package]).stdout
    assert done.yum_repo_file() == (
        f"[unitgen-repo]\nname=unitgen-repo\nbaseurl=file:{repo}/rpm\nenabled=1\n"
        f"gpgcheck=1\nrepo_gpgcheck=1\ngpgkey=file:{repo}/key.asc\n"
    )


def test_debs_and_rpms_in_one_publish_share_the_key(tmp_path: Path, signing_key: TestKey) -> None:
    repo = tmp_path / "repo"
    done = publish([deb(tmp_path, "1.0"), rpm(tmp_path, "1.0")], repo, key=signing_key.key)
    assert done.apt is not None and done.apt.added == ["pool/main/u/ugdemo/ugdemo_1.0-1_all.deb"]
    assert done.yum is not None and done.yum.added == ["Packages/ugdemo-1.0-1.noarch.rpm"]
    assert sorted(p.name for p in repo.iterdir()) == ["dists", "key.asc", "pool", "rpm"]
    assert any(line.startswith("deb [signed-by=") for line in done.client_lines())
    assert "repo_gpgcheck=1" in done.client_lines()


def test_retention_keeps_the_newest_three_in_rpm_version_order(tmp_path: Path, signing_key: TestKey) -> None:
    repo = tmp_path / "repo"
    for version in ("1.9", "1.10", "2.0~rc1", "2.0", "2.0.1"):
        publish([rpm(tmp_path, version)], repo, key=signing_key.key)
    assert sorted(listed(repo)) == [
        "Packages/ugdemo-2.0-1.noarch.rpm",
        "Packages/ugdemo-2.0.1-1.noarch.rpm",
        "Packages/ugdemo-2.0~rc1-1.noarch.rpm",
    ]
    # 1.10 left the metadata now and stays in the pool until the next publish (clients mid-update).
    assert (repo / "rpm/Packages/ugdemo-1.10-1.noarch.rpm").exists()
    assert not (repo / "rpm/Packages/ugdemo-1.9-1.noarch.rpm").exists()
    assert sorted(p.name for p in (repo / "rpm").glob(".repodata.g*")) == [".repodata.g4", ".repodata.g5"]


def test_a_client_holding_the_old_repomd_still_finds_its_metadata(tmp_path: Path, signing_key: TestKey) -> None:
    repo = tmp_path / "repo"
    publish([rpm(tmp_path, "1.0")], repo, key=signing_key.key)
    old = re.findall(r'href="(repodata/[^"]+)"', (repo / "rpm/repodata/repomd.xml").read_text())
    publish([rpm(tmp_path, "1.1")], repo, key=signing_key.key)
    assert len(old) == 3 and all((repo / "rpm" / href).is_file() for href in old)


def test_publishing_the_same_rpm_again_changes_nothing(tmp_path: Path, signing_key: TestKey) -> None:
    repo = tmp_path / "repo"
    package = rpm(tmp_path, "1.0")
    publish([package], repo, key=signing_key.key)
    before = snapshot(repo)
    done = publish([package], repo, key=signing_key.key)
    assert snapshot(repo) == before
    assert done.yum is not None and done.yum.unchanged == ["Packages/ugdemo-1.0-1.noarch.rpm"]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        pytest.param(lambda t: [rpm(t, "1.0", architecture="s390x")],
                     "architecture 's390x' is not one this repository publishes", id="arch"),
        pytest.param(lambda t: [rpm(t, "1.0", tag="-rebuilt")],
                     "ugdemo 1.0-1 (noarch) is already published with other contents", id="same-version"),
        pytest.param(lambda t: [deb(t, "2.0"), rpm(t, "1.0", tag="-rebuilt")],
                     "is already published with other contents", id="good-deb-bad-rpm"),
        pytest.param(lambda t: [rpm(t, "2.0"), deb(t, "1.0", tag="-rebuilt")],
                     "is already published with other contents", id="good-rpm-bad-deb"),
    ],
)  # fmt: skip
def test_bad_input_leaves_both_repositories_untouched(
    tmp_path: Path, signing_key: TestKey, inputs: object, message: str
) -> None:
    repo = tmp_path / "repo"
    publish([deb(tmp_path, "1.0"), rpm(tmp_path, "1.0")], repo, key=signing_key.key, architectures=("amd64",))
    before = snapshot(repo)
    with pytest.raises(UnitgenError) as caught:
        publish(inputs(tmp_path), repo, key=signing_key.key, architectures=("amd64",))  # type: ignore[operator]
    assert message in caught.value.message and "\n" not in caught.value.message
    assert snapshot(repo) == before


def test_a_repodata_some_other_tool_made_is_refused(tmp_path: Path, signing_key: TestKey) -> None:
    repo = tmp_path / "repo"
    (repo / "rpm").mkdir(parents=True)
    run(["createrepo_c", "--quiet", repo / "rpm"])
    before = snapshot(repo)
    with pytest.raises(UnitgenError, match="was not written by unitgen publish"):
        publish([rpm(tmp_path, "1.0")], repo, key=signing_key.key)
    assert snapshot(repo) == before


def test_a_refused_first_publish_leaves_no_directory(tmp_path: Path, signing_key: TestKey) -> None:
    with pytest.raises(UnitgenError, match="architecture"):
        publish([rpm(tmp_path, "1.0", architecture="s390x")], tmp_path / "new", key=signing_key.key)
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        pytest.param("1.0", "1.0", 0, id="equal"),
        pytest.param("1.10", "1.9", 1, id="numeric"),
        pytest.param("2.0~rc1", "2.0", -1, id="tilde"),
        pytest.param("2.0^post1", "2.0", 1, id="caret-after"),
        pytest.param("2.0^post1", "2.0.1", -1, id="caret-before-more"),
        pytest.param("1.0a", "1.0", 1, id="letters-longer"),
        pytest.param("1.a", "1.1", -1, id="letters-before-digits"),
        pytest.param("1_0", "1.0", 0, id="separators"),
        pytest.param("001", "1", 0, id="leading-zeros"),
    ],
)
def test_versions_compare_as_rpm_compares_them(a: str, b: str, expected: int) -> None:
    assert rpmvercmp(a, b) == expected
    assert run(["rpm", "--eval", f"%{{lua: print(rpm.vercmp('{a}', '{b}'))}}"]).stdout.strip() == str(expected)
