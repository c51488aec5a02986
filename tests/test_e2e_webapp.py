"""End to end in a real systemd (a sandbox, never the host): the example webapp, its venv built by
`unitgen.app.payload` into the staging tree, installed the way the package's maintainer scripts do it
(files, sysusers, tmpfiles, then bytecode compiled), starts under the full hardening, answers
/health over the sandbox's loopback, refuses a second instance, and after an upgrade to a new
version the new code answers."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e_helpers import http_get, launcher, main_pid
from unitgen.app.payload import AppPayload, build_app
from unitgen.launcher.runtime import EXIT_ALREADY_RUNNING, MESSAGE_ID_ALREADY_RUNNING
from unitgen.package import Format, build
from unitgen.package.from_spec import package_info
from unitgen.render.units import render
from unitgen.sandbox import Sandbox
from unitgen.spec import Spec, load_spec
from unitgen.staging.tree import write_tree
from unitgen.trial import install_package, install_staging, lock_holders

pytestmark = pytest.mark.root

EXAMPLE = Path(__file__).parent.parent / "examples/webapp"
PORT = 8090
UNIT = "webapp.service"


@dataclass(frozen=True)
class Staged:
    spec: Spec
    payload: AppPayload
    staging: Path


def stage(spec_file: Path, out: Path) -> Staged:
    """What `unitgen package` stages: the rendered units and launcher, plus the app's venv."""
    spec = load_spec(spec_file)
    assert spec.app is not None
    write_tree(render(spec), out)
    return Staged(spec, build_app(spec.app, out), out)


def bumped_example(directory: Path, version: str, greeting: str) -> Path:
    """A copy of the example at a new version with new code: the spec file of the copy."""
    shutil.copytree(EXAMPLE, directory, ignore=shutil.ignore_patterns("build", "dist", "__pycache__"))
    for name, pattern in (("pyproject.toml", r'(?m)^version = ".*"$'), ("webapp.toml", r'(?m)^version = ".*"$')):
        path = directory / name
        text, count = re.subn(pattern, f'version = "{version}"', path.read_text())
        assert count == 1, name
        path.write_text(text)
    app = directory / "webapp/app.py"
    app.write_text(app.read_text().replace('GREETING = "Hello from webapp"', f'GREETING = "{greeting}"'))
    return directory / "webapp.toml"


def install(sb: Sandbox, staged: Staged) -> None:
    install_staging(sb, staged.staging, staged.spec, staged.payload)


def upgrade(sb: Sandbox, old: Staged, new: Staged) -> None:
    """As dpkg -i of a new version: old prerm, old files replaced (those gone from the package
    removed), new postinst, then the restart the maintainer scripts do."""
    sb.run(old.payload.cleanup_argv)
    sb.run(["rm", "-rf", old.payload.venv])
    install(sb, new)
    sb.systemctl("restart", UNIT)


def health(sb: Sandbox) -> tuple[int, dict[str, str]]:
    status, _, body = http_get(sb, PORT, "/health").partition(" ")
    assert status.isdigit(), f"no HTTP answer: {status} {body}"
    return int(status), json.loads(body)


@pytest.fixture(scope="module")
def v1(tmp_path_factory: pytest.TempPathFactory) -> Staged:
    return stage(EXAMPLE / "webapp.toml", tmp_path_factory.mktemp("webapp") / "staging")


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox.boot("e2e-webapp") as sandbox:
        yield sandbox


def test_webapp_runs_from_its_venv_hardened_and_refuses_a_second_instance(sb: Sandbox, v1: Staged) -> None:
    install(sb, v1)
    compiled = sb.run(["find", v1.payload.compile_dirs[0], "-name", "*.pyc"]).stdout.split()
    assert any("/webapp/__pycache__/app.cpython-" in p for p in compiled)

    sb.systemctl("start", UNIT)

    assert health(sb) == (200, {"status": "ok", "version": "1.0.0"})
    assert http_get(sb, PORT, "/").startswith("200 Hello from webapp 1.0.0 (bottle 0.13.4,")
    pid = main_pid(sb, UNIT)
    assert lock_holders(sb, v1.spec.lock_file) == [pid]
    assert sb.run(["ps", "-o", "user=", "-p", str(pid)]).stdout.strip() == "webapp"
    assert sb.run(["readlink", f"/proc/{pid}/exe"]).stdout.strip().startswith("/usr/bin/python3")
    shebang = sb.read_file(launcher(v1.spec)).split(b"\n", 1)[0].decode()
    assert shebang.split()[0] == "#!/usr/lib/webapp/venv/bin/python", shebang
    props = sb.show(UNIT, "ProtectSystem", "PrivateTmp", "MemoryDenyWriteExecute", "SystemCallFilter", "NRestarts")
    assert (props["ProtectSystem"], props["PrivateTmp"], props["MemoryDenyWriteExecute"]) == ("strict", "yes", "yes")
    assert props["SystemCallFilter"] not in ("", "~")
    assert props["NRestarts"] == "0"

    refused = sb.run([launcher(v1.spec)], check=False)

    assert refused.returncode == EXIT_ALREADY_RUNNING
    [entry] = sb.journal(f"MESSAGE_ID={MESSAGE_ID_ALREADY_RUNNING}")
    assert entry["SYSLOG_IDENTIFIER"] == "webapp"
    assert entry["LOCK_PATH"] == "/run/webapp/webapp.pid"
    assert entry["LOCK_HOLDER_PID"] == str(pid)
    assert entry["LOCK_HOLDER_UNIT"] == UNIT
    assert lock_holders(sb, v1.spec.lock_file) == [pid]  # the refused run changed nothing
    assert health(sb)[0] == 200


def test_upgrade_to_a_new_version_serves_the_new_code(sb: Sandbox, v1: Staged, tmp_path: Path) -> None:
    install(sb, v1)
    sb.systemctl("start", UNIT)
    assert health(sb) == (200, {"status": "ok", "version": "1.0.0"})
    old_pid = main_pid(sb, UNIT)
    v2 = stage(bumped_example(tmp_path / "webapp", "1.1.0", "Hello again from webapp"), tmp_path / "staging")
    assert dict(v2.payload.distributions)["webapp"] == "1.1.0"

    upgrade(sb, v1, v2)

    assert health(sb) == (200, {"status": "ok", "version": "1.1.0"})
    assert http_get(sb, PORT, "/").startswith("200 Hello again from webapp 1.1.0")
    new_pid = main_pid(sb, UNIT)
    assert new_pid != old_pid
    assert lock_holders(sb, v1.spec.lock_file) == [new_pid]
    dist_infos = sb.run(["ls", v2.payload.compile_dirs[0]]).stdout.split()
    assert "webapp-1.1.0.dist-info" in dist_infos and "webapp-1.0.0.dist-info" not in dist_infos


@pytest.mark.parametrize("fmt", [pytest.param(Format.DEB, id="deb"), pytest.param(Format.RPM, id="rpm")])
def test_package_with_the_venv_installs_serves_and_removes_cleanly(
    sb: Sandbox, v1: Staged, tmp_path: Path, fmt: Format
) -> None:
    """The packagers carry the venv, the real dpkg/rpm install it, and the maintainer scripts
    compile its bytecode after install and remove it again: nothing is left behind."""
    info = package_info(v1.spec, v1.payload)
    package = build(fmt, v1.staging, info, tmp_path)

    sb.run(["rm", "-f", "/usr/sbin/policy-rc.d"])  # this host image's "start nothing" policy (a container's)
    install_package(sb, package)  # the scripts start the service

    sb.wait_for(lambda: sb.show(UNIT, "ActiveState")["ActiveState"] == "active", 30, "the service")
    assert health(sb) == (200, {"status": "ok", "version": "1.0.0"})
    site = v1.payload.compile_dirs[0]
    pycs = sb.run(["find", site, "-name", "*.pyc"]).stdout.split()
    assert f"{site}/__pycache__/bottle.cpython-311.pyc" in pycs, "postinst compiled the venv's bytecode"
    # The package stores the venv's interpreter link relative (Debian policy 10.5); it still
    # resolves to the system interpreter.
    resolved = sb.run(["readlink", "-f", f"{v1.payload.venv}/bin/python3"]).stdout.strip()
    assert resolved == sb.run(["readlink", "-f", "/usr/bin/python3"]).stdout.strip()

    sb.run(["dpkg", "--purge", "webapp"] if fmt is Format.DEB else ["rpm", "-e", "--nodeps", "webapp"])

    assert sb.show(UNIT, "ActiveState")["ActiveState"] == "inactive"
    # prerm / %preun removed the bytecode, so dpkg and rpm could remove every directory.
    assert sb.run(["test", "-e", "/usr/lib/webapp"], check=False).returncode != 0, "the venv is gone entirely"
    assert sb.run(["test", "-e", "/usr/lib/webapp"], check=False).returncode != 0, "the venv is gone entirely"
