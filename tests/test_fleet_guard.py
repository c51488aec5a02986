"""The launcher's side of the fleet lock (issue 13, stage 2): unitgen.launcher.fleet_guard, run as real
processes (`python -m tests.etcd_cluster guard ...`) against a real 3-member etcd cluster, with the
launcher's own journal path pointed at a test receiver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.etcd_cluster import EtcdCluster, free_port
from tests.launcher_helpers import Receiver, StuckSocket, journal_entries, stuck_socket, wait_until
from unitgen.launcher import fleet_guard, runtime

ROOT = Path(__file__).parent.parent
TTL = 2  # the client allows it; the spec will ask for >= 5 s (etcd elections), tests want speed
PREFIX = "/unitgen/locks/demo"

# exec mode's app: heartbeats with CLOCK_MONOTONIC (shared by every process) to FILE, and a
# daemonised grandchild (double fork + setsid: reparented to the launcher, its subreaper) beating too.
# "stubborn" ignores SIGTERM, so only SIGKILL stops it.
APP = r"""
import os, signal, sys, time
out_path, stubborn = sys.argv[1], "stubborn" in sys.argv
if stubborn:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
def beat(who):
    out = open(out_path, "a", buffering=1)
    out.write(f"{who} {os.getpid()} {os.environ['UNITGEN_FENCING_TOKEN']}\n")
    while True:
        out.write(f"beat {time.monotonic():.6f}\n")
        time.sleep(0.02)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        beat("orphan")
    os._exit(0)
beat("app")
"""


def guard(launched: list[subprocess.Popen[str]], journal: Receiver | StuckSocket, endpoints: list[str], mode: str,
          *argv: str, on_contention: str = "exit", wait_timeout: str = "-",
          notify: Receiver | None = None) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "INVOCATION_ID")}
    environ[runtime.JOURNAL_SOCKET_ENV] = journal.env_value
    if notify is not None:
        environ["NOTIFY_SOCKET"] = notify.env_value
    p = subprocess.Popen(
        [sys.executable, "-m", "tests.etcd_cluster", "guard", mode, ",".join(endpoints), PREFIX, str(TTL),
         on_contention, wait_timeout, "--", *argv],
        cwd=ROOT, env=environ, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    launched.append(p)
    return p


def entries(journal: Receiver, message_id: str) -> list[dict[str, str]]:
    return [e for e in journal_entries(journal) if e.get("MESSAGE_ID") == message_id]


def keys(cluster: EtcdCluster) -> list[str]:
    return cluster.etcdctl("get", "--prefix", "--keys-only", PREFIX + "/").stdout.split()


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:  # noqa: PTH123
            return f.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_exit_codes_and_message_ids_are_the_launchers_or_new() -> None:
    assert fleet_guard.EXIT_ALREADY_RUNNING == runtime.EXIT_ALREADY_RUNNING
    assert fleet_guard.EXIT_WAIT_TIMEOUT == runtime.EXIT_WAIT_TIMEOUT
    assert fleet_guard.MESSAGE_ID_ALREADY_RUNNING == runtime.MESSAGE_ID_ALREADY_RUNNING
    taken = {v for k, v in vars(runtime).items() if k.startswith("EXIT_")}
    assert {fleet_guard.EXIT_FLEET_UNREACHABLE, fleet_guard.EXIT_FLEET_LOST}.isdisjoint(taken)
    ids = [fleet_guard.MESSAGE_ID_FLEET_ACQUIRED, fleet_guard.MESSAGE_ID_FLEET_UNREACHABLE,
           fleet_guard.MESSAGE_ID_FLEET_LOST]
    assert len(set(ids)) == 3 and not set(ids) & {runtime.MESSAGE_ID_ALREADY_RUNNING, runtime.MESSAGE_ID_LOCK_ERROR}


@pytest.mark.parametrize("walk", [pytest.param(fleet_guard.descendants, id="task-children"),
                                  pytest.param(fleet_guard._descendants_by_scan, id="proc-scan-fallback")])
def test_descendants_finds_children_and_grandchildren_but_not_zombies(walk: Callable[[int], list[int]]) -> None:
    tree = subprocess.Popen(["/bin/sh", "-c", "sleep 60 & sleep 60 & /bin/true & wait"], stdin=subprocess.DEVNULL)

    def sleeping() -> list[int]:
        return [pid for pid in walk(os.getpid()) if cmdline(pid).startswith(b"sleep\0")]

    sleeps: list[int] = []
    try:
        # Settled: both sleeps exec'd, /bin/true gone (a zombie until sh reaps it: never listed).
        wait_until(lambda: len(sleeping()) == 2 and len(walk(os.getpid())) == 3, what="sh and its two sleeps")
        assert tree.pid in walk(os.getpid())
    finally:
        sleeps = fleet_guard._descendants_by_scan(tree.pid)  # ours to stop, found independently
        tree.kill()
    try:
        wait_until(lambda: tree.pid not in walk(os.getpid()), what="the killed shell to count as gone (a zombie)")
    finally:
        tree.wait()
        for pid in sleeps:
            os.kill(pid, signal.SIGKILL)


# ---- exec mode ------------------------------------------------------------------------------------

def test_exec_app_gets_the_token_the_journal_logs_it_and_exit_releases_the_lock(
        etcd_cluster: EtcdCluster, launched: list[subprocess.Popen[str]], journal: Receiver) -> None:
    p = guard(launched, journal, etcd_cluster.endpoints, "exec",
              "/bin/sh", "-c", 'echo "$UNITGEN_FENCING_TOKEN $UNITGEN_FLEET_LOCK_KEY"; exit 5')
    out, err = p.communicate(timeout=20)
    assert p.returncode == 5, err  # the app's own status
    token, key = out.split()
    [entry] = entries(journal, fleet_guard.MESSAGE_ID_FLEET_ACQUIRED)
    assert entry["FENCING_TOKEN"] == token and entry["LOCK_SCOPE"] == "fleet" and entry["LOCK_KEY"] == PREFIX
    assert key == f"{PREFIX}/{entry['LEASE_ID']}"
    assert entry["LOCK_ENDPOINTS"] == ",".join(etcd_cluster.endpoints)
    assert keys(etcd_cluster) == []  # revoked at exit: the next holder need not wait for the TTL


def test_holding_arms_systemds_watchdog_and_pings_it_after_each_renewal(
        etcd_cluster: EtcdCluster, launched: list[subprocess.Popen[str]], journal: Receiver) -> None:
    notify = Receiver.abstract()
    try:
        p = guard(launched, journal, etcd_cluster.endpoints, "exec", "/bin/sleep", "2.5", notify=notify)
        assert p.wait(timeout=20) == 0
        states = [d.data.decode() for d in notify.drain()]
    finally:
        notify.close()
    margin = TTL / 4  # FleetLock's default
    assert states[0] == f"WATCHDOG_USEC={int((TTL - margin / 2) * 1e6)}\nWATCHDOG=1", states
    assert states[1:].count("WATCHDOG=1") >= 3  # renewals every ttl/3 while the app ran 2.5 s


def test_exec_contender_exits_17_naming_the_holder(
        etcd_cluster: EtcdCluster, launched: list[subprocess.Popen[str]], journal: Receiver) -> None:
    holder = guard(launched, journal, etcd_cluster.endpoints, "exec", "/bin/sleep", "60")
    wait_until(lambda: bool(keys(etcd_cluster)), what="the holder's key")
    began = time.monotonic()
    contender = guard(launched, journal, etcd_cluster.endpoints, "exec", "/bin/sh", "-c", "echo ran")
    out, _ = contender.communicate(timeout=20)
    assert contender.returncode == 17 and out == ""
    assert time.monotonic() - began < 2
    [entry] = entries(journal, runtime.MESSAGE_ID_ALREADY_RUNNING)
    assert entry["LOCK_SCOPE"] == "fleet" and entry["PRIORITY"] == "4"
    assert entry["LOCK_HOLDER_PID"] == str(holder.pid) and entry["LOCK_HOLDER_HOST"] == os.uname().nodename
    assert entry["LOCK_HOLDER_KEY"] == keys(etcd_cluster)[0]
    assert f"as PID {holder.pid}" in entry["MESSAGE"]


@pytest.mark.parametrize(("wait_timeout", "expected"), [
    pytest.param("-", 0, id="waits-until-the-holder-exits"),
    pytest.param("1", 75, id="gives-up-after-wait-timeout"),
])
def test_exec_contender_waits(etcd_cluster: EtcdCluster, launched: list[subprocess.Popen[str]], journal: Receiver,
                              tmp_path: Path, wait_timeout: str, expected: int) -> None:
    flag = tmp_path / "go"
    guard(launched, journal, etcd_cluster.endpoints, "exec",
          "/bin/sh", "-c", f"while [ ! -e {flag} ]; do sleep 0.05; done")
    wait_until(lambda: bool(keys(etcd_cluster)), what="the holder's key")
    waiter = guard(launched, journal, etcd_cluster.endpoints, "exec", "/bin/true",
                   on_contention="wait", wait_timeout=wait_timeout)
    # From the waiter's own entry on: a fixed sleep from its spawn raced its start-up under load.
    wait_until(lambda: bool(entries(journal, runtime.MESSAGE_ID_ALREADY_RUNNING)), what="the waiter's entry")
    if expected == 75:
        assert waiter.wait(timeout=20) == expected  # gives up while the holder still holds the lock
    flag.touch()  # the holder's app exits; its launcher revokes the lease
    assert waiter.wait(timeout=20) == expected
    contention = entries(journal, runtime.MESSAGE_ID_ALREADY_RUNNING)
    assert contention[0]["LOCK_CONTENTION_ACTION"] == "wait"
    if expected == 75:
        assert contention[-1]["PRIORITY"] == "3" and "gave up" in contention[-1]["MESSAGE"]


def test_unreachable_etcd_exits_68_naming_the_endpoints_and_never_runs_the_app(
        launched: list[subprocess.Popen[str]], journal: Receiver, tmp_path: Path) -> None:
    endpoints = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    marker = tmp_path / "ran"
    p = guard(launched, journal, endpoints, "exec", "/bin/touch", str(marker))
    assert p.wait(timeout=20) == fleet_guard.EXIT_FLEET_UNREACHABLE
    assert not marker.exists()
    [entry] = entries(journal, fleet_guard.MESSAGE_ID_FLEET_UNREACHABLE)
    assert entry["PRIORITY"] == "3" and entry["LOCK_ENDPOINTS"] == ",".join(endpoints)
    assert all(e in entry["MESSAGE"] for e in endpoints) and entry["ERROR"]


@pytest.mark.parametrize("app", [pytest.param("obedient", id="stops-on-sigterm"),
                                 pytest.param("stubborn", id="ignores-sigterm-gets-sigkill")])
def test_exec_lost_lock_stops_app_and_orphans_before_the_lease_can_expire(
        etcd_cluster: EtcdCluster, launched: list[subprocess.Popen[str]], journal: Receiver, tmp_path: Path,
        app: str) -> None:
    beats = tmp_path / "beats"
    p = guard(launched, journal, etcd_cluster.endpoints, "exec", sys.executable, "-c", APP, str(beats), app)
    wait_until(lambda: beats.exists() and beats.read_text().count("orphan ") == 1, what="app and orphan")
    time.sleep(0.3)
    etcd_cluster.lose_quorum()  # renewals fail from now on
    assert p.wait(timeout=20) == fleet_guard.EXIT_FLEET_LOST
    lines = beats.read_text().splitlines()
    pids = [int(line.split()[1]) for line in lines if line.startswith(("app ", "orphan "))]
    assert len(pids) == 2 and not any(alive(pid) for pid in pids)
    [entry] = entries(journal, fleet_guard.MESSAGE_ID_FLEET_LOST)
    expiry = int(entry["LAST_RENEWAL_MONOTONIC_USEC"]) / 1e6 + TTL  # the server's earliest expiry
    last_beat = max(float(line.split()[1]) for line in lines if line.startswith("beat "))
    assert last_beat < expiry, f"the app ran {last_beat - expiry:.3f} s past the earliest lease expiry"
    assert entry["FENCING_TOKEN"] == lines[0].split()[2] and entry["LEASE_ID"] and entry["ERROR"]


@pytest.mark.parametrize(("app", "expected"), [
    # "started" only once the trap is set: a SIGTERM before it would kill sh (the other case).
    pytest.param('trap "echo stopping; exit 0" TERM; echo started; sleep 30 & wait', 0, id="app-stops-cleanly"),
    pytest.param("echo started; sleep 30", -signal.SIGTERM, id="app-dies-of-the-signal-so-does-the-launcher"),
])
def test_exec_sigterm_reaches_the_app_and_the_launcher_ends_as_it_did(
        etcd_cluster: EtcdCluster, launched: list[subprocess.Popen[str]], journal: Receiver,
        app: str, expected: int) -> None:
    p = guard(launched, journal, etcd_cluster.endpoints, "exec", "/bin/sh", "-c", app)
    assert p.stdout is not None and p.stdout.readline() == "started\n"
    p.send_signal(signal.SIGTERM)  # as kill(1) by hand would: only the launcher gets it
    assert p.wait(timeout=20) == expected
    assert keys(etcd_cluster) == []  # released, not left to expire


def test_exec_launcher_killed_9_takes_the_app_with_it(
        etcd_cluster: EtcdCluster, launched: list[subprocess.Popen[str]], journal: Receiver, tmp_path: Path) -> None:
    beats = tmp_path / "beats"
    p = guard(launched, journal, etcd_cluster.endpoints, "exec", sys.executable, "-c", APP, str(beats), "stubborn")
    wait_until(lambda: beats.exists() and beats.read_text().count("orphan ") == 1, what="app and orphan")
    pids = {line.split()[0]: int(line.split()[1]) for line in beats.read_text().splitlines()
            if line.startswith(("app ", "orphan "))}
    try:
        p.send_signal(signal.SIGKILL)
        wait_until(lambda: not alive(pids["app"]), timeout=1, what="the app to die with its launcher (PDEATHSIG)")
    finally:
        # Outside systemd nothing stops a daemonised grandchild of a launcher killed with -9 (it was
        # reparented to init); under systemd the cgroup is stopped with the main process.
        os.kill(pids["orphan"], signal.SIGKILL)


# ---- python mode ----------------------------------------------------------------------------------

@pytest.mark.parametrize("app", [pytest.param("obedient", id="stops-on-request"),
                                 pytest.param("stubborn", id="ignores-the-request-os-exit")])
def test_python_app_reads_the_token_and_is_stopped_with_its_workers_when_lost(
        etcd_cluster: EtcdCluster, launched: list[subprocess.Popen[str]], journal: Receiver, app: str) -> None:
    p = guard(launched, journal, etcd_cluster.endpoints, "python", app, "worker")
    assert p.stdout is not None
    token_line = p.stdout.readline().split()
    assert token_line[0] == "token" and token_line[1] == token_line[2] != "0"  # the call and the environment
    worker = int(p.stdout.readline().split()[1])
    assert p.stdout.readline().startswith("holding ")
    etcd_cluster.lose_quorum()
    assert p.wait(timeout=20) == fleet_guard.EXIT_FLEET_LOST
    out = p.stdout.read().splitlines()
    [entry] = entries(journal, fleet_guard.MESSAGE_ID_FLEET_LOST)
    expiry = int(entry["LAST_RENEWAL_MONOTONIC_USEC"]) / 1e6 + TTL
    holding = [float(line.split()[1]) for line in out if line.startswith("holding ")]
    assert max(holding, default=0) < expiry
    assert not alive(worker)
    assert ("ignoring the stop" in out) == (app == "stubborn")
    assert entry["FENCING_TOKEN"] == token_line[1]


def test_exec_app_starts_before_the_taken_entry_so_a_stuck_journal_never_delays_it(
        etcd_cluster: EtcdCluster, launched: list[subprocess.Popen[str]], work: Path) -> None:
    """The 'holds the fleet lock' entry is sent once the app is forked: a journald that does not
    read (the entry waits 1 s, then goes to stderr instead) never holds the app's start back."""
    import select

    with stuck_socket(work / "stuck") as stuck:
        p = guard(launched, stuck, etcd_cluster.endpoints, "exec", "/bin/sh", "-c", "echo started; exec sleep 30")
        assert p.stdout is not None and p.stderr is not None
        assert p.stdout.readline() == "started\n"
        waiting, _, _ = select.select([p.stderr], [], [], 0)
        assert not waiting, "the launcher gave up on the journal before the app started"
        assert "holds the fleet lock" in p.stderr.readline()  # ~1 s later, the entry's stderr stand-in
