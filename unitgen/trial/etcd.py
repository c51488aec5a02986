"""A real etcd cluster of our own, for `unitgen try NAME --fleet N` and the fleet lock tests (issue 13).

Members are child processes of this one (`PR_SET_PDEATHSIG`: they die with it even when it is
killed with -9), listening on 127.0.0.1 and, for sandboxed hosts, on the host side of their
network (`FleetNetwork`); data and logs live in a directory the caller owns. Stopped by their PIDs.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unitgen.errors import UnitgenError

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
INSTALL_HINT = "install Debian's etcd-server and etcd-client (scripts/bootstrap does)"
_PR_SET_PDEATHSIG = 1  # prctl(2)


def require_etcd() -> None:
    for tool in (ETCD, ETCDCTL):
        if not Path(tool).exists():
            raise UnitgenError(f"{Path(tool).name}: not found", hint=INSTALL_HINT)


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


_libc = ctypes.CDLL(None, use_errno=True)  # loaded here: the child after fork only calls into it


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL when the process that started it ends, however it ends (a trial killed
    with -9 must not leave an etcd cluster behind)."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass(frozen=True)
class TLSMaterial:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate, made by openssl."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def make(cls, root: Path, addresses: tuple[str, ...] = ()) -> TLSMaterial:
        """The server certificate names 127.0.0.1 and `addresses` (where sandboxed hosts reach etcd)."""
        root.mkdir(parents=True, exist_ok=True)
        names = ",".join(f"IP:{a}" for a in ("127.0.0.1", *addresses))
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=root)

        openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=test CA")
        # The server certificate also needs clientAuth: etcd's JSON gateway dials etcd's own gRPC
        # port with it, and a server-only certificate makes every gateway call fail with "connection closed".
        for name, usage in (("server", "serverAuth,clientAuth"), ("client", "clientAuth")):
            (root / f"{name}.ext").write_text(f"subjectAltName={names}\nextendedKeyUsage={usage}\n")
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
    more_addresses: tuple[str, ...] = ()  # and here (the host side of sandboxed hosts' links)

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def _argv(self, m: Member, state: str) -> list[str]:
        cluster = ",".join(f"{x.name}={x.peer_url}" for x in self.members)
        via = [url for address in self.more_addresses for url in self.endpoints_via(address, m)]
        listen = [m.endpoint, *self.endpoints_at(m), *via]
        return [
            ETCD, "--name", m.name, "--data-dir", str(m.data_dir),
            "--listen-client-urls", ",".join(listen),
            "--advertise-client-urls", m.endpoint,
            "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
            "--initial-cluster", cluster, "--initial-cluster-state", state,
            "--initial-cluster-token", self.token,
            # Short elections keep takeovers quick; still etcd's real raft.
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
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        with m.log.open("ab") as log:
            m.process = subprocess.Popen(self._argv(m, state), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         env=env, preexec_fn=_die_with_parent)

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
            url = self.members[index].endpoint + "/health"  # our own member's http(s) URL
            with urllib.request.urlopen(url, timeout=1, context=context) as r:  # noqa: S310
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
        raise UnitgenError("no etcd member knows a leader")

    def _log_tail(self, m: Member) -> str:
        with contextlib.suppress(OSError):
            return m.log.read_text(errors="replace")[-3000:]
        return ""

    def wait_healthy(self, indexes: list[int] | None = None, timeout: float = 20) -> None:
        end = time.monotonic() + timeout
        for i in indexes if indexes is not None else range(len(self.members)):
            while not self.healthy(i):
                m = self.members[i]
                if m.process is not None and m.process.poll() is not None:
                    raise UnitgenError(f"etcd {m.name} exited: {self._log_tail(m)}", hint=INSTALL_HINT)
                if time.monotonic() > end:
                    raise UnitgenError(f"etcd {m.name} not healthy in {timeout}s: {self._log_tail(m)}")
                time.sleep(0.05)

    def etcdctl(self, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        tls = [] if self.tls is None else ["--cacert", str(self.tls.ca), "--cert", str(self.tls.client_cert),
                                           "--key", str(self.tls.client_key)]
        return subprocess.run([ETCDCTL, "--endpoints", ",".join(self.endpoints), *tls, *args],
                              capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL,
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
    with extra_address (or more_addresses), members also listen for clients there."""
    require_etcd()
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
