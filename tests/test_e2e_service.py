"""End to end in a real systemd (a sandbox, never the host): the rendered units and launcher
start, get ready, hold the lock, refuse a second instance, restart, stop and reload as promised."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e_helpers import (
    example_toml,
    http_get,
    install,
    launcher,
    lslocks_paths,
    main_pid,
    notifications,
    start_by_hand,
)
from unitgen.launcher.runtime import EXIT_ALREADY_RUNNING, MESSAGE_ID_ALREADY_RUNNING
from unitgen.package import build_deb
from unitgen.package.from_spec import package_info
from unitgen.render.units import render
from unitgen.sandbox import Sandbox
from unitgen.spec import parse_spec
from unitgen.staging.tree import write_tree
from unitgen.trial import lock_holders

pytestmark = pytest.mark.root


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox.boot("e2e") as sandbox:
        yield sandbox


def contention_entries(sb: Sandbox) -> list[dict[str, str]]:
    return sb.journal(f"MESSAGE_ID={MESSAGE_ID_ALREADY_RUNNING}")


# An HTTP server that starts listening only 1.5 s after it starts: READY=1 sent any earlier
# would make the first request below fail.
SLOW_HTTP = ["/bin/sh", "-c", "sleep 1.5; exec /usr/bin/python3 -m http.server --bind 127.0.0.1 8081"]


def test_http_service_is_ready_only_when_it_answers_and_holds_the_lock(sb: Sandbox, tmp_path: Path) -> None:
    spec = install(sb, tmp_path, "slowweb", example_toml("hello", exec=SLOW_HTTP, ready="tcp:8081", user="slowweb"))
    sb.systemctl("start", "slowweb.service")

    assert http_get(sb, 8081).startswith("200 "), "READY=1 came before the port accepted connections"
    props = sb.show("slowweb.service", "ActiveState", "SubState", "StatusText", "NRestarts")
    assert (props["ActiveState"], props["SubState"]) == ("active", "running")
    assert "8081" in props["StatusText"]
    pid = main_pid(sb, "slowweb.service")
    assert sb.read_file(spec.lock_file) == f"{pid}\n".encode()
    assert sb.run(["stat", "-c", "%U", spec.lock_file]).stdout.strip() == "slowweb"
    assert lock_holders(sb, spec.lock_file) == [pid]
    assert lslocks_paths(sb)[spec.lock_file] == pid


def test_second_instance_by_hand_is_refused_and_logged(sb: Sandbox, tmp_path: Path) -> None:
    spec = install(sb, tmp_path, "hello", example_toml("hello"))
    sb.systemctl("start", "hello.service")
    holder = main_pid(sb, "hello.service")

    refused = sb.run([launcher(spec)], check=False)

    assert refused.returncode == EXIT_ALREADY_RUNNING
    [entry] = contention_entries(sb)
    assert entry["PRIORITY"] == "4"
    assert entry["SYSLOG_IDENTIFIER"] == "hello"
    assert entry["LOCK_PATH"] == "/run/hello/hello.pid"
    assert entry["LOCK_HOLDER_PID"] == str(holder)
    assert entry["LOCK_HOLDER_UNIT"] == "hello.service"
    assert entry["MESSAGE"] == f"hello is already running as PID {holder} (lock /run/hello/hello.pid)"
    assert lock_holders(sb, spec.lock_file) == [holder]  # the refused run changed nothing
    assert http_get(sb, 8080).startswith("200 ")


def test_hand_started_instance_makes_systemctl_start_fail_cleanly(sb: Sandbox, tmp_path: Path) -> None:
    spec = install(sb, tmp_path, "hello", example_toml("hello", restart_sec=0.2))
    by_hand = start_by_hand(sb, [launcher(spec)])
    sb.wait_for(lambda: lock_holders(sb, spec.lock_file) == [by_hand], 10, "the hand-started launcher's lock")

    started = sb.systemctl("start", "hello.service", check=False)

    assert started.returncode != 0
    props = sb.show("hello.service", "ActiveState", "Result", "ExecMainStatus", "NRestarts")
    assert props["ExecMainStatus"] == str(EXIT_ALREADY_RUNNING)
    assert props["Result"] == "exit-code"
    assert contention_entries(sb)[-1]["LOCK_HOLDER_PID"] == str(by_hand)
    # RestartPreventExitStatus=17: well past RestartSec=0.2, still no restart.
    sb.run(["sleep", "2"])
    assert sb.show("hello.service", "NRestarts")["NRestarts"] == "0"
    assert sb.show("hello.service", "ActiveState")["ActiveState"] == "failed"

    sb.run(["kill", "-9", str(by_hand)])
    sb.systemctl("reset-failed", "hello.service")
    sb.systemctl("start", "hello.service")
    assert lock_holders(sb, spec.lock_file) == [main_pid(sb, "hello.service")]


def test_killed_service_is_restarted_and_the_new_instance_gets_the_lock(sb: Sandbox, tmp_path: Path) -> None:
    spec = install(sb, tmp_path, "hello", example_toml("hello", restart_sec=0.2))
    sb.systemctl("start", "hello.service")
    first = main_pid(sb, "hello.service")

    sb.run(["kill", "-9", str(first)])

    sb.wait_for(lambda: sb.show("hello.service", "NRestarts")["NRestarts"] == "1", 15, "a restart")
    sb.wait_for(lambda: sb.show("hello.service", "ActiveState")["ActiveState"] == "active", 15, "active again")
    second = main_pid(sb, "hello.service")
    assert second != first
    assert lock_holders(sb, spec.lock_file) == [second]
    assert sb.read_file(spec.lock_file) == f"{second}\n".encode()
    assert http_get(sb, 8080).startswith("200 ")


HUNG_APP = [
    "/usr/bin/python3",
    "-c",
    # Says it is ready, then hangs without ever pinging the watchdog.
    "import os, socket, time; a = os.environ['NOTIFY_SOCKET']; "
    "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); "
    "s.sendto(b'READY=1', '\\0' + a[1:] if a[0] == '@' else a); time.sleep(1e6)",
]


def test_hung_service_is_killed_by_the_watchdog_and_restarted(sb: Sandbox, tmp_path: Path) -> None:
    raw = {"description": "hangs", "exec": HUNG_APP, "ready": "notify", "watchdog": 1, "restart_sec": 0.2}
    install(sb, tmp_path, "hung", raw)
    sb.systemctl("start", "hung.service")

    sb.wait_for(lambda: int(sb.show("hung.service", "NRestarts")["NRestarts"]) >= 1, 20, "a watchdog restart")
    messages = [e.get("MESSAGE", "") for e in sb.journal("UNIT=hung.service")]
    assert any("Watchdog timeout" in m for m in messages)


PY_APP = '''\
"""A python-mode app for the end-to-end tests."""
import sys
import time

reloads = 0


def unitgen_reload():
    global reloads
    reloads += 1
    print(f"reloaded {reloads}", flush=True)


def main():
    print("app started", flush=True)
    while True:
        time.sleep(0.2)
'''


def install_python_app(sb: Sandbox, tmp_path: Path) -> None:
    sb.write_file("/usr/lib/python3/dist-packages/unitgen_e2e_app.py", PY_APP)
    raw = {"description": "python mode", "entry": "unitgen_e2e_app:main", "reload_signal": "SIGHUP"}
    install(sb, tmp_path, "pyapp", raw)


def test_stop_sends_stopping_and_frees_the_lock_but_keeps_the_file(sb: Sandbox, tmp_path: Path) -> None:
    install_python_app(sb, tmp_path)
    sb.run(["systemd-analyze", "log-level", "debug"])  # PID 1 then logs every notification
    sb.systemctl("start", "pyapp.service")
    pid = main_pid(sb, "pyapp.service")
    assert lock_holders(sb, "/run/pyapp/pyapp.pid") == [pid]

    sb.systemctl("stop", "pyapp.service")

    assert any(f"PID {pid} " in m and "STOPPING=1" in m for m in notifications(sb, "pyapp.service"))
    assert sb.run(["kill", "-0", str(pid)], check=False).returncode != 0
    assert lock_holders(sb, "/run/pyapp/pyapp.pid") == []
    assert sb.run(["test", "-f", "/run/pyapp/pyapp.pid"], check=False).returncode == 0  # preserved


def test_reload_sends_reloading_then_ready_and_calls_the_hook(sb: Sandbox, tmp_path: Path) -> None:
    install_python_app(sb, tmp_path)
    sb.run(["systemd-analyze", "log-level", "debug"])
    sb.systemctl("start", "pyapp.service")

    sb.systemctl("reload", "pyapp.service")

    sb.wait_for(
        lambda: any("reloaded 1" in e.get("MESSAGE", "") for e in sb.journal("_SYSTEMD_UNIT=pyapp.service")),
        10,
        "the app's reload hook",
    )
    messages = notifications(sb, "pyapp.service")
    reloading = next(i for i, m in enumerate(messages) if "RELOADING=1" in m)
    assert re.search(r"MONOTONIC_USEC=\d+", messages[reloading])
    assert any("READY=1" in m for m in messages[reloading:])
    assert sb.show("pyapp.service", "ActiveState")["ActiveState"] == "active"


def test_timer_job_overlap_is_skipped_and_logged_never_doubled(sb: Sandbox, tmp_path: Path) -> None:
    spec = install(sb, tmp_path, "ticker", example_toml("ticker", exec=["/usr/bin/sleep", "30"]))
    sb.systemctl("start", "ticker.timer")
    assert sb.show("ticker.timer", "ActiveState")["ActiveState"] == "active"

    # The timer fires (simulated by starting the service now); the run takes 30 s.
    sb.systemctl("start", "--no-block", "ticker.service")
    sb.wait_for(lambda: len(lock_holders(sb, spec.lock_file)) == 1, 10, "the job to hold the lock")
    # A cron or hand-started run overlaps it: skipped, logged.
    overlapping = sb.run([launcher(spec)], check=False)

    assert overlapping.returncode == EXIT_ALREADY_RUNNING
    assert contention_entries(sb)[-1]["LOCK_HOLDER_UNIT"] == "ticker.service"
    assert sb.run(["pgrep", "-c", "-x", "sleep"]).stdout.strip() == "1"


def test_timer_run_while_a_hand_run_holds_the_lock_is_a_skip_not_a_failure(sb: Sandbox, tmp_path: Path) -> None:
    spec = install(sb, tmp_path, "ticker", example_toml("ticker", exec=["/usr/bin/sleep", "30"]))
    sb.systemctl("start", "ticker.timer")  # it references the service, so its state stays loaded
    by_hand = start_by_hand(sb, [launcher(spec)])
    sb.wait_for(lambda: lock_holders(sb, spec.lock_file) == [by_hand], 10, "the hand run's lock")

    sb.systemctl("start", "ticker.service")  # the timer fires; a oneshot returns when the run is over

    props = sb.show("ticker.service", "Result", "ExecMainStatus", "ActiveState")
    assert props["ExecMainStatus"] == str(EXIT_ALREADY_RUNNING)
    assert props["Result"] == "success"  # SuccessExitStatus=17: skipping is not failing
    assert contention_entries(sb)[-1]["LOCK_HOLDER_PID"] == str(by_hand)
    assert sb.run(["pgrep", "-c", "-x", "sleep"]).stdout.strip() == "1"


@pytest.mark.parametrize(
    ("example", "threshold"),
    [pytest.param("hello", 1.5, id="network"), pytest.param("quiet", 0.5, id="no-network")],
)
def test_default_hardening_scores_within_threshold_live_and_the_service_works(
    sb: Sandbox, tmp_path: Path, example: str, threshold: float
) -> None:
    install(sb, tmp_path, example, example_toml(example))
    sb.systemctl("start", f"{example}.service")
    assert sb.show(f"{example}.service", "ActiveState")["ActiveState"] == "active"

    out = sb.run(["systemd-analyze", "security", "--no-pager", f"{example}.service"], check=False).stdout
    score = float(re.findall(r"Overall exposure level for \S+: ([0-9.]+)", out)[-1])
    assert score <= threshold
    if example == "hello":
        assert http_get(sb, 8080).startswith("200 ")


@pytest.mark.parametrize(
    "user",
    [pytest.param("hello", id="static-user"), pytest.param(None, id="dynamic-user")],
)
def test_tmpfiles_never_change_a_directory_that_already_exists(sb: Sandbox, tmp_path: Path, user: str | None) -> None:
    # Someone else's world-writable directory at the lock directory's path (what /run/lock is).
    sb.run(["mkdir", "-m", "1777", "/run/hello"])
    sb.run(["chown", "nobody:nogroup", "/run/hello"])
    raw = example_toml("hello")
    raw.pop("user", None)
    if user:
        raw["user"] = user
    install(sb, tmp_path, "hello", raw)  # runs systemd-tmpfiles --create on the rendered file
    assert sb.run(["stat", "-c", "%F %U:%G %a", "/run/hello"]).stdout == "directory nobody:nogroup 1777\n"


def test_dynamic_user_runtime_directory_is_systemds_own_layout_at_start_and_upgrade(
    sb: Sandbox, tmp_path: Path
) -> None:
    """tmpfiles creates what systemd keeps for DynamicUser= with RuntimeDirectoryPreserve=
    (/run/private/NAME behind the relative symlink systemd makes): no migration warning at any
    start, no tmpfiles complaint when an upgrade applies the tmpfiles file again."""
    raw = example_toml("hello")
    raw.pop("user")
    spec = parse_spec(raw, name="hello", where="hello.toml")
    staging = tmp_path / "staging"
    write_tree(render(spec), staging)
    deb = build_deb(staging, package_info(spec, None), tmp_path / "dist")
    sb.copy_in(deb, "/root/hello.deb")
    sb.run(["rm", "-f", "/usr/sbin/policy-rc.d"])  # the host image denies starts

    first = sb.run(["dpkg", "-i", "/root/hello.deb"])  # tmpfiles, then the first start
    sb.systemctl("stop", "hello.service")
    sb.run(["systemd-tmpfiles", "--create", "/usr/lib/tmpfiles.d/hello.conf"])  # as at the next boot
    sb.systemctl("start", "hello.service", check=False)
    upgrade = sb.run(["dpkg", "-i", "/root/hello.deb"])  # the postinst applies tmpfiles again

    assert "already exists" not in first.stderr + upgrade.stderr
    messages = [e.get("MESSAGE", "") for e in sb.journal(unit="hello.service")]
    assert [m for m in messages if m.startswith("Starting hello.service")], messages  # it was started
    assert not [m for m in messages if "pre-existing public" in m], messages
    assert sb.run(["readlink", "/run/hello"]).stdout == "private/hello\n"
    # systemd handed the directory to the dynamic user: it is the one tmpfiles made.
    assert sb.run(["stat", "-c", "%F %a", "/run/private/hello"]).stdout == "directory 755\n"
    assert sb.run(["stat", "-c", "%u", "/run/private/hello"]).stdout.strip() not in ("0", "")
