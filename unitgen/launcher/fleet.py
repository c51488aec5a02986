"""A fleet-wide single-instance lock on etcd v3, standard library only (issue 13).

This module ships next to the deployed launcher (with its .pyc), so it never imports unitgen and imports nothing
heavy: HTTP/1.1 is spoken over the built-in `_socket` (http.client costs ~25 ms to import), JSON is
scanned and escaped by the built-in `_json` accelerator (json's decoder imports re: ~7 ms) and the
keep-alive thread is a `_thread` (threading: ~4 ms). Those ~36 ms were 2/3 of a fleet-locked start
(bench/bench_fleet.py); ssl is imported only for https endpoints.

It speaks etcd's v3 JSON gateway (etcd 3.4: /v3/lease/grant, /v3/kv/txn, /v3/kv/range, /v3/watch,
/v3/lease/keepalive, /v3/lease/revoke; keys and values base64) and follows etcd's own lock recipe, the
one `etcdctl lock PREFIX` uses (clientv3/concurrency Mutex), so the two exclude each other:

- grant a lease with the TTL; the contender's key is PREFIX/LEASE_ID (lease ID in lower-case hex);
- in one transaction: if the key's create revision is 0, put it (attached to the lease) and read the
  oldest key under PREFIX/, else read the key itself and the oldest key;
- the contender's create revision is its place in the queue and the fencing token; the holder is the
  key with the lowest create revision under PREFIX/;
- a waiter waits until no key with a lower create revision is left (it watches the key just before its
  own, the one with the highest create revision below it), then checks its own key still exists (its
  lease may have expired while it waited).

The difference from `etcdctl lock NAME cmd` is what happens after: a keep-alive thread renews the lease
at a third of the TTL and, when renewals have failed long enough that the lease could expire on the
server, calls `on_lost(reason)` BEFORE that can happen, so the caller stops its work while nobody else
can hold the lock yet. The bound is computed from a monotonic clock and the *send* time of the last
successful renewal: the server renewed the lease after we sent, so it expires no earlier than
send time + TTL.
"""

# The launcher pays for every module-level import on every start: only built-ins and os, time here.
# ruff: noqa: PTH123
from __future__ import annotations

import _socket
import _thread
import binascii
import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from typing import Any, Protocol

    class _Stream(Protocol):
        def sendall(self, data: bytes, /) -> None: ...
        def recv(self, size: int, /) -> bytes: ...
        def settimeout(self, value: float | None, /) -> None: ...
        def close(self) -> None: ...


__all__ = ["Contended", "FleetLock", "FleetLockError", "Lost", "TLSFiles", "Unreachable", "default_identity"]

# gRPC status codes (carried in the gateway's error bodies) that mean "this member cannot serve now":
# try the next endpoint. Anything else is a real answer (lease not found, bad request...).
_GRPC_UNAVAILABLE = 14
_GRPC_DEADLINE_EXCEEDED = 4


class FleetLockError(Exception):
    """Base class of everything this module raises."""


class Contended(FleetLockError):  # noqa: N818 - the API names the outcome, as the issue does
    """Someone else holds the lock; `holder` is what its key says (host, pid, unit) plus key and revision."""

    def __init__(self, holder: Mapping[str, object]) -> None:
        self.holder = dict(holder)
        super().__init__(f"lock held by {self.holder}")


class Unreachable(FleetLockError):  # noqa: N818 - same
    """No endpoint answered; names every endpoint tried and the last error."""

    def __init__(self, endpoints: list[str], error: str) -> None:
        self.endpoints = list(endpoints)
        self.error = error
        super().__init__(f"etcd unreachable at {', '.join(endpoints)}: {error}")


class Lost(FleetLockError):  # noqa: N818 - same
    """Our lease expired (or could have) before the lock was acquired."""


class _EtcdError(FleetLockError):
    """etcd answered with an error that another endpoint would answer the same way."""


class _Sent(Exception):  # noqa: N818 - a state, not a failure of its own
    """A pipelined write went out, then the connection failed: etcd may have applied any of it."""


class TLSFiles:
    """Client TLS material for https endpoints (paths, e.g. under $CREDENTIALS_DIRECTORY)."""

    __slots__ = ("ca_file", "cert_file", "key_file")

    def __init__(self, ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None) -> None:
        self.ca_file = ca_file
        self.cert_file = cert_file
        self.key_file = key_file


def default_identity() -> dict[str, object]:
    """Who holds the lock, as contenders will read it: host name, PID and systemd unit (if any)."""
    identity: dict[str, object] = {"host": os.uname().nodename, "pid": os.getpid()}
    unit = _own_unit()
    if unit:
        identity["unit"] = unit
    return identity


def _own_unit() -> str | None:
    # The unified cgroup path ends in the unit (".../webapp.service"); cheaper than asking systemd.
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as f:
            path = f.read().strip().rsplit(":", 1)[-1]
    except OSError:
        return None
    last = path.rsplit("/", 1)[-1]
    return last if last.endswith((".service", ".scope")) else None


def _b64(raw: bytes) -> str:
    return binascii.b2a_base64(raw, newline=False).decode("ascii")


def _unb64(text: str) -> bytes:
    return binascii.a2b_base64(text)


def _split_endpoint(endpoint: str) -> tuple[str, str, int]:
    """scheme, host, port of "http://host:port", "https://[::1]:2379" or "host:port" (http)."""
    scheme, _, rest = endpoint.rpartition("://")
    scheme = scheme or "http"
    hostport = rest.split("/", 1)[0]
    host, port = hostport, ""
    if hostport.startswith("["):
        host, _, tail = hostport[1:].partition("]")
        port = tail.lstrip(":")
    elif hostport.count(":") == 1:
        host, port = hostport.split(":")
    if scheme not in ("http", "https") or not host or not (port.isdigit() or port == ""):
        raise ValueError(f"bad etcd endpoint {endpoint!r}: expected http(s)://HOST:PORT")
    return scheme, host, int(port) if port else 2379


def _prefix_end(prefix: bytes) -> bytes:
    # etcd's range_end for "every key starting with prefix": the prefix with its last byte + 1.
    raw = bytearray(prefix)
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return bytes(raw)
        raw.pop()
    return b"\x00"


class _ScanContext:
    # What _json.make_scanner reads from json.JSONDecoder: the defaults of json.loads.
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict[str, str] = {}  # noqa: RUF012 - read by the C scanner, never mutated here

    @staticmethod
    def parse_constant(name: str) -> float:
        return float(name.replace("Infinity", "inf"))


def _loads(text: str) -> Any:
    """json.loads, through the C scanner json itself uses, without importing json (and re)."""
    text = text.strip()
    try:
        import _json
    except ImportError:  # another Python: the plain module
        import json

        return json.loads(text)
    value, end = _json.make_scanner(_ScanContext())(text, 0)  # type: ignore[arg-type]
    if end != len(text):
        raise ValueError(f"extra data after JSON at {end}")
    return value


def _dumps(value: object) -> str:
    """json.dumps(value, sort_keys=True, ensure_ascii=True) for dicts, lists, str, int, bool, None."""
    try:
        from _json import encode_basestring_ascii as quote
    except ImportError:
        import json

        return json.dumps(value, sort_keys=True)
    if isinstance(value, str):
        return str(quote(value))
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{quote(str(k))}:{_dumps(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_dumps(v) for v in value) + "]"
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


class _Connection:
    """A minimal HTTP/1.1 client connection: POST with a body, read a Content-Length or chunked answer."""

    def __init__(self, scheme: str, host: str, port: int, tls: TLSFiles | None, connect_timeout: float) -> None:
        self.host = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        # bytes, not str: a str host goes through the idna codec, whose import pulls in re (~10 ms).
        name = host.encode("idna") if not host.isascii() else host.encode("ascii")
        family, kind, proto, _, address = _socket.getaddrinfo(name, port, 0, _socket.SOCK_STREAM)[0]
        sock = _socket.socket(family, kind | _socket.SOCK_CLOEXEC, proto)
        try:
            sock.settimeout(connect_timeout)  # a dead address costs at most this
            sock.connect(address)
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)  # small requests, no Nagle delay
            self.sock: _Stream = sock
            if scheme == "https":
                self.sock = self._wrap(sock, host, tls or TLSFiles(), connect_timeout)
        except BaseException:
            sock.close()
            raise
        self._buffer = b""

    @staticmethod
    def _wrap(raw: _socket.socket, host: str, tls: TLSFiles, timeout: float) -> _Stream:
        import socket
        import ssl

        context = ssl.create_default_context(cafile=tls.ca_file)
        if tls.cert_file:
            context.load_cert_chain(tls.cert_file, tls.key_file)
        # ssl wraps socket.socket objects only: hand the connected descriptor over.
        plain = socket.socket(fileno=raw.detach())
        plain.settimeout(timeout)  # the handshake is bounded like the connect
        return context.wrap_socket(plain, server_hostname=host)

    def close(self) -> None:
        self.sock.close()

    def request(self, path: str, body: bytes) -> bytes:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode("ascii") + body

    def send(self, path: str, body: bytes, timeout: float) -> None:
        self.sock.settimeout(timeout)
        self.sock.sendall(self.request(path, body))

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionResetError("etcd closed the connection")
        self._buffer += data

    def _line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            if len(self._buffer) > 65536:
                raise ValueError("HTTP header line too long")
            self._fill()
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        return line

    def _exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._fill()
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def head(self) -> tuple[int, int | None, bool]:
        """Status, Content-Length (None: chunked) and whether the server will close the connection."""
        status_line = self._line().decode("latin-1").split(" ", 2)
        status = int(status_line[1])
        length: int | None = 0
        close = False
        while line := self._line():
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                length = None
            elif name == "connection" and value == "close":
                close = True
        return status, length, close

    def chunks(self) -> Iterator[bytes]:
        """The chunks of a chunked body, as they arrive (the watch stream), until the last one."""
        while True:
            size = int(self._line().split(b";", 1)[0], 16)
            if size == 0:
                while self._line():  # trailer, then the empty line
                    pass
                return
            yield self._exactly(size)
            self._exactly(2)  # CRLF after each chunk

    def body(self, length: int | None) -> bytes:
        return self._exactly(length) if length is not None else b"".join(self.chunks())


class _Gateway:
    """JSON calls to etcd's gateway, failing over between endpoints; one persistent connection."""

    def __init__(self, endpoints: list[str], tls: TLSFiles | None, connect_timeout: float) -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint is needed")
        self.endpoints = list(endpoints)
        self._parsed = [_split_endpoint(e) for e in endpoints]
        self._tls = tls
        self._connect_timeout = connect_timeout
        self._current = 0
        self._conn: _Connection | None = None

    def _open(self, index: int, timeout: float) -> _Connection:
        scheme, host, port = self._parsed[index]
        return _Connection(scheme, host, port, self._tls, min(timeout, self._connect_timeout))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def call(self, path: str, body: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        """POST body to path; the whole call (all endpoints) is bounded by timeout seconds."""
        end = time.monotonic() + timeout
        payload = _dumps(body).encode()
        last_error = "no endpoint tried"
        n = len(self.endpoints)
        for attempt in range(n):
            left = end - time.monotonic()
            if left <= 0:
                break
            # Share what is left among the endpoints not tried yet, so one hung member cannot use it all.
            budget = max(left / (n - attempt), min(left, 0.2))
            index = (self._current + attempt) % n
            try:
                if self._conn is None or index != self._current:
                    self.close()
                    self._current = index
                    self._conn = self._open(index, budget)
                self._conn.send(path, payload, budget)
                status, length, close = self._conn.head()
                data = self._conn.body(length)
                if close:
                    self.close()
            except (OSError, ValueError) as e:
                # A half-read answer leaves the connection unusable: drop it, try the next member.
                self.close()
                last_error = f"{self.endpoints[index]}: {e or type(e).__name__}"
                self._current = (index + 1) % n
                continue
            answer = _first_message(data)
            error = _error_of(answer)
            if status == 200 and error is None:
                return answer.get("result", answer) if "result" in answer else answer
            code, message = error or (0, f"HTTP {status}")
            if code in (_GRPC_UNAVAILABLE, _GRPC_DEADLINE_EXCEEDED) or (status >= 500 and code == 0):
                self.close()
                last_error = f"{self.endpoints[index]}: {message}"
                self._current = (index + 1) % n
                continue
            raise _EtcdError(f"{self.endpoints[index]}{path}: {message}")
        raise Unreachable(self.endpoints, last_error)

    def pipeline(
        self, calls: list[tuple[str, Mapping[str, Any]]], timeout: float, meanwhile: Callable[[], None] | None = None
    ) -> list[tuple[int, dict[str, Any]]]:
        """POST several calls in one write on the current endpoint's connection and read their answers
        (HTTP/1.1 pipelining: etcd's gateway, Go's net/http, serves one connection's requests one after
        the other, in order). (status, answer) per call; no failover, and the time is this endpoint's
        share of `timeout`, as in call(). Raises _Sent when the connection failed once something was
        written (what etcd applied is unknown), OSError when nothing was. `meanwhile` runs once the
        calls are written, before their answers are read."""
        n, index = len(self.endpoints), self._current
        end = time.monotonic() + max(timeout / n, min(timeout, 0.2))
        written = False
        try:
            if self._conn is None:
                self._conn = self._open(index, end - time.monotonic())
            conn = self._conn
            conn.sock.settimeout(max(0.001, end - time.monotonic()))
            conn.sock.sendall(b"".join(conn.request(path, _dumps(body).encode()) for path, body in calls))
            written = True
            if meanwhile is not None:
                meanwhile()
            answers = []
            for _ in calls:
                conn.sock.settimeout(max(0.001, end - time.monotonic()))
                status, length, close = conn.head()
                answers.append((status, _first_message(conn.body(length))))
                if close:
                    self.close()
                    break
        except (OSError, ValueError) as e:
            self.close()
            self._current = (index + 1) % n  # the ordinary calls start at the next member
            error = f"{self.endpoints[index]}: {e or type(e).__name__}"
            if written:
                raise _Sent(error) from e
            raise OSError(error) from e
        if len(answers) < len(calls):
            raise _Sent(f"{self.endpoints[index]}: the connection was closed after {len(answers)} answers")
        return answers

    def open_stream(self, path: str, body: Mapping[str, Any], timeout: float) -> _Connection:
        """A streaming POST (watch) on its own connection to the current endpoint; read .chunks(), close."""
        conn = self._open(self._current, timeout)
        try:
            conn.send(path, _dumps(body).encode(), timeout)
            status, length, _ = conn.head()
            if status != 200 or length is not None:
                raise ConnectionError(f"{path}: HTTP {status}, not a stream")
            return conn
        except BaseException:
            conn.close()
            raise


def _first_message(data: bytes) -> dict[str, Any]:
    # Streaming endpoints (keepalive) answer newline-delimited JSON; unary ones one object.
    text = data.decode("utf-8", "replace").strip().split("\n", 1)[0]
    try:
        value = _loads(text) if text else {}
    except ValueError:
        return {"error": {"message": text[:200]}}
    return value if isinstance(value, dict) else {}


def _error_of(answer: Mapping[str, Any]) -> tuple[int, str] | None:
    error = answer.get("error")
    if error is None:
        return None
    if isinstance(error, dict):  # streaming form: {"error": {"grpc_code": 14, "message": ...}}
        return int(error.get("grpc_code", error.get("code")) or 0), str(error.get("message", error))
    return int(answer.get("code", 0)), str(answer.get("message", error))


def _kvs(response: Mapping[str, Any]) -> list[dict[str, Any]]:
    kvs = response.get("kvs", [])
    return kvs if isinstance(kvs, list) else []


class FleetLock:
    """etcd's lock recipe (interoperable with `etcdctl lock PREFIX`) plus a lease watchdog.

    acquire() returns the fencing token (the create revision of our key: strictly increasing from
    one holder to the next). While held, a thread renews the lease every ttl/3; `on_lost(reason)` is
    called once, from that thread, at most `ttl - margin` seconds after the send time of the last
    successful renewal, that is before the server could let the lease expire. After on_lost the
    caller must stop acting as holder (stop the app) and then call release(). A loss while
    acquire() still waits is its Lost exception instead. `on_renewed(round_trip_seconds)` is called
    after each successful renewal of a held lock, from the same thread: it must not block.
    """

    def __init__(
        self,
        endpoints: list[str],
        prefix: str,
        ttl: int,
        *,
        tls: TLSFiles | None = None,
        identity: Mapping[str, object] | None = None,
        on_lost: Callable[[str], None] | None = None,
        on_renewed: Callable[[float], None] | None = None,
        margin: float | None = None,
        connect_timeout: float = 1.0,
        request_timeout: float = 5.0,
    ) -> None:
        if ttl < 1:
            raise ValueError("ttl must be at least 1 second")
        self.endpoints = list(endpoints)
        self.prefix = prefix.rstrip("/") + "/"  # like etcd's NewMutex: the keys live under PREFIX/
        self.ttl = ttl
        # Time left for the caller to stop its work between on_lost and the earliest server expiry.
        self.margin = ttl / 4 if margin is None else margin
        if not 0 <= self.margin < ttl * 2 / 3:
            # Past 2/3 of the TTL the holder would give up before its second renewal attempt.
            raise ValueError(f"margin must be at least 0 and below 2/3 of the ttl ({ttl * 2 / 3:.1f}s)")
        self.identity = dict(default_identity() if identity is None else identity)
        self.on_lost = on_lost
        self.on_renewed = on_renewed  # called with the round-trip time of each successful renewal
        # Called once acquire()'s first requests are written, while etcd works on them: work the caller
        # needs next (the launcher: loading prctl) then costs no time of its own. Must not raise.
        self.while_waiting: Callable[[], None] | None = None
        self.request_timeout = request_timeout
        self._gateway = _Gateway(self.endpoints, tls, connect_timeout)
        self._tls = tls
        self._connect_timeout = connect_timeout
        self.lease_id = 0
        self.key = ""
        self.token = 0
        self._granted_ttl = float(ttl)
        self._last_ok_send = 0.0  # monotonic send time of the last successful grant/renewal
        self._lost_reason: str | None = None
        self._stop: _Event | None = None
        self._done: _Event | None = None  # set by the keep-alive thread when it returns
        self._thread_id = 0
        self._txn_owner: list[dict[str, Any]] = []

    # ---- public API ----------------------------------------------------------------------------

    def acquire(self, wait: bool = False, deadline: float | None = None) -> int:
        """Take the lock; return the fencing token. deadline: a time.monotonic() value for wait=True.

        Raises Contended (with the holder) if someone else holds it and wait is False or the deadline
        passed, Unreachable if no endpoint answers, Lost if our lease expired while waiting.
        """
        granted, answer = self._grant_pipelined()
        if not granted:
            self._grant()
        try:
            token = self._enqueued(answer) if answer is not None else self._enqueue()
            owner = self._owner()
            if owner is not None and int(owner.get("create_revision", 0)) != token:
                if not wait:
                    raise Contended(self._holder_info(owner))
                self._wait_predecessors(token, deadline)
                # Like etcd's Mutex.Lock: our key must still exist, or our lease expired while waiting.
                mine = _kvs(self._gateway.call("/v3/kv/range", {"key": _b64(self.key.encode())}, self.request_timeout))
                if not mine:
                    raise Lost("our lease expired while waiting for the lock")
            # Token first, then the check: a loss from here on reaches on_lost (which only reports losses
            # of a lock the caller got), a loss before it fails this check. Never neither.
            self.token = token
            if not self.held():
                raise Lost(self._lost_reason or "the lease could have expired while acquiring")
            return token
        except BaseException:
            self.token = 0
            self.release()
            raise

    def held(self) -> bool:
        """True while we may act as holder: acquired, not lost, and the lease cannot have expired yet.

        Computed from the clock, not only from the keep-alive thread's verdict: a process that was
        frozen (SIGSTOP, a VM pause) sees False the moment it runs again, before that thread does."""
        return bool(self.token) and self._lease_valid()

    def _lease_valid(self) -> bool:
        if self._lost_reason is not None or not self.lease_id:
            return False
        return time.monotonic() < self._lost_at()

    @property
    def lost_reason(self) -> str | None:
        return self._lost_reason

    @property
    def last_renewal(self) -> float:
        """time.monotonic() at which the last successful renewal (or the grant) was sent."""
        return self._last_ok_send

    def release(self) -> None:
        """Stop renewing and revoke the lease (which deletes our key): the next waiter takes over."""
        if self._stop is not None:
            self._stop.set()
        if self._done is not None and self._thread_id != _thread.get_ident():
            self._done.wait(self.request_timeout + 1)
        self._done = None
        lease, self.lease_id = self.lease_id, 0
        if lease:
            # Unreachable or already gone: the lease then expires on its own within the TTL.
            try:  # noqa: SIM105 - contextlib.suppress would cost start-up time (an import)
                self._gateway.call("/v3/lease/revoke", {"ID": str(lease)}, self.request_timeout)
            except FleetLockError:
                pass
        self._gateway.close()

    # ---- the recipe ----------------------------------------------------------------------------

    def _grant(self) -> None:
        sent = time.monotonic()
        answer = self._gateway.call("/v3/lease/grant", {"TTL": str(self.ttl)}, self.request_timeout)
        if answer.get("error"):
            raise _EtcdError(f"lease grant refused: {answer['error']}")
        self._granted(int(answer["ID"]), answer, sent)

    def _granted(self, lease: int, answer: Mapping[str, Any], sent: float) -> None:
        self.lease_id = lease
        self._granted_ttl = float(answer.get("TTL", self.ttl))
        self._last_ok_send = sent
        self._lost_reason = None
        self.key = f"{self.prefix}{self.lease_id:x}"
        self._start_keepalive()

    def _owner_range(self) -> dict[str, Any]:
        # WithFirstCreate: everything under PREFIX/, oldest create revision first, one key.
        prefix = self.prefix.encode()
        return {
            "key": _b64(prefix),
            "range_end": _b64(_prefix_end(prefix)),
            "sort_order": "ASCEND",
            "sort_target": "CREATE",
            "limit": "1",
        }

    def _grant_pipelined(self) -> tuple[bool, dict[str, Any] | None]:
        """Lease grant and the lock's transaction in one write: one round trip to the app instead of two
        (etcdctl lock makes two). The lease ID is ours (random, 62 bits: etcd takes a requested ID), so
        the transaction can name the lease before the grant has answered; the gateway serves them in
        order, so the lease exists when the put is applied. (granted, the txn's answer when it went
        through); (False, None) sends the caller down the ordinary path (grant, then txn, failover)."""
        lease = int.from_bytes(os.urandom(8), "big") >> 2 or 1
        key = f"{self.prefix}{lease:x}"
        sent = time.monotonic()
        try:
            (grant_status, grant), (txn_status, txn) = self._gateway.pipeline(
                [("/v3/lease/grant", {"TTL": str(self.ttl), "ID": str(lease)}), ("/v3/kv/txn", self._txn(key, lease))],
                self.request_timeout,
                self.while_waiting,
            )
        except _Sent as e:
            # Unknown what was applied: a key under our lease would queue ahead of our next try, so the
            # lease goes first (revoking deletes the key); no answer to that either: etcd is not answering.
            try:
                left = max(0.05, sent + self.request_timeout - time.monotonic())
                self._gateway.call("/v3/lease/revoke", {"ID": str(lease)}, left)
            except Unreachable as unreachable:
                raise Unreachable(self.endpoints, str(e)) from unreachable
            except _EtcdError:
                pass  # not found: the grant never happened
            return False, None
        except OSError:
            return False, None  # nothing went out (connect failed): the ordinary path fails over
        if grant_status != 200 or _error_of(grant) is not None or int(grant.get("ID", 0)) != lease:
            # Refused (busy, no leader, or, once in 2^62, an ID in use: then a put may have landed
            # under someone else's lease; take it back). The ordinary path retries elsewhere.
            if txn_status == 200 and _error_of(txn) is None and txn.get("succeeded"):
                try:  # noqa: SIM105 - contextlib.suppress would cost start-up time (an import)
                    self._gateway.call("/v3/kv/deleterange", {"key": _b64(key.encode())}, self.request_timeout)
                except FleetLockError:
                    pass
            return False, None
        self._granted(lease, grant, sent)
        return True, (txn if txn_status == 200 and _error_of(txn) is None else None)

    def _txn(self, key: str, lease: int) -> dict[str, Any]:
        """Put our key (under our lease) unless it exists; either way, read the owner: etcd's Mutex.Lock."""
        b64key = _b64(key.encode())
        value = _b64(_dumps(self.identity).encode())
        return {
            "compare": [{"key": b64key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
            "success": [
                {"request_put": {"key": b64key, "value": value, "lease": str(lease)}},
                {"request_range": self._owner_range()},
            ],
            "failure": [{"request_range": {"key": b64key}}, {"request_range": self._owner_range()}],
        }

    def _enqueue(self) -> int:
        txn = self._txn(self.key, self.lease_id)
        return self._enqueued(self._gateway.call("/v3/kv/txn", txn, self.request_timeout))

    def _enqueued(self, answer: dict[str, Any]) -> int:
        """Our token (our key's create revision) from the transaction's answer; the owner kept for _owner()."""
        responses = answer.get("responses", [])
        self._txn_owner = _kvs(responses[1].get("response_range", {})) if len(responses) > 1 else []
        if answer.get("succeeded"):
            return int(answer["header"]["revision"])
        mine = _kvs(responses[0].get("response_range", {})) if responses else []
        if not mine:
            raise _EtcdError(f"unexpected txn answer for {self.key}: {answer}")
        return int(mine[0]["create_revision"])

    def _owner(self) -> dict[str, Any] | None:
        return self._txn_owner[0] if self._txn_owner else None

    def _holder_info(self, kv: Mapping[str, Any]) -> dict[str, object]:
        key = _unb64(kv.get("key", "")).decode("utf-8", "replace")
        info: dict[str, object] = {"key": key, "create_revision": int(kv.get("create_revision", 0))}
        raw = _unb64(kv.get("value", "")) if kv.get("value") else b""
        try:
            value = _loads(raw.decode("utf-8", "replace")) if raw else None
        except ValueError:
            value = None
        if isinstance(value, dict):
            info.update({k: v for k, v in value.items() if k not in info})
        elif raw:
            info["value"] = raw.decode("utf-8", "replace")
        return info

    def _wait_predecessors(self, token: int, deadline: float | None) -> None:
        prefix = self.prefix.encode()
        while True:
            if not self._lease_valid():
                raise Lost(self._lost_reason or "lease could have expired while waiting")
            # WithLastCreate + WithMaxCreateRev(token-1): the key just before ours in the queue.
            query = {
                "key": _b64(prefix),
                "range_end": _b64(_prefix_end(prefix)),
                "sort_order": "DESCEND",
                "sort_target": "CREATE",
                "limit": "1",
                "max_create_revision": str(token - 1),
            }
            answer = self._gateway.call("/v3/kv/range", query, self.request_timeout)
            before = _kvs(answer)
            if not before:
                return
            if deadline is not None and time.monotonic() >= deadline:
                owner = _kvs(self._gateway.call("/v3/kv/range", self._owner_range(), self.request_timeout))
                raise Contended(self._holder_info(owner[0] if owner else before[0]))
            revision = int(answer["header"]["revision"])
            self._await_delete(before[0]["key"], revision + 1, deadline)

    def _await_delete(self, key: str, start_revision: int, deadline: float | None) -> None:
        """Watch key from start_revision until it is deleted or about a second passed (then re-check)."""
        limit = 1.0 if deadline is None else max(0.05, min(1.0, deadline - time.monotonic()))
        end = time.monotonic() + limit
        try:
            conn = self._gateway.open_stream(
                "/v3/watch", {"create_request": {"key": key, "start_revision": str(start_revision)}}, limit
            )
        except OSError:
            time.sleep(min(limit, 0.1))  # the outer loop's range call fails over to another endpoint
            return
        pending = b""
        try:
            for chunk in conn.chunks():
                pending += chunk
                *messages, pending = pending.split(b"\n")
                for message in messages:
                    result = _loads(message.decode("utf-8", "replace")).get("result", {})
                    # A cancelled watch (compacted revision...) ends here too: the caller re-reads the queue.
                    if result.get("canceled") or any(e.get("type") == "DELETE" for e in result.get("events", [])):
                        return
                if time.monotonic() >= end:
                    return
        except (OSError, ValueError, AttributeError):
            return  # a timeout or a broken stream: the caller re-reads the queue
        finally:
            conn.close()

    # ---- keep-alive ----------------------------------------------------------------------------

    def _lost_at(self) -> float:
        return self._last_ok_send + self._granted_ttl - self.margin

    def _start_keepalive(self) -> None:
        self._stop, self._done = _Event(), _Event()
        # Its own gateway: a connection is never shared between threads.
        gateway = _Gateway(self.endpoints, self._tls, self._connect_timeout)
        # _thread, not threading: the thread never outlives the process's work and needs no join
        # machinery beyond the _done event; threading costs ~4 ms of start-up.
        self._thread_id = _thread.start_new_thread(self._keepalive, (self._stop, self._done, gateway, self.lease_id))

    def _keepalive(self, stop: _Event, done: _Event, gateway: _Gateway, lease: int) -> None:
        interval = self._granted_ttl / 3
        next_renewal = self._last_ok_send + interval
        failures: list[str] = []
        try:
            while not stop.is_set():
                now = time.monotonic()
                if now >= self._lost_at():
                    last = failures[-1] if failures else "no renewal was sent in time (process stopped?)"
                    self._lose(f"lease {lease:x} not renewed for {now - self._last_ok_send:.1f}s: {last}")
                    return
                if now >= next_renewal:
                    sent = now
                    try:
                        # Never wait past the moment we would have to give up anyway.
                        answer = gateway.call(
                            "/v3/lease/keepalive", {"ID": str(lease)}, max(0.05, min(interval, self._lost_at() - now))
                        )
                    except FleetLockError as e:
                        failures.append(str(e))
                        next_renewal = time.monotonic() + min(0.5, interval)
                    else:
                        ttl = int(answer.get("TTL", 0))
                        if ttl <= 0:
                            self._lose(f"lease {lease:x} expired on the server")
                            return
                        self._granted_ttl = float(ttl)
                        self._last_ok_send = sent
                        failures.clear()
                        if self.on_renewed is not None and self.token:
                            self.on_renewed(time.monotonic() - sent)
                        next_renewal = sent + interval
                stop.wait(max(0.0, min(next_renewal, self._lost_at()) - time.monotonic()))
        finally:
            gateway.close()
            done.set()

    def _lose(self, reason: str) -> None:
        self._lost_reason = reason
        # While still waiting there is nothing to stop: acquire() raises Lost instead.
        if self.on_lost is not None and self.token:
            self.on_lost(reason)


class _Event:
    """threading.Event's set/is_set/wait on a bare _thread lock (held while the event is clear)."""

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._lock.acquire()
        self._set = False

    def set(self) -> None:
        if not self._set:
            self._set = True
            self._lock.release()

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        if self._lock.acquire(timeout=max(0.0, timeout)):
            self._lock.release()  # stay set for other waiters
            return True
        return self._set
