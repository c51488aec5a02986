"""Install, upgrade, remove and purge the packages with the real dpkg and rpm, inside a sandboxed systemd.

Never on the host: every command runs in a `unitgen.sandbox.Sandbox` (a real systemd as PID 1 on a
throw-away overlay of /). The test service is a tiny Type=notify Python program that reports
"version X" in STATUS=, so a test sees which version runs; its MainPID shows whether it restarted.
The host image ships a /usr/sbin/policy-rc.d that denies everything (as container images do); each
sandbox removes it first, and the policy-rc.d test puts its own back.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_package_helpers import NAME, make_info, make_staging
from unitgen.package import build_deb, build_rpm
from unitgen.sandbox import Sandbox

pytestmark = pytest.mark.root

SERVICE = f"{NAME}.service"
TIMER = f"{NAME}.timer"
MARK = f"/var/cache/{NAME}-configured"  # made by the configure command, removed by unconfigure
CONFIG = f"/etc/default/{NAME}"
STATE = f"/var/lib/{NAME}"
PKGS = "/root/packages"  # inside the sandbox
DEB1, DEB2 = f"{PKGS}/deb1.0.deb", f"{PKGS}/deb2.0.deb"
RPM1, RPM2 = f"{PKGS}/rpm1.0.rpm", f"{PKGS}/rpm2.0.rpm"
WANTS = f"/etc/systemd/system/multi-user.target.wants/{SERVICE}"
# A directory the package would purge, but that someone else made before the install.
FOREIGN = f"/var/cache/{NAME}-shared"


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("lifecycle")
    out = {}
    for version in ("1.0", "2.0"):
        staging = make_staging(tmp / f"staging-{version}", version)
        info = make_info(version, configure=(("mkdir", "-p", MARK),), unconfigure=(("rm", "-rf", MARK),))
        out[f"deb{version}"] = build_deb(staging, info, tmp / "dist")
        out[f"rpm{version}"] = build_rpm(staging, info, tmp / "dist")
        # Purges its state directory and one that existed before it was installed.
        info = make_info(version, release="5", purge=(STATE, FOREIGN))
        out[f"purge-deb{version}"] = build_deb(staging, info, tmp / "dist-purge")
        # The cron-like variant: the timer is enabled and started, the service only run by it.
        staging = make_staging(tmp / f"timer-{version}", version, timer=True)
        info = make_info(version, release="9", units=(SERVICE, TIMER), timer=True)
        out[f"timer-deb{version}"] = build_deb(staging, info, tmp / "dist-timer")
        out[f"timer-rpm{version}"] = build_rpm(staging, info, tmp / "dist-timer")
    return out


class Box:
    """A booted sandbox with both packages' versions copied in, and the questions the tests ask."""

    def __init__(self, sb: Sandbox, packages: dict[str, Path]) -> None:
        self.sb = sb
        for key, path in packages.items():
            sb.copy_in(path, f"{PKGS}/{key}{path.suffix}")
        sb.run(["rm", "-f", "/usr/sbin/policy-rc.d"])

    def sh(self, *argv: str) -> str:
        result = self.sb.run(list(argv))
        return result.stdout

    def dpkg(self, *args: str) -> None:
        self.sb.run(["dpkg", "--force-confold", *args])

    def rpm(self, *args: str) -> None:
        self.sb.run(["rpm", "--nodeps", *args])

    def state(self, unit: str = SERVICE) -> dict[str, str]:
        props = self.sb.show(
            unit,
            "ActiveState",
            "StatusText",
            "MainPID",
            "LoadState",
            "NeedDaemonReload",
            "ActiveEnterTimestampMonotonic",
        )
        enabled = self.sb.systemctl("is-enabled", unit, check=False).stdout.strip()
        return {**props, "enabled": enabled}

    def exists(self, path: str) -> bool:
        return self.sb.run(["test", "-e", path], check=False).returncode == 0

    def user_exists(self) -> bool:
        return self.sb.run(["getent", "passwd", NAME], check=False).returncode == 0


@pytest.fixture
def box(request: pytest.FixtureRequest, packages: dict[str, Path]) -> Iterator[Box]:
    name = "pkg-" + request.node.name.removeprefix("test_").replace("_", "-")[:32].rstrip("-")
    with Sandbox.boot(name) as sb:
        yield Box(sb, packages)


def running(box: Box, version: str) -> dict[str, str]:
    state = box.state()
    assert state["ActiveState"] == "active", state
    assert state["StatusText"] == f"version {version}", state
    assert state["NeedDaemonReload"] == "no", state
    return state


# --- deb ------------------------------------------------------------------------------------------


def test_deb_install_creates_user_and_state_then_enables_and_starts(box: Box) -> None:
    box.dpkg("-i", DEB1)
    state = running(box, "1.0")
    assert state["enabled"] == "enabled"
    assert box.user_exists()
    assert box.exists(MARK)
    assert box.sh("stat", "-c", "%U:%G", STATE).strip() == f"{NAME}:{NAME}"
    assert box.sh("cat", f"{STATE}/started") == "1.0\n"  # it ran as the user, writing its state


def test_deb_upgrade_restarts_the_new_version(box: Box) -> None:
    box.dpkg("-i", DEB1)
    before = running(box, "1.0")
    box.dpkg("-i", DEB2)
    after = running(box, "2.0")
    assert after["MainPID"] != before["MainPID"]
    assert after["enabled"] == "enabled"


def test_deb_upgrade_keeps_a_disabled_unit_disabled(box: Box) -> None:
    box.dpkg("-i", DEB1)
    box.sb.systemctl("disable", "--now", SERVICE)
    box.dpkg("-i", DEB2)
    state = box.state()
    assert state["enabled"] == "disabled"
    assert state["ActiveState"] == "inactive"


def test_deb_remove_stops_and_keeps_config_and_state(box: Box) -> None:
    box.dpkg("-i", DEB1)
    box.dpkg("-r", NAME)
    assert not box.exists(MARK)
    state = box.state()
    assert state["ActiveState"] == "inactive"
    assert state["LoadState"] == "not-found"
    assert box.exists(CONFIG) and box.exists(STATE)
    assert box.sh("dpkg-query", "-W", "-f=${Status}", NAME) == "deinstall ok config-files"
    assert box.user_exists()


def test_deb_purge_removes_config_state_and_enable_state_but_not_the_user(box: Box) -> None:
    box.dpkg("-i", DEB1)
    box.dpkg("-P", NAME)
    assert not box.exists(CONFIG)
    assert not box.exists(STATE)
    assert not box.exists(WANTS)
    assert not box.exists(f"/var/lib/systemd/deb-systemd-helper-enabled/{SERVICE}.dsh-also")
    assert box.user_exists()


def test_deb_purge_removes_only_the_directories_the_package_created(box: Box) -> None:
    box.sh("mkdir", "-m", "0700", FOREIGN)
    box.sb.write_file(f"{FOREIGN}/data", "theirs\n")
    box.sh("chown", "-R", "nobody:nogroup", FOREIGN)
    box.dpkg("-i", f"{PKGS}/purge-deb1.0.deb")
    running(box, "1.0")
    box.dpkg("-i", f"{PKGS}/purge-deb2.0.deb")  # an upgrade keeps the first install's record
    running(box, "2.0")
    box.dpkg("-P", NAME)
    assert not box.exists(STATE)  # created by the package (tmpfiles, the service): purged
    assert box.sh("stat", "-c", "%U:%G %a", FOREIGN) == "nobody:nogroup 700\n"
    assert box.sh("cat", f"{FOREIGN}/data") == "theirs\n"
    assert not box.exists("/var/lib/unitgen")  # the record goes with the purge


def test_deb_reinstall_after_remove_and_after_purge(box: Box) -> None:
    box.dpkg("-i", DEB1)
    box.dpkg("-r", NAME)
    box.dpkg("-i", DEB1)
    assert running(box, "1.0")["enabled"] == "enabled"
    box.dpkg("-P", NAME)
    box.dpkg("-i", DEB2)
    assert running(box, "2.0")["enabled"] == "enabled"


def test_deb_policy_rc_d_101_prevents_the_start(box: Box) -> None:
    box.sb.write_file("/usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n", mode=0o755)
    box.dpkg("-i", DEB1)
    state = box.state()
    assert state["enabled"] == "enabled"  # policy-rc.d governs starting, not enabling
    assert state["ActiveState"] == "inactive"


def test_deb_without_a_running_systemd_only_enables(box: Box) -> None:
    # Hide /run/systemd (its "system" marker and the private socket) in a private mount
    # namespace: what a chroot or an image build looks like to the maintainer scripts.
    box.sh("unshare", "--mount", "sh", "-c",
           f"mount -t tmpfs tmpfs /run/systemd && dpkg -i {DEB1}")  # fmt: skip
    assert box.exists(WANTS)
    assert box.state()["ActiveState"] == "inactive"


# --- rpm ------------------------------------------------------------------------------------------


def test_rpm_install_creates_user_then_presets_and_starts(box: Box) -> None:
    box.rpm("-i", RPM1)
    state = running(box, "1.0")
    assert state["enabled"] == "enabled"  # Debian's presets enable what they do not list
    assert box.user_exists()
    assert box.exists(MARK)  # %posttrans
    assert box.sh("stat", "-c", "%U:%G", STATE).strip() == f"{NAME}:{NAME}"
    assert box.sh("cat", f"{STATE}/started") == "1.0\n"  # it ran as the user, writing its state


def test_rpm_upgrade_restarts_the_new_version(box: Box) -> None:
    box.rpm("-i", RPM1)
    before = running(box, "1.0")
    box.rpm("-U", RPM2)
    assert box.exists(MARK)  # the upgrade's %posttrans ran the configure commands
    after = running(box, "2.0")
    assert after["MainPID"] != before["MainPID"]
    assert after["enabled"] == "enabled"
    assert box.sh("rpm", "-q", NAME).strip() == f"{NAME}-2.0-1.noarch"


def test_rpm_upgrade_keeps_a_disabled_unit_disabled_and_modified_config(box: Box) -> None:
    box.rpm("-i", RPM1)
    box.sb.systemctl("disable", "--now", SERVICE)
    box.sb.write_file(CONFIG, "GREETING=mine\n")
    box.rpm("-U", RPM2)
    state = box.state()
    assert state["enabled"] == "disabled"
    assert state["ActiveState"] == "inactive"
    assert box.sh("cat", CONFIG) == "GREETING=mine\n"  # %config(noreplace)
    assert "2.0" in box.sh("cat", CONFIG + ".rpmnew")


def test_rpm_erase_stops_and_disables_keeps_user(box: Box) -> None:
    box.rpm("-i", RPM1)
    box.rpm("-e", NAME)
    assert not box.exists(MARK)
    state = box.state()
    assert state["ActiveState"] == "inactive"
    assert state["LoadState"] == "not-found"
    assert not box.exists(WANTS)
    assert not box.exists(CONFIG)  # unmodified %config goes with the package
    assert box.user_exists()


def test_rpm_reinstall_after_erase(box: Box) -> None:
    box.rpm("-i", RPM1)
    box.rpm("-e", NAME)
    box.rpm("-i", RPM2)
    assert running(box, "2.0")["enabled"] == "enabled"


def test_rpm_without_a_running_systemd_only_enables(box: Box) -> None:
    box.sh("unshare", "--mount", "sh", "-c",
           f"mount -t tmpfs tmpfs /run/systemd && rpm -i --nodeps {RPM1}")  # fmt: skip
    assert box.exists(WANTS)
    assert box.state()["ActiveState"] == "inactive"


# --- a timer package ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["deb", "rpm"])
def test_timer_package_enables_and_restarts_the_timer_not_the_job(box: Box, fmt: str) -> None:
    install = box.dpkg if fmt == "deb" else box.rpm
    install("-i", f"{PKGS}/timer-{fmt}1.0.{fmt}")
    timer = box.state(TIMER)
    assert (timer["enabled"], timer["ActiveState"]) == ("enabled", "active")
    service = box.state(SERVICE)
    assert service["enabled"] != "enabled"  # timer = true: only the timer is enabled
    assert service["ActiveState"] == "inactive"  # and the job is not run by the install
    install("-U" if fmt == "rpm" else "-i", f"{PKGS}/timer-{fmt}2.0.{fmt}")
    after = box.state(TIMER)
    assert after["ActiveState"] == "active"
    assert after["ActiveEnterTimestampMonotonic"] != timer["ActiveEnterTimestampMonotonic"]  # restarted
    assert box.state(SERVICE)["ActiveState"] == "inactive"  # the upgrade did not run the job
    if fmt == "deb":
        box.dpkg("-P", NAME)
    else:
        box.rpm("-e", NAME)
    assert box.state(TIMER)["LoadState"] == "not-found"
    assert not box.exists(f"/etc/systemd/system/timers.target.wants/{TIMER}")
