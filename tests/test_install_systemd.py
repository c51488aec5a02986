"""`unitgen install` / `uninstall` on a host with a running systemd: a real systemd in a sandbox
(`unitgen.sandbox`), the real `unitgen` run inside it as root, against the overlay's /.

Install hello, it runs and answers; re-install with a changed spec (the upgrade) restarts it;
uninstall leaves the file system as it was, foreign files untouched; and every hidden variant
of "a file of that name already exists" is refused with exit 1 and the host byte-for-byte as
before (a tree hash of every path's metadata and of the contents where the install writes).
With the sandbox's systemd frozen (SIGSTOP), install and uninstall give up at --timeout, and
leave what they promise.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import test_config as config_test
from tests.cli_helpers import SCHEMA
from unitgen.launcher.runtime import MESSAGE_ID_ALREADY_RUNNING
from unitgen.sandbox import Sandbox

pytestmark = pytest.mark.root

ROOT = Path(__file__).parent.parent
HELLO = ROOT / "examples/hello/hello.toml"
UNIT = "/usr/lib/systemd/system/hello.service"
LAUNCHER = "/usr/libexec/hello/hello-launcher"
SPEC = "/root/hello.toml"  # inside the sandbox: a copy the upgrade test changes
# Every path's type, mode, owner, size and mtime, and the contents where an install writes. Not
# /tmp: unitgen's scratch staging tree and sort(1)'s own files come and go there.
TREE_HASH = (
    "find /etc /usr /var /opt /srv -xdev -printf '%y %m %U %G %s %T@ %p -> %l\\n' | sort | sha256sum; "
    "find /etc /usr/lib/systemd /usr/libexec /usr/lib/sysusers.d /usr/lib/tmpfiles.d /usr/share/doc /var/lib/unitgen"
    " /srv -xdev -type f -exec sha256sum {} + 2>/dev/null | sort | sha256sum"
)


# unitgen's code copied in: the checkout (and its venv) may live where the sandbox has its own
# /tmp. Run by Debian's python3, whose python3-jinja2 scripts/bootstrap installs, as unitgen's .deb
# runs it; no bytecode written, so the source copy never changes while a test hashes the tree.
SOURCE = "/root/unitgen-src"
UNITGEN = ["/usr/bin/python3", "-m", "unitgen"]
UNITGEN_ENV = {"PYTHONPATH": SOURCE, "PYTHONDONTWRITEBYTECODE": "1"}


def unitgen(
    sb: Sandbox, *args: str, json_doc: bool = True, timeout: float = 300
) -> tuple[subprocess.CompletedProcess[str], Any]:
    # sb.run enters the sandbox with nsenter (no systemd-run, no machinectl): it works with the
    # sandbox's systemd frozen, and kills the command inside after `timeout` seconds.
    argv = [*UNITGEN, *args, *(["--json"] if json_doc else [])]
    result = sb.run(argv, check=False, timeout=timeout, env=UNITGEN_ENV)
    doc = None
    if json_doc:
        import jsonschema

        doc = json.loads(result.stdout)
        jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    return result, doc


def files(sb: Sandbox) -> set[str]:
    out = sb.run(["sh", "-c", "find /etc /usr /var /opt /srv -xdev -printf '%y %p\\n'"]).stdout
    return set(out.splitlines())


def tree_hash(sb: Sandbox) -> str:
    return sb.run(["sh", "-c", TREE_HASH]).stdout


def http(sb: Sandbox) -> str:
    code = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8080/').status)"
    return sb.run(["/usr/bin/python3", "-c", code]).stdout.strip()


@pytest.fixture
def box(sandbox: Sandbox) -> Sandbox:
    for folder in ("unitgen", "templates"):
        sandbox.copy_in(ROOT / folder, f"{SOURCE}/{folder}")
    sandbox.write_file(SPEC, HELLO.read_text())
    return sandbox


def test_install_runs_it_reinstall_upgrades_uninstall_leaves_nothing(box: Sandbox) -> None:
    box.write_file("/etc/systemd/system/foreign.service", "[Service]\nExecStart=/bin/true\n")
    box.write_file("/usr/libexec/foreign/tool", "#!/bin/sh\n", 0o755)
    before = files(box)
    foreign = box.run(["sha256sum", "/etc/systemd/system/foreign.service", "/usr/libexec/foreign/tool"]).stdout

    result, doc = unitgen(box, "install", "hello", "--spec", SPEC)
    assert result.returncode == 0, result.stderr
    assert doc["live"] is True and doc["upgrade"] is False and doc["state"] == "active"
    assert box.systemctl("is-enabled", "hello.service").stdout.strip() == "enabled"
    assert http(box) == "200"
    assert box.run(["sh", "-c", "ls /usr/libexec/hello/__pycache__/*.pyc"]).returncode == 0  # compiled
    assert MESSAGE_ID_ALREADY_RUNNING in box.run(["journalctl", "--list-catalog"]).stdout  # journalctl -x explains it
    first = box.show("hello.service", "MainPID")["MainPID"]

    # The upgrade: a changed spec, re-installed; restarted on the new unit.
    box.write_file(SPEC, HELLO.read_text().replace('"hello world"', '"hello again"'))
    result, doc = unitgen(box, "install", "hello", "--spec", SPEC)
    assert result.returncode == 0, result.stderr
    assert doc["upgrade"] is True and doc["state"] == "active"
    state = box.show("hello.service", "MainPID", "Environment", "NeedDaemonReload")
    assert state["MainPID"] != first and "GREETING=hello again" in state["Environment"], state
    assert state["NeedDaemonReload"] == "no"
    assert http(box) == "200"

    result, doc = unitgen(box, "uninstall", "hello", "--purge")
    assert result.returncode == 0, result.stderr
    assert doc["kept"] == [] and UNIT in doc["removed"] and LAUNCHER in doc["removed"]
    assert box.show("hello.service", "LoadState")["LoadState"] == "not-found"
    assert box.run(["ss", "-Htln", "sport = :8080"]).stdout.strip() == ""  # stopped
    assert MESSAGE_ID_ALREADY_RUNNING not in box.run(["journalctl", "--list-catalog"]).stdout
    assert files(box) == before  # not one path more or less (the user stays: Debian never removes one)
    assert box.run(["sha256sum", "/etc/systemd/system/foreign.service", "/usr/libexec/foreign/tool"]).stdout == foreign


def test_a_service_that_does_not_start_fails_the_install_and_uninstall_still_removes_it(box: Sandbox) -> None:
    before = files(box)
    box.write_file("/root/broken.toml", 'description = "broken"\nexec = ["/bin/false"]\nready = "tcp:8099"\n')
    result, doc = unitgen(box, "install", "broken", "--spec", "/root/broken.toml")
    assert result.returncode == 1
    assert "installed, but broken.service did not start" in doc["error"]["message"]
    assert "journalctl -u broken.service" in doc["error"]["hint"]
    assert box.run(["test", "-f", "/usr/lib/systemd/system/broken.service"]).returncode == 0
    result, doc = unitgen(box, "uninstall", "broken")
    assert result.returncode == 0, result.stderr
    assert files(box) == before


def test_start_on_install_false_enables_without_starting_and_an_upgrade_does_not_start_it(box: Sandbox) -> None:
    box.write_file(SPEC, "start_on_install = false\n" + HELLO.read_text())
    for upgrade in (False, True):
        result, doc = unitgen(box, "install", "hello", "--spec", SPEC)
        assert result.returncode == 0, result.stderr
        assert doc["upgrade"] is upgrade and doc["state"] == "inactive"
        assert box.systemctl("is-enabled", "hello.service").stdout.strip() == "enabled"
    assert "systemctl try-restart hello.service" in doc["steps"]  # restarts it only if an admin started it
    box.systemctl("start", "hello.service")
    pid = box.show("hello.service", "MainPID")["MainPID"]
    result, doc = unitgen(box, "install", "hello", "--spec", SPEC)
    assert result.returncode == 0, result.stderr
    assert doc["state"] == "active" and box.show("hello.service", "MainPID")["MainPID"] != pid


def _admin_unit(sb: Sandbox) -> None:
    sb.write_file(UNIT, "[Service]\nExecStart=/bin/true\n")


def _admin_launcher(sb: Sandbox) -> None:
    sb.write_file(LAUNCHER, "#!/bin/sh\nexec /usr/local/bin/the-admins-own\n", 0o755)


def _symlink_parent(sb: Sandbox) -> None:
    sb.run(["mkdir", "-p", "/srv/elsewhere"])
    sb.run(["ln", "-s", "/srv/elsewhere", "/usr/libexec/hello"])


def _symlink_at_unit(sb: Sandbox) -> None:
    sb.run(["ln", "-s", "/etc/passwd", UNIT])


def _etc_unit(sb: Sandbox) -> None:
    sb.write_file("/etc/systemd/system/hello.service", "[Service]\nExecStart=/bin/true\n")


def _other_manifest(sb: Sandbox) -> None:
    entry = {"path": UNIT, "type": "file", "mode": "0644", "owner": "root:root", "sha256": "0" * 64}
    doc = {"unitgen_manifest": 1, "name": "other", "state": "complete", "entries": [entry]}
    sb.write_file("/var/lib/unitgen/other.manifest", json.dumps(doc))


def _dpkg_owned(sb: Sandbox, deb: Path) -> None:
    # The packaged hello, installed with the real dpkg (the image's policy-rc.d keeps it from
    # starting), then its unit file deleted by hand: the package still owns the name.
    sb.copy_in(deb, "/root/hello.deb")
    sb.run(["dpkg", "-i", "/root/hello.deb"])
    sb.run(["rm", UNIT])


@pytest.fixture(scope="module")
def hello_packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("packages")
    argv = [sys.executable, "-m", "unitgen", "package", "hello", "--spec", str(HELLO), "--out", str(tmp / "build"),
            "--dist", str(tmp / "dist")]  # fmt: skip
    subprocess.run(argv, cwd=tmp, check=True, capture_output=True)
    [deb], [rpm] = (tmp / "dist").glob("*.deb"), (tmp / "dist").glob("*.rpm")
    return {"deb": deb, "rpm": rpm}


def _rpm_owned(sb: Sandbox, rpm: Path) -> None:
    # The packaged hello, installed with the real rpm (its own database, beside dpkg's).
    sb.copy_in(rpm, "/root/hello.rpm")
    sb.run(["rpm", "--nodeps", "--noscripts", "-i", "/root/hello.rpm"])


@pytest.mark.parametrize(
    ("plant", "message"),
    [
        pytest.param(_admin_unit, f"{UNIT} exists and is not unitgen's", id="admin-file-at-unit"),
        pytest.param(_admin_launcher, f"{LAUNCHER} exists and is not unitgen's", id="admin-file-at-launcher"),
        pytest.param("deb", f"{UNIT} belongs to the package hello (dpkg)", id="dpkg-owned"),
        pytest.param("rpm", f"{UNIT} belongs to the package hello (rpm)", id="rpm-owned"),
        pytest.param(_symlink_parent, "/usr/libexec/hello is a symbolic link", id="symlink-at-parent-dir"),
        pytest.param(_symlink_at_unit, f"{UNIT} exists and is not unitgen's", id="symlink-at-unit"),
        pytest.param(_etc_unit, "/etc/systemd/system/hello.service: hello.service already exists", id="admin-etc-unit"),
        pytest.param(_other_manifest, f"{UNIT} is listed in the manifest of the service other", id="other-manifest"),
    ],
)
def test_a_file_of_the_same_name_is_refused_and_the_host_left_untouched(
    box: Sandbox, hello_packages: dict[str, Path], plant: Callable[[Sandbox], None] | str, message: str
) -> None:
    if plant == "deb":
        _dpkg_owned(box, hello_packages["deb"])
    elif plant == "rpm":
        _rpm_owned(box, hello_packages["rpm"])
    else:
        assert callable(plant)
        plant(box)
    before = tree_hash(box)
    result, doc = unitgen(box, "install", "hello", "--spec", SPEC)
    assert result.returncode == 1
    assert message in doc["error"]["message"] and "nothing was written" in doc["error"]["message"], doc
    assert tree_hash(box) == before
    assert box.systemctl("is-active", "hello.service", check=False).stdout.strip() != "active"


CFG_SPEC = f"""description = "configuration under /etc, installed by unitgen install"
exec = ["/usr/bin/python3", "-c", {json.dumps(config_test.APP)}]
reload_signal = "SIGHUP"

[config]
"{config_test.CONF}" = "{config_test.NAME}.conf"
"""


def test_an_edited_config_file_survives_reinstall_and_uninstall_and_purge_removes_it(box: Sandbox) -> None:
    name, conf, edit = config_test.NAME, config_test.CONF, config_test.ADMIN_EDIT
    unit, new = f"{name}.service", f"{config_test.CONF}.unitgen-new"
    edited_line = f"config: {edit.strip()}"
    before = files(box)
    box.write_file(f"/root/{name}.toml", CFG_SPEC)
    box.write_file(f"/root/{name}.conf", "greeting = default one\n")
    install = ("install", name, "--spec", f"/root/{name}.toml")
    result, doc = unitgen(box, *install)
    assert result.returncode == 0, result.stderr
    assert doc["state"] == "active" and doc["config"][0]["action"] == "installed"
    config_test.wait_for_line(box, "config: greeting = default one")

    # The admin edits it and reloads: the service reads the edit.
    box.write_file(conf, edit)
    box.systemctl("reload", unit)
    config_test.wait_for_line(box, edited_line)
    pid = box.show(unit, "MainPID")["MainPID"]

    # A re-install with a changed default: the edit stays, the new default lands beside it, and
    # the restarted service runs on the edit.
    box.write_file(f"/root/{name}.conf", "greeting = default two\n")
    result, doc = unitgen(box, *install)
    assert result.returncode == 0, result.stderr
    assert doc["upgrade"] is True and doc["state"] == "active"
    assert doc["config"] == [{"path": conf, "action": "kept", "edited": True, "new": new, "dropped": False}]
    assert box.read_file(conf).decode() == edit and box.read_file(new).decode() == "greeting = default two\n"
    assert box.show(unit, "MainPID")["MainPID"] != pid
    box.wait_for(lambda: config_test.config_lines(box).count(edited_line) == 2, 10, "the edit read after the restart")
    assert box.systemctl("is-active", unit).stdout.strip() == "active"

    # uninstall keeps the edit (and the default beside it), like dpkg -r; --purge removes both.
    result, doc = unitgen(box, "uninstall", name)
    assert result.returncode == 0, result.stderr
    assert doc["kept"] == [conf] and doc["config"][0]["new"] == new
    assert box.read_file(conf).decode() == edit and box.show(unit, "LoadState")["LoadState"] == "not-found"
    result, doc = unitgen(box, "uninstall", name, "--purge")
    assert result.returncode == 0, result.stderr
    assert {conf, new} <= set(doc["removed"])
    box.run(["rm", f"/root/{name}.toml", f"/root/{name}.conf"])
    assert files(box) == before  # /etc/NAME too: the install made it


@contextlib.contextmanager
def systemd_frozen(sb: Sandbox) -> Iterator[None]:
    """The sandbox's PID 1 stopped: it answers nobody, as a deadlocked or swamped systemd."""
    os.kill(sb.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(sb.pid, signal.SIGCONT)


def installed(sb: Sandbox, name: str) -> str:
    """The manifest, and every path it lists with its type, mode and (files) contents: fails if one is gone."""
    manifest = sb.read_file(f"/var/lib/unitgen/{name}.manifest").decode()
    entries = json.loads(manifest)["entries"]
    listing = sb.run(["find", *(e["path"] for e in entries), "-maxdepth", "0", "-printf", "%y %m %p -> %l\\n"])
    sums = sb.run(["sha256sum", *(e["path"] for e in entries if e["type"] == "file")])
    return manifest + listing.stdout + sums.stdout


def test_uninstall_with_systemd_frozen_times_out_removes_nothing_and_runs_again_once_it_answers(box: Sandbox) -> None:
    before = files(box)
    result, _ = unitgen(box, "install", "hello", "--spec", SPEC)
    assert result.returncode == 0, result.stderr
    as_installed = installed(box, "hello")
    with systemd_frozen(box):
        # The outer bound: without --timeout (the code before) this waited for ever.
        result, doc = unitgen(box, "uninstall", "hello", "--purge", "--timeout", "5", timeout=90)
        assert result.returncode == 1, result.stderr
        assert (
            "systemctl stop hello.service timed out after 5 s (--timeout) and was killed; nothing was removed"
            " (the service may still run from its files)" in doc["error"]["message"]
        ), doc
        assert "'systemctl status hello.service' and 'journalctl -u hello.service'" in doc["error"]["hint"]
        assert "--timeout SECONDS" in doc["error"]["hint"]
        assert installed(box, "hello") == as_installed  # every file, the manifest too
    result, doc = unitgen(box, "uninstall", "hello", "--purge")
    assert result.returncode == 0, result.stderr
    assert "systemctl stop hello.service" in doc["steps"]
    assert box.show("hello.service", "LoadState")["LoadState"] == "not-found"
    assert files(box) == before


def test_install_with_systemd_frozen_times_out_installed_as_if_it_did_not_start(box: Sandbox) -> None:
    before = files(box)
    with systemd_frozen(box):
        # (Most of its time goes before the steps, in unitgen's own pwd.getpwall(): nss-systemd asks
        # PID 1 and gives up after 45 s.)
        result, doc = unitgen(box, "install", "hello", "--spec", SPEC, "--timeout", "5", timeout=180)
        assert result.returncode == 1, result.stderr
        message = doc["error"]["message"]
        assert "timed out after 5 s (--timeout) and was killed; hello is installed but may not run;" in message, doc
        assert "'unitgen uninstall hello' removes it" in message
    assert json.loads(box.read_file("/var/lib/unitgen/hello.manifest"))["state"] == "complete"
    assert installed(box, "hello")
    result, _ = unitgen(box, "uninstall", "hello", "--purge")
    assert result.returncode == 0, result.stderr
    assert files(box) == before
