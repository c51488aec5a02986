"""Real apt against a repository `publish` wrote, inside a sandboxed systemd (never the host's apt).

The repository is copied into the sandbox and used as a `file:` source with `signed-by=` the
published key. apt is pointed at that one source only (Dir::Etc::SourceList and an empty
SourceParts), so it never tries the network for Debian's own sources; each apt-get update that
must fetch afresh uses its own lists directory.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.test_publish_helpers import TestKey, hello_versions
from unitgen.launcher.runtime import MESSAGE_ID_ALREADY_RUNNING
from unitgen.package import build_deb
from unitgen.publish import publish
from unitgen.sandbox import Sandbox

pytestmark = pytest.mark.root

REPO = "/srv/repo"
KEYRING = "/etc/apt/keyrings/unitgen-repo.asc"
SOURCES = "/etc/apt/unitgen-test.list"
INDEX = f"{REPO}/dists/stable/main/binary-amd64"




@pytest.fixture(scope="module")
def hello(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """examples/hello packaged at 1.0.0 and 1.1.0, as `unitgen package` builds it."""
    return hello_versions(tmp_path_factory.mktemp("hello"), build_deb)


def apt_get(sb: Sandbox, *args: str, lists: str = "/var/lib/apt/lists", check: bool = True) -> str:
    sb.run(["mkdir", "-p", f"{lists}/partial", "/etc/apt/unitgen-empty.d"])
    options = [
        "-o", f"Dir::Etc::SourceList={SOURCES}", "-o", "Dir::Etc::SourceParts=/etc/apt/unitgen-empty.d",
        "-o", f"Dir::State::Lists={lists}", "-o", "APT::Sandbox::User=root",
    ]  # fmt: skip
    result = sb.run(["apt-get", "-q", *options, *args], check=check, timeout=120,
                    env={"DEBIAN_FRONTEND": "noninteractive"})  # fmt: skip
    return result.stdout + result.stderr


def serve(sb: Sandbox, repo: Path, key: TestKey) -> None:
    """Put `repo` at /srv/repo (replacing what was there) and trust `key` for it."""
    sb.run(["rm", "-rf", REPO])
    sb.copy_in(repo, REPO)
    sb.copy_in(key.public, KEYRING)
    sb.write_file(SOURCES, f"deb [signed-by={KEYRING}] file:{REPO} stable main\n")


def service(sb: Sandbox) -> dict[str, str]:
    return sb.show("hello.service", "ActiveState", "MainPID", "NRestarts")


def installed(sb: Sandbox) -> str:
    return sb.run(["dpkg-query", "-W", "-f", "${Version}", "hello"]).stdout


def test_apt_installs_from_the_signed_repository_and_upgrade_restarts_on_the_new_version(
    sandbox: Sandbox, tmp_path: Path, signing_key: TestKey, hello: dict[str, Path]
) -> None:
    repo = tmp_path / "repo"
    done = publish([hello["1.0.0"]], repo, key=signing_key.key)
    sandbox.run(["rm", "-f", "/usr/sbin/policy-rc.d"])  # the host image denies starts
    serve(sandbox, repo, signing_key)
    # The line publish prints is the line the host uses (here with the sandbox's path).
    assert (
        done.client_lines()[-1].replace(f"file:{repo}", f"file:{REPO}") == sandbox.read_file(SOURCES).decode().strip()
    )

    apt_get(sandbox, "update")
    apt_get(sandbox, "install", "-y", "hello")
    assert installed(sandbox) == "1.0.0-1"
    first = service(sandbox)
    assert first["ActiveState"] == "active", first
    page = sandbox.run(
        ["python3", "-c", "import urllib.request as u; print(u.urlopen('http://127.0.0.1:8080/').status)"]
    )
    assert page.stdout == "200\n"

    publish([hello["1.1.0"]], repo, key=signing_key.key)
    serve(sandbox, repo, signing_key)
    apt_get(sandbox, "update")
    upgrade = apt_get(sandbox, "upgrade", "-y")
    assert "1 upgraded" in upgrade, upgrade
    assert installed(sandbox) == "1.1.0-1"
    second = service(sandbox)
    assert second["ActiveState"] == "active", second
    assert second["MainPID"] != first["MainPID"]  # restarted by the upgrade, not left on the old code
    assert second["NRestarts"] == "0"  # a restart by the package, not a crash loop


def _tamper_packages(sb: Sandbox) -> None:
    """Rewrite every form of the amd64 index (and its by-hash copies) with a changed Version."""
    text = sb.read_file(f"{INDEX}/Packages").replace(b"Version: 1.0.0-1", b"Version: 9.9.9-1")
    forms = {"Packages": text, "Packages.gz": gzip.compress(text), "Packages.xz": lzma.compress(text)}
    for name, data in forms.items():
        original = hashlib.sha256(sb.read_file(f"{INDEX}/{name}")).hexdigest()
        sb.write_file(f"{INDEX}/{name}", data)
        sb.write_file(f"{INDEX}/by-hash/SHA256/{original}", data)


def _unsigned(sb: Sandbox) -> None:
    sb.run(["sh", "-c", f"rm {REPO}/dists/stable/InRelease {REPO}/dists/stable/Release.gpg"])


@pytest.mark.parametrize(
    ("damage", "signer", "refusal"),
    [
        pytest.param(_tamper_packages, "signing_key", "Hash Sum mismatch", id="tampered-packages"),
        pytest.param(_unsigned, "signing_key", "is not signed", id="unsigned"),
        pytest.param(None, "other_key", "NO_PUBKEY", id="signed-by-another-key"),
    ],
)
def test_apt_refuses_a_repository_it_cannot_trust(
    shared_sandbox: Sandbox, tmp_path: Path, hello: dict[str, Path], request: pytest.FixtureRequest,
    damage: object, signer: str, refusal: str,
) -> None:  # fmt: skip
    trusted: TestKey = request.getfixturevalue("signing_key")
    key: TestKey = request.getfixturevalue(signer)
    repo = tmp_path / "repo"
    publish([hello["1.0.0"]], repo, key=key.key)
    serve(shared_sandbox, repo, trusted)
    if damage is not None:
        damage(shared_sandbox)  # type: ignore[operator]
    lists = f"/var/lib/apt/unitgen-{request.node.callspec.id}"
    output = apt_get(shared_sandbox, "update", lists=lists, check=False)
    assert refusal in output, output
    # Nothing from the repository reached apt: hello is not installable.
    policy = apt_get(shared_sandbox, "policy", "hello", lists=lists, check=False)
    assert "Candidate: 1.0.0-1" not in policy and "9.9.9" not in policy, policy


def test_three_hosts_pulling_from_one_repository_roll_out_1_1_0_restarting_each_service_once(
    sandbox_factory: Callable[[str], Sandbox], tmp_path: Path, signing_key: TestKey, hello: dict[str, Path]
) -> None:
    """Every host upgrades at the same time; while they do, each host is sampled: never more than
    one hello server process (the single-instance lock held by one), and no instance refused."""
    repo = tmp_path / "repo"
    publish([hello["1.0.0"]], repo, key=signing_key.key)
    hosts = [sandbox_factory(f"h{i}") for i in range(3)]
    for sb in hosts:
        sb.run(["rm", "-f", "/usr/sbin/policy-rc.d"])
        serve(sb, repo, signing_key)
        apt_get(sb, "update")
        apt_get(sb, "install", "-y", "hello")
    before = {sb.id: service(sb)["MainPID"] for sb in hosts}

    publish([hello["1.1.0"]], repo, key=signing_key.key)
    for sb in hosts:
        serve(sb, repo, signing_key)
    most: dict[str, int] = {sb.id: 0 for sb in hosts}
    samples = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for sb in hosts:
                # The app itself, once the launcher exec'd it (not the launcher's readiness watcher,
                # nor this pgrep's own wrappers, whose command lines only contain the pattern).
                count = sb.run(["pgrep", "-c", "-f", "^/usr/bin/python3 -m [h]ttp.server"], check=False).stdout.strip()
                most[sb.id] = max(most[sb.id], int(count or 0))
            samples[0] += 1

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            list(pool.map(lambda sb: (apt_get(sb, "update"), apt_get(sb, "upgrade", "-y")), hosts))
    finally:
        done.set()
        sampler.join()

    for sb in hosts:
        assert installed(sb) == "1.1.0-1", sb.id
        state = service(sb)
        assert state["ActiveState"] == "active" and state["MainPID"] != before[sb.id], (sb.id, state)
        messages = [e.get("MESSAGE", "") for e in sb.journal(unit="hello.service")]
        assert len([m for m in messages if m.startswith("Started hello.service")]) == 2, (sb.id, messages)
        assert not sb.journal(f"MESSAGE_ID={MESSAGE_ID_ALREADY_RUNNING}"), sb.id
    assert most == {sb.id: 1 for sb in hosts}, most
    assert samples[0] >= 5, samples  # the hosts were watched through the upgrade, not once
