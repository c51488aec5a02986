"""The fleet lock (issue 13, stage 1) against a real 3-member etcd cluster and real `etcdctl lock`."""

from __future__ import annotations

import itertools
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tests.etcd_cluster import ETCDCTL, EtcdCluster, Netns, TLSMaterial, start_cluster
from unitgen.launcher import fleet as fleet_lock
from unitgen.launcher.fleet import Contended, FleetLock, Lost, TLSFiles, Unreachable

ROOT = Path(__file__).parent.parent
TTL = 2  # seconds; etcd's minimum lease TTL with the harness's 500 ms election timeout is below this


def contender(cluster: EtcdCluster, mode: str, prefix: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.etcd_cluster", mode, ",".join(cluster.endpoints), prefix, str(TTL), *args],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def new_lock(etcd_cluster: EtcdCluster) -> Iterator[Callable[..., FleetLock]]:
    """FleetLock(cluster endpoints, prefix, TTL, **options); every one is released at teardown, so a
    failing test leaves no keep-alive thread (and its connection) behind."""
    made: list[FleetLock] = []

    def make(prefix: str, **options: Any) -> FleetLock:
        made.append(FleetLock(etcd_cluster.endpoints, prefix, TTL, **options))
        return made[-1]

    yield make
    for lock in made:
        lock.release()


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:  # only the processes this test started, by PID
        if p.poll() is None:
            p.send_signal(signal.SIGCONT)
            p.kill()
        p.wait(timeout=10)
        for stream in (p.stdout, p.stderr):
            if stream is not None:
                stream.close()


class Lines:
    """A process's stdout lines, read by a thread, so that waiting for one is bounded."""

    def __init__(self, p: subprocess.Popen[str]) -> None:
        self._queue: queue.Queue[str] = queue.Queue()
        stream = p.stdout
        assert stream is not None
        self._reader = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line.strip())

    def next(self, timeout: float = 15) -> str:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return ""

    def rest(self) -> list[str]:
        """Every line not read yet, up to the end of the output (call after the process exited)."""
        self._reader.join(timeout=10)  # it returns at EOF, once it queued every line
        out = []
        while not self._queue.empty():
            out.append(self._queue.get())
        return out


# ---- pieces without a cluster -------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    pytest.param({"host": "web-1", "pid": 4242, "unit": "nightly.service"}, id="identity"),
    pytest.param({"host": 'q"uote\\back\nline\x00nul', "unit": "ünï-☃.service"}, id="escapes-and-unicode"),
    pytest.param({"b": [1, 2.5, True, False, None], "a": {"nested": []}}, id="nested-and-constants"),
    pytest.param({"header": {"revision": "9223372036854775807"}}, id="int64-as-string"),
])
def test_json_without_the_json_module_matches_it(value: dict[str, object]) -> None:
    encoded = fleet_lock._dumps(value)
    assert encoded == json.dumps(value, sort_keys=True, separators=(",", ":"))
    assert fleet_lock._loads(encoded) == value == json.loads(encoded)


@pytest.mark.parametrize(("endpoint", "expected"), [
    pytest.param("http://127.0.0.1:2379", ("http", "127.0.0.1", 2379), id="http"),
    pytest.param("https://etcd1.example:12379/", ("https", "etcd1.example", 12379), id="https-name-slash"),
    pytest.param("10.0.0.5:2379", ("http", "10.0.0.5", 2379), id="bare-host-port"),
    pytest.param("https://[fd00::1]:2379", ("https", "fd00::1", 2379), id="ipv6"),
    pytest.param("http://etcd3", ("http", "etcd3", 2379), id="default-port"),
])
def test_endpoints_are_split_like_etcdctl_reads_them(endpoint: str, expected: tuple[str, str, int]) -> None:
    assert fleet_lock._split_endpoint(endpoint) == expected


@pytest.mark.parametrize("endpoint", [
    pytest.param("unix:///run/etcd.sock", id="unix-scheme"),
    pytest.param("http://:2379", id="no-host"),
    pytest.param("http://etcd:port", id="port-not-a-number"),
])
def test_bad_endpoints_are_refused_before_any_connection(endpoint: str) -> None:
    with pytest.raises(ValueError, match="bad etcd endpoint"):
        FleetLock([endpoint], "/t/x", TTL)


@pytest.mark.parametrize(("ttl", "margin"), [
    pytest.param(0, None, id="ttl-zero"),
    pytest.param(3, -1.0, id="negative-margin"),
    pytest.param(3, 2.0, id="margin-leaves-no-second-renewal"),
])
def test_bad_ttl_or_margin_is_refused(ttl: int, margin: float | None) -> None:
    with pytest.raises(ValueError, match="ttl"):
        FleetLock(["http://127.0.0.1:2379"], "/t/x", ttl, margin=margin)


def test_contenders_read_the_holders_identity(new_lock: Callable[..., FleetLock]) -> None:
    identity = {"host": 'web"1', "pid": 4242, "unit": "ünï.service"}
    holder = new_lock("/t/identity", identity=identity)
    token = holder.acquire()
    with pytest.raises(Contended) as info:
        new_lock("/t/identity").acquire()
    assert info.value.holder == {**identity, "key": holder.key, "create_revision": token}


# ---- interop with etcdctl lock ------------------------------------------------------------------

def test_etcdctl_holds_then_we_are_contended_and_name_its_key(
        etcd_cluster: EtcdCluster, procs: list[subprocess.Popen[str]], new_lock: Callable[..., FleetLock]) -> None:
    held = subprocess.Popen([ETCDCTL, "--endpoints", ",".join(etcd_cluster.endpoints), "lock", "/t/interop"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.append(held)
    its_key = Lines(held).next()
    assert its_key.startswith("/t/interop/"), held.stderr
    ours = new_lock("/t/interop")
    with pytest.raises(Contended) as info:
        ours.acquire()
    assert info.value.holder["key"] == its_key
    assert not ours.held()
    held.send_signal(signal.SIGTERM)  # etcdctl lock unlocks on SIGTERM
    held.wait(timeout=10)
    token = ours.acquire()
    assert token > int(info.value.holder["create_revision"])  # type: ignore[call-overload]
    ours.release()


def test_we_hold_then_etcdctl_lock_waits_until_we_release(
        etcd_cluster: EtcdCluster, procs: list[subprocess.Popen[str]], new_lock: Callable[..., FleetLock]) -> None:
    ours = new_lock("/t/interop")
    ours.acquire()
    waiter = subprocess.Popen([ETCDCTL, "--endpoints", ",".join(etcd_cluster.endpoints), "lock", "/t/interop"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.append(waiter)
    lines = Lines(waiter)
    assert lines.next(timeout=1.5) == "", "etcdctl lock got the lock while we held it"
    released = time.monotonic()
    ours.release()
    assert lines.next(timeout=5).startswith("/t/interop/")  # etcdctl prints its key once it holds the lock
    assert time.monotonic() - released < 1


# ---- many contenders, real processes ------------------------------------------------------------

@pytest.mark.parametrize(("workers", "rounds", "hold"), [
    pytest.param(3, 120, 0.005, id="3-processes-x120"),
    pytest.param(6, 40, 0.0, id="6-processes-x40-no-hold"),
])
def test_contention_trials_never_overlap_and_tokens_increase(
        etcd_cluster: EtcdCluster, procs: list[subprocess.Popen[str]], tmp_path: Path,
        workers: int, rounds: int, hold: float) -> None:
    log = tmp_path / "holders.log"
    for _ in range(workers):
        procs.append(contender(etcd_cluster, "loop", "/t/trials", str(log), str(rounds), str(hold)))
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read() if p.stderr else ""
    rows = [line.split(",") for line in log.read_text().splitlines()]
    assert len(rows) == workers * rounds
    intervals = sorted((int(token), float(start), float(end), ok) for _, token, start, end, ok in rows)
    assert all(ok == "1" for *_, ok in intervals), "a holder's lease could have expired while it held"
    for (tok_a, _, end_a, _), (tok_b, start_b, _, _) in itertools.pairwise(intervals):
        assert tok_b > tok_a
        assert start_b >= end_a, f"holder with token {tok_b} started before token {tok_a} ended"


# ---- the holder dies or stops -------------------------------------------------------------------

def test_kill_9_of_the_holder_hands_over_within_ttl_plus_1s(
        etcd_cluster: EtcdCluster, procs: list[subprocess.Popen[str]], new_lock: Callable[..., FleetLock]) -> None:
    holder = contender(etcd_cluster, "hold", "/t/kill")
    procs.append(holder)
    assert Lines(holder).next().startswith("token ")
    waiter = new_lock("/t/kill")
    killed = time.monotonic()
    holder.send_signal(signal.SIGKILL)
    waiter.acquire(wait=True, deadline=killed + TTL + 5)
    assert time.monotonic() - killed <= TTL + 1
    waiter.release()


def test_sigstop_longer_than_ttl_the_holder_never_acts_as_holder_after_resume(
        etcd_cluster: EtcdCluster, procs: list[subprocess.Popen[str]], new_lock: Callable[..., FleetLock]) -> None:
    holder = contender(etcd_cluster, "hold", "/t/stop")
    procs.append(holder)
    lines = Lines(holder)
    assert lines.next().startswith("token ")
    time.sleep(0.3)
    holder.send_signal(signal.SIGSTOP)
    stopped = time.monotonic()
    other = new_lock("/t/stop")
    other.acquire(wait=True, deadline=stopped + TTL + 5)  # the frozen holder's lease expired on the server
    assert time.monotonic() - stopped <= TTL + 1
    holder.send_signal(signal.SIGCONT)
    assert holder.wait(timeout=10) == 3
    out = lines.rest()
    assert "stale" in out and any(line.startswith("lost ") for line in out), out
    # No "holding" line for any instant after the holder was frozen: it knew its token was stale.
    times = [float(line.split()[1]) for line in out if line.startswith("holding ")]
    assert times and max(times) < stopped
    other.release()


def test_etcdctl_lock_as_the_wrapper_overlaps_where_ours_stops(
        etcd_cluster: EtcdCluster, procs: list[subprocess.Popen[str]], new_lock: Callable[..., FleetLock],
        tmp_path: Path) -> None:
    """Why the launcher watches its lease (issue 13): `etcdctl lock NAME cmd` frozen past its TTL (the
    same as cut off from etcd) leaves cmd running while the next holder runs: two holders at once.
    The SIGSTOP test above shows the fleet lock's holder stopping instead."""
    pid_file = tmp_path / "cmd.pid"
    wrapper = subprocess.Popen(
        [ETCDCTL, "--endpoints", ",".join(etcd_cluster.endpoints), "lock", f"--ttl={TTL}", "/t/wrapper", "--",
         "sh", "-c", f'echo $$ > {pid_file}; echo running; exec sleep 60'],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.append(wrapper)
    assert Lines(wrapper).next() == "running"
    command_pid = int(pid_file.read_text())
    try:
        wrapper.send_signal(signal.SIGSTOP)  # the wrapper only: its command keeps running
        stopped = time.monotonic()
        ours = new_lock("/t/wrapper")
        ours.acquire(wait=True, deadline=stopped + TTL + 5)
        os.kill(command_pid, 0)  # raises if the first holder's command had stopped: it has not
        assert ours.held()  # both "hold" now: the overlap unitgen's launcher avoids
    finally:
        os.kill(command_pid, signal.SIGKILL)


@pytest.mark.root
def test_partitioned_holder_stops_before_its_lease_expires_and_another_takes_over(
        tmp_path: Path, procs: list[subprocess.Popen[str]]) -> None:
    """The holder runs in its own network namespace; its link is cut. It must give up (on_lost) before
    the server could expire its lease, the other side takes over within ttl + 1 s, and when the link
    comes back nothing runs twice (the old holder has stopped for good)."""
    netns = Netns("part")
    try:
        cluster = start_cluster(tmp_path / "etcd", extra_address=netns.host_address)
        try:
            holder = subprocess.Popen(
                netns.argv(sys.executable, "-m", "tests.etcd_cluster", "hold", ",".join(cluster.endpoints_at()),
                           "/t/partition", str(TTL)),
                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            procs.append(holder)
            lines = Lines(holder)
            assert lines.next().startswith("token "), holder.stderr.read() if holder.stderr else ""
            time.sleep(0.5)
            netns.partition()
            cut = time.monotonic()
            other = FleetLock(cluster.endpoints, "/t/partition", TTL)
            try:
                other.acquire(wait=True, deadline=cut + TTL + 5)
                took_over = time.monotonic()
                assert took_over - cut <= TTL + 1
                assert holder.wait(timeout=10) == 3
                netns.heal()
                out = lines.rest()
                lost = [float(line.split()[1]) for line in out if line.startswith("lost ")]
                holding = [float(line.split()[1]) for line in out if line.startswith("holding ")]
                assert lost and lost[0] < took_over, out  # gave up before the other side could hold it
                assert max(holding) < lost[0] < cut + TTL, out  # and before its lease could expire
                time.sleep(TTL / 2)
                assert other.held()  # healed: still exactly one holder
            finally:
                other.release()
        finally:
            cluster.stop_all()
    finally:
        netns.delete()


def test_a_waiter_whose_lease_is_revoked_gets_lost_not_on_lost(
        etcd_cluster: EtcdCluster, new_lock: Callable[..., FleetLock]) -> None:
    holder = new_lock("/t/revoked")
    holder.acquire()
    called: list[str] = []
    waiter = new_lock("/t/revoked", on_lost=called.append)
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            waiter.acquire(wait=True, deadline=time.monotonic() + 20)
        except BaseException as e:  # handed to the test thread
            errors.append(e)

    thread = threading.Thread(target=wait)
    thread.start()
    while not waiter.lease_id:
        time.sleep(0.01)
    time.sleep(0.3)  # queued behind the holder
    revoked = etcd_cluster.etcdctl("lease", "revoke", f"{waiter.lease_id:x}")
    assert revoked.returncode == 0, revoked.stderr
    thread.join(timeout=10)
    assert len(errors) == 1 and isinstance(errors[0], Lost), errors
    assert not called and not waiter.held()  # nothing to stop: it never held the lock
    assert holder.held()


# ---- etcd members fail --------------------------------------------------------------------------

@pytest.mark.parametrize("role", [pytest.param("follower", id="follower"), pytest.param("leader", id="leader")])
def test_one_member_down_the_lock_keeps_working(etcd_cluster: EtcdCluster, role: str) -> None:
    # TTL 4 here: killing the leader costs an election (up to ~1 s with the harness's timeouts) during
    # which renewals fail; the holder must ride it out, which a 2 s TTL (give-up after 1.5 s) cannot
    # promise. Real deployments use 10 s and more.
    ttl = 4
    lost: list[str] = []
    leader = etcd_cluster.leader()
    victim = leader if role == "leader" else (leader + 1) % 3
    # The victim first in everyone's list: every client must fail over.
    endpoints = [etcd_cluster.endpoints[victim]] + [e for i, e in enumerate(etcd_cluster.endpoints) if i != victim]
    holder = FleetLock(endpoints, "/t/member", ttl, on_lost=lost.append)
    try:
        holder.acquire()
        etcd_cluster.kill(victim)
        time.sleep(ttl)
        assert holder.held() and not lost
        with pytest.raises(Contended):
            FleetLock(endpoints, "/t/member", ttl).acquire()
    finally:
        holder.release()
    other = FleetLock(endpoints, "/t/member", ttl)
    try:
        assert other.acquire() > holder.token
    finally:
        other.release()


def test_quorum_lost_the_holder_gives_up_before_its_lease_could_expire_and_nobody_acquires(
        etcd_cluster: EtcdCluster, new_lock: Callable[..., FleetLock]) -> None:
    lost_at: list[float] = []
    holder = new_lock("/t/quorum", on_lost=lambda _: lost_at.append(time.monotonic()))
    holder.acquire()
    etcd_cluster.lose_quorum()
    deadline = time.monotonic() + TTL + 2
    while not lost_at and time.monotonic() < deadline:
        time.sleep(0.02)
    assert lost_at, "on_lost never fired"
    # The server cannot expire the lease before last successful renewal's send time + TTL.
    assert lost_at[0] < holder.last_renewal + TTL
    assert not holder.held()
    with pytest.raises((Unreachable, Lost, Contended)):
        new_lock("/t/quorum", request_timeout=1.0).acquire(
            wait=True, deadline=time.monotonic() + 2)
    holder.release()


@pytest.mark.parametrize("kind", [
    pytest.param("refused", id="nothing-listening"),
    pytest.param("silent", id="accepts-but-never-answers"),
])
def test_unreachable_at_start_names_the_endpoints_quickly(kind: str) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes handshakes; nobody ever reads: a hung member
        port = silent.getsockname()[1]
        if kind == "refused":
            silent.close()
        endpoints = [f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}"]
        lock = FleetLock(endpoints, "/t/none", TTL, request_timeout=1.0)
        began = time.monotonic()
        with pytest.raises(Unreachable) as info:
            lock.acquire()
        assert time.monotonic() - began < 1.5
    assert info.value.endpoints == endpoints
    assert f"127.0.0.1:{port}" in str(info.value)
    assert not lock.held()


# ---- TLS client authentication --------------------------------------------------------------------

@pytest.fixture
def tls_cluster(tmp_path: Path) -> Iterator[tuple[EtcdCluster, TLSMaterial]]:
    tls = TLSMaterial.make(tmp_path / "pki")
    cluster = start_cluster(tmp_path / "etcd", size=1, tls=tls)  # one member: TLS is per client connection
    try:
        yield cluster, tls
    finally:
        cluster.stop_all()


def test_https_with_a_client_certificate_locks_and_excludes_etcdctl(
        tls_cluster: tuple[EtcdCluster, TLSMaterial]) -> None:
    cluster, tls = tls_cluster
    files = TLSFiles(str(tls.ca), str(tls.client_cert), str(tls.client_key))
    ours = FleetLock(cluster.endpoints, "/t/tls", TTL, tls=files)
    try:
        token = ours.acquire()
        time.sleep(TTL)  # renewals go over TLS too
        assert ours.held()
        listed = cluster.etcdctl("get", "--prefix", "--keys-only", "/t/tls/")
        assert listed.stdout.split() == [ours.key], listed.stderr
    finally:
        ours.release()
    assert token > 0


@pytest.mark.parametrize("files", [
    pytest.param("no-client-cert", id="no-client-certificate"),
    pytest.param("wrong-ca", id="server-not-signed-by-our-ca"),
])
def test_https_refused_is_unreachable_never_a_lock(
        tls_cluster: tuple[EtcdCluster, TLSMaterial], tmp_path: Path, files: str) -> None:
    cluster, tls = tls_cluster
    if files == "no-client-cert":
        tls_files = TLSFiles(str(tls.ca))
    else:
        other = TLSMaterial.make(tmp_path / "other-pki")
        tls_files = TLSFiles(str(other.ca), str(tls.client_cert), str(tls.client_key))
    lock = FleetLock(cluster.endpoints, "/t/tls", TTL, tls=tls_files, request_timeout=2.0)
    with pytest.raises(Unreachable) as info:
        lock.acquire()
    assert cluster.endpoints[0] in str(info.value)
    assert not lock.held()


# What the launcher must not pay for on a fleet-locked start (bench/bench_fleet.py: ~36 ms together).
HEAVY = {"http", "ssl", "json", "threading", "urllib", "socket", "re", "typing", "dataclasses", "email"}


def test_a_whole_acquire_and_release_imports_nothing_heavy_and_no_unitgen(etcd_cluster: EtcdCluster) -> None:
    code = ("import sys; before = set(sys.modules); sys.path.insert(0, 'unitgen/launcher'); import fleet; "
            f"lock = fleet.FleetLock({etcd_cluster.endpoints!r}, '/t/imports', 2); lock.acquire(); "
            "lock.release(); print(' '.join(sorted(set(sys.modules) - before)))")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=20).stdout.split()
    assert "fleet" in out
    assert not [m for m in out if m.split(".")[0] in HEAVY | {"unitgen"}], out


# ---- round trips: what start-up costs when etcd is far away ------------------------------------------

class SlowLink:
    """A TCP proxy in front of one etcd member that holds every client-to-etcd chunk for `delay` seconds
    (answers pass at once): each round trip the client waits for costs `delay`, like a distant member."""

    def __init__(self, upstream: tuple[str, int], delay: float, cut_first: bool = False) -> None:
        self.delay, self.upstream, self.cut_first = delay, upstream, cut_first
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(self.upstream)
            self.sockets += [client, server]
            if self.cut_first:  # etcd gets the first write, the client never hears back: a cut mid-call
                self.cut_first = False
                threading.Thread(target=self._cut, args=(client, server), daemon=True).start()
                continue
            threading.Thread(target=self._relay, args=(client, server, self.delay), daemon=True).start()
            threading.Thread(target=self._relay, args=(server, client, 0.0), daemon=True).start()

    @staticmethod
    def _relay(source: socket.socket, target: socket.socket, delay: float) -> None:
        try:
            while data := source.recv(65536):
                time.sleep(delay)
                target.sendall(data)
        except OSError:
            pass

    @staticmethod
    def _cut(client: socket.socket, server: socket.socket) -> None:
        server.sendall(client.recv(65536))
        time.sleep(0.5)  # etcd applies what it got
        client.close()
        server.close()

    def close(self) -> None:
        for s in self.sockets:
            s.close()


def test_acquire_waits_for_etcd_once_grant_and_transaction_go_in_one_write(etcd_cluster: EtcdCluster) -> None:
    """The lease grant and the lock's transaction are pipelined (the lease ID is ours): one round trip
    before the token, where etcd's recipe done call by call (and `etcdctl lock`) waits twice."""
    delay = 0.3
    link = SlowLink(("127.0.0.1", etcd_cluster.members[0].client_port), delay)
    lock = FleetLock([link.endpoint], "/t/rtt", TTL)
    try:
        began = time.monotonic()
        token = lock.acquire()
        took = time.monotonic() - began
        assert token > 0 and lock.held()
        assert took < 1.5 * delay, f"acquire took {took:.2f} s: {took / delay:.1f} round trips of {delay} s"
        # The lease is the one our key names, and etcdctl sees the key as the owner.
        out = etcd_cluster.etcdctl("get", "--prefix", "/t/rtt/", "--keys-only").stdout.split()
        assert out == [lock.key] and lock.key.endswith(f"/{lock.lease_id:x}")
    finally:
        lock.release()
        link.close()
    assert etcd_cluster.etcdctl("get", "--prefix", "/t/rtt/", "--keys-only").stdout.split() == []


def test_a_connection_cut_after_the_pipelined_write_leaves_no_key_behind(etcd_cluster: EtcdCluster) -> None:
    """etcd applied the grant and the transaction, the answers never came: the lease is revoked (and
    our key with it) before the ordinary path takes the lock, so no orphan key queues ahead of us."""
    link = SlowLink(("127.0.0.1", etcd_cluster.members[0].client_port), 0.0, cut_first=True)
    lock = FleetLock([link.endpoint], "/t/cut", TTL)
    try:
        token = lock.acquire()  # wait=False: an orphan key of ours ahead would be Contended
        assert token > 0 and lock.held()
        assert etcd_cluster.etcdctl("get", "--prefix", "/t/cut/", "--keys-only").stdout.split() == [lock.key]
    finally:
        lock.release()
        link.close()
