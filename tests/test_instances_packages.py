"""Issue 14, packages: deb and rpm with instances and sockets, installed with the real dpkg and rpm
into a sandboxed systemd (never the host).

- instances: install enables and starts exactly the listed ones; an upgrade restarts the running
  ones (an admin-added one too) and leaves an admin-disabled one disabled and stopped, and an
  admin-added one not enabled; remove stops them all; purge forgets their enable links.
- sockets: install enables and starts the socket, not the service; the first connection starts
  the service; an upgrade restarts the service while the socket keeps listening; remove stops both.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e_helpers import example_toml, http_get
from unitgen.package import build_deb, build_rpm
from unitgen.package.from_spec import package_info
from unitgen.render.units import render
from unitgen.sandbox import Sandbox
from unitgen.spec import parse_spec
from unitgen.staging.tree import write_tree

pytestmark = pytest.mark.root

PKGS = "/root/packages"
LISTED = ("a", "b", "c")


def versioned(name: str, version: str) -> dict[str, Any]:
    raw = copy.deepcopy(example_toml(name))
    raw["package"]["version"] = version
    raw["environment"] = {"APP_VERSION": version}  # `systemctl show -p Environment` tells versions apart
    return raw


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("instances-packages")
    out = {}
    for name in ("pool", "echo"):
        for version in ("1.0", "2.0"):
            spec = parse_spec(versioned(name, version), name=name, where=f"{name}.toml")
            staging = tmp / f"{name}-{version}"
            write_tree(render(spec), staging)
            info = package_info(spec, None)
            out[f"{name}-{version}.deb"] = build_deb(staging, info, tmp / "dist")
            out[f"{name}-{version}.rpm"] = build_rpm(staging, info, tmp / "dist")
    return out


@pytest.fixture
def sb(request: pytest.FixtureRequest, packages: dict[str, Path]) -> Iterator[Sandbox]:
    name = "i14-" + request.node.name.removeprefix("test_").replace("_", "-")[:28].rstrip("-[]")
    with Sandbox.boot(name.replace("[", "-").replace("]", "")) as box:
        for key, path in packages.items():
            box.copy_in(path, f"{PKGS}/{key}")
        box.run(["rm", "-f", "/usr/sbin/policy-rc.d"])  # the host image's deny-all, as in a container
        yield box


def install(sb: Sandbox, fmt: str, name: str, version: str) -> None:
    path = f"{PKGS}/{name}-{version}.{fmt}"
    if fmt == "deb":
        sb.run(["dpkg", "--force-confold", "-i", path])
    else:
        sb.run(["rpm", "--nodeps", "-U" if version != "1.0" else "-i", path])


def remove(sb: Sandbox, fmt: str, name: str) -> None:
    sb.run(["dpkg", "-r", name] if fmt == "deb" else ["rpm", "--nodeps", "-e", name])


def state(sb: Sandbox, unit: str) -> dict[str, str]:
    props = sb.show(unit, "ActiveState", "MainPID", "Environment")
    return {**props, "enabled": sb.systemctl("is-enabled", unit, check=False).stdout.strip()}


def lock_holder(sb: Sandbox, instance: str) -> int:
    return int(sb.run(["cat", f"/run/pool/{instance}.pid"]).stdout)


@pytest.mark.parametrize("fmt", ["deb", "rpm"])
def test_instances_install_upgrade_remove(sb: Sandbox, fmt: str) -> None:
    install(sb, fmt, "pool", "1.0")
    first = {i: state(sb, f"pool@{i}.service") for i in LISTED}
    for instance, st in first.items():
        assert (st["ActiveState"], st["enabled"]) == ("active", "enabled"), (instance, st)
        assert lock_holder(sb, instance) == int(st["MainPID"])  # each instance its own lock
    assert sb.systemctl("list-units", "--no-legend", "--plain", "pool@*").stdout.count("pool@") == 3

    # The admin adds an instance and disables one of the listed ones.
    sb.systemctl("start", "pool@d.service")
    sb.systemctl("disable", "--now", "pool@b.service")
    added = state(sb, "pool@d.service")

    install(sb, fmt, "pool", "2.0")
    for instance in ("a", "c", "d"):
        st = state(sb, f"pool@{instance}.service")
        assert st["ActiveState"] == "active", (instance, st)
        assert "APP_VERSION=2.0" in st["Environment"], (instance, st)  # restarted on the new version
        assert st["MainPID"] != (first.get(instance) or added)["MainPID"]
        assert lock_holder(sb, instance) == int(st["MainPID"])
    assert state(sb, "pool@b.service") | {"MainPID": "-", "Environment": "-"} == {
        "ActiveState": "inactive", "MainPID": "-", "Environment": "-", "enabled": "disabled",
    }  # fmt: skip
    assert state(sb, "pool@d.service")["enabled"] == "disabled"  # added by hand, not enabled by the package

    remove(sb, fmt, "pool")
    assert sb.systemctl("list-units", "--no-legend", "--plain", "--state=active", "pool@*").stdout.strip() == ""
    if fmt == "deb":
        links = "find /etc/systemd/system -type l -name 'pool@*'"
        assert sb.run(["sh", "-c", links]).stdout.count("pool@") == 2  # remove keeps a and c enabled
        sb.run(["dpkg", "--purge", "pool"])
        assert sb.run(["sh", "-c", links]).stdout == ""  # purge forgets them


@pytest.mark.parametrize("fmt", ["deb", "rpm"])
def test_a_socket_package_enables_the_socket_and_restarts_the_service_under_it(sb: Sandbox, fmt: str) -> None:
    install(sb, fmt, "echo", "1.0")
    assert state(sb, "echo.socket") | {"MainPID": "", "Environment": ""} == {
        "ActiveState": "active", "MainPID": "", "Environment": "", "enabled": "enabled",
    }  # fmt: skip
    service = state(sb, "echo.service")
    assert service["ActiveState"] == "inactive"  # nothing started it yet: socket activation does
    assert http_get(sb, 80, "/first").startswith("200 echo /first ")
    service = state(sb, "echo.service")
    assert service["ActiveState"] == "active"

    install(sb, fmt, "echo", "2.0")
    after = state(sb, "echo.service")
    assert after["ActiveState"] == "active" and "APP_VERSION=2.0" in after["Environment"]
    assert after["MainPID"] != service["MainPID"]
    assert http_get(sb, 80, "/second") == f"200 echo /second {after['MainPID']}"

    remove(sb, fmt, "echo")
    assert state(sb, "echo.socket")["ActiveState"] == "inactive"
    assert state(sb, "echo.service")["ActiveState"] == "inactive"
    assert http_get(sb, 80).startswith("error")
