"""A real 3-member etcd cluster on 127.0.0.1 for the fleet lock tests (issue 13).

Free ports, data dirs and logs under the test's tmp_path; members are our own child processes, stopped
by their PIDs (kill -9 / restart / SIGSTOP to lose quorum) and all killed at teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports: all held open until all are chosen, since a port bound and
    released at once may be handed out again by the next bind (two members on one port)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


@dataclass(frozen=True)
class TLSMaterial:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate, made by openssl."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def make(cls, root: Path) -> TLSMaterial:
        root.mkdir(parents=True, exist_ok=True)
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=root)

        openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=test CA")
        # The server certificate also needs clientAuth: etcd's JSON gateway dials etcd's own gRPC
        # port with it, and a server-only certificate makes every gateway call fail with "connection closed".
        for name, usage in (("server", "serverAuth,clientAuth"), ("client", "clientAuth")):
            (root / f"{name}.ext").write_text(f"subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n")
            openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
            openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                    "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext")
        return cls(root / "ca.crt", root / "server.crt", root / "server.key", root / "client.crt", root / "client.key")

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None
    scheme: str = "http"

    @property
    def endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"


@dataclass
class EtcdCluster:
    root: Path
    members: list[Member] = field(default_factory=list)
    token: str = ""
    tls: TLSMaterial | None = None
    extra_address: str | None = None  # clients may also connect here (a veth towards a network namespace)
    more_addresses: tuple[str, ...] = ()  # and here (one veth per sandbox: tests/test_fleet_systemd.py)

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def _argv(self, m: Member, state: str) -> list[str]:
        cluster = ",".join(f"{x.name}={x.peer_url}" for x in self.members)
        return [
            ETCD, "--name", m.name, "--data-dir", str(m.data_dir),
            "--listen-client-urls", ",".join([m.endpoint, *self.endpoints_at(m),
                                              *(url for a in self.more_addresses for url in self.endpoints_via(a, m))]),
            "--advertise-client-urls", m.endpoint,
            "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
            "--initial-cluster", cluster, "--initial-cluster-state", state,
            "--initial-cluster-token", self.token,
            # Short elections keep takeover tests quick; still etcd's real raft.
            "--heartbeat-interval", "50", "--election-timeout", "500",
            "--logger", "zap", "--log-outputs", "stderr",
            *self._tls_args(),
        ]

    def endpoints_at(self, member: Member | None = None) -> list[str]:
        """The client URLs on extra_address (of one member, or all)."""
        if self.extra_address is None:
            return []
        return [f"{m.scheme}://{self.extra_address}:{m.client_port}" for m in self.members
                if member is None or m is member]

    def endpoints_via(self, address: str, member: Member | None = None) -> list[str]:
        """The client URLs on one of more_addresses (of one member, or all)."""
        return [f"{m.scheme}://{address}:{m.client_port}" for m in self.members if member is None or m is member]

    def _tls_args(self) -> list[str]:
        if self.tls is None:
            return []
        return ["--cert-file", str(self.tls.server_cert), "--key-file", str(self.tls.server_key),
                "--client-cert-auth", "--trusted-ca-file", str(self.tls.ca)]

    def start(self, index: int, state: str = "existing") -> None:
        m = self.members[index]
        assert m.process is None or m.process.poll() is not None, f"{m.name} already running"
        log = m.log.open("ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        m.process = subprocess.Popen(self._argv(m, state), stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        log.close()

    def kill(self, index: int) -> None:
        """kill -9 of one member, by its PID."""
        m = self.members[index]
        if m.process is not None and m.process.poll() is None:
            m.process.send_signal(signal.SIGKILL)
            m.process.wait(timeout=10)

    def pause(self, index: int) -> None:
        m = self.members[index]
        assert m.process is not None
        m.process.send_signal(signal.SIGSTOP)

    def resume(self, index: int) -> None:
        m = self.members[index]
        assert m.process is not None
        m.process.send_signal(signal.SIGCONT)

    def lose_quorum(self) -> None:
        """Kill two of three members: the survivor cannot commit nor renew leases."""
        self.kill(1)
        self.kill(2)

    def healthy(self, index: int) -> bool:
        try:
            context = self.tls.context() if self.tls else None
            with urllib.request.urlopen(self.members[index].endpoint + "/health", timeout=1,  # noqa: S310
                                        context=context) as r:
                return bool(json.loads(r.read()).get("health") == "true")
        except (OSError, ValueError):
            return False

    def _status(self, index: int) -> dict[str, Any]:
        url = self.members[index].endpoint + "/v3/maintenance/status"
        request = urllib.request.Request(url, data=b"{}", method="POST")  # noqa: S310 - our own http URL
        with urllib.request.urlopen(request, timeout=2) as r:  # noqa: S310
            status: dict[str, Any] = json.loads(r.read())
            return status

    def leader(self) -> int:
        """Index of the current raft leader, from the status of the members that answer."""
        ids, leaders = {}, set()
        for i in range(len(self.members)):
            try:
                status = self._status(i)
            except (OSError, ValueError):
                continue
            ids[status["header"]["member_id"]] = i
            leaders.add(status.get("leader"))
        for leader in leaders:
            if leader in ids:
                return ids[leader]
        raise RuntimeError("no etcd member knows a leader")

    def wait_healthy(self, indexes: list[int] | None = None, timeout: float = 20) -> None:
        end = time.monotonic() + timeout
        for i in indexes if indexes is not None else range(len(self.members)):
            while not self.healthy(i):
                m = self.members[i]
                if m.process is not None and m.process.poll() is not None:
                    raise RuntimeError(f"etcd {m.name} exited: {m.log.read_text()[-3000:]}")
                if time.monotonic() > end:
                    raise RuntimeError(f"etcd {m.name} not healthy in {timeout}s: {m.log.read_text()[-3000:]}")
                time.sleep(0.05)

    def etcdctl(self, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        tls = [] if self.tls is None else ["--cacert", str(self.tls.ca), "--cert", str(self.tls.client_cert),
                                           "--key", str(self.tls.client_key)]
        return subprocess.run([ETCDCTL, "--endpoints", ",".join(self.endpoints), *tls, *args],
                              capture_output=True, text=True, timeout=timeout, check=False,
                              env={**os.environ, "ETCDCTL_API": "3"})

    def stop_all(self) -> None:
        for i in range(len(self.members)):
            m = self.members[i]
            if m.process is not None and m.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    m.process.send_signal(signal.SIGCONT)  # a paused member dies on SIGKILL anyway; be explicit
                self.kill(i)


def start_cluster(root: Path, size: int = 3, tls: TLSMaterial | None = None,
                  extra_address: str | None = None, more_addresses: tuple[str, ...] = ()) -> EtcdCluster:
    """size members on 127.0.0.1; with tls, clients must speak https with a certificate of tls's CA;
    with extra_address, members also listen for clients there."""
    for attempt in range(3):
        where = root / f"attempt{attempt}" if attempt else root
        where.mkdir(parents=True, exist_ok=True)
        cluster = EtcdCluster(root=where, token=f"unitgen-{os.getpid()}-{time.monotonic_ns()}", tls=tls,
                              extra_address=extra_address, more_addresses=more_addresses)
        ports = free_ports(2 * size)
        for i in range(size):
            cluster.members.append(Member(name=f"m{i}", client_port=ports[2 * i], peer_port=ports[2 * i + 1],
                                          data_dir=where / f"m{i}.data", log=where / f"m{i}.log",
                                          scheme="https" if tls else "http"))
        try:
            for i in range(size):
                cluster.start(i, state="new")
            cluster.wait_healthy()
        except BaseException as exc:
            cluster.stop_all()  # never leave a member of a failed start running
            # A port chosen free can be taken by another program before etcd binds it: try others.
            if "address already in use" in str(exc) and attempt < 2:
                continue
            raise
        return cluster
    raise AssertionError("unreachable")


class Netns:
    """A network namespace of our own, joined to this one by a veth pair on 10.231.N.0/24.

    partition() takes the link down (the namespace's processes lose etcd, their connections hang),
    heal() brings it back; delete() removes the namespace and with it the veth pair."""

    def __init__(self, tag: str) -> None:
        # Unique per process and test: names stay within IFNAMSIZ (15), the subnet within 10.231/16.
        self.index = (os.getpid() * 7 + len(tag) * 13 + time.monotonic_ns() // 1000) % 250 + 1
        self.name = f"ugfl-{os.getpid()}-{tag}"
        self.host_if, self.ns_if = f"ugfh{self.index}", f"ugfn{self.index}"
        self.host_address, self.ns_address = f"10.231.{self.index}.1", f"10.231.{self.index}.2"
        self._ip("netns", "add", self.name)
        try:
            self._ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if, "netns", self.name)
            self._ip("addr", "add", f"{self.host_address}/24", "dev", self.host_if)
            self._ip("link", "set", self.host_if, "up")
            self._ip("-n", self.name, "addr", "add", f"{self.ns_address}/24", "dev", self.ns_if)
            self._ip("-n", self.name, "link", "set", self.ns_if, "up")
            self._ip("-n", self.name, "link", "set", "lo", "up")
        except BaseException:
            self.delete()
            raise

    @staticmethod
    def _ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, stdin=subprocess.DEVNULL)

    def argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def partition(self) -> None:
        self._ip("link", "set", self.host_if, "down")

    def heal(self) -> None:
        self._ip("link", "set", self.host_if, "up")

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], check=False, capture_output=True)


class SandboxLink:
    """A veth pair from this network namespace into a sandbox's (found by its systemd's PID), on
    10.232.N.0/24: the sandbox reaches etcd members listening on `host_address`; partition() takes the
    link down. The sandbox's end is deleted with the sandbox, ours by delete()."""

    def __init__(self, pid: int, index: int) -> None:
        self.index = index
        self.host_if, self.ns_if = f"ugsh{index}", "ugfleet0"
        self.host_address, self.ns_address = f"10.232.{index}.1", f"10.232.{index}.2"
        self._pid = pid
        Netns._ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if, "netns", str(pid))
        try:
            Netns._ip("addr", "add", f"{self.host_address}/24", "dev", self.host_if)
            Netns._ip("link", "set", self.host_if, "up")
            inside = ["nsenter", f"--target={pid}", "--net", "ip"]
            address = ["addr", "add", f"{self.ns_address}/24", "dev", self.ns_if]
            for args in (address, ["link", "set", self.ns_if, "up"]):
                subprocess.run([*inside, *args], check=True, capture_output=True, stdin=subprocess.DEVNULL)
        except BaseException:
            self.delete()
            raise

    @staticmethod
    def indexes(count: int) -> list[int]:
        """count distinct subnet numbers, unlikely to collide with another test run's."""
        base = (os.getpid() * 7 + time.monotonic_ns() // 1000) % (250 - count) + 1
        return [base + i for i in range(count)]

    def partition(self) -> None:
        Netns._ip("link", "set", self.host_if, "down")

    def heal(self) -> None:
        Netns._ip("link", "set", self.host_if, "up")

    def delete(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_if], check=False, capture_output=True)


def running_cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    """Body of a pytest fixture: a fresh healthy cluster, every member killed at teardown."""
    if not Path(ETCD).exists():
        pytest.skip("etcd-server is not installed (scripts/bootstrap installs it)")
    cluster = start_cluster(tmp_path / "etcd")
    try:
        yield cluster
    finally:
        cluster.stop_all()


# ---- a contender process: `python -m tests.etcd_cluster MODE ...` ---------------------------------

def _worker(argv: list[str]) -> int:
    """loop ENDPOINTS PREFIX TTL LOG N HOLD: take the lock N times, log `pid,token,start,end` under flock.
    hold ENDPOINTS PREFIX TTL: take it, print `token N`, then print `holding T` while held() (T: monotonic
    time read before asking), `lost T REASON` from on_lost; exit 3 once no longer held."""
    import fcntl
    import sys

    from unitgen.launcher.fleet import FleetLock

    mode, endpoints, prefix, ttl = argv[0], argv[1].split(","), argv[2], int(argv[3])
    if mode == "loop":
        log, count, hold = Path(argv[4]), int(argv[5]), float(argv[6])
        for _ in range(count):
            lock = FleetLock(endpoints, prefix, ttl)
            token = lock.acquire(wait=True, deadline=time.monotonic() + 60)
            start = time.monotonic()
            time.sleep(hold)
            end = time.monotonic()
            ok = lock.held()  # the interval only counts if we were still surely the holder at its end
            with log.open("a") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                f.write(f"{os.getpid()},{token},{start:.6f},{end:.6f},{int(ok)}\n")
            lock.release()
        return 0
    lock = FleetLock(endpoints, prefix, ttl,
                     on_lost=lambda reason: print("lost", f"{time.monotonic():.6f}", reason, flush=True))
    print("token", lock.acquire(wait=True), flush=True)
    while True:
        now = time.monotonic()
        if not lock.held():
            print("stale", flush=True)
            # held() reads the clock and can see it first; give the keep-alive thread time to report too.
            time.sleep(0.5)
            return 3
        print("holding", f"{now:.6f}", flush=True)
        sys.stdout.flush()
        time.sleep(0.02)


def _guard(argv: list[str]) -> int:
    """guard exec|python ENDPOINTS PREFIX TTL ON_CONTENTION WAIT_TIMEOUT [-- ARGV...]: what the launcher does
    with a fleet lock, through unitgen.launcher.fleet_guard with the launcher's own log and notify.
    exec: run ARGV as the supervised app. python: the app is a loop in the main thread that prints
    `token T` (from `import unitgen_fleet`) and then `holding T` every 20 ms while held; with ARGV
    `stubborn` it ignores the stop request; with `worker` it also forks a `sleep 600` worker."""
    import signal

    from unitgen.launcher import fleet_guard, runtime

    mode, endpoints, prefix, ttl, on_contention = argv[0], argv[1].split(","), argv[2], int(argv[3]), argv[4]
    wait_timeout = float(argv[5]) if argv[5] != "-" else None
    rest = argv[7:] if argv[6:7] == ["--"] else argv[6:]
    guard = fleet_guard.Guard("demo", endpoints, prefix, ttl, log=runtime.log, notify=runtime.notify,
                              request_timeout=1.0)
    if mode == "exec":
        guard.prepare_exec()
    code = guard.acquire(on_contention, wait_timeout)
    if code >= 0:
        return code
    if mode == "exec":
        return guard.run_exec(rest, os.environ)
    stop_code = [0]

    def on_term(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise SystemExit(stop_code[0])

    def request_stop(code: int) -> None:  # the launcher's python-mode stop: SIGTERM to itself
        stop_code[0] = code
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    guard.guard_python(request_stop)
    try:
        import unitgen_fleet  # type: ignore[import-not-found]

        print("token", unitgen_fleet.fencing_token(), os.environ[fleet_guard.TOKEN_ENV], flush=True)
        if "worker" in rest:
            worker = subprocess.Popen(["sleep", "600"])
            print("worker", worker.pid, flush=True)
        while True:
            try:
                now = time.monotonic()
                if unitgen_fleet.held():
                    print("holding", f"{now:.6f}", flush=True)
                time.sleep(0.02)
            except SystemExit:
                if "stubborn" not in rest:
                    raise
                print("ignoring the stop", flush=True)
    finally:
        guard.release()
    return 0


if __name__ == "__main__":
    import sys

    if sys.argv[1] == "guard":
        raise SystemExit(_guard(sys.argv[2:]))
    raise SystemExit(_worker(sys.argv[1:]))
