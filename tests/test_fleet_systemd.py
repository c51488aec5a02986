"""The fleet lock in real systemd (issue 13): three sandboxes, each its own host (PID, mount, UTS and
network namespaces, its own /run and journald), reach a real 3-member etcd on the host through a veth
pair each, and run the same service, rendered by unitgen from one spec (`[lock] scope = "fleet"`,
hardened, DynamicUser) and installed as `unitgen try` installs it. An independent observer (the test)
merges what each host's app logged with CLOCK_MONOTONIC, which every namespace shares: exactly one
holder at any instant, tokens strictly increasing; kill -9, SIGSTOP and a partition of the holder
hand over within ttl + 1 s; the journal entries are there (`journalctl MESSAGE_ID=...` inside each
host). UNITGEN_FLEET_TRIALS=1000 runs the contention test until that many holds (about 2 minutes)."""

from __future__ import annotations

import itertools
import os
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.etcd_cluster import EtcdCluster, SandboxLink, TLSMaterial, start_cluster
from unitgen.launcher import fleet_guard
from unitgen.launcher.runtime import MESSAGE_ID_ALREADY_RUNNING
from unitgen.render.units import launcher_compile_argv, render
from unitgen.sandbox import Sandbox
from unitgen.spec import parse_spec

pytestmark = pytest.mark.root

ROOT = Path(__file__).parent.parent
NAME = "fleetdemo"
TTL = 5  # the spec's minimum
KEY = f"/unitgen/locks/{NAME}"

# The app: logs `start HOST TOKEN T`, then `beat T` every 20 ms for HOLD seconds (for ever if < 0), then
# `end T`, to its state directory, T = CLOCK_MONOTONIC.
APP = """\
import os, signal, socket, sys, time
hold = float(sys.argv[1])
log = open("/var/lib/fleetdemo/holds", "a", buffering=1)
def stop(signum, frame):
    log.write(f"stopped {time.monotonic():.6f}\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
start = time.monotonic()
log.write(f"start {socket.gethostname()} {os.environ.get('UNITGEN_FENCING_TOKEN', '0')} {start:.6f}\\n")
while hold < 0 or time.monotonic() < start + hold:
    log.write(f"beat {time.monotonic():.6f}\\n")
    time.sleep(0.02)
log.write(f"end {time.monotonic():.6f}\\n")
"""

@dataclass
class Host:
    sandbox: Sandbox
    link: SandboxLink

    @property
    def name(self) -> str:
        return self.sandbox.run(["hostname"]).stdout.strip()

    def holds(self) -> str:
        return self.sandbox.run(["cat", "/var/lib/fleetdemo/holds"], check=False).stdout


@dataclass(frozen=True)
class Hold:
    host: str
    token: int
    start: float
    last: float  # `end`, or the last beat of an app that was stopped


def parse_holds(text: str) -> list[Hold]:
    holds: list[Hold] = []
    current: list[str] = []
    for line in [*text.splitlines(), "start"]:
        word = line.split()[0] if line.split() else ""
        if word == "start":
            if current:
                host, token, start = current[0].split()[1:]
                times = [float(x.split()[1]) for x in current[1:]]
                holds.append(Hold(host, int(token), float(start), max(times, default=float(start))))
            current = [line]
        elif word in ("beat", "end", "stopped"):
            current.append(line)
    return holds


def assert_one_holder_at_a_time(holds: list[Hold]) -> None:
    ordered = sorted(holds, key=lambda h: h.token)
    for a, b in itertools.pairwise(ordered):
        assert b.token > a.token
        assert b.start > a.last, f"{b.host} (token {b.token}) started {a.last - b.start:.3f} s before " \
                                 f"{a.host} (token {a.token}) stopped"


SPEC = """\
description = "fleet lock demo"
exec = ["/usr/bin/python3", "-I", "/usr/lib/fleetdemo/app.py", "{hold}"]
on_contention = "wait"
state_directory = true
restart = "always"
restart_sec = 0.1
start_limit_burst = 1000
start_limit_interval = 1

[lock]
scope = "fleet"
etcd = [{endpoints}]
ttl = 5
"""


# python mode: the same app as a callable, asking the launcher for the token and whether it still holds.
PYTHON_APP = """\
import socket, time
import unitgen_fleet

def main():
    log = open("/var/lib/fleetdemo/holds", "a", buffering=1)
    start = time.monotonic()
    log.write(f"start {socket.gethostname()} {unitgen_fleet.fencing_token()} {start:.6f}\\n")
    try:
        while unitgen_fleet.held():
            log.write(f"beat {time.monotonic():.6f}\\n")
            time.sleep(0.02)
    finally:
        log.write(f"stopped {time.monotonic():.6f}\\n")
"""


def install(host: Host, cluster: EtcdCluster, hold: float, work: Path, python_mode: bool = False,
            lock_extra: str = "") -> None:
    """Render the service for this host (its endpoints are the host side of its own veth) with unitgen,
    and install the staging tree as `unitgen try` does. lock_extra: more lines for the [lock] table."""
    endpoints = ", ".join(f'"{e}"' for e in cluster.endpoints_via(host.link.host_address))
    text = SPEC.format(hold=hold, endpoints=endpoints) + lock_extra
    if python_mode:
        text = text.replace(f'exec = ["/usr/bin/python3", "-I", "/usr/lib/fleetdemo/app.py", "{hold}"]',
                            'entry = "fleetapp:main"')
        host.sandbox.write_file("/usr/lib/python3/dist-packages/fleetapp.py", PYTHON_APP)
    spec = parse_spec(tomllib.loads(text), name=NAME, where="fleetdemo.toml")
    root = work / f"staging-{host.link.index}"
    for f in render(spec):
        path = root / f.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f.content)
        path.chmod(f.mode)
    sb = host.sandbox
    sb.copy_in(root, "/")
    sb.write_file("/usr/lib/fleetdemo/app.py", APP)
    sb.run(list(launcher_compile_argv(spec)))
    # The fleet modules ship next to the launcher module and get their bytecode with it.
    compiled = sb.run(["ls", f"/usr/libexec/{NAME}/__pycache__"]).stdout
    assert all(f"{name}.cpython-" in compiled for name in ("unitgen_launcher", *fleet_guard.DEPLOYED_NAMES.values()))
    sb.run(["systemd-tmpfiles", "--create", f"/usr/lib/tmpfiles.d/{NAME}.conf"])
    sb.systemctl("daemon-reload")


@pytest.fixture
def fleet(sandbox_factory: Callable[[str], Sandbox], tmp_path: Path) -> Iterator[tuple[list[Host], EtcdCluster]]:
    sandboxes = [sandbox_factory(f"h{i}") for i in range(3)]
    links: list[SandboxLink] = []
    try:
        for sb, index in zip(sandboxes, SandboxLink.indexes(3), strict=True):
            links.append(SandboxLink(sb.pid, index))
        cluster = start_cluster(tmp_path / "etcd", more_addresses=tuple(link.host_address for link in links))
        try:
            yield [Host(sb, link) for sb, link in zip(sandboxes, links, strict=True)], cluster
        finally:
            for sb in sandboxes:  # before etcd goes: nobody is left renewing a lease
                sb.systemctl("stop", f"{NAME}.service", check=False)
            cluster.stop_all()
    finally:
        for link in links:
            link.delete()


def holder_now(cluster: EtcdCluster) -> tuple[str, int] | None:
    """(key, create revision) of the lock's owner, read with etcdctl."""
    out = cluster.etcdctl("get", "--prefix", KEY + "/", "--sort-by=CREATE", "--order=ASCEND", "-w", "fields")
    key = revision = None
    for line in out.stdout.splitlines():
        if line.startswith('"Key"') and key is None:
            key = line.split(" : ", 1)[1].strip('"')
        elif line.startswith('"CreateRevision"') and revision is None:
            revision = int(line.split(" : ", 1)[1])
    return (key, revision) if key is not None and revision is not None else None


def test_three_hosts_contend_for_one_fleet_lock_one_holder_at_a_time(
        fleet: tuple[list[Host], EtcdCluster], tmp_path: Path) -> None:
    """on_contention = "wait", Restart=always and an app that holds for 0 s: the three hosts hand the
    lock round for 20 s (or until UNITGEN_FLEET_TRIALS holds)."""
    hosts, cluster = fleet
    target = int(os.environ.get("UNITGEN_FLEET_TRIALS", "0"))
    for host in hosts:
        install(host, cluster, 0.0, tmp_path)
    began = time.monotonic()
    for host in hosts:
        host.sandbox.systemctl("start", "--no-block", f"{NAME}.service")
    while time.monotonic() - began < (600 if target else 20):
        time.sleep(2)
        if target and sum(host.holds().count("start ") for host in hosts) >= target:
            break
    for host in hosts:
        host.sandbox.systemctl("stop", f"{NAME}.service")
    elapsed = time.monotonic() - began
    holds = [h for host in hosts for h in parse_holds(host.holds())]
    per_host = {name: sum(h.host == name for h in holds) for name in (host.name for host in hosts)}
    assert all(per_host.values()), per_host  # every host held it at some point
    assert len(holds) >= max(target, 60), per_host
    assert_one_holder_at_a_time(holds)
    match = f"MESSAGE_ID={fleet_guard.MESSAGE_ID_FLEET_ACQUIRED}"
    acquired = [e for host in hosts for e in host.sandbox.journal(match)]
    assert {int(e["FENCING_TOKEN"]) for e in acquired} >= {h.token for h in holds}
    assert {e["LOCK_SCOPE"] for e in acquired} == {"fleet"} and {e["SYSLOG_IDENTIFIER"] for e in acquired} == {NAME}
    # Waiting hosts logged the usual contention entry, naming the fleet holder.
    contention = [e for host in hosts for e in host.sandbox.journal(f"MESSAGE_ID={MESSAGE_ID_ALREADY_RUNNING}")]
    fleet_waits = [e for e in contention if e.get("LOCK_SCOPE") == "fleet"]
    assert fleet_waits and all(e["LOCK_CONTENTION_ACTION"] == "wait" and e["LOCK_HOLDER_HOST"] for e in fleet_waits)
    ordered = sorted(holds, key=lambda h: h.token)
    gaps = sorted(b.start - a.last for a, b in itertools.pairwise(ordered))
    print(f"{len(holds)} holds in {elapsed:.0f} s {per_host}; between holders min {gaps[0] * 1000:.1f} ms, "
          f"median {gaps[len(gaps) // 2] * 1000:.1f} ms, max {gaps[-1] * 1000:.1f} ms")


def start_all_and_find_holder(hosts: list[Host], cluster: EtcdCluster, work: Path, unit: str | None = None,
                              python_mode: bool = False) -> tuple[Host, list[Host]]:
    for host in hosts:  # the app holds for ever
        if unit is None:
            install(host, cluster, -1, work, python_mode)
        else:
            install_unit(host, cluster, unit)
    for host in hosts:
        host.sandbox.systemctl("start", "--no-block", f"{NAME}.service")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        holding = [host for host in hosts if "start " in host.holds()]
        if holding:
            assert len(holding) == 1, [h.name for h in holding]
            time.sleep(0.5)  # the others are queued behind it by now
            return holding[0], [host for host in hosts if host is not holding[0]]
        time.sleep(0.1)
    raise AssertionError("nobody took the lock")


def wait_for_new_holder(others: list[Host], timeout: float) -> tuple[Host, Hold]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for host in others:
            holds = parse_holds(host.holds())
            if holds:
                return host, holds[0]
        time.sleep(0.05)
    raise AssertionError(f"no other host took over within {timeout} s")


def test_kill_9_of_the_holders_launcher_hands_over_within_ttl_plus_1s(
        fleet: tuple[list[Host], EtcdCluster], tmp_path: Path) -> None:
    hosts, cluster = fleet
    holder, others = start_all_and_find_holder(hosts, cluster, tmp_path)
    main_pid = holder.sandbox.show(f"{NAME}.service", "MainPID")["MainPID"]
    killed = time.monotonic()
    holder.sandbox.run(["kill", "-9", main_pid])
    new_host, new = wait_for_new_holder(others, TTL + 5)
    assert new.start - killed <= TTL + 1, f"takeover after {new.start - killed:.2f} s"
    old = parse_holds(holder.holds())
    assert old[0].last < killed + 0.5  # the app went with its launcher
    time.sleep(1)
    assert_one_holder_at_a_time([h for host in hosts for h in parse_holds(host.holds())])
    print(f"kill -9 -> {new_host.name} running: {new.start - killed:.2f} s")


def test_systemctl_stop_of_the_holder_stops_its_app_cleanly_and_hands_over_at_once(
        fleet: tuple[list[Host], EtcdCluster], tmp_path: Path) -> None:
    hosts, cluster = fleet
    holder, others = start_all_and_find_holder(hosts, cluster, tmp_path)
    began = time.monotonic()
    holder.sandbox.systemctl("stop", f"{NAME}.service")
    stopped = time.monotonic()
    assert "stopped " in holder.holds()  # the app's own SIGTERM handler ran: a graceful stop
    assert holder.sandbox.show(f"{NAME}.service", "Result")["Result"] == "success"
    new_host, new = wait_for_new_holder(others, 5)
    assert new.start - stopped < 1, f"takeover {new.start - stopped:.2f} s after the stop (lease revoked?)"
    assert_one_holder_at_a_time([h for host in hosts for h in parse_holds(host.holds())])
    print(f"systemctl stop took {stopped - began:.2f} s; {new_host.name} ran {new.start - stopped:.2f} s later")


def test_partitioned_holder_stops_before_its_lease_expires_and_another_host_takes_over(
        fleet: tuple[list[Host], EtcdCluster], tmp_path: Path) -> None:
    hosts, cluster = fleet
    holder, others = start_all_and_find_holder(hosts, cluster, tmp_path)
    holder.link.partition()
    cut = time.monotonic()
    new_host, new = wait_for_new_holder(others, TTL + 5)
    assert new.start - cut <= TTL + 1, f"takeover after {new.start - cut:.2f} s"
    [lost] = holder.sandbox.journal(f"MESSAGE_ID={fleet_guard.MESSAGE_ID_FLEET_LOST}")
    expiry = int(lost["LAST_RENEWAL_MONOTONIC_USEC"]) / 1e6 + TTL
    old = parse_holds(holder.holds())[0]
    assert old.last < expiry and old.last < new.start
    assert lost["LOCK_SCOPE"] == "fleet" and lost["LOCK_KEY"] == KEY and lost["FENCING_TOKEN"] == str(old.token)
    # It ended as documented, exit 76, not killed by the watchdog while it tried to revoke (found by
    # `unitgen try --fleet`: without a last ping once the app is gone, Result=watchdog).
    messages = " ".join(e.get("MESSAGE", "") for e in holder.sandbox.journal(unit=f"{NAME}.service"))
    assert f"status={fleet_guard.EXIT_FLEET_LOST}/" in messages and "Watchdog timeout" not in messages, messages[-2000:]
    holder.link.heal()
    time.sleep(TTL)  # the healed host's service restarted (exit 76) and queues again: nothing runs twice
    holds = [h for host in hosts for h in parse_holds(host.holds())]
    assert_one_holder_at_a_time(holds)
    assert len(holds) == 2, holds
    print(f"partition -> holder stopped {expiry - old.last:.2f} s before its lease could expire; "
          f"{new_host.name} running after {new.start - cut:.2f} s")


def test_python_mode_partitioned_holder_is_stopped_through_its_sigterm_path_exit_76(
        fleet: tuple[list[Host], EtcdCluster], tmp_path: Path) -> None:
    """entry = "pkg:func": the app asks `unitgen_fleet` for its token and whether it holds; cut off, the
    launcher stops it as SIGTERM would (its `finally` runs) before the lease can expire, exit 76."""
    hosts, cluster = fleet
    holder, others = start_all_and_find_holder(hosts, cluster, tmp_path, python_mode=True)
    holder.link.partition()
    cut = time.monotonic()
    new_host, new = wait_for_new_holder(others, TTL + 5)
    assert new.start - cut <= TTL + 1, f"takeover after {new.start - cut:.2f} s"
    [lost] = holder.sandbox.journal(f"MESSAGE_ID={fleet_guard.MESSAGE_ID_FLEET_LOST}")
    expiry = int(lost["LAST_RENEWAL_MONOTONIC_USEC"]) / 1e6 + TTL
    old = parse_holds(holder.holds())[0]
    assert "stopped " in holder.holds()  # the app's finally ran: stopped by SystemExit, not killed
    assert old.last < expiry and old.last < new.start and old.token > 0
    assert lost["FENCING_TOKEN"] == str(old.token)
    messages = " ".join(e.get("MESSAGE", "") for e in holder.sandbox.journal(unit=f"{NAME}.service"))
    assert "status=76" in messages, messages[-2000:]
    print(f"python mode partition -> app stopped {expiry - old.last:.2f} s before its lease could expire; "
          f"{new_host.name} running after {new.start - cut:.2f} s")


def test_sigstop_of_the_holders_launcher_systemds_watchdog_kills_it_before_the_lease_can_expire(
        fleet: tuple[list[Host], EtcdCluster], tmp_path: Path) -> None:
    """A frozen launcher can neither renew nor stop its app: the guard arms systemd's watchdog
    (WATCHDOG_USEC=, pinged after each renewal), so systemd SIGKILLs it and the app goes with it."""
    hosts, cluster = fleet
    holder, others = start_all_and_find_holder(hosts, cluster, tmp_path)
    main_pid = holder.sandbox.show(f"{NAME}.service", "MainPID")["MainPID"]
    holder.sandbox.run(["kill", "-STOP", main_pid])
    stopped = time.monotonic()
    new_host, new = wait_for_new_holder(others, TTL + 5)
    assert new.start - stopped <= TTL + 1, f"takeover after {new.start - stopped:.2f} s"
    old = parse_holds(holder.holds())[0]
    assert old.last < new.start, f"the frozen holder's app ran {old.last - new.start:.2f} s into the next hold"
    messages = " ".join(e.get("MESSAGE", "") for e in holder.sandbox.journal(unit=f"{NAME}.service"))
    assert "Watchdog timeout" in messages, messages[-2000:]
    print(f"SIGSTOP -> app killed {new.start - old.last:.2f} s before {new_host.name} ran "
          f"({new.start - stopped:.2f} s after the stop)")


def install_unit(host: Host, cluster: EtcdCluster, unit: str) -> None:
    """A hand-written unit running the same app (for the etcdctl comparison)."""
    sb = host.sandbox
    sb.write_file("/usr/lib/fleetdemo/app.py", APP)
    endpoints = ",".join(cluster.endpoints_via(host.link.host_address))
    sb.write_file(f"/etc/systemd/system/{NAME}.service", unit.format(endpoints=endpoints, hold=-1))
    sb.systemctl("daemon-reload")


ETCDCTL_UNIT = """\
[Unit]
Description=the same app under etcdctl lock
StartLimitIntervalSec=0
[Service]
ExecStart=/usr/bin/etcdctl --endpoints {endpoints} lock --ttl=5 /unitgen/locks/fleetdemo -- \
/usr/bin/python3 -I /usr/lib/fleetdemo/app.py {hold}
Restart=always
RestartSec=0.1
StateDirectory=fleetdemo
"""


def test_the_same_partition_with_etcdctl_lock_as_the_wrapper_runs_two_holders_at_once(
        fleet: tuple[list[Host], EtcdCluster], tmp_path: Path) -> None:
    """Why unitgen does not wrap with `etcdctl lock KEY cmd` (issue 13): cut off from etcd, the wrapper
    keeps its command running after its lease expired, next to the host that took the lock over."""
    hosts, cluster = fleet
    holder, others = start_all_and_find_holder(hosts, cluster, tmp_path, ETCDCTL_UNIT)
    holder.link.partition()
    cut = time.monotonic()
    new_host, new = wait_for_new_holder(others, TTL + 10)
    time.sleep(3)
    old = parse_holds(holder.holds())[0]
    overlap = old.last - new.start
    assert overlap > 2.5, f"old holder stopped {-overlap:.2f} s before the new one started"
    print(f"etcdctl lock: {new_host.name} took over {new.start - cut:.2f} s after the cut; the cut-off "
          f"holder's command was still running {overlap:.2f} s later (and keeps running)")


TLS_LOCK = """\
ca_file = "/etc/fleetdemo/etcd-ca.pem"
cert_file = "/etc/fleetdemo/etcd-client.pem"
key_file = "/etc/fleetdemo/etcd-client.key"
"""


def test_tls_client_certificate_reaches_the_launcher_through_load_credential(
        sandbox_factory: Callable[[str], Sandbox], tmp_path: Path) -> None:
    """etcd over https with client certificates required. The spec's ca_file/cert_file/key_file are
    root-only files (0600) on the host; the service runs as a DynamicUser, which cannot read them: it
    holds the lock only if systemd handed them over with LoadCredential= in $CREDENTIALS_DIRECTORY."""
    sb = sandbox_factory("tls")
    [index] = SandboxLink.indexes(1)
    link = SandboxLink(sb.pid, index)
    try:
        tls = TLSMaterial.make(tmp_path / "pki", addresses=(link.host_address,))
        cluster = start_cluster(tmp_path / "etcd", size=1, tls=tls, more_addresses=(link.host_address,))
        try:
            host = Host(sb, link)
            for source, target in ((tls.ca, "etcd-ca.pem"), (tls.client_cert, "etcd-client.pem"),
                                   (tls.client_key, "etcd-client.key")):
                sb.write_file(f"/etc/fleetdemo/{target}", source.read_bytes(), mode=0o600)
            install(host, cluster, -1, tmp_path, lock_extra=TLS_LOCK)
            unit = sb.run(["systemctl", "cat", f"{NAME}.service"]).stdout
            assert "LoadCredential=etcd-cert:/etc/fleetdemo/etcd-client.pem" in unit and "DynamicUser=yes" in unit
            sb.systemctl("start", f"{NAME}.service")
            sb.wait_for(lambda: "start " in host.holds(), 30, "the app to hold the fleet lock over TLS")
            [taken] = sb.journal(f"MESSAGE_ID={fleet_guard.MESSAGE_ID_FLEET_ACQUIRED}")
            assert all(e.startswith("https://") for e in taken["LOCK_ENDPOINTS"].split(",")), taken
            # What the launcher got: the credentials directory, with the three files, and no path in its
            # environment pointing at the files on disk.
            pid = sb.show(f"{NAME}.service", "MainPID")["MainPID"]
            environ = sb.read_file(f"/proc/{pid}/environ").decode().split("\0")
            [directory] = [v.split("=", 1)[1] for v in environ if v.startswith("CREDENTIALS_DIRECTORY=")]
            assert sb.run(["ls", directory]).stdout.split() == ["etcd-ca", "etcd-cert", "etcd-key"]
            assert not any("/etc/fleetdemo" in v for v in environ)
            uid = sb.run(["ps", "-o", "uid=", "-p", pid]).stdout.strip()
            denied = sb.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                             "cat", "/etc/fleetdemo/etcd-client.key"], check=False)
            assert denied.returncode != 0 and "Permission denied" in denied.stderr  # only systemd could read it
            # etcd (through etcdctl with the same CA) sees this host's key as the owner, with the token.
            keys = cluster.etcdctl("get", "--prefix", KEY + "/", "--keys-only").stdout.split()
            assert keys == [f"{KEY}/{taken['LEASE_ID']}"] and int(taken["FENCING_TOKEN"]) > 0
        finally:
            sb.systemctl("stop", f"{NAME}.service", check=False)
            cluster.stop_all()
    finally:
        link.delete()


def test_a_member_down_changes_nothing_quorum_lost_stops_the_holder_and_nobody_starts(
        fleet: tuple[list[Host], EtcdCluster], tmp_path: Path) -> None:
    """Issue 13: with 2 of 3 members left the lock keeps working (the leader is killed: an election
    on top); with 1 of 3 the holder's app is stopped before its lease could expire and no host runs."""
    hosts, cluster = fleet
    holder, others = start_all_and_find_holder(hosts, cluster, tmp_path)
    leader = cluster.leader()
    cluster.kill(leader)
    time.sleep(TTL + 1)  # more than a lease's life: renewals went on through the election
    assert not holder.sandbox.journal(f"MESSAGE_ID={fleet_guard.MESSAGE_ID_FLEET_LOST}")
    [hold] = parse_holds(holder.holds())
    assert time.monotonic() - hold.last < 3, "the holder's app stopped beating with 2 of 3 members up"
    assert all(not parse_holds(host.holds()) for host in others)
    cluster.kill(next(i for i in range(3) if i != leader))
    lost_quorum = time.monotonic()
    holder.sandbox.wait_for(lambda: bool(holder.sandbox.journal(f"MESSAGE_ID={fleet_guard.MESSAGE_ID_FLEET_LOST}")),
                            TTL + 5, "the holder to give the lock up")
    [lost] = holder.sandbox.journal(f"MESSAGE_ID={fleet_guard.MESSAGE_ID_FLEET_LOST}")
    expiry = int(lost["LAST_RENEWAL_MONOTONIC_USEC"]) / 1e6 + TTL
    time.sleep(max(0.0, expiry - time.monotonic()) + TTL)  # well past the lease: nobody may start now
    [old] = parse_holds(holder.holds())
    assert old.last < expiry, f"the holder's app ran {old.last - expiry:.2f} s past its lease"
    assert all(not parse_holds(host.holds()) for host in others), [host.holds() for host in others]
    print(f"quorum lost -> holder's app stopped {old.last - lost_quorum:.2f} s later, {expiry - old.last:.2f} s "
          f"before its lease could expire; no host ran for {time.monotonic() - lost_quorum:.1f} s")
