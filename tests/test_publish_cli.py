"""`unitgen publish` and `unitgen package --sign` as a user runs them: real processes in scratch
directories, throw-away gpg keys, rpm with --dbpath in the test's directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from tests.test_publish_helpers import TestKey, deb
from unitgen.run import run

ROOT = Path(__file__).parent.parent
SCHEMA = json.loads((ROOT / "schemas/unitgen-output.schema.json").read_text())
HELLO = ROOT / "examples/hello/hello.toml"



def unitgen(*args: str | os.PathLike[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # Reproducible builds: the same spec gives the same .deb with --sign and without.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SOURCE_DATE_EPOCH": "1700000000"}
    return subprocess.run([sys.executable, "-m", "unitgen", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def test_publish_adds_the_packages_and_prints_the_lines_a_host_adds(tmp_path: Path, signing_key: TestKey) -> None:
    package = deb(tmp_path, "1.0")
    result = unitgen("publish", package, "--repo", "repo", "--sign", signing_key.fingerprint,
                     "--homedir", signing_key.home, "--url", "https://repo.example.com", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "apt: added: pool/main/u/ugdemo/ugdemo_1.0-1_all.deb"
    assert "deb [signed-by=/etc/apt/keyrings/unitgen-repo.asc] https://repo.example.com stable main" in result.stdout
    run(["gpgv", "--keyring", signing_key.keyring, tmp_path / "repo/dists/stable/InRelease"])
    again = unitgen("publish", package, "--repo", "repo", "--sign", signing_key.fingerprint,
                    "--homedir", signing_key.home, cwd=tmp_path)  # fmt: skip
    assert (
        again.returncode == 0
        and again.stdout.splitlines()[0] == "apt: unchanged: pool/main/u/ugdemo/ugdemo_1.0-1_all.deb"
    )


def test_publish_json_is_one_document_the_schema_describes(tmp_path: Path, signing_key: TestKey) -> None:
    result = unitgen("publish", deb(tmp_path, "1.0"), "--repo", "repo", "--sign", signing_key.fingerprint,
                     "--homedir", signing_key.home, "--json", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    assert doc["apt"]["added"] == ["pool/main/u/ugdemo/ugdemo_1.0-1_all.deb"]
    assert doc["apt"]["generation"] == 1 and "yum" not in doc
    assert doc["repo"] == str(tmp_path / "repo") and doc["url"] == f"file:{tmp_path / 'repo'}"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        pytest.param(["--sign", "DEADBEEF00000000"], 1, "ERROR signing key 'DEADBEEF00000000': no secret key in",
                     id="missing-key"),
        pytest.param(["--sign", "KEY", "--keep", "0"], 2, "'0' is not a number of versions", id="keep-0"),
        pytest.param(["--sign", "KEY", "--arch", "sparc"], 2, "invalid choice: 'sparc'", id="arch"),
        pytest.param([], 2, "the following arguments are required: --sign", id="no-key"),
    ],
)  # fmt: skip
def test_publish_refuses_with_one_line_and_writes_nothing(
    tmp_path: Path, signing_key: TestKey, args: list[str], code: int, message: str
) -> None:
    result = unitgen("publish", deb(tmp_path, "1.0"), "--repo", "repo", "--homedir", signing_key.home, *args,
                     cwd=tmp_path)  # fmt: skip
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert not (tmp_path / "repo").exists()


def test_package_sign_signs_the_rpm_and_leaves_the_deb(tmp_path: Path, signing_key: TestKey) -> None:
    result = unitgen("package", "hello", "--spec", HELLO, "--sign", signing_key.fingerprint,
                     "--homedir", signing_key.home, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    rpm = tmp_path / "dist/hello-1.0.0-1.noarch.rpm"
    assert result.stdout.split() == ["dist/hello_1.0.0-1_all.deb", "dist/hello-1.0.0-1.noarch.rpm"]
    db = tmp_path / "rpmdb"
    db.mkdir()
    run(["rpmkeys", "--dbpath", db, "--import", signing_key.public])
    check = run(["rpmkeys", "--dbpath", db, "--checksig", rpm])
    assert check.stdout.strip() == f"{rpm}: digests signatures OK"
    # Without --sign the same build gives an rpm with no signature, and the same .deb.
    unsigned = unitgen("package", "hello", "--spec", HELLO, "--dist", "plain", cwd=tmp_path)
    assert unsigned.returncode == 0, unsigned.stderr
    plain = run(["rpmkeys", "--dbpath", db, "--checksig", tmp_path / "plain/hello-1.0.0-1.noarch.rpm"])
    assert plain.stdout.strip().endswith("digests OK")
    deb_file = "hello_1.0.0-1_all.deb"
    assert (tmp_path / "dist" / deb_file).read_bytes() == (tmp_path / "plain" / deb_file).read_bytes()


def test_package_sign_with_a_missing_key_builds_nothing(tmp_path: Path, signing_key: TestKey) -> None:
    result = unitgen("package", "hello", "--spec", HELLO, "--sign", "0000000000000000DEADBEEF",
                     "--homedir", signing_key.home, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 1
    assert "no secret key in" in result.stderr
    assert not (tmp_path / "dist").exists() and not (tmp_path / "build").exists()


def test_the_cli_architectures_are_publishs() -> None:
    import unitgen.cli
    import unitgen.publish

    assert unitgen.cli.ARCHITECTURES == unitgen.publish.ARCHITECTURES
