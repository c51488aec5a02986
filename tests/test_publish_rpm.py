"""`add_signature` (`package --sign`): rpm's own verifier accepts the signed package once the public
key is imported, and refuses it without the key or with a changed byte. rpm runs with --dbpath in
the test's temporary directory, never the host's rpm database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_package_helpers import make_info, make_staging
from tests.test_publish_helpers import TestKey, make_key
from unitgen.errors import UnitgenError
from unitgen.package import build_rpm
from unitgen.package.rpm import add_signature
from unitgen.publish import GpgKey
from unitgen.publish.signing import stop_agent
from unitgen.run import run


@pytest.fixture(scope="module", params=[pytest.param("rsa3072", id="rsa"), pytest.param("ed25519", id="eddsa")])
def key(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestKey]:
    made = make_key(tmp_path_factory.mktemp("gpg") / "home", algo=request.param)
    yield made
    stop_agent(made.home)


@pytest.fixture
def rpm(tmp_path: Path) -> Path:
    return build_rpm(make_staging(tmp_path / "staging"), make_info(), tmp_path / "dist")


def checksig(package: Path, db: Path) -> tuple[int, str]:
    result = run(["rpmkeys", "--dbpath", db, "--checksig", "-v", package], check=False)
    return result.returncode, result.stdout + result.stderr


def sign(package: Path, key: TestKey) -> None:
    with key.key.opened() as signer:
        add_signature(package, signer)


def imported(tmp_path: Path, key: TestKey) -> Path:
    db = tmp_path / "rpmdb"
    db.mkdir()
    run(["rpmkeys", "--dbpath", db, "--import", key.public])
    return db


def test_a_signed_rpm_verifies_with_the_imported_key_over_header_and_payload(
    rpm: Path, key: TestKey, tmp_path: Path
) -> None:
    unsigned = rpm.read_bytes()
    sign(rpm, key)
    code, output = checksig(rpm, imported(tmp_path, key))
    algo = {"rsa3072": "RSA", "ed25519": "EdDSA"}[key.algo]  # rpm's names; RSA and EdDSA use other tags
    assert code == 0, output
    # Both signatures, each checked by rpm: over the header, and the v3-style over header+payload.
    assert f"Header V4 {algo}/SHA512 Signature, key ID {key.fingerprint[-8:].lower()}: OK" in output, output
    assert f"    V4 {algo}/SHA512 Signature, key ID {key.fingerprint[-8:].lower()}: OK" in output, output
    # The payload and main header are untouched: only the signature header grew.
    magic = b"\x8e\xad\xe8\x01\0\0\0\0"  # the second one starts the main header
    main_and_payload = unsigned[unsigned.index(magic, 97) :]
    assert rpm.read_bytes().endswith(main_and_payload)
    assert len(rpm.read_bytes()) > len(unsigned) + 100
    # And rpm still reads it as the same package.
    query = run(["rpm", "--dbpath", tmp_path / "rpmdb", "-qp", "--qf", "%{NAME}-%{VERSION}-%{RELEASE}", rpm])
    assert query.stdout == "ugdemo-1.0-1"


def test_without_the_key_rpm_says_nokey(rpm: Path, key: TestKey, tmp_path: Path) -> None:
    sign(rpm, key)
    (tmp_path / "empty-db").mkdir()
    code, output = checksig(rpm, tmp_path / "empty-db")
    assert code != 0 and "NOKEY" in output, output


@pytest.mark.parametrize(
    "where",
    [pytest.param(-5000, id="payload"), pytest.param(-1, id="payload-end"), pytest.param("header", id="header")],
)
def test_a_changed_byte_fails_the_check(rpm: Path, key: TestKey, tmp_path: Path, where: int | str) -> None:
    sign(rpm, key)
    data = bytearray(rpm.read_bytes())
    offset = data.index(b"Example service used by the packaging tests") if where == "header" else int(where)
    data[offset] ^= 0x01
    rpm.write_bytes(bytes(data))
    code, output = checksig(rpm, imported(tmp_path, key))
    assert code != 0 and ("BAD" in output or "DIGEST" in output.upper()), output


def test_signing_twice_replaces_the_signature(rpm: Path, key: TestKey, tmp_path: Path) -> None:
    sign(rpm, key)
    size = rpm.stat().st_size
    sign(rpm, key)
    code, output = checksig(rpm, imported(tmp_path, key))
    assert code == 0, output
    assert output.count("Signature, key ID") == 2, output
    assert abs(rpm.stat().st_size - size) < 16  # replaced, not added (EdDSA/RSA sizes vary by a byte)


def test_a_missing_key_is_refused_and_the_package_left_as_it_was(rpm: Path, key: TestKey) -> None:
    before = rpm.read_bytes()
    missing = GpgKey("0000000000000000DEADBEEF", key.home)
    with pytest.raises(UnitgenError, match="no secret key in"), missing.opened() as signer:
        add_signature(rpm, signer)
    assert rpm.read_bytes() == before


def test_a_file_that_is_not_an_rpm_is_refused(tmp_path: Path, key: TestKey) -> None:
    fake = tmp_path / "fake.rpm"
    fake.write_bytes(b"\0" * 200)
    with pytest.raises(UnitgenError, match="not an rpm package"):
        sign(fake, key)
    assert fake.read_bytes() == b"\0" * 200
