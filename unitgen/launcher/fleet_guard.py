"""What the launcher does with a fleet lock (issue 13): take it, report it, stop the app when it is lost.

`fleet.FleetLock` is the etcd client and its lease watchdog; this module is the launcher's policy on
top of it. Like the launcher it is standard library only, never imports unitgen, and ships next to
the launcher module with its bytecode. The launcher hands it its own `log` and `notify`, so entries
and notifications go through the launcher's bounded, never-hanging paths.

Order: the launcher takes its local fcntl lock first (one contender per host, exactly as with
scope = "host"), then `Guard.acquire()` takes the fleet lock.

Outcomes of acquire() and what they become
    held         one entry (PRIORITY=6, MESSAGE_ID_FLEET_ACQUIRED) with the fencing token; the app gets
                 the token as $UNITGEN_FENCING_TOKEN (both modes) and, in python mode, from
                 `import unitgen_fleet; unitgen_fleet.fencing_token()` / `unitgen_fleet.held()`.
    contended    the launcher's usual contention entry (MESSAGE_ID_ALREADY_RUNNING, so one query lists
                 every contention, PRIORITY=4) with LOCK_SCOPE=fleet and the holder's host, PID, unit and
                 token as its key stores them; exit 17 (EXIT_ALREADY_RUNNING), or with
                 on_contention = "wait" wait (STATUS=/EXTEND_TIMEOUT_USEC= every 2 s) up to wait_timeout
                 (then exit 75, EXIT_WAIT_TIMEOUT).
    unreachable  no etcd endpoint answered: PRIORITY=3, MESSAGE_ID_FLEET_UNREACHABLE naming every
                 endpoint and the last error; exit 68 (EXIT_FLEET_UNREACHABLE). The app never runs.
    lost         the lease could have expired before the app ran: PRIORITY=3, MESSAGE_ID_FLEET_LOST,
                 exit 76 (EXIT_FLEET_LOST).

While the app runs
    The lease is renewed every ttl/3. When renewals fail for so long that the lease could expire on the
    server (fleet.FleetLock's on_lost, at `last renewal sent + ttl - margin`, margin = ttl/4), the guard
    sends SIGTERM to the app and its descendants at once, SIGKILL at `last renewal sent + ttl -
    margin/2`, so the app is gone before anyone else can be granted the lock; then one PRIORITY=3 entry
    (MESSAGE_ID_FLEET_LOST, LAST_RENEWAL_MONOTONIC_USEC, ERROR) and exit 76, which is not in
    RestartPreventExitStatus=: systemd's restart policy brings the service back as a contender.

systemd's watchdog
    A launcher that cannot run (SIGSTOPped, or its threads starved by an app holding the GIL) can
    neither renew nor stop the app. So once the lock is held the guard sends WATCHDOG_USEC= (ttl -
    margin/2) and WATCHDOG=1 after every renewal that came back within margin/4; the unit has
    WatchdogSignal=SIGKILL. systemd then kills a frozen launcher before its lease can expire (and
    never before the guard's own SIGKILL time), and the app dies with it (PR_SET_PDEATHSIG).

exec mode
    The launcher cannot exec the app (the lease needs a process that keeps renewing it): it forks the
    app as its child and stays as its supervisor (the unit's main PID), like `consul lock`. The child
    gets PR_SET_PDEATHSIG=SIGKILL, so a launcher killed with -9 takes the app with it, and the launcher
    is a child subreaper, so the app's daemonised descendants stay in its tree and are stopped with
    it. SIGHUP, SIGUSR1, SIGUSR2 and SIGQUIT are passed on to the app; SIGTERM too, except under
    systemd, which signals the whole cgroup itself; SIGINT from a terminal reaches both already. When
    the app exits, what is left of its tree gets SIGTERM (then SIGKILL), the lease is revoked (the next
    holder takes over at once) and the launcher exits with the app's status.
python mode
    The app runs in the launcher's main thread: on loss the guard asks the launcher to stop it (the
    launcher's SIGTERM path: SystemExit with code 76), stops forked workers the same way, and if the
    app has not returned by the SIGKILL time the process ends with os._exit(76).

Fields of every fleet entry: LOCK_SCOPE=fleet, LOCK_KEY (the lock's prefix, as `etcdctl lock` names
it), LOCK_ENDPOINTS, and once a lease exists LEASE_ID (hex, as etcdctl shows it) and FENCING_TOKEN.
"""

# pathlib and contextlib cost start-up time on every fleet-locked start: os.path, open() and try/except.
# ruff: noqa: PTH110, PTH118, PTH123, PTH208, SIM105
from __future__ import annotations

import _thread
import os
import sys
import time

# Deployed as /usr/libexec/NAME/unitgen_fleet_guard.py next to unitgen_fleet_lock.py (this package's
# fleet.py) and the launcher module: prefixed names, so an app's own `fleet` module is never shadowed.
DEPLOYED_NAMES = {"fleet": "unitgen_fleet_lock", "fleet_guard": "unitgen_fleet_guard"}
if __package__:  # inside the unitgen package (tests, rendering)
    from . import fleet
else:
    import unitgen_fleet_lock as fleet  # type: ignore[import-not-found,no-redef]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from types import ModuleType
    from typing import Protocol

    class _Log(Protocol):
        def __call__(self, name: str, priority: int, message: str, **fields: str) -> None: ...


EXIT_ALREADY_RUNNING = 17  # the launcher's own code for contention (runtime.EXIT_ALREADY_RUNNING)
EXIT_WAIT_TIMEOUT = 75  # runtime.EXIT_WAIT_TIMEOUT
EXIT_CONFIG_ERROR = 78  # runtime.EXIT_CONFIG_ERROR
# sysexits.h names, unused by the launcher so far: EX_NOHOST (68) "host unknown", EX_PROTOCOL (76).
EXIT_FLEET_UNREACHABLE = 68
EXIT_FLEET_LOST = 76

MESSAGE_ID_ALREADY_RUNNING = "0f650170d0fd470bbe7f3aa2ef8e12e7"  # runtime's: contention, any scope
MESSAGE_ID_FLEET_ACQUIRED = "ecb25f77b7634b0eb9bcf7b8776d730f"
MESSAGE_ID_FLEET_UNREACHABLE = "9f6318ecd4724220b420d188bf7ffe01"
MESSAGE_ID_FLEET_LOST = "5c77a3790eaa429aa96f69ea280c0c37"

TOKEN_ENV = "UNITGEN_FENCING_TOKEN"  # noqa: S105 - a variable name, not a secret
KEY_ENV = "UNITGEN_FLEET_LOCK_KEY"  # our own key (PREFIX/LEASE_ID), for a downstream check by key
PYTHON_MODULE = "unitgen_fleet"  # what a python-mode app imports to ask about the lock
# LoadCredential= names of the TLS files: the launcher reads them from $CREDENTIALS_DIRECTORY only.
CREDENTIALS = {"ca_file": "etcd-ca", "cert_file": "etcd-cert", "key_file": "etcd-key"}

_WAIT_PING_SEC = 2.0
_WAIT_EXTEND_USEC = 5_000_000
_POLL_SEC = 0.02
_FORWARDED = ("SIGHUP", "SIGUSR1", "SIGUSR2", "SIGQUIT")
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36

_current: list[Guard] = []  # the guard of this process, for the python-mode calls below


def fencing_token() -> int:
    """python mode: the fencing token of the lock this process holds (0 before it is held)."""
    return _current[0].lock.token if _current else 0


def held() -> bool:
    """python mode: True while this process may act as holder (checked against the clock, not cached)."""
    return bool(_current) and _current[0].lock.held()


def tls_from_credentials(environ: Mapping[str, str]) -> fleet.TLSFiles | None:
    """The TLS files systemd passed with LoadCredential= (etcd-ca, etcd-cert, etcd-key), or None."""
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    found = {
        key: os.path.join(directory, name)
        for key, name in CREDENTIALS.items()
        if os.path.exists(os.path.join(directory, name))
    }
    return fleet.TLSFiles(**found) if found else None


def descendants(root: int) -> list[int]:
    """Living (not zombie) descendants of `root`, from /proc/PID/task/TID/children (a walk of the tree
    only: ~0.1 ms, where reading every /proc/PID/stat costs ~1 ms per hundred processes)."""
    if not os.path.exists(f"/proc/{root}/task/{root}/children"):  # a kernel without CONFIG_PROC_CHILDREN
        return _descendants_by_scan(root)
    found: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue  # gone
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:  # bytes: no codec to import
                    children = [int(child) for child in f.read().split()]
            except OSError:
                continue
            found.extend(child for child in children if _alive(child))
            todo.extend(children)
    return found


def _descendants_by_scan(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as f:
                fields = f.read().rpartition(")")[2].split()  # after "(comm)", which may hold spaces
        except OSError:
            continue
        if len(fields) > 1 and fields[1].isdigit():
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        if _alive(pid):
            found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except OSError:
            pass  # gone already


def _signal_module() -> ModuleType:
    """The C module behind `signal`: same functions and numbers, without the IntEnum classes whose
    import (enum, functools) costs ~4 ms of every start (the launcher does the same)."""
    import _signal  # type: ignore[import-not-found]  # typeshed describes only `signal`

    module: ModuleType = _signal
    return module


def _prctl() -> Callable[[int, int], int] | None:
    """libc's prctl(option, arg2) (no os.prctl before Python 3.14, maybe).

    Through `_ctypes` itself, as runtime._unshare_fd_table does: the `ctypes` package around it cost
    ~1.6 ms more per fleet start (dozens of classes), on the path to the app's exec."""
    try:
        import _ctypes

        class CInt(_ctypes._SimpleCData):  # type: ignore[type-arg]  # ctypes.c_int
            _type_ = "i"

        class CULong(_ctypes._SimpleCData):  # type: ignore[type-arg]  # ctypes.c_ulong
            _type_ = "L"

        class Prctl(_ctypes.CFuncPtr):  # a function of CDLL(None, use_errno=True)
            _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
            _restype_ = CInt
            _argtypes_ = (CInt, CULong, CULong, CULong, CULong)

        class Libc:
            _handle = _ctypes.dlopen(None, _ctypes.RTLD_LOCAL)  # type: ignore[arg-type]  # dlopen(NULL)

        function = Prctl(("prctl", Libc()))  # type: ignore[arg-type]  # any object with _handle
    except Exception:  # ctypes unusable (MemoryDenyWriteExecute=, no libffi): go on without
        return None

    def prctl(option: int, arg: int) -> int:
        result: int = function(option, arg, 0, 0, 0)
        return result

    return prctl


class Guard:
    """The fleet lock of one service run, as the launcher uses it (see the module docstring)."""

    def __init__(
        self,
        name: str,
        endpoints: list[str],
        key: str,
        ttl: int,
        *,
        log: _Log,
        notify: Callable[[str], object],
        tls: fleet.TLSFiles | None = None,
        request_timeout: float = 5.0,
    ) -> None:
        self.name = name
        self.log = log
        self.notify = notify
        self.lock = fleet.FleetLock(
            endpoints,
            key,
            ttl,
            tls=tls,
            on_lost=self._on_lost,
            on_renewed=self._renewed,
            request_timeout=request_timeout,
        )
        self.child = 0  # exec mode: the app's PID
        self._request_stop: Callable[[int], None] | None = None  # python mode: the launcher's stop
        self._enforced: fleet._Event | None = None  # set once a lost lock's app is stopped
        self._logged = fleet._Event()  # set once the lost lock's journal entry is out
        # exec mode's prctl, loaded while etcd works on acquire()'s requests (a thread for it made the
        # answers wait for the GIL: +2.7 ms median per start); [] until loaded, [None] if unusable
        self._prctl_loaded: list[Callable[[int, int], int] | None] = []
        self.lock.while_waiting = self._load_prctl
        self._acquired_entry: tuple[str, dict[str, str]] | None = None  # (message, fields), not yet logged
        self._pings: list[int] = []  # renewals not yet reported to systemd's watchdog
        self._ping_ready = _thread.allocate_lock()
        self._ping_ready.acquire()

    # ---- taking the lock -------------------------------------------------------------------------

    def fields(self) -> dict[str, str]:
        fields = {
            "LOCK_SCOPE": "fleet",
            "LOCK_KEY": self.lock.prefix.rstrip("/"),
            "LOCK_ENDPOINTS": ",".join(self.lock.endpoints),
        }
        if self.lock.lease_id:
            fields["LEASE_ID"] = f"{self.lock.lease_id:x}"
        if self.lock.token:
            fields["FENCING_TOKEN"] = str(self.lock.token)
        return fields

    def acquire(self, on_contention: str = "exit", wait_timeout: float | None = None) -> int:
        """Take the fleet lock: -1 when held (the app may start), else the exit code (entry logged)."""
        try:
            token = self.lock.acquire()
        except fleet.Contended as e:
            self._contended(e.holder, on_contention)
            if on_contention != "wait":
                return EXIT_ALREADY_RUNNING
            code = self._wait(wait_timeout)
            if code >= 0:
                return code
            token = self.lock.token
        except fleet.FleetLockError as e:
            return self._failed(e)
        except ValueError as e:  # bad settings the spec should have refused
            self.log(self.name, 3, f"invalid fleet lock settings for {self.name}: {e}", **self.fields())
            return EXIT_CONFIG_ERROR
        os.environ[TOKEN_ENV] = str(token)
        os.environ[KEY_ENV] = self.lock.key
        _current[:] = [self]
        self._arm_watchdog()
        # Logged by run_exec once the app is forked (guard_python, release otherwise): a journald slow
        # to read, or just its socket's round trip, never delays the app's start.
        self._acquired_entry = (
            f"{self.name} holds the fleet lock {self.lock.prefix.rstrip('/')} "
            f"(fencing token {token}, lease {self.lock.lease_id:x})",
            self.fields(),
        )
        return -1

    def _log_acquired(self) -> None:
        if self._acquired_entry is not None:
            message, fields = self._acquired_entry
            self._acquired_entry = None
            self.log(self.name, 6, message, MESSAGE_ID=MESSAGE_ID_FLEET_ACQUIRED, **fields)

    def _contended(self, holder: Mapping[str, object], action: str) -> None:
        where = f" on {holder['host']}" if holder.get("host") else ""
        pid = f" as PID {holder['pid']}" if holder.get("pid") else ""
        unit = f" ({holder['unit']})" if holder.get("unit") else ""
        message = (
            f"{self.name} is already running{where}{pid}{unit} (fleet lock "
            f"{self.lock.prefix.rstrip('/')}, token {holder.get('create_revision', '?')})"
        )
        fields = {
            "LOCK_HOLDER_KEY": holder.get("key"),
            "LOCK_HOLDER_HOST": holder.get("host"),
            "LOCK_HOLDER_PID": holder.get("pid"),
            "LOCK_HOLDER_UNIT": holder.get("unit"),
            "LOCK_HOLDER_TOKEN": holder.get("create_revision"),
        }
        self.log(
            self.name,
            4,
            message,
            MESSAGE_ID=MESSAGE_ID_ALREADY_RUNNING,
            LOCK_CONTENTION_ACTION=action,
            **self.fields(),
            **{k: str(v) for k, v in fields.items() if v is not None},
        )
        self.notify(f"STATUS={message}")

    def _wait(self, wait_timeout: float | None) -> int:
        """Wait for the lock in a thread, telling systemd every 2 s; -1 when held, else the exit code."""
        start = time.monotonic()
        deadline = None if wait_timeout is None else start + wait_timeout
        outcome: list[BaseException | None] = []
        done = fleet._Event()

        def wait() -> None:
            try:
                self.lock.acquire(wait=True, deadline=deadline)
                outcome.append(None)
            except BaseException as e:  # handed to the main thread
                outcome.append(e)
            done.set()

        _thread.start_new_thread(wait, ())
        while not done.wait(_WAIT_PING_SEC):
            self.notify(
                f"STATUS=Waiting for the fleet lock {self.lock.prefix.rstrip('/')} "
                f"({time.monotonic() - start:.0f} s)\nEXTEND_TIMEOUT_USEC={_WAIT_EXTEND_USEC}"
            )
        error = outcome[0]
        if isinstance(error, fleet.Contended):
            message = (
                f"{self.name}: gave up waiting for the fleet lock {self.lock.prefix.rstrip('/')} after "
                f"{wait_timeout:g} s (wait_timeout); held by {error.holder.get('host', '?')}"
            )
            self.log(self.name, 3, message, MESSAGE_ID=MESSAGE_ID_ALREADY_RUNNING, **self.fields())
            self.notify(f"STATUS={message}")
            return EXIT_WAIT_TIMEOUT
        if isinstance(error, fleet.FleetLockError):
            return self._failed(error)
        if error is not None:
            raise error
        return -1

    def _failed(self, error: fleet.FleetLockError) -> int:
        if isinstance(error, fleet.Unreachable):
            message = (
                f"{self.name} cannot start: etcd is unreachable at {', '.join(error.endpoints)} "
                f"({error.error}); the app was not started"
            )
            self.log(self.name, 3, message, MESSAGE_ID=MESSAGE_ID_FLEET_UNREACHABLE, ERROR=error.error, **self.fields())
            self.notify(f"STATUS={message}")
            return EXIT_FLEET_UNREACHABLE
        message = f"{self.name} cannot start: the fleet lock was lost while taking it ({error})"
        self.log(self.name, 3, message, MESSAGE_ID=MESSAGE_ID_FLEET_LOST, ERROR=str(error), **self.fields())
        self.notify(f"STATUS={message}")
        return EXIT_FLEET_LOST

    # ---- systemd's watchdog: the deadline enforced from outside the launcher ---------------------

    def watchdog_usec(self) -> int:
        """WATCHDOG_USEC= while the lock is held: ttl - margin/2, the guard's own SIGKILL time."""
        return int((self.lock.ttl - self.lock.margin / 2) * 1_000_000)

    def _arm_watchdog(self) -> None:
        # A launcher that cannot act (SIGSTOPped, its threads starved by an app holding the GIL) cannot
        # stop the app either: then systemd must. From here on WATCHDOG=1 is sent after each renewal that
        # came back within margin/4, so the watchdog fires (WatchdogSignal=SIGKILL in the unit; the app
        # dies with the launcher, PR_SET_PDEATHSIG) at most `renewal sent + margin/4 + ttl - margin/2`,
        # before the lease can expire, and never before the guard's own SIGKILL time.
        if not os.environ.get("NOTIFY_SOCKET"):
            return
        self.notify(f"WATCHDOG_USEC={self.watchdog_usec()}\nWATCHDOG=1")
        _thread.start_new_thread(self._pinger, ())

    def _renewed(self, round_trip: float) -> None:
        # From the keep-alive thread, which must never wait on a notification socket: hand it over.
        if round_trip < self.lock.margin / 4 and self.lock.held():
            self._pings.append(1)
            if self._ping_ready.locked():
                self._ping_ready.release()

    def _pinger(self) -> None:
        while True:
            self._ping_ready.acquire()
            while self._pings:
                self._pings.pop()
                if self.lock.held():
                    self.notify("WATCHDOG=1")

    # ---- losing it ---------------------------------------------------------------------------------

    def _on_lost(self, reason: str) -> None:
        # Called from the keep-alive thread: hand the work to a thread of its own and return, so that
        # the launcher's release() (which waits for the keep-alive thread) is never held up.
        self._enforced = fleet._Event()
        _thread.start_new_thread(self._enforce, (reason, self._enforced))

    def _enforce(self, reason: str, enforced: fleet._Event) -> None:
        expiry = self.lock.last_renewal + self.lock.ttl  # the earliest the server can expire the lease
        kill_at = expiry - self.lock.margin / 2
        signal = _signal_module()

        if self._request_stop is not None:
            self._request_stop(EXIT_FLEET_LOST)
        victims = self._tree()
        _signal_all(victims, signal.SIGTERM)
        last = self.lock.last_renewal
        message = (
            f"{self.name} lost the fleet lock {self.lock.prefix.rstrip('/')} ({reason}); stopping it "
            f"before the lease can expire (last renewal {time.monotonic() - last:.1f} s ago)"
        )
        fields = {**self.fields(), "ERROR": reason, "LAST_RENEWAL_MONOTONIC_USEC": str(int(last * 1e6))}
        # Logging may wait for journald (up to ~2 s): never in the way of the SIGKILL deadline.
        _thread.start_new_thread(self._log_lost, (message, fields, self._logged))
        while time.monotonic() < kill_at and (self._tree() or self._python_app_running()):
            time.sleep(_POLL_SEC)
        _signal_all(self._tree(), signal.SIGKILL)
        if self._python_app_running():
            self.notify(f"STATUS={message}")
            os._exit(EXIT_FLEET_LOST)  # the app ignored the stop request: end the process now
        # The app is gone: the watchdog has nothing left to protect, and without a last ping it fired
        # (ttl - margin/2 after the last renewal) while release() still waited for the revoke (1 s) and
        # the journal entry, so under systemd a cut-off holder ended killed by the watchdog, not with 76.
        if os.environ.get("NOTIFY_SOCKET"):
            self.notify("WATCHDOG=1")
        enforced.set()

    def _log_lost(self, message: str, fields: dict[str, str], logged: fleet._Event) -> None:
        try:
            self.log(self.name, 3, message, MESSAGE_ID=MESSAGE_ID_FLEET_LOST, **fields)
            self.notify(f"STATUS={message}")
        finally:
            logged.set()

    @staticmethod
    def _tree() -> list[int]:
        """The processes to stop: every descendant of the launcher. exec mode: the app, its children and
        its orphans (the launcher is their subreaper); python mode: the app's forked workers."""
        return descendants(os.getpid())

    def _python_app_running(self) -> bool:
        return self._request_stop is not None

    def release(self) -> None:
        """Stop what is left of the app's processes, then revoke the lease (the next holder goes at once)."""
        signal = _signal_module()

        self._log_acquired()  # the app never ran (exec failed...): the lock was held all the same
        if self._request_stop is not None:
            self._request_stop = None
        left = self._tree()
        if left:
            # Still holders as far as anyone downstream can tell: gone before the lease is.
            _signal_all(left, signal.SIGTERM)
            end = time.monotonic() + self.lock.margin / 2
            while time.monotonic() < end and any(_alive(p) for p in left):
                time.sleep(_POLL_SEC)
            _signal_all([p for p in left if _alive(p)], signal.SIGKILL)
        if self._enforced is not None:
            self._enforced.wait(self.lock.ttl)
            self._logged.wait(3)  # the entry saying why, before the process ends (log waits <= 2 s)
            # Renewals failed for most of a ttl: etcd is likely out of reach, and the lease expires
            # anyway; try to revoke it (the next holder goes sooner) without holding up the restart.
            self.lock.request_timeout = min(self.lock.request_timeout, 1.0)
        self.lock.release()
        _current.clear()

    # ---- python mode -------------------------------------------------------------------------------

    def guard_python(self, request_stop: Callable[[int], None]) -> None:
        """Make the lock reachable for the app (`import unitgen_fleet`) and stop it through
        `request_stop(EXIT_FLEET_LOST)` (the launcher's SIGTERM path) when the lock is lost."""
        self._request_stop = request_stop
        self._log_acquired()
        sys.modules.setdefault(PYTHON_MODULE, sys.modules[__name__])
        if not self.lock.held():  # lost between acquire() and now: never start the app
            self._on_lost(self.lock.lost_reason or "lease could have expired")

    # ---- exec mode ---------------------------------------------------------------------------------

    def run_exec(self, argv: list[str], environ: Mapping[str, str]) -> int:
        """Run argv as a supervised child while the lock is held; its exit status, or EXIT_FLEET_LOST."""
        signal = _signal_module()

        self._load_prctl()  # if acquire() did not (its ordinary path)
        prctl = self._prctl_loaded[0]
        if prctl is not None:
            prctl(_PR_SET_CHILD_SUBREAPER, 1)  # the app's orphans stay ours to stop
        parent = os.getpid()
        env = dict(environ)  # here, not in the child: every object the child touches is a page to copy
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        self._forward_signals()
        pid = os.fork()
        if pid == 0:  # the app-to-be
            try:
                os.close(read_end)
                if prctl is not None:
                    prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
                if os.getppid() != parent:  # the launcher died before PDEATHSIG was armed
                    os._exit(EXIT_FLEET_LOST)
                # The app starts with the defaults; SIGPIPE and SIGXFSZ as the launcher's exec mode
                # leaves them (runtime.restore_exec_signals: Python ignored them, systemd ignores SIGPIPE).
                defaults = ("SIGINT", "SIGTERM", "SIGXFSZ", *_FORWARDED)
                for name in (*defaults, "SIGPIPE") if not env.get("INVOCATION_ID") else defaults:
                    signal.signal(getattr(signal, name), signal.SIG_DFL)
                if "/" in argv[0]:
                    os.execve(argv[0], argv, env)  # noqa: S606 - running the service is the point
                os.execvpe(argv[0], argv, env)  # noqa: S606
            except OSError as e:
                os.write(write_end, f"{e.strerror or e}".encode())
            finally:
                os._exit(127)
        os.close(write_end)
        self.child = pid
        self._log_acquired()
        # The pipe is closed by a successful exec (O_CLOEXEC): an empty read means the app runs.
        failure = _read_all(read_end)
        if not self.lock.held():  # lost between acquire() and the fork: the stop may have missed the app
            _signal_all([pid], signal.SIGKILL)
            if self._enforced is None:
                self._on_lost(self.lock.lost_reason or "lease could have expired before the app ran")
        status = self._wait_child(pid)
        lost = self._enforced is not None
        self.release()
        if failure:
            self.log(
                self.name,
                3,
                f"{self.name} cannot start: cannot run {argv[0]}: {failure}",
                EXEC_PATH=argv[0],
                **self.fields(),
            )
            return 70  # runtime.EXIT_APP_ERROR
        return EXIT_FLEET_LOST if lost else _exit_like(status)

    def _load_prctl(self) -> None:
        if not self._prctl_loaded:
            self._prctl_loaded.append(_prctl())

    def _forward_signals(self) -> None:
        """Pass signals meant for the service on to the app. Installed before the fork (the child's
        exec resets handlers to their defaults), so a SIGTERM never finds the launcher unprepared: its
        default action would end the launcher and, through PDEATHSIG, SIGKILL the app mid-stop."""
        signal = _signal_module()

        under_systemd = bool(os.environ.get("INVOCATION_ID"))

        def forward(signum: int, frame: object) -> None:
            if self.child and not (signum == signal.SIGTERM and under_systemd):
                # systemd sends SIGTERM to every process of the unit itself (KillMode=control-group):
                # passing it on would deliver it twice. The launcher waits for the app either way.
                try:
                    os.kill(self.child, signum)
                except OSError:
                    pass

        for name in (*_FORWARDED, "SIGTERM"):
            signal.signal(getattr(signal, name), forward)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C reaches the app itself

    @staticmethod
    def _wait_child(pid: int) -> int:
        """Reap everything (we are a subreaper) until the app itself exits; its wait status."""
        while True:
            try:
                reaped, status = os.waitpid(-1, 0)
            except ChildProcessError:
                return 0
            if reaped == pid:
                return status


def _exit_like(status: int) -> int:
    """End as the app did: killed by signal N, the launcher kills itself with N (so systemd sees the
    same result: a SIGTERM'd service stopped cleanly); otherwise its exit code to return."""
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return code
    signal = _signal_module()

    signal.signal(-code, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [-code])
    os.kill(os.getpid(), -code)
    return 128 - code  # not reached unless the signal is one that does not terminate


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            return f.read().rpartition(")")[2].split()[:1] not in (["Z"], ["X"])
    except OSError:
        return False


def _read_all(fd: int) -> str:
    chunks = []
    try:
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "replace")
