"""[config] (issue 15 item 1) with the real dpkg and rpm in a sandboxed systemd: the default
configuration ships under /etc/NAME as a conffile / %config(noreplace), `systemctl reload` makes
the service re-read it, an admin's edit survives an upgrade that changes the default (the new
default lands next to it as .dpkg-dist / .rpmnew), remove keeps it and purge removes it."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import test_examples_lint as lint
from unitgen.package import build_deb, build_rpm
from unitgen.package.from_spec import package_info
from unitgen.render.units import render
from unitgen.sandbox import Sandbox
from unitgen.spec import load_spec
from unitgen.staging.tree import write_tree

NAME = "cfgapp"
UNIT = f"{NAME}.service"
CONF = f"/etc/{NAME}/{NAME}.conf"
PKGS = "/root/packages"  # inside the sandbox
ADMIN_EDIT = "greeting = edited by the admin\n"

# Exec mode: the launcher execs python, so $MAINPID is this program and SIGHUP reaches it.
# (One line: spec values hold no newline.)
APP = (
    "import signal, time; "
    f"show = lambda *_: print('config:', open({CONF!r}).read().strip(), flush=True); "
    "signal.signal(signal.SIGHUP, show); show(); "
    "[time.sleep(1) for _ in iter(int, 1)]"
)

SPEC = f"""\
description = "Configuration under /etc, reloaded on SIGHUP"
exec = ["/usr/bin/python3", "-c", {json.dumps(APP)}]
reload_signal = "SIGHUP"

[config]
"{CONF}" = "{NAME}.conf"

[package]
version = "VERSION"
maintainer = "unitgen tests <tests@example.org>"
"""


def build(tmp: Path, version: str, default: str) -> dict[str, Path]:
    project = tmp / f"project-{version}"
    project.mkdir()
    (project / f"{NAME}.conf").write_text(default)
    (project / f"{NAME}.toml").write_text(SPEC.replace("VERSION", version))
    spec = load_spec(project / f"{NAME}.toml")
    staging = tmp / f"staging-{version}"
    write_tree(render(spec), staging)
    info = package_info(spec, None)
    return {"deb": build_deb(staging, info, tmp / "dist"), "rpm": build_rpm(staging, info, tmp / "dist")}


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("config")
    one = build(tmp, "1.0", "greeting = default one\n")
    two = build(tmp, "2.0", "greeting = default two\n")
    return {"deb1": one["deb"], "deb2": two["deb"], "rpm1": one["rpm"], "rpm2": two["rpm"]}


@pytest.fixture
def sb(sandbox: Sandbox, packages: dict[str, Path]) -> Iterator[Sandbox]:
    for key, path in packages.items():
        sandbox.copy_in(path, f"{PKGS}/{key}{path.suffix}")
    sandbox.run(["rm", "-f", "/usr/sbin/policy-rc.d"])
    yield sandbox


def config_lines(sb: Sandbox) -> list[str]:
    return [e["MESSAGE"] for e in sb.journal(f"_SYSTEMD_UNIT={UNIT}") if e.get("MESSAGE", "").startswith("config:")]


def wait_for_line(sb: Sandbox, line: str) -> None:
    sb.wait_for(lambda: line in config_lines(sb), 10, f"{line!r} from the service")


def read(sb: Sandbox, path: str) -> str:
    return sb.read_file(path).decode()


def exists(sb: Sandbox, path: str) -> bool:
    return sb.run(["test", "-e", path], check=False).returncode == 0


def test_the_deb_lists_the_config_as_conffile_and_the_rpm_as_noreplace(packages: dict[str, Path]) -> None:
    conffiles = subprocess.run(
        ["dpkg-deb", "--ctrl-tarfile", str(packages["deb1"])], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(conffiles)) as tar:
        member = tar.extractfile("./conffiles")
        assert member is not None
        assert member.read().decode() == f"{CONF}\n"
    flags = subprocess.run(
        ["rpm", "-qp", "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\\n]", str(packages["rpm1"])],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"{CONF} cn" in flags.splitlines()  # %config(noreplace)


@pytest.mark.root
def test_deb_edit_survives_upgrade_remove_keeps_purge_removes(sb: Sandbox) -> None:
    sb.run(["dpkg", "-i", f"{PKGS}/deb1.deb"])
    wait_for_line(sb, "config: greeting = default one")
    props = sb.show(UNIT, "ConfigurationDirectory", "ProtectSystem")
    assert props["ConfigurationDirectory"] == NAME and props["ProtectSystem"] == "strict"
    # Read-only to the service: ProtectSystem=strict, root's 0644.
    assert sb.run(["stat", "-c", "%a %U", CONF]).stdout.split() == ["644", "root"]

    sb.write_file(CONF, ADMIN_EDIT)
    sb.systemctl("reload", UNIT)
    wait_for_line(sb, "config: greeting = edited by the admin")

    # Unattended: no prompt, the admin's file is kept (what unattended-upgrades passes to dpkg).
    sb.run(["dpkg", "--force-confdef", "--force-confold", "-i", f"{PKGS}/deb2.deb"], input="")
    assert read(sb, CONF) == ADMIN_EDIT
    assert read(sb, CONF + ".dpkg-dist") == "greeting = default two\n"
    assert sb.run(["dpkg-query", "-W", "-f", "${Version}", NAME]).stdout.startswith("2.0")

    sb.run(["dpkg", "-r", NAME])
    assert read(sb, CONF) == ADMIN_EDIT

    sb.run(["dpkg", "--purge", NAME])
    assert not exists(sb, CONF) and not exists(sb, CONF + ".dpkg-dist")
    assert not exists(sb, f"/etc/{NAME}")


@pytest.mark.root
def test_deb_upgrade_of_an_unedited_config_takes_the_new_default(sb: Sandbox) -> None:
    sb.run(["dpkg", "-i", f"{PKGS}/deb1.deb"])
    sb.run(["dpkg", "--force-confdef", "--force-confold", "-i", f"{PKGS}/deb2.deb"], input="")
    assert read(sb, CONF) == "greeting = default two\n"
    assert not exists(sb, CONF + ".dpkg-dist")
    wait_for_line(sb, "config: greeting = default two")  # restarted on upgrade


@pytest.mark.root
def test_rpm_edit_survives_upgrade_as_rpmnew(sb: Sandbox) -> None:
    sb.run(["rpm", "-i", "--nodeps", f"{PKGS}/rpm1.rpm"])
    wait_for_line(sb, "config: greeting = default one")
    sb.write_file(CONF, ADMIN_EDIT)
    sb.systemctl("reload", UNIT)
    wait_for_line(sb, "config: greeting = edited by the admin")

    sb.run(["rpm", "-U", "--nodeps", f"{PKGS}/rpm2.rpm"])
    assert read(sb, CONF) == ADMIN_EDIT
    assert read(sb, CONF + ".rpmnew") == "greeting = default two\n"

    # rpm has no remove/purge split: an erase removes unedited config and keeps an edited one as .rpmsave.
    sb.run(["rpm", "-e", "--nodeps", NAME])
    assert not exists(sb, CONF)
    assert read(sb, CONF + ".rpmsave") == ADMIN_EDIT


def test_a_package_with_config_and_credentials_is_lintian_and_rpmlint_clean(tmp_path: Path) -> None:
    (tmp_path / f"{NAME}.conf").write_text("greeting = default\n")
    toml = SPEC.replace("VERSION", "1.0") + 'homepage = "https://example.org/cfgapp"\n'
    toml = toml.replace("[config]", 'credentials = { db_password = "/etc/cfgapp/db_password" }\n\n[config]')
    (tmp_path / f"{NAME}.toml").write_text(toml)
    out = lint.run(sys.executable, "-m", "unitgen", "package", NAME, cwd=tmp_path)
    [deb] = (tmp_path / "dist").glob("*.deb") or [None]
    [rpm] = (tmp_path / "dist").glob("*.rpm") or [None]
    assert deb is not None and rpm is not None, out
    assert not lint.lintian_problems(deb)
    rc = tmp_path / "rpmlintrc"
    rc.write_text('addFilter("no-signature")\n')
    report = lint.run("rpmlint", "-r", str(rc), str(rpm), cwd=tmp_path, ok=(0, 64, 66))
    tags = re.findall(rf"^{NAME}\.noarch: ([EW]): (\S+)", report, re.M)
    assert tags or "0 errors" in report, report
    assert not [t for t in tags if t[0] == "E"], report
    assert {t[1] for t in tags} <= lint.JUSTIFIED_RPMLINT, report
