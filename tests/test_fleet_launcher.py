"""The launcher with a fleet lock (issue 13): the stub and its modules deployed as the package installs
them (unitgen_launcher.py, unitgen_fleet_lock.py, unitgen_fleet_guard.py next to NAME-launcher),
run as real processes against a real 3-member etcd; two lock directories stand for two hosts."""

from __future__ import annotations

import signal
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from tests.etcd_cluster import EtcdCluster, TLSMaterial, start_cluster
from tests.launcher_helpers import Receiver, journal_entries, wait_until
from unitgen.launcher import fleet_guard, runtime
from unitgen.launcher.script import launcher_source, render_launcher

TTL = 2
KEY = "/unitgen/locks/demo"

APP_MODULE = """\
import os, sys, time

def main():
    print("token", os.environ["UNITGEN_FENCING_TOKEN"], flush=True)
    import unitgen_fleet
    print("call", unitgen_fleet.fencing_token(), unitgen_fleet.held(), flush=True)
    if sys.argv[1:] == ["forever"]:
        while True:
            time.sleep(0.05)
    return 3
"""


def deploy(host: Path, cluster_endpoints: list[str], **overrides: Any) -> Path:
    """One "host": a launcher directory laid out as the package installs it, and its lock directory."""
    libexec, run = host / "libexec", host / "run"
    for directory in (host, libexec, run):
        directory.mkdir(mode=0o755, exist_ok=True)
    settings: dict[str, Any] = {
        "name": "demo", "mode": "exec", "argv": ["/bin/sleep", "60"], "entry": None,
        "lock_file": str(run / "demo.pid"), "ready": "immediate", "ready_timeout_sec": 5.0,
        "on_contention": "exit", "wait_timeout_sec": None, "oneshot": False, "user": None,
        "fleet_etcd": cluster_endpoints, "fleet_key": KEY, "fleet_ttl": TTL, **overrides,
    }
    (libexec / "unitgen_launcher.py").write_text(launcher_source())
    for module, name in fleet_guard.DEPLOYED_NAMES.items():
        (libexec / f"{name}.py").write_bytes(resources.files("unitgen.launcher").joinpath(f"{module}.py").read_bytes())
    (libexec / "demoapp_fleet.py").write_text(APP_MODULE)
    stub = libexec / "demo-launcher"
    stub.write_text(render_launcher(settings, python=sys.executable))  # type: ignore[arg-type]
    stub.chmod(0o755)
    return stub


def start(launched: list[subprocess.Popen[str]], stub: Path, journal: Receiver, *args: str,
          **env: str) -> subprocess.Popen[str]:
    environ = {"PATH": "/usr/bin:/bin", runtime.JOURNAL_SOCKET_ENV: journal.env_value, **env}
    # `python STUB`: the stub's directory is then on sys.path, so python mode finds demoapp_fleet there.
    p = subprocess.Popen([sys.executable, str(stub), *args], env=environ, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    launched.append(p)
    return p


def entries(journal: Receiver, message_id: str) -> list[dict[str, str]]:
    return [e for e in journal_entries(journal) if e.get("MESSAGE_ID") == message_id]


@pytest.mark.parametrize("mode", [pytest.param("exec", id="exec"), pytest.param("python", id="python")])
def test_the_app_runs_with_the_token_and_a_second_host_is_refused_with_17(
        etcd_cluster: EtcdCluster, launched: list[subprocess.Popen[str]], journal: Receiver, work: Path,
        mode: str) -> None:
    if mode == "exec":
        app: dict[str, Any] = {"argv": ["/bin/sh", "-c", 'echo token "$UNITGEN_FENCING_TOKEN"; exec sleep 60']}
    else:
        app = {"mode": "python", "argv": [], "entry": "demoapp_fleet:main"}
    first = start(launched, deploy(work / "a", etcd_cluster.endpoints, **app), journal,
                  *(["forever"] if mode == "python" else []))
    assert first.stdout is not None
    token = first.stdout.readline().split()
    assert token[0] == "token" and int(token[1]) > 0, first.stderr.read() if first.stderr else ""
    if mode == "python":
        assert first.stdout.readline().split() == ["call", token[1], "True"]
    second = start(launched, deploy(work / "b", etcd_cluster.endpoints, **app), journal)
    assert second.wait(timeout=20) == runtime.EXIT_ALREADY_RUNNING
    [refused] = [e for e in entries(journal, runtime.MESSAGE_ID_ALREADY_RUNNING) if e.get("LOCK_SCOPE") == "fleet"]
    assert refused["LOCK_HOLDER_PID"] == str(first.pid) and refused["LOCK_HOLDER_TOKEN"] == token[1]
    [taken] = entries(journal, fleet_guard.MESSAGE_ID_FLEET_ACQUIRED)
    assert taken["FENCING_TOKEN"] == token[1] and taken["SYSLOG_IDENTIFIER"] == "demo"
    first.send_signal(signal.SIGTERM)
    first.wait(timeout=20)
    assert not etcd_cluster.etcdctl("get", "--prefix", "--keys-only", KEY + "/").stdout.split()


def test_the_local_lock_is_still_taken_first(
        etcd_cluster: EtcdCluster, launched: list[subprocess.Popen[str]], journal: Receiver, work: Path) -> None:
    stub = deploy(work / "a", etcd_cluster.endpoints)
    first = start(launched, stub, journal)
    wait_until(lambda: bool(entries(journal, fleet_guard.MESSAGE_ID_FLEET_ACQUIRED)), what="the fleet lock")
    second = start(launched, stub, journal)  # same host: refused by the fcntl lock, never asks etcd
    assert second.wait(timeout=20) == runtime.EXIT_ALREADY_RUNNING
    local = [e for e in entries(journal, runtime.MESSAGE_ID_ALREADY_RUNNING) if "LOCK_PATH" in e]
    assert local and local[0]["LOCK_HOLDER_PID"] == str(first.pid) and "LOCK_SCOPE" not in local[0]


def test_unreachable_etcd_exits_68_and_a_missing_module_78(
        launched: list[subprocess.Popen[str]], journal: Receiver, work: Path) -> None:
    stub = deploy(work / "a", ["http://127.0.0.1:9"])  # discard port: nothing answers
    p = start(launched, stub, journal)
    assert p.wait(timeout=20) == fleet_guard.EXIT_FLEET_UNREACHABLE
    (stub.parent / "unitgen_fleet_guard.py").unlink()
    p = start(launched, stub, journal)
    assert p.wait(timeout=20) == runtime.EXIT_CONFIG_ERROR
    assert any("fleet lock module is missing" in e.get("MESSAGE", "") for e in journal_entries(journal))


def test_lost_lock_exits_76_in_exec_mode_before_the_lease_can_expire(
        etcd_cluster: EtcdCluster, launched: list[subprocess.Popen[str]], journal: Receiver, work: Path) -> None:
    p = start(launched, deploy(work / "a", etcd_cluster.endpoints), journal)
    wait_until(lambda: bool(entries(journal, fleet_guard.MESSAGE_ID_FLEET_ACQUIRED)), what="the fleet lock")
    etcd_cluster.lose_quorum()
    assert p.wait(timeout=20) == fleet_guard.EXIT_FLEET_LOST
    [lost] = entries(journal, fleet_guard.MESSAGE_ID_FLEET_LOST)
    assert lost["LOCK_SCOPE"] == "fleet" and lost["SYSLOG_IDENTIFIER"] == "demo"


@pytest.mark.parametrize("credentials", [pytest.param(True, id="from-credentials-directory"),
                                         pytest.param(False, id="none-no-lock")])
def test_https_client_certificate_is_read_from_the_credentials_directory(
        launched: list[subprocess.Popen[str]], journal: Receiver, work: Path, tmp_path: Path,
        credentials: bool) -> None:
    """What LoadCredential=etcd-ca/etcd-cert/etcd-key hands the service: files in $CREDENTIALS_DIRECTORY.
    (The project's sandboxed systemd does not load credentials, so this is the launcher's half.)"""
    tls = TLSMaterial.make(tmp_path / "pki")
    cluster = start_cluster(tmp_path / "etcd", size=1, tls=tls)
    try:
        store = work / "credentials"
        store.mkdir(mode=0o700)
        if credentials:
            for name, source in (("etcd-ca", tls.ca), ("etcd-cert", tls.client_cert), ("etcd-key", tls.client_key)):
                (store / name).write_bytes(source.read_bytes())
        p = start(launched, deploy(work / "a", cluster.endpoints), journal, CREDENTIALS_DIRECTORY=str(store))
        if credentials:
            wait_until(lambda: bool(entries(journal, fleet_guard.MESSAGE_ID_FLEET_ACQUIRED)), what="the fleet lock")
            assert cluster.etcdctl("get", "--prefix", "--keys-only", KEY + "/").stdout.split()
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=20)
        else:
            assert p.wait(timeout=20) == fleet_guard.EXIT_FLEET_UNREACHABLE
            [entry] = entries(journal, fleet_guard.MESSAGE_ID_FLEET_UNREACHABLE)
            assert "CERTIFICATE_VERIFY_FAILED" in entry["ERROR"] or "certificate" in entry["ERROR"].lower()
    finally:
        cluster.stop_all()


def test_the_forked_app_gets_sigpipe_and_sigxfsz_as_exec_mode_leaves_them(
        etcd_cluster: EtcdCluster, launched: list[subprocess.Popen[str]], journal: Receiver, work: Path) -> None:
    """The fleet guard forks the app from Python, which ignores both: run by hand, neither stays ignored."""
    stub = deploy(work / "a", etcd_cluster.endpoints,
                  argv=["/usr/bin/awk", "/^SigIgn:/ { print $2 }", "/proc/self/status"])
    p = start(launched, stub, journal)
    out, err = p.communicate(timeout=20)
    ignored = int(out, 16)
    assert (p.returncode, bool(ignored & 1 << (13 - 1)), bool(ignored & 1 << (25 - 1))) == (0, False, False), err
