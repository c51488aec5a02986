"""Real dnf against the yum repository `publish` wrote, inside a sandboxed systemd, with
gpgcheck=1 and repo_gpgcheck=1 (the .repo file `publish` prints).

Debian's dnf keeps its own rpm database, which knows nothing of the dpkg-installed system, so
each sandbox first records (rpm --justdb) a stub package that provides what the hello package
requires (/bin/sh, python3): dnf then resolves and installs the real package, runs its
scriptlets and starts the service as on RHEL. dnf reads only the test's repository directory
(reposdir=), never the network.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_publish_helpers import TestKey, hello_versions
from unitgen.package import build_rpm
from unitgen.publish import publish
from unitgen.run import run
from unitgen.sandbox import Sandbox

pytestmark = pytest.mark.root

REPO = "/srv/repo"
URL = f"file://{REPO}"
REPOS_D = "/etc/unitgen-test.repos.d"
STUB = """\
Name: debian-host-provides
Version: 1
Release: 1
Summary: what the dpkg-installed host provides, for dnf's separate rpm database
License: MIT
BuildArch: noarch
Provides: /bin/sh /usr/bin/python3 python3 = 3.11
%description
Test stub.
%files
"""




@pytest.fixture(scope="module")
def rpms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """examples/hello at 1.0.0 and 1.1.0 as .rpm, and the stub (built by rpmbuild in tmp)."""
    tmp = tmp_path_factory.mktemp("hello-rpm")
    out = hello_versions(tmp, build_rpm)
    (tmp / "stub.spec").write_text(STUB)
    run(["rpmbuild", "--quiet", "--define", f"_topdir {tmp / 'rpmbuild'}", "-bb", tmp / "stub.spec"])
    [out["stub"]] = (tmp / "rpmbuild/RPMS/noarch").glob("*.rpm")
    return out


def dnf(sb: Sandbox, *args: str, check: bool = True) -> str:
    options = [
        "-y", "--releasever=12", "--noplugins", f"--setopt=reposdir={REPOS_D}",
        "--setopt=cachedir=/var/cache/unitgen-dnf", "--setopt=install_weak_deps=0",
    ]  # fmt: skip
    result = sb.run(["dnf", *options, *args], check=check, timeout=180)
    return result.stdout + result.stderr


def host(sb: Sandbox, repo: Path, repo_file: str, stub: Path) -> None:
    """The repository at /srv/repo, its .repo file, and the stub in dnf's rpm database."""
    sb.run(["rm", "-rf", REPO])
    sb.copy_in(repo, REPO)
    sb.write_file(f"{REPOS_D}/unitgen-repo.repo", repo_file)
    sb.copy_in(stub, "/root/stub.rpm")
    sb.run(["rpm", "-i", "--justdb", "--nodeps", "/root/stub.rpm"])


def installed(sb: Sandbox) -> str:
    return sb.run(["rpm", "-q", "--qf", "%{VERSION}-%{RELEASE}", "hello"]).stdout


def test_dnf_installs_from_the_signed_repository_and_upgrade_restarts_on_the_new_version(
    sandbox: Sandbox, tmp_path: Path, signing_key: TestKey, rpms: dict[str, Path]
) -> None:
    repo = tmp_path / "repo"
    done = publish([rpms["1.0.0"]], repo, key=signing_key.key, url=URL)
    host(sandbox, repo, done.yum_repo_file(), rpms["stub"])

    dnf(sandbox, "install", "hello")  # imports the key from gpgkey= (-y), checks repomd.xml.asc and the package
    assert installed(sandbox) == "1.0.0-1"
    first = sandbox.show("hello.service", "ActiveState", "MainPID")
    assert first["ActiveState"] == "active", first

    publish([rpms["1.1.0"]], repo, key=signing_key.key, url=URL)
    sandbox.run(["rm", "-rf", REPO])
    sandbox.copy_in(repo, REPO)
    dnf(sandbox, "--refresh", "upgrade", "hello")
    assert installed(sandbox) == "1.1.0-1"
    second = sandbox.show("hello.service", "ActiveState", "MainPID", "NRestarts")
    assert second["ActiveState"] == "active", second
    assert second["MainPID"] != first["MainPID"]
    assert second["NRestarts"] == "0"


def _flip_a_byte_of_the_package(sb: Sandbox) -> None:
    path = f"{REPO}/rpm/Packages/hello-1.0.0-1.noarch.rpm"
    data = bytearray(sb.read_file(path))
    data[-200] ^= 0x01
    sb.write_file(path, bytes(data))


def _unsigned_metadata(sb: Sandbox) -> None:
    sb.run(["rm", f"{REPO}/rpm/repodata/repomd.xml.asc"])


@pytest.mark.parametrize(
    ("damage", "signer", "refusal"),
    [
        pytest.param(_flip_a_byte_of_the_package, "signing_key", "has incorrect checksum", id="tampered-package"),
        pytest.param(
            _unsigned_metadata,
            "signing_key",
            "GPG verification is enabled, but GPG signature is not available",
            id="unsigned-metadata",
        ),
        pytest.param(
            None,
            "other_key",
            "repomd.xml GPG signature verification error: Bad GPG signature",
            id="signed-by-another-key",
        ),
    ],
)
def test_dnf_refuses_what_it_cannot_trust(
    sandbox: Sandbox, tmp_path: Path, rpms: dict[str, Path], request: pytest.FixtureRequest,
    damage: object, signer: str, refusal: str,
) -> None:  # fmt: skip
    trusted: TestKey = request.getfixturevalue("signing_key")
    key: TestKey = request.getfixturevalue(signer)
    repo = tmp_path / "repo"
    done = publish([rpms["1.0.0"]], repo, key=key.key, url=URL)
    host(sandbox, repo, done.yum_repo_file(), rpms["stub"])
    sandbox.copy_in(trusted.public, f"{REPO}/key.asc")  # the host trusts only the right key
    if damage is not None:
        damage(sandbox)  # type: ignore[operator]
    output = dnf(sandbox, "install", "hello", check=False)
    assert refusal in output, output
    assert sandbox.run(["rpm", "-q", "hello"], check=False).returncode != 0, output
