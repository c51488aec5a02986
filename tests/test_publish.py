"""The apt repository `publish` writes, checked with the tools apt itself trusts: gpgv verifies the
signatures against the exported key, apt-ftparchive indexes the same pool for comparison, and the
hashes in Release are recomputed from the files. Real apt installing from it is in
tests/test_publish_apt.py (root, in the sandbox)."""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.test_package_helpers import make_info, make_staging
from tests.test_publish_helpers import TestKey, deb
from unitgen.errors import UnitgenError
from unitgen.package import build_deb
from unitgen.publish import GpgKey, publish
from unitgen.publish.debfile import compare_versions, parse_stanza, parse_stanzas
from unitgen.publish.signing import stop_agent
from unitgen.run import run

INDEX = "dists/stable/main/binary-amd64"




def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every path under `root` with its bytes (or a link's target): 'untouched' means equal snapshots."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = "-> " + str(path.readlink())
            elif path.is_file():
                out[rel] = path.read_bytes()
            else:
                out[rel] = "dir"
    return out


def release_hashes(release: str) -> dict[str, tuple[str, int]]:
    section = release.split("SHA256:\n", 1)[1]
    out = {}
    for line in section.splitlines():
        if not line.startswith(" "):
            break
        digest, size, name = line.split()
        out[name] = (digest, int(size))
    return out


def packages(repo: Path, index: str = INDEX) -> list[dict[str, str]]:
    return [parse_stanza(s) for s in parse_stanzas((repo / index / "Packages").read_text())]


def test_a_published_deb_is_indexed_signed_and_hashed_as_apt_checks_it(tmp_path: Path, signing_key: TestKey) -> None:
    package = deb(tmp_path, "1.0")
    repo = tmp_path / "repo"
    done = publish([package], repo, key=signing_key.key)

    assert (repo / "dists/stable").readlink() == Path(".stable.g1")  # the link the swap replaces
    [entry] = packages(repo)
    pooled = repo / entry["Filename"]
    assert entry["Filename"] == "pool/main/u/ugdemo/ugdemo_1.0-1_all.deb"
    assert pooled.read_bytes() == package.read_bytes()
    assert entry["SHA256"] == hashlib.sha256(package.read_bytes()).hexdigest()
    assert entry["Size"] == str(package.stat().st_size)
    # The same fields apt-ftparchive, Debian's own indexer, writes for the same pool.
    # (Not its extra SHA512: apt uses the strongest hash both sides have, SHA256.)
    theirs = parse_stanza(run(["apt-ftparchive", "packages", "pool"], cwd=repo).stdout)
    del theirs["SHA512"]
    assert entry == theirs
    # "all" packages go into every architecture's index; both compressed forms say the same.
    for index in (INDEX, "dists/stable/main/binary-arm64"):
        text = (repo / index / "Packages").read_bytes()
        assert gzip.decompress((repo / index / "Packages.gz").read_bytes()) == text
        assert lzma.decompress((repo / index / "Packages.xz").read_bytes()) == text
    release = (repo / "dists/stable/Release").read_text()
    fields = parse_stanza(release)
    assert (fields["Suite"], fields["Components"], fields["Architectures"]) == ("stable", "main", "amd64 arm64")
    assert fields["Acquire-By-Hash"] == "yes"
    for name, (digest, size) in release_hashes(release).items():
        data = (repo / "dists/stable" / name).read_bytes()
        assert (hashlib.sha256(data).hexdigest(), len(data)) == (digest, size), name
    # Both signatures verify with the exported key, as apt's gpgv does, and no other key does.
    keyring = repo / "key.gpg"
    run(["gpg", "--batch", "--yes", "--dearmor", "--output", keyring, repo / "key.asc"])
    assert keyring.read_bytes() == signing_key.keyring.read_bytes()
    run(["gpgv", "--keyring", keyring, repo / "dists/stable/InRelease"])
    run(["gpgv", "--keyring", keyring, repo / "dists/stable/Release.gpg", repo / "dists/stable/Release"])
    clearsigned = (repo / "dists/stable/InRelease").read_text()
    assert release.strip() in clearsigned
    assert done.client_lines()[-1] == f"deb [signed-by=/etc/apt/keyrings/unitgen-repo.asc] file:{repo} stable main"


def test_a_repository_signed_by_another_key_fails_gpgv(
    tmp_path: Path, signing_key: TestKey, other_key: TestKey
) -> None:
    repo = tmp_path / "repo"
    publish([deb(tmp_path, "1.0")], repo, key=other_key.key)
    result = run(["gpgv", "--keyring", signing_key.keyring, repo / "dists/stable/InRelease"], check=False)
    assert result.returncode != 0 and "public key" in result.stderr


def test_retention_keeps_the_newest_three_versions_in_deb_version_order(tmp_path: Path, signing_key: TestKey) -> None:
    repo = tmp_path / "repo"
    # Published out of order; 1.10 is newer than 1.9, 2.0~rc1 older than 2.0.
    done = [
        publish([deb(tmp_path, v)], repo, key=signing_key.key).apt for v in ("1.9", "1.10", "2.0~rc1", "1.2", "2.0")
    ]
    # 1.2, older than the three newest, is not added at all, and says so.
    assert done[3] is not None and done[3].superseded == ["pool/main/u/ugdemo/ugdemo_1.2-1_all.deb"]
    assert done[3].added == [] and done[3].generation == 3
    assert sorted(e["Version"] for e in packages(repo)) == ["1.10-1", "2.0-1", "2.0~rc1-1"]
    # Generations: the current one and the previous one (for clients mid-update), no more; the pool
    # keeps what either names: 1.9 until the next publish.
    assert sorted(p.name for p in (repo / "dists").iterdir()) == [".stable.g3", ".stable.g4", "stable"]
    pool = sorted(p.name for p in (repo / "pool/main/u/ugdemo").iterdir())
    assert pool == ["ugdemo_1.10-1_all.deb", "ugdemo_1.9-1_all.deb", "ugdemo_2.0-1_all.deb", "ugdemo_2.0~rc1-1_all.deb"]
    publish([deb(tmp_path, "2.1")], repo, key=signing_key.key)
    pool = sorted(p.name for p in (repo / "pool/main/u/ugdemo").iterdir())
    assert pool == ["ugdemo_1.10-1_all.deb", "ugdemo_2.0-1_all.deb", "ugdemo_2.0~rc1-1_all.deb", "ugdemo_2.1-1_all.deb"]


def test_keep_is_a_parameter(tmp_path: Path, signing_key: TestKey) -> None:
    repo = tmp_path / "repo"
    publish([deb(tmp_path, "1.0"), deb(tmp_path, "1.1")], repo, key=signing_key.key, keep=1)
    assert [e["Version"] for e in packages(repo)] == ["1.1-1"]
    assert not (repo / "pool/main/u/ugdemo/ugdemo_1.0-1_all.deb").exists()  # superseded: never copied


def test_publishing_the_same_package_again_changes_nothing(tmp_path: Path, signing_key: TestKey) -> None:
    repo = tmp_path / "repo"
    package = deb(tmp_path, "1.0")
    publish([package], repo, key=signing_key.key)
    before = snapshot(repo)
    done = publish([package, package], repo, key=signing_key.key)
    assert snapshot(repo) == before
    assert done.apt is not None and done.apt.unchanged == ["pool/main/u/ugdemo/ugdemo_1.0-1_all.deb"]
    assert done.apt.added == []


def test_a_client_holding_the_old_inrelease_finds_its_packages_by_hash_after_a_publish(
    tmp_path: Path, signing_key: TestKey
) -> None:
    repo = tmp_path / "repo"
    publish([deb(tmp_path, "1.0")], repo, key=signing_key.key)
    old = release_hashes((repo / "dists/stable/InRelease").read_text())
    publish([deb(tmp_path, "1.1")], repo, key=signing_key.key)
    for name in ("Packages", "Packages.gz", "Packages.xz"):
        digest, size = old[f"main/binary-amd64/{name}"]
        by_hash = repo / INDEX / "by-hash/SHA256" / digest
        assert by_hash.stat().st_size == size
        assert hashlib.sha256(by_hash.read_bytes()).hexdigest() == digest


def test_readers_during_publishes_always_see_a_consistent_index(tmp_path: Path, signing_key: TestKey) -> None:
    """A reader doing what apt does (InRelease, then the Packages it names, by hash) while publishes
    run: every read is consistent, no file is ever missing or half-written."""
    repo = tmp_path / "repo"
    debs = [deb(tmp_path, f"1.{i}") for i in range(8)]
    publish(debs[:1], repo, key=signing_key.key)
    stop = threading.Event()
    reads, problems = [0], []

    def reader() -> None:
        while not stop.is_set():
            try:
                release = (repo / "dists/stable/InRelease").read_text()
                digest, _ = release_hashes(release)["main/binary-amd64/Packages"]
                data = (repo / INDEX / "by-hash/SHA256" / digest).read_bytes()
                if hashlib.sha256(data).hexdigest() != digest:
                    problems.append("hash mismatch")
                for e in parse_stanzas(data.decode()):
                    if not (repo / parse_stanza(e)["Filename"]).is_file():
                        problems.append("pool file missing: " + parse_stanza(e)["Filename"])
                reads[0] += 1
            except (OSError, KeyError) as exc:
                problems.append(repr(exc))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for package in debs[1:]:
            publish([package], repo, key=signing_key.key, keep=2)
    finally:
        stop.set()
        thread.join()
    assert reads[0] > 10 and not problems, problems[:5]


def test_a_key_file_signs_without_touching_any_keyring(tmp_path: Path, signing_key: TestKey) -> None:
    secret = tmp_path / "secret.asc"
    exported = run(["gpg", "--batch", "--homedir", signing_key.home, "--armor",
                    "--export-secret-keys", signing_key.fingerprint]).stdout  # fmt: skip
    secret.write_text(exported)
    repo = tmp_path / "repo"
    publish([deb(tmp_path, "1.0")], repo, key=GpgKey(str(secret)))
    run(["gpgv", "--keyring", signing_key.keyring, repo / "dists/stable/InRelease"])
    assert not list(Path(tempfile.gettempdir()).glob("unitgen-gpg-*"))  # its throw-away home is gone


def _arch_deb(tmp: Path) -> list[Path]:
    return [deb(tmp, "1.0", architecture="s390x")]


def _clashing(tmp: Path) -> list[Path]:
    return [deb(tmp, "1.0", tag="-rebuilt")]  # same name, version, arch; other bytes


def _not_a_deb(tmp: Path) -> list[Path]:
    (tmp / "notes.deb").write_text("hello\n")
    return [tmp / "notes.deb"]


def _truncated(tmp: Path) -> list[Path]:
    whole = deb(tmp, "2.0").read_bytes()
    (tmp / "cut.deb").write_bytes(whole[:300])  # the ar headers, half the control archive
    return [tmp / "cut.deb"]


def _one_new_one_clashing(tmp: Path) -> list[Path]:
    return [deb(tmp, "2.0"), deb(tmp, "1.0", tag="-rebuilt")]


@pytest.mark.parametrize(
    ("make", "key", "message"),
    [
        pytest.param(_arch_deb, None, "architecture 's390x' is not one this repository publishes", id="arch"),
        pytest.param(_clashing, None, "ugdemo 1.0-1 (all) is already published with other contents", id="same-version"),
        pytest.param(_one_new_one_clashing, None, "is already published with other contents", id="one-bad-of-two"),
        pytest.param(_not_a_deb, None, "not a .deb (no ar archive)", id="not-a-deb"),
        pytest.param(_truncated, None, "cut.deb: its control archive is damaged", id="truncated-deb"),
        pytest.param(lambda t: [deb(t, "2.0")], "0000000000000000DEADBEEF", "no secret key in", id="missing-key"),
        pytest.param(lambda t: [deb(t, "2.0")], "/nonexistent/key.asc", "key file /nonexistent/key.asc: not found",
                     id="missing-key-file"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_leaves_the_repository_untouched(
    tmp_path: Path, signing_key: TestKey, make: object, key: str | None, message: str
) -> None:
    repo = tmp_path / "repo"
    publish([deb(tmp_path, "1.0")], repo, key=signing_key.key, architectures=("amd64",))
    before = snapshot(repo)
    inputs = make(tmp_path)  # type: ignore[operator]
    signer = GpgKey(key, signing_key.home) if key else signing_key.key
    with pytest.raises(UnitgenError) as caught:
        publish(inputs, repo, key=signer, architectures=("amd64",))
    assert message in caught.value.message
    assert "\n" not in caught.value.message
    assert snapshot(repo) == before


def test_a_directory_some_other_tool_made_is_refused(tmp_path: Path, signing_key: TestKey) -> None:
    repo = tmp_path / "repo"
    (repo / "dists/stable").mkdir(parents=True)
    (repo / "dists/stable/Release").write_text("Origin: reprepro\n")
    before = snapshot(repo)
    with pytest.raises(UnitgenError, match="was not written by unitgen publish"):
        publish([deb(tmp_path, "1.0")], repo, key=signing_key.key)
    assert snapshot(repo) == before


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        pytest.param("1.0", "1.0", 0, id="equal"),
        pytest.param("1.10", "1.9", 1, id="numeric"),
        pytest.param("1.0~rc1", "1.0", -1, id="tilde-before-release"),
        pytest.param("1.0~rc1", "1.0~", 1, id="tilde-tilde"),
        pytest.param("1:0.1", "2.0", 1, id="epoch"),
        pytest.param("1.0-2", "1.0-10", -1, id="revision"),
        pytest.param("1.0a", "1.0+", -1, id="letters-before-symbols"),
        pytest.param("1.0", "1.0.0", -1, id="shorter"),
        pytest.param("1.0-1", "1.0", 1, id="revision-vs-none"),
    ],
)
def test_versions_compare_as_dpkg_compares_them(a: str, b: str, expected: int) -> None:
    assert compare_versions(a, b) == expected
    words = {-1: "lt", 0: "eq", 1: "gt"}
    assert run(["dpkg", "--compare-versions", a, words[expected], b], check=False).returncode == 0


def test_a_key_that_cannot_sign_is_refused_before_anything_is_written(tmp_path: Path, signing_key: TestKey) -> None:
    home = tmp_path / "cert-only"
    home.mkdir(mode=0o700)
    run(["gpg", "--batch", "--homedir", home, "--passphrase", "", "--quick-gen-key", "c <c@example.org>",
         "ed25519", "cert", "never"])  # fmt: skip
    try:
        repo = tmp_path / "repo"
        publish([deb(tmp_path, "1.0")], repo, key=signing_key.key)
        before = snapshot(repo)
        with pytest.raises(UnitgenError, match="cannot sign"):
            publish([deb(tmp_path, "2.0")], repo, key=GpgKey("c@example.org", home))
        assert snapshot(repo) == before
    finally:
        stop_agent(home)


FULL_DISK = """
import sys
from pathlib import Path
from tests.test_publish import snapshot
from unitgen.errors import UnitgenError
from unitgen.publish import GpgKey, publish
repo, key, home, small, big = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5])
publish([small], repo, key=GpgKey(key, home))
before = snapshot(repo)
try:
    publish([big], repo, key=GpgKey(key, home))
except UnitgenError as exc:
    print(exc.message)
print("untouched" if snapshot(repo) == before else "CHANGED")
"""


@pytest.mark.root
def test_a_full_disk_midway_is_one_line_and_leaves_the_repository_as_it_was(
    tmp_path: Path, signing_key: TestKey
) -> None:
    """The repository on a 512 KiB tmpfs, mounted in a private mount namespace (unshare -m) so the
    host never sees it: the second package does not fit, its copy fails with ENOSPC midway."""
    small = deb(tmp_path, "1.0")
    staging = make_staging(tmp_path / "big-staging", "2.0")
    (staging / "usr/share/ugdemo").mkdir(parents=True)
    (staging / "usr/share/ugdemo/blob").write_bytes(os.urandom(1024 * 1024))  # incompressible
    big = build_deb(staging, make_info("2.0"), tmp_path / "big-dist")
    mount = tmp_path / "mnt"
    mount.mkdir()
    script = tmp_path / "full_disk.py"
    script.write_text(FULL_DISK)
    inner = [sys.executable, str(script), str(mount / "repo"), signing_key.fingerprint, str(signing_key.home),
             str(small), str(big)]  # fmt: skip
    result = run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                  'mount -t tmpfs -o size=512k tmpfs "$1" && shift && exec "$@"', "sh", mount, *inner],
                 env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})  # fmt: skip
    message, verdict = result.stdout.strip().splitlines()
    assert message.startswith(f"cannot write the repository {mount / 'repo'}: No space left on device"), message
    assert verdict == "untouched"
    assert not any(mount.iterdir())  # the tmpfs was private to that namespace


def test_an_architecture_specific_package_is_only_in_its_architectures_index(
    tmp_path: Path, signing_key: TestKey
) -> None:
    repo = tmp_path / "repo"
    publish([deb(tmp_path, "1.0", architecture="arm64"), deb(tmp_path, "1.0", tag="-amd64", name="other")],
            repo, key=signing_key.key)  # fmt: skip
    assert [e["Package"] for e in packages(repo, "dists/stable/main/binary-arm64")] == ["other", "ugdemo"]
    assert [e["Package"] for e in packages(repo)] == ["other"]  # amd64: the "all" one only


def test_a_second_component_keeps_the_first(tmp_path: Path, signing_key: TestKey) -> None:
    repo = tmp_path / "repo"
    publish([deb(tmp_path, "1.0")], repo, key=signing_key.key)
    publish([deb(tmp_path, "1.0", tag="-b", name="other")], repo, key=signing_key.key, component="contrib")
    release = (repo / "dists/stable/Release").read_text()
    assert parse_stanza(release)["Components"] == "contrib main"
    assert [e["Package"] for e in packages(repo)] == ["ugdemo"]
    assert [e["Filename"] for e in packages(repo, "dists/stable/contrib/binary-amd64")] == [
        "pool/contrib/o/other/other_1.0-1_all.deb"
    ]
    assert {"main/binary-amd64/Packages", "contrib/binary-amd64/Packages"} <= set(release_hashes(release))


def test_what_a_killed_publish_left_is_replaced_by_the_next(tmp_path: Path, signing_key: TestKey) -> None:
    repo = tmp_path / "repo"
    publish([deb(tmp_path, "1.0")], repo, key=signing_key.key)
    # As if killed mid-way: a half-written next generation, never linked; clients never saw it.
    (repo / "dists/.stable.g2/main").mkdir(parents=True)
    (repo / "dists/.stable.g2/Release").write_text("half")
    publish([deb(tmp_path, "1.1")], repo, key=signing_key.key)
    assert (repo / "dists/stable").readlink() == Path(".stable.g2")
    run(["gpgv", "--keyring", signing_key.keyring, repo / "dists/stable/InRelease"])
    assert sorted(e["Version"] for e in packages(repo)) == ["1.0-1", "1.1-1"]


def test_concurrent_publishes_to_one_repository_lose_nothing(tmp_path: Path, signing_key: TestKey) -> None:
    """Four publishers at once (the directory lock serialises them): every package is listed."""
    repo = tmp_path / "repo"
    debs = [deb(tmp_path, f"1.{i}") for i in range(4)]
    publish(debs[:1], repo, key=signing_key.key)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda d: publish([d], repo, key=signing_key.key, keep=5), debs[1:] + debs[:1]))
    assert sorted(e["Version"] for e in packages(repo)) == ["1.0-1", "1.1-1", "1.2-1", "1.3-1"]
    run(["gpgv", "--keyring", signing_key.keyring, repo / "dists/stable/InRelease"])
