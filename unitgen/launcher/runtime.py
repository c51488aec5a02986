"""Single-instance launcher for one service: take the lock, report readiness, run the app.

This module is the launcher runtime. `unitgen render` copies its source verbatim (up to its own
`__main__` block) to `/usr/libexec/NAME/unitgen_launcher.py` and writes the unit's `ExecStart=`,
`/usr/libexec/NAME/NAME-launcher`, a stub (`#!PYTHON -IS`) that holds the service's settings as a
Python literal and calls `main(SETTINGS, argv)` of the module next to it. The package compiles the
module's bytecode at install time and removes it on removal (see unitgen.launcher.script). It uses
only the standard library and never imports unitgen. It can also be run directly:
`python3 launcher.py --settings '<json>' [-- ARGS...]`.

Lock
    The lock file's directory is opened one component at a time from / (openat with
    O_PATH|O_DIRECTORY|O_NOFOLLOW), so no symbolic link anywhere in the path is followed; every
    directory must belong to root, to the user running the launcher or to the service's `user`
    (with DynamicUser=, a UID of systemd's dynamic range), and the lock directory must not be
    writable by group or others (another user could create and lock the file first). Otherwise
    the launcher refuses with EXIT_LOCK_ERROR and says why. Run by hand or from cron as root, it
    therefore cannot be steered into creating a file elsewhere or blocked by another user's lock.
    The lock file (default /run/NAME/NAME.pid) is then opened relative to that directory with
    O_RDWR|O_CREAT|O_NOFOLLOW|O_CLOEXEC, mode 0644, and locked with a classic POSIX record lock
    (fcntl F_SETLK, F_WRLCK, whole file), the same lock as the APUE `already_running()` pattern,
    so both exclude each other. Only the holder writes its PID into the file (first the new
    content, then the truncation, so `cat` never sees an empty file). If the PID cannot be written
    (a full /run), the launcher empties the file, logs a PRIORITY=4 warning and runs the service
    all the same: the lock is held, and the lock, not the PID, is what excludes other instances.
    A contender never writes, truncates or deletes it. The kernel drops the lock when its holder
    dies, even by SIGKILL, whatever PID the file still contains.

    exec mode: the lock fd is made inheritable and the launcher execs the program, which therefore
    runs under the same PID and keeps the lock. The fd number is in $UNITGEN_LOCK_FD. The one rule
    for the program: never close that fd, and never open-and-close the lock path (with POSIX locks,
    closing *any* fd of the file drops every lock the process holds on it). Forked children do not
    inherit the lock.

    python mode: the launcher process holds the lock and calls the entry in its main thread. The
    lock is taken by a helper thread that first gives itself a private fd table
    (unshare(CLONE_FILES)); POSIX locks belong to the fd table that took them, so the app may open,
    read and close the lock path freely without dropping the lock. The holder PID the kernel reports
    is still the process's PID. The lock dies with the process (not with forked workers; and if
    the app execs another program, the lock is released: use exec mode for that). If unshare() is
    refused, the lock is taken in the shared table and the exec-mode rule applies (a warning is
    logged).

Readiness (`ready`) and sd_notify
    immediate   READY=1 right before exec (exec mode) or before calling the entry (python mode).
    notify      the app sends READY=1 to $NOTIFY_SOCKET itself (any sd_notify client, or a few lines
                of socket code: one AF_UNIX datagram "READY=1"; "@" means an abstract address).
    tcp:PORT, tcp:HOST:PORT, path:/abs/file
                the launcher probes until the port accepts a connection or the path exists, then
                sends READY=1. A tcp: port counts only when the listening socket that accepted
                belongs to the service (the app's PID or its descendants, matched through
                /proc/self/net/tcp{,6} and /proc/PID/fd) and the app is alive; someone else's
                listener is logged once (PRIORITY=4, PORT_HOLDER) and waited out, so the start
                fails when the app dies with "Address already in use" instead of passing. In
                exec mode a small watcher process (forked before exec) does it, so the unit
                needs NotifyAccess=all. If the condition does not hold within
                ready_timeout_sec, the failure is logged and the service gets SIGTERM (python mode
                then exits with EXIT_READY_TIMEOUT).
    In exec mode the watcher is double-forked (PID 1 reaps it, not the app), holds no lock and no
    stdio pipe, and exits when the service does (it polls a pidfd of the service).
    Watchdog: when $WATCHDOG_USEC is set and $WATCHDOG_PID is unset or the service's PID, WATCHDOG=1
    is sent every WATCHDOG_USEC/2 (monotonic clock) while the app is healthy: for tcp/path while the
    probe still succeeds; python mode + immediate while the interpreter runs Python code. With
    `notify` the app owns READY=1 and WATCHDOG=1 (the plain sd_notify protocol: that is the way for
    a python-mode app to say it is ready and healthy without depending on unitgen); exec mode +
    immediate cannot be watched by the launcher.
    python mode: SIGTERM sends STOPPING=1 and raises SystemExit(0) in the main thread, so `finally`
    blocks run (a second SIGTERM kills). SIGHUP sends RELOADING=1 with MONOTONIC_USEC, calls the
    entry module's `unitgen_reload()` if it defines one (in a helper thread, never inside the
    signal handler), then READY=1. An app that installs its own SIGTERM/SIGHUP handlers replaces
    these and speaks the protocol itself. sys.argv[0] is NAME.
    oneshot services never send READY=1 or WATCHDOG=1 (only STATUS= and EXTEND_TIMEOUT_USEC=).
    Notifications are sent natively (one datagram, UTF-8); no $NOTIFY_SOCKET is a silent no-op.
    A send waits at most 1 s for room in a full notification queue, then the message is dropped
    (one PRIORITY=4 entry says so): the launcher never hangs on a service manager that does not
    read, so the app still starts, a contender still exits 17 and SIGTERM still stops it.

Contention (`on_contention`)
    exit: log one journal entry (PRIORITY=4, MESSAGE_ID=MESSAGE_ID_ALREADY_RUNNING,
          SYSLOG_IDENTIFIER=NAME, LOCK_PATH, LOCK_HOLDER_PID and, when /proc allows,
          LOCK_HOLDER_COMM, LOCK_HOLDER_CMDLINE, LOCK_HOLDER_UNIT), send STATUS=, exit 17.
          `journalctl MESSAGE_ID=0f650170d0fd470bbe7f3aa2ef8e12e7` lists every occurrence.
    wait: same entry (LOCK_CONTENTION_ACTION=wait), then wait for the lock, sending STATUS= and
          EXTEND_TIMEOUT_USEC= every few seconds; SIGTERM meanwhile sends STOPPING=1 and ends the
          launcher by that signal; after wait_timeout_sec it gives up: a PRIORITY=3 entry with the
          same MESSAGE_ID and EXIT_WAIT_TIMEOUT.

Exit codes (besides the app's own)
    17  EXIT_ALREADY_RUNNING  another instance holds the lock (unit: RestartPreventExitStatus=17;
                              timer services also SuccessExitStatus=17)
    64  EXIT_USAGE            bad command line when run directly
    69  EXIT_READY_TIMEOUT    python mode: tcp/path readiness not reached within ready_timeout_sec
    70  EXIT_APP_ERROR        the app could not be started (python entry failed to import or is
                              missing; exec failed)
    73  EXIT_LOCK_ERROR       the lock file cannot be opened or locked (directory missing, not
                              writable, read-only file system, symlink in the path, not a
                              regular file, a directory of another user or writable by others)
    75  EXIT_WAIT_TIMEOUT     on_contention=wait gave up after wait_timeout_sec
    78  EXIT_CONFIG_ERROR     invalid settings
    68  (fleet lock)          etcd unreachable at start (unitgen_fleet_guard.EXIT_FLEET_UNREACHABLE)
    76  (fleet lock)          the fleet lock was lost; the app was stopped (EXIT_FLEET_LOST)
    Failures other than contention are logged at PRIORITY=3, with MESSAGE_ID_LOCK_ERROR
    (f0716aacd5dc4a65addfc8685cfde170, fields LOCK_PATH and ERRNO) for lock problems, and say what
    to fix. A python-mode import failure carries PYTHON_ENTRY and TRACEBACK.

Fleet lock (settings fleet_etcd, fleet_key, fleet_ttl; lock.scope = "fleet")
    After the local lock, the launcher takes an etcd lock through unitgen_fleet_guard.py, installed
    next to this module with unitgen_fleet_lock.py (imported only on this path). exec mode then no
    longer execs: the launcher stays as the main process, runs the app as its child and stops it
    before the lease can expire if renewals fail; python mode calls the entry as usual and stops it
    through the SIGTERM path (SystemExit 76). The app gets $UNITGEN_FENCING_TOKEN. Details, exit codes
    and journal entries: the unitgen_fleet_guard module docstring.

Journal
    The native protocol on /run/systemd/journal/socket (multi-line values, field names sanitised,
    entries too large for a datagram passed as a sealed memfd), never systemd-python: its sendv()
    blocks for ever when journald does not read. Each entry waits at most 1 s for room in
    journald's queue; with no journal (or a stuck one), or when stderr is a terminal, a plain
    "NAME: message" line also goes to stderr, again waiting at most 1 s. Logging never raises and
    never hangs: a contender exits 17 promptly and SIGTERM works whatever journald does.

Command line
    exec mode: `NAME-launcher -- PROG ARGS...` runs PROG ARGS instead of the rendered argv (the unit
    passes the command this way so a drop-in can change it); arguments without a leading `--` are
    appended to the rendered argv. python mode: the arguments become sys.argv[1:].

Environment
    UNITGEN_LOCK_FD          set for the exec'd program: the fd holding the lock.
    UNITGEN_INSTANCE         a template's instance (the unit sets it to %i): when the lock file
                             names {instance}, it is replaced by this (and so is {instance} in the
                             rendered argv); checked to be a file name (instance_problem), else
                             EXIT_CONFIG_ERROR. Journal entries then carry UNITGEN_INSTANCE= and the
                             contention message says NAME@INSTANCE.
    LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES   socket activation (sd_listen_fds(3)): passed through
                             untouched, and so are fds 3 and up. exec mode execs, so the app has
                             LISTEN_PID's PID; python mode: listen_fds() and listen_sockets()
                             (`import unitgen_launcher` from the app) return them. The lock is taken
                             before the app runs, so nothing accepts before it is held; a contender
                             exits 17 without touching them (the queue stays for the holder).
    UNITGEN_JOURNAL_SOCKET   send journal entries natively to this socket instead (tests, debugging).
    NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID   read as systemd sets them.

Start-up cost matters (this runs on every start): only os, fcntl, errno and _socket are imported on
the way to READY=1, and `site` not at all (the stub's -S; python mode loads it before the app).
`socket` (its IntEnum set-up costs ~15 ms), `typing` (~18 ms), json, struct, threading and
`_ctypes` are imported only on the paths that need them; `signal` and `ctypes` never (their C
modules `_signal` and `_ctypes` do the same without building enums and classes: time and memory
in every python-mode launcher).
"""

# pathlib costs ~17 ms of start-up: this file uses os.path and open() on purpose.
# ruff: noqa: PTH110, PTH115, PTH119, PTH120, PTH123, PTH208
from __future__ import annotations

import _socket
import errno
import fcntl
import os
import stat
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    import threading
    from collections.abc import Callable, Mapping
    from types import FrameType, ModuleType
    from typing import Literal, NotRequired, Protocol, TypedDict

    class FleetGuard(Protocol):
        """What the launcher uses of unitgen_fleet_guard.Guard (a sibling module, loaded on demand)."""

        def acquire(self, on_contention: str = ..., wait_timeout: float | None = ...) -> int: ...
        def run_exec(self, argv: list[str], environ: Mapping[str, str]) -> int: ...
        def guard_python(self, request_stop: Callable[[int], None]) -> None: ...
        def release(self) -> None: ...

    class LauncherSettings(TypedDict):
        name: str
        mode: Literal["exec", "python"]
        argv: list[str]
        entry: str | None
        lock_file: str
        ready: str
        ready_timeout_sec: float
        on_contention: Literal["exit", "wait"]
        wait_timeout_sec: float | None
        oneshot: bool
        user: NotRequired[str | None]
        fleet_etcd: NotRequired[list[str]]
        fleet_key: NotRequired[str | None]
        fleet_ttl: NotRequired[int | None]

else:
    # The TypedDict exists for type checkers only: importing typing costs ~18 ms at start-up.
    LauncherSettings = dict

SETTINGS_KEYS = (
    "name",
    "mode",
    "argv",
    "entry",
    "lock_file",
    "ready",
    "ready_timeout_sec",
    "on_contention",
    "wait_timeout_sec",
    "oneshot",
    "user",
)
# Settings a launcher rendered by an older unitgen may lack, with the value that means "absent".
OPTIONAL_SETTINGS: dict[str, object] = {"user": None}
# lock.scope = "fleet" (unitgen_fleet_guard): in a launcher's settings only when it has a fleet lock.
FLEET_SETTINGS: dict[str, object] = {"fleet_etcd": [], "fleet_key": None, "fleet_ttl": None}

EXIT_ALREADY_RUNNING = 17
EXIT_USAGE = 64
EXIT_READY_TIMEOUT = 69
EXIT_APP_ERROR = 70
EXIT_LOCK_ERROR = 73
EXIT_WAIT_TIMEOUT = 75
EXIT_CONFIG_ERROR = 78

MESSAGE_ID_ALREADY_RUNNING = "0f650170d0fd470bbe7f3aa2ef8e12e7"
MESSAGE_ID_LOCK_ERROR = "f0716aacd5dc4a65addfc8685cfde170"

LOCK_FD_ENV = "UNITGEN_LOCK_FD"
INSTANCE_ENV = "UNITGEN_INSTANCE"
INSTANCE_PLACEHOLDER = "{instance}"
_INSTANCE_MAX = 200
_LISTEN_FDS_START = 3  # SD_LISTEN_FDS_START, sd_listen_fds(3)
JOURNAL_SOCKET_ENV = "UNITGEN_JOURNAL_SOCKET"
JOURNAL_SOCKET = "/run/systemd/journal/socket"
RELOAD_HOOK = "unitgen_reload"

_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
_HOLDER_RETRIES = 5
_WAIT_PING_SEC = 2.0
_WAIT_EXTEND_USEC = 5_000_000
_JOURNAL_SEND_TIMEOUT_SEC = 1.0
_NOTIFY_SEND_TIMEOUT_SEC = 1.0
_CLONE_FILES = 0x400


# ---------------------------------------------------------------------------------------------
# sd_notify (sd_notify(3)): one datagram of NEWLINE-separated KEY=VALUE assignments.


def notify(state: str) -> bool:
    """Send `state` to $NOTIFY_SOCKET; False when unset, unsupported or sending failed.

    Never blocks for more than _NOTIFY_SEND_TIMEOUT_SEC: a datagram to a receiver whose queue is
    full (systemd not reading) would otherwise wait for ever, holding the lock without running
    the app, keeping a contender from exiting, and keeping SIGTERM's STOPPING=1 from returning.
    The socket is connected first, so the timeout's poll() waits for room in *that* receiver's
    queue (unix_dgram_poll) instead of spinning. A dropped notification is logged once.
    """
    address = os.environ.get("NOTIFY_SOCKET", "")
    if address[:1] == "@":
        target = b"\0" + address[1:].encode()
    elif address[:1] == "/":
        target = address.encode()
    else:  # unset, or an address family (vsock:) this launcher does not speak
        return False
    try:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
        try:
            sock.settimeout(_NOTIFY_SEND_TIMEOUT_SEC)
            sock.connect(target)
            sock.send(state.encode("utf-8", "replace"))
        finally:
            sock.close()
    except (TimeoutError, BlockingIOError):
        _notify_dropped(address, state)
        return False
    except OSError:
        return False
    return True


_service_name = [""]  # for log lines from helpers that are not told the name (set by main())
_instance = [""]  # a template's instance name, from $UNITGEN_INSTANCE (set by main())
_notify_warned = [False]


def _notify_dropped(address: str, state: str) -> None:
    if _notify_warned[0]:
        return
    _notify_warned[0] = True
    name = _service_name[0] or "unitgen-launcher"
    first = state.partition("\n")[0]
    message = (
        f"{name}: the notification socket {address} accepted nothing for {_NOTIFY_SEND_TIMEOUT_SEC:g} s "
        f"(service manager not reading); dropped {first!r} and going on (logged once)"
    )
    log(name, 4, message, NOTIFY_SOCKET=address)


def _monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


# ---------------------------------------------------------------------------------------------
# Journal: the native protocol (systemd.journal-fields(7)), bounded in time.


def journal_field_name(key: str) -> str | None:
    """A valid journal field name for `key`: A-Z, 0-9 and _, no leading digit or _, at most 64."""
    name = "".join(c if ("A" <= c <= "Z" or "0" <= c <= "9") else "_" for c in key.upper())
    name = name.lstrip("_0123456789")[:64]
    return name or None


def journal_payload(fields: list[tuple[str, str]]) -> bytes:
    """Serialise fields in the native protocol; values with newlines get the binary length form."""
    parts = []
    for key, value in fields:
        name = journal_field_name(key)
        if name is None:
            continue
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            parts.append(b"%s\n%s%s\n" % (name.encode(), len(data).to_bytes(8, "little"), data))
        else:
            parts.append(b"%s=%s\n" % (name.encode(), data))
    return b"".join(parts)


def journal_send_native(path: str, fields: list[tuple[str, str]]) -> None:
    """Send one entry to the journal socket at `path`; a sealed memfd when too big for a datagram.

    Waits at most _JOURNAL_SEND_TIMEOUT_SEC for room in journald's queue (a stuck journald must
    not hang the launcher); the socket is connected so that the timeout's poll() waits for that
    receiver's queue rather than spinning.
    """
    payload = journal_payload(fields)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(_JOURNAL_SEND_TIMEOUT_SEC)
        sock.connect(path)
        try:
            sock.send(payload)
        except OSError as err:
            if err.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                raise
            _send_memfd(sock, payload)
    finally:
        sock.close()


def _send_memfd(sock: _socket.socket, payload: bytes) -> None:
    # journald accepts an empty datagram carrying one sealed memfd with the entry (sd_journal_sendv).
    fd = os.memfd_create("journal-entry", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
        seals = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
        rights = fd.to_bytes(4, sys.byteorder, signed=True)
        sock.sendmsg([], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
    finally:
        os.close(fd)


def journal_send(fields: list[tuple[str, str]]) -> bool:
    """Send one entry; True when some journal accepted it. Never raises."""
    try:
        # Always the native protocol, with a timeout: systemd-python's sendv() blocks for ever when
        # journald does not read its socket (and importing it costs start-up time).
        path = os.environ.get(JOURNAL_SOCKET_ENV, JOURNAL_SOCKET)
        journal_send_native(path, fields)
    except Exception:
        return False
    return True


def log(name: str, priority: int, message: str, **fields: str) -> None:
    """One journal entry (SYSLOG_IDENTIFIER=name); also to stderr without a journal or on a tty."""
    entry = [("MESSAGE", message), ("PRIORITY", str(priority)), ("SYSLOG_IDENTIFIER", name)]
    if _instance[0]:  # a template's instance: every entry says which one (journalctl UNITGEN_INSTANCE=a)
        entry.append((INSTANCE_ENV, _instance[0]))
    entry.extend(fields.items())
    sent = journal_send(entry)
    try:
        if not sent or os.isatty(2):
            _write_stderr(f"{name}: {message}\n")
    except Exception:  # noqa: S110 - a closed or broken stderr must not crash the launcher
        pass


def _write_stderr(text: str) -> None:
    # Under systemd stderr is journald's stream socket too: when journald is stuck, a plain write
    # would block for ever, so each chunk waits at most _JOURNAL_SEND_TIMEOUT_SEC for room.
    import select

    sys.stderr.flush()
    data = memoryview(text.encode("utf-8", "replace"))
    poller = select.poll()
    poller.register(2, select.POLLOUT)
    while data:
        if not poller.poll(int(_JOURNAL_SEND_TIMEOUT_SEC * 1000)):
            return
        data = data[os.write(2, data[:512]) :]  # 512 <= PIPE_BUF: fits once POLLOUT is reported


# ---------------------------------------------------------------------------------------------
# The lock.


class LockError(Exception):
    """The lock file cannot be used; str() says what to fix."""

    def __init__(self, message: str, err: int) -> None:
        super().__init__(message)
        self.errno = err


# systemd's DynamicUser= range (systemd.exec(5)): only systemd allocates these UIDs, so a
# directory owned by one is the RuntimeDirectory= of a dynamic-user service, not a user's own.
_DYNAMIC_UID_MIN = 61184
_DYNAMIC_UID_MAX = 65519
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _trusted_owner(uid: int, user: str | None) -> bool:
    """May a directory owned by `uid` hold our lock: root, ourselves, or the service's user."""
    if uid in (0, os.geteuid()):
        return True
    if user is None:
        return _DYNAMIC_UID_MIN <= uid <= _DYNAMIC_UID_MAX
    import pwd  # only reached when root runs a static-user service's launcher by hand

    try:
        return pwd.getpwnam(user).pw_uid == uid
    except KeyError:
        return False


def _owner_name(uid: int) -> str:
    import pwd

    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def open_lock_dir(path: str, user: str | None = None) -> int:
    """Open the lock file's directory without following untrusted symbolic links; raise LockError.

    Run as root by hand or from cron, the launcher must not be steered by whoever can create a
    path component: every component is opened relative to its parent's descriptor with
    O_NOFOLLOW (openat(2)), so what is checked is what is used (no lstat-then-open race). A
    symbolic link is followed only when root made it in a directory nobody else can write and it
    points further down that directory (relative, no '..'): systemd's own `/run/NAME ->
    private/NAME` for DynamicUser= services. Any other link is refused.
    Every directory must belong to root, to the user running the launcher, or to the service's
    `user`; the lock directory itself must not be writable by group or others, who could
    otherwise create and lock the file first (another user's lock would block the service for good).
    """
    parts = [p for p in os.path.normpath(os.path.dirname(path) or "/").split("/") if p not in ("", ".")]
    fd = os.open("/", _DIR_FLAGS)
    walked = ""
    links = 0
    try:
        _check_directory(fd, "/", path, user, last=not parts)
        while parts:
            part = parts.pop(0)
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as err:
                target = _trusted_link(fd, part)
                if target is None or links >= _MAX_LINKS:
                    raise LockError(_component_error(fd, part, walked + "/" + part, path, err), err.errno or 0) from err
                links += 1
                parts[:0] = [p for p in target.split("/") if p not in ("", ".")]
                continue
            walked += "/" + part
            os.close(fd)
            fd = child
            _check_directory(fd, walked, path, user, last=not parts)
    except BaseException:
        os.close(fd)
        raise
    return fd


_MAX_LINKS = 8  # symbolic links followed in one lock path, like the kernel's own bound (40) but tighter


def _trusted_link(parent: int, part: str) -> str | None:
    """The target of `part` if it is a symbolic link only root could have made (owned by root, in a
    root-owned directory that neither group nor others can write) leading further down that
    directory (relative, no '..'), so the walk stays in a tree already checked; else None."""
    try:
        st = os.stat(part, dir_fd=parent, follow_symlinks=False)
        if not stat.S_ISLNK(st.st_mode) or st.st_uid != 0:
            return None
        where = os.fstat(parent)
        if where.st_uid != 0 or where.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return None
        target = os.readlink(part, dir_fd=parent)
    except OSError:
        return None
    return None if target.startswith("/") or ".." in target.split("/") else target


def _component_error(parent: int, part: str, walked: str, path: str, err: OSError) -> str:
    try:
        is_link = stat.S_ISLNK(os.stat(part, dir_fd=parent, follow_symlinks=False).st_mode)
    except OSError:
        is_link = False
    if is_link:
        return (
            f"{walked} (in lock path {path}) is a symbolic link; the launcher does not follow "
            f"symbolic links in the lock path: make it a real directory owned by root or the service user"
        )
    if err.errno == errno.ENOENT:
        return (
            f"lock directory {walked} does not exist: create it (RuntimeDirectory= in the unit, "
            f"or a tmpfiles.d entry) or point lock_file at an existing directory"
        )
    if err.errno == errno.ENOTDIR:
        return f"{walked} (in lock path {path}) is not a directory: fix lock_file"
    if err.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied searching {walked} (in lock path {path}) as uid {os.geteuid()}"
    return f"cannot open {walked} (in lock path {path}): {err.strerror}"


def _check_directory(fd: int, walked: str, path: str, user: str | None, last: bool) -> None:
    st = os.fstat(fd)
    if not _trusted_owner(st.st_uid, user):
        raise LockError(
            f"{walked} (in lock path {path}) belongs to {_owner_name(st.st_uid)}, not to root or the "
            f"service user: another user could then move or hold the lock; use the service's "
            f"RuntimeDirectory= (or a tmpfiles.d entry owned by the service user)",
            errno.EPERM,
        )
    shared = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    # Above the lock directory, the sticky bit (/tmp) keeps others from renaming our entries.
    if shared and (last or not st.st_mode & stat.S_ISVTX):
        who = "others" if st.st_mode & stat.S_IWOTH else "its group"
        raise LockError(
            f"lock directory {walked} is writable by {who} (mode {stat.S_IMODE(st.st_mode):04o}): "
            f"another user could create and lock {os.path.basename(path)} first and block the service; "
            f"use a directory only the service user can write (RuntimeDirectory=, mode 0755)",
            errno.EPERM,
        )


def open_lock(path: str, user: str | None = None) -> int:
    """Open (creating) the lock file, never through a symbolic link; raise LockError with a fix-it message."""
    dir_fd = open_lock_dir(path, user)
    name = os.path.basename(path)
    try:
        try:
            fd = os.open(name, _OPEN_FLAGS, 0o644, dir_fd=dir_fd)
        except OSError as err:
            raise LockError(_open_error(path, err, dir_fd), err.errno or 0) from err
    finally:
        os.close(dir_fd)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise LockError(f"lock path {path} is not a regular file; remove it", errno.EINVAL)
    return fd


def _open_readonly(path: str, user: str | None) -> int:
    try:
        dir_fd = open_lock_dir(path, user)
    except (LockError, OSError):
        return -1
    try:
        fd = os.open(os.path.basename(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return -1
    finally:
        os.close(dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return -1
    return fd


def _open_error(path: str, err: OSError, dir_fd: int) -> str:
    directory = os.path.dirname(path) or "/"
    code = err.errno
    try:
        st = os.stat(os.path.basename(path), dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        pass
    else:
        if stat.S_ISLNK(st.st_mode):  # whatever the errno (EACCES in a sticky directory, ELOOP)
            return f"lock path {path} is a symbolic link; the launcher does not follow it: remove the link"
    if code == errno.ENOENT:
        return (
            f"lock directory {directory} does not exist: create it (RuntimeDirectory= in the unit, "
            f"or a tmpfiles.d entry) or point lock_file at an existing directory"
        )
    if code in (errno.EACCES, errno.EPERM):
        return (
            f"permission denied creating or opening lock file {path} as uid {os.geteuid()}: make "
            f"{directory} writable for this user (RuntimeDirectory=, User=) or run as the service user"
        )
    if code == errno.EROFS:
        return (
            f"lock directory {directory} is on a read-only file system: keep the lock under /run "
            f"(RuntimeDirectory=) or add {directory} to ReadWritePaths="
        )
    if code in (errno.ENOSPC, errno.EDQUOT):
        return f"cannot create lock file {path}: {err.strerror}: free space or inodes on the file system of {directory}"
    if code in (errno.EISDIR, errno.ENOTDIR):
        return f"lock path {path} is not a regular file in a directory ({err.strerror}): fix the path"
    return f"cannot open lock file {path}: {err.strerror}"


def try_lock(fd: int) -> bool:
    """F_SETLK F_WRLCK on the whole file (fcntl.lockf is exactly that); False when held elsewhere."""
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def lock_holder(fd: int) -> int | None:
    """PID holding a conflicting lock (F_GETLK), 0 when unknown, None when the file is unlocked."""
    import struct

    flock = struct.Struct("hhqqi4x")  # struct flock on LP64 Linux: type, whence, start, len, pid
    query = flock.pack(fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
    l_type, _, _, _, l_pid = flock.unpack(fcntl.fcntl(fd, fcntl.F_GETLK, query))
    if l_type == fcntl.F_UNLCK:
        return None
    return l_pid if l_pid > 0 else 0  # -1: an OFD lock; 0: holder outside our PID namespace


def write_pid(fd: int, pid: int) -> None:
    """Record our PID; new content first, then truncate, so the file is never empty."""
    data = b"%d\n" % pid
    os.pwrite(fd, data, 0)
    os.ftruncate(fd, len(data))


def acquire(path: str, user: str | None = None) -> tuple[int, int | None]:
    """Open and try the lock once: (fd, None) when we hold it, else (fd, holder PID or 0)."""
    try:
        fd = open_lock(path, user)
    except LockError as err:
        if err.errno not in (errno.EACCES, errno.EPERM):
            raise
        # We may not write the file, but may still be able to see that someone holds it (an
        # operator checking by hand): contention is the better answer than a permission error.
        fd = _open_readonly(path, user)
        holder = lock_holder(fd) if fd >= 0 else None
        if holder is None:
            if fd >= 0:
                os.close(fd)
            raise
        return fd, holder
    try:
        for _ in range(_HOLDER_RETRIES):
            if try_lock(fd):
                return fd, None
            holder = lock_holder(fd)
            if holder is not None:
                return fd, holder
    except OSError as err:
        os.close(fd)
        raise LockError(f"cannot lock {path}: {err.strerror}", err.errno or 0) from err
    return fd, 0  # the lock kept changing hands: busy, holder unknown


def _read_proc(pid: int, name: str) -> str | None:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            data = f.read(8192)
    except OSError:
        return None
    return data.decode("utf-8", "replace")


def unit_from_cgroup(text: str) -> str | None:
    """The innermost .service/.scope unit in /proc/PID/cgroup (v2 "0::" or v1 name=systemd)."""
    for line in text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if (hierarchy == "0" and controllers == "") or controllers == "name=systemd":
            for part in reversed(path.split("/")):
                if part.endswith((".service", ".scope")):
                    return part
    return None


def holder_fields(pid: int) -> dict[str, str]:
    """Journal fields describing the lock holder, as far as /proc lets us read them."""
    fields = {"LOCK_HOLDER_PID": str(pid)}
    if pid <= 0:
        return fields
    comm = _read_proc(pid, "comm")
    if comm:
        fields["LOCK_HOLDER_COMM"] = comm.strip()
    cmdline = _read_proc(pid, "cmdline")
    if cmdline:
        fields["LOCK_HOLDER_CMDLINE"] = cmdline.rstrip("\0").replace("\0", " ")
    cgroup = _read_proc(pid, "cgroup")
    unit = unit_from_cgroup(cgroup) if cgroup else None
    if unit:
        fields["LOCK_HOLDER_UNIT"] = unit
    return fields


def contention_message(name: str, path: str, pid: int) -> str:
    who = f"as PID {pid}" if pid > 0 else "(holder PID unknown)"
    if _instance[0]:
        name = f"{name}@{_instance[0]}"
    return f"{name} is already running {who} (lock {path})"


def report_contention(name: str, path: str, pid: int, action: str) -> None:
    message = contention_message(name, path, pid)
    if action == "wait":
        message += "; waiting for it to exit"
    fields = holder_fields(pid)
    fields.update(MESSAGE_ID=MESSAGE_ID_ALREADY_RUNNING, LOCK_PATH=path, LOCK_CONTENTION_ACTION=action)
    log(name, 4, message, **fields)
    notify(f"STATUS={message}")


def _lock_failed(name: str, err: LockError, path: str) -> int:
    message = f"{name} cannot start: {err}"
    log(name, 3, message, MESSAGE_ID=MESSAGE_ID_LOCK_ERROR, LOCK_PATH=path, ERRNO=str(err.errno))
    notify(f"STATUS={message}")
    return EXIT_LOCK_ERROR


def _adopt_owner(fd: int, path: str, user: str | None) -> None:
    # root running the launcher by hand must not leave a root-owned file the service user can no
    # longer open: hand a file we own to the owner of its directory (the service's RuntimeDirectory,
    # whose owner open_lock_dir() has checked).
    try:
        st = os.fstat(fd)
        if os.geteuid() == 0 and st.st_uid == 0:
            dir_fd = open_lock_dir(path, user)
            try:
                parent = os.fstat(dir_fd)
            finally:
                os.close(dir_fd)
            if parent.st_uid != 0:
                os.fchown(fd, parent.st_uid, parent.st_gid)
        if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) != 0o644:
            os.fchmod(fd, 0o644)
    except (OSError, LockError):
        pass


def take_ownership(fd: int, path: str, user: str | None = None) -> OSError | None:
    """We hold the lock: record our PID (the contender never touches the file).

    Returns the error when the PID could not be written (ENOSPC on a full /run): the lock is
    held all the same, and the lock, not the PID, keeps other instances out (contenders learn the
    holder from F_GETLK), so the caller logs a warning and runs the service.
    """
    try:
        write_pid(fd, os.getpid())
        error = None
    except OSError as err:
        error = err
        try:  # noqa: SIM105 - contextlib costs start-up time
            os.ftruncate(fd, 0)  # never leave the PID of an earlier, dead holder in the file
        except OSError:
            pass
    _adopt_owner(fd, path, user)
    return error


def _pid_not_written(name: str, path: str, err: OSError) -> None:
    message = (
        f"{name} holds lock {path} but could not write its PID into it ({err.strerror}); running "
        f"anyway: the lock keeps other instances out, `fuser {path}` shows the holder; free space in "
        f"{os.path.dirname(path) or '/'}"
    )
    log(name, 4, message, LOCK_PATH=path, ERRNO=str(err.errno))


# ---------------------------------------------------------------------------------------------
# Readiness probes.


def parse_ready(ready: str) -> tuple[str, str, int]:
    """("immediate"|"notify", "", 0), ("tcp", host, port) or ("path", path, 0); ValueError if bad."""
    if ready in ("immediate", "notify"):
        return ready, "", 0
    kind, _, rest = ready.partition(":")
    if kind == "path" and rest.startswith("/"):
        return "path", rest, 0
    if kind == "tcp" and rest:
        host, _, port = rest.rpartition(":")
        host = host.removeprefix("[").removesuffix("]") or "localhost"
        if port.isdigit() and 0 < int(port) < 65536:
            return "tcp", host, int(port)
    raise ValueError(f"ready must be immediate, notify, tcp:[HOST:]PORT or path:/ABS, not {ready!r}")


def probe(kind: str, target: str, port: int, service_pid: int | None = None) -> bool:
    """Is the service ready: does the path exist / does the port accept a connection from a
    listening socket of the service's own processes (when `service_pid` is given)?"""
    return probe_detail(kind, target, port, service_pid)[0]


def probe_detail(kind: str, target: str, port: int, service_pid: int | None) -> tuple[bool, str | None]:
    """(ready, who else holds the port when it accepts connections but is not the service's)."""
    if kind == "path":
        return os.path.exists(target), None
    if kind != "tcp":
        return True, None
    peer = _connect_peer(target, port)
    if peer is None:
        return False, None
    if service_pid is None:
        return True, None
    listeners = _listening_inodes(peer, port)
    if listeners is None:  # no /proc/self/net: cannot tell, trust the connection as before
        return True, None
    if listeners & _socket_inodes(_process_tree(service_pid)):
        return True, None
    return False, _port_holder(listeners)


def _connect_peer(target: str, port: int) -> bytes | None:
    """The server address (16 bytes, IPv4 mapped) of the first connection that succeeds."""
    try:
        addresses = _socket.getaddrinfo(target, port, 0, _socket.SOCK_STREAM)
    except OSError:
        return None
    for family, socktype, proto, _, address in addresses:
        try:
            sock = _socket.socket(family, socktype | _socket.SOCK_CLOEXEC, proto)
        except OSError:
            continue
        try:
            sock.settimeout(1.0)
            if sock.connect_ex(address) == 0:
                return _address16(family, sock.getpeername()[0])
        except OSError:
            continue
        finally:
            sock.close()
    return None


def _address16(family: int, host: str) -> bytes:
    if family == _socket.AF_INET:
        return _V4_MAPPED + _socket.inet_pton(_socket.AF_INET, host)
    return _socket.inet_pton(_socket.AF_INET6, host.partition("%")[0])


_V4_MAPPED = b"\0" * 10 + b"\xff\xff"
_WILDCARD4 = _V4_MAPPED + b"\0" * 4
_WILDCARD6 = b"\0" * 16


def _listening_inodes(peer: bytes, port: int) -> set[int] | None:
    """Inodes of the LISTEN sockets that may have accepted a connection to `peer`:`port` (its
    exact address or a wildcard), from /proc/self/net/tcp{,6}: our network namespace, and
    /proc/self stays visible under ProcSubset=pid."""
    inodes: set[int] = set()
    wildcards = (_WILDCARD4, _WILDCARD6) if peer.startswith(_V4_MAPPED) else (_WILDCARD6,)
    found_table = False
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/self/net/{table}", encoding="ascii") as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        found_table = True
        for line in lines:
            # sl local_address rem_address st tx_queue:rx_queue tr:when retrnsmt uid timeout inode
            fields = line.split()
            if len(fields) < 10 or fields[3] != "0A":  # 0A: TCP_LISTEN
                continue
            address_hex, _, port_hex = fields[1].partition(":")
            if int(port_hex, 16) != port:
                continue
            address = _proc_net_address(address_hex)
            if address == peer or address in wildcards:
                inodes.add(int(fields[9]))
    return inodes if found_table else None


def _proc_net_address(hex_address: str) -> bytes:
    # The kernel prints each 32-bit word of the address in host byte order.
    words = [bytes.fromhex(hex_address[i : i + 8]) for i in range(0, len(hex_address), 8)]
    raw = b"".join(w[::-1] if sys.byteorder == "little" else w for w in words)
    return raw if len(raw) == 16 else _V4_MAPPED + raw


def _process_tree(root: int) -> list[int]:
    """`root` and its descendants (parents from /proc/PID/stat): the service's processes."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return [root]
    for entry in entries:
        if not entry.isdigit():
            continue
        stat_line = _read_proc(int(entry), "stat")
        if stat_line is None:
            continue
        fields = stat_line.rpartition(")")[2].split()  # after "(comm)", which may hold spaces
        if len(fields) > 1 and fields[1].isdigit():
            children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def _socket_inodes(pids: list[int]) -> set[int]:
    inodes = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(int(link[8:-1]))
    return inodes


def _port_holder(listeners: set[int]) -> str:
    """Who holds the listening socket, as far as /proc lets us see."""
    try:
        pids = [int(e) for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        pids = []
    for pid in pids:
        if _socket_inodes([pid]) & listeners:
            comm = (_read_proc(pid, "comm") or "?").strip()
            return f"PID {pid} ({comm})"
    return "a process this launcher cannot see"


def ready_status(name: str, ready: str) -> str:
    kind, target, port = parse_ready(ready)
    if kind == "tcp":
        return f"{name} is ready: {target}:{port} accepts connections"
    if kind == "path":
        return f"{name} is ready: {target} exists"
    return f"{name} is running"


def watchdog_interval(service_pid: int) -> float | None:
    """Seconds between WATCHDOG=1 pings, or None when the watchdog is off or not for us."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    owner = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and owner != str(service_pid):
        return None
    return int(usec) / 2e6


class _Deadline:
    def __init__(self, seconds: float | None) -> None:
        self.end = None if seconds is None else time.monotonic() + seconds

    def left(self) -> float | None:
        return None if self.end is None else max(0.0, self.end - time.monotonic())

    def expired(self) -> bool:
        return self.end is not None and time.monotonic() >= self.end


def wait_ready(
    settings: LauncherSettings,
    alive: Callable[[float], bool],
    healthy: Callable[[], bool],
    service_pid: int | None = None,
) -> bool:
    """Probe until ready (True) or ready_timeout_sec passed / the service died (False).

    `alive(seconds)` sleeps up to `seconds` and says whether the service is still there. With
    `service_pid`, a tcp: port only counts when the listener belongs to that process or its
    descendants: someone else's listener on the port is logged once and waited out, not taken
    for the service being ready (the app would die with "Address already in use").
    """
    kind, target, port = parse_ready(settings["ready"])
    deadline = _Deadline(settings["ready_timeout_sec"])
    pause = 0.02
    warned = False
    while True:
        if healthy():
            ready, foreign = probe_detail(kind, target, port, service_pid)
            if ready:
                return True
            if foreign is not None and not warned:
                warned = True
                _foreign_listener(settings, target, port, foreign)
        left = deadline.left()
        if left == 0.0 or not alive(min(pause, left if left is not None else pause)):
            return False
        pause = min(pause * 1.5, 0.25)


def _foreign_listener(settings: LauncherSettings, target: str, port: int, holder: str) -> None:
    name = settings["name"]
    message = (
        f"{name}: {target}:{port} accepts connections, but the listening socket is not {name}'s: "
        f"it is held by {holder}; not reporting {name} ready until it listens itself (stop the "
        f"other process or change the port)"
    )
    log(name, 4, message, READY_CONDITION=settings["ready"], PORT_HOLDER=holder)


def keep_watchdog(
    settings: LauncherSettings, service_pid: int, alive: Callable[[float], bool], healthy: Callable[[], bool]
) -> None:
    """Ping WATCHDOG=1 every WATCHDOG_USEC/2 while the service lives and is healthy."""
    interval = watchdog_interval(service_pid)
    if interval is None:
        return
    kind, target, port = parse_ready(settings["ready"])
    due = time.monotonic()
    while True:
        if healthy() and probe(kind, target, port, service_pid):
            notify("WATCHDOG=1")
        due += interval
        if not alive(max(0.0, due - time.monotonic())):
            return


def _ready_timed_out(settings: LauncherSettings, service_pid: int) -> None:
    name = settings["name"]
    message = (
        f"{name} did not become ready ({settings['ready']}) within {settings['ready_timeout_sec']:g} s; "
        f"stopping it: check that the app listens/creates what `ready` names, or raise ready_timeout_sec"
    )
    log(name, 3, message, READY_CONDITION=settings["ready"])
    notify(f"STATUS={message}")
    try:  # noqa: SIM105 - contextlib costs start-up time
        os.kill(service_pid, 15)
    except OSError:
        pass


# ---------------------------------------------------------------------------------------------
# exec mode.


def _spawn_watcher(settings: LauncherSettings, lock_fd: int) -> None:
    """Fork (twice, so PID 1 reaps it, not the app) a process that reports readiness for us."""
    service_pid = os.getpid()
    try:
        pidfd: int | None = os.pidfd_open(service_pid)
    except (OSError, AttributeError):
        pidfd = None
    child = os.fork()
    if child:
        os.waitpid(child, 0)
        if pidfd is not None:
            os.close(pidfd)
        return
    code = 0
    try:
        os.close(lock_fd)  # a child never holds a POSIX lock, but must not keep the fd either
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)  # keep no pipe of the service's open; stderr stays for log lines
        os.close(null)
        if os.fork() == 0:
            _watcher(settings, service_pid, pidfd)
    except BaseException:
        code = 1
    os._exit(code)


def _watcher(settings: LauncherSettings, service_pid: int, pidfd: int | None) -> None:
    import select

    def alive(seconds: float) -> bool:
        if pidfd is not None:
            return not select.select([pidfd], [], [], seconds)[0]
        time.sleep(seconds)
        try:
            os.kill(service_pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            pass
        return True

    def healthy() -> bool:
        return True

    code = 0
    try:
        if wait_ready(settings, alive, healthy, service_pid):
            notify(f"READY=1\nSTATUS={ready_status(settings['name'], settings['ready'])}")
            keep_watchdog(settings, service_pid, alive, healthy)
        elif alive(0):
            _ready_timed_out(settings, service_pid)
    except BaseException:
        code = 1
    os._exit(code)


def command(settings: LauncherSettings, args: list[str]) -> list[str]:
    """exec mode: `-- PROG ARGS...` on the command line replaces argv; other args are appended."""
    if args[:1] == ["--"]:
        return args[1:] or settings["argv"]
    return [*settings["argv"], *args]


def _cannot_exec(settings: LauncherSettings, program: str, err: OSError) -> int:
    message = f"{settings['name']} cannot start: cannot execute {program}: {err.strerror}"
    log(settings["name"], 3, message, EXEC_PATH=program, ERRNO=str(err.errno))
    notify(f"STATUS={message}")
    return EXIT_APP_ERROR


def _unrunnable(settings: LauncherSettings, argv: list[str]) -> int | None:
    """EXIT_APP_ERROR (logged) when argv[0] is a path that cannot be executed, else None: fail before
    READY=1 rather than report a service as started that cannot run at all."""
    if "/" in argv[0] and not os.access(argv[0], os.X_OK):
        code = errno.ENOENT if not os.path.exists(argv[0]) else errno.EACCES
        return _cannot_exec(settings, argv[0], OSError(code, os.strerror(code)))
    return None


def _announce_exec_start(settings: LauncherSettings, fd: int) -> int | None:
    """READY=1 now (`immediate`) or the watcher that sends it (`tcp:`/`path:`); EXIT_APP_ERROR
    (logged) when the watcher cannot be forked, else None."""
    if settings["oneshot"]:
        return None
    kind = parse_ready(settings["ready"])[0]
    if kind == "immediate":
        notify(f"READY=1\nSTATUS={ready_status(settings['name'], settings['ready'])}")
    elif kind in ("tcp", "path"):
        try:
            _spawn_watcher(settings, fd)
        except OSError as err:
            message = f"{settings['name']} cannot start: cannot fork the readiness watcher: {err.strerror}"
            log(settings["name"], 3, message, ERRNO=str(err.errno))
            return EXIT_APP_ERROR
    return None


def _exec(settings: LauncherSettings, fd: int, extra: list[str]) -> int:
    argv = command(settings, extra)
    failed = _unrunnable(settings, argv)
    if failed is not None:
        return failed
    os.set_inheritable(fd, True)
    os.environ[LOCK_FD_ENV] = str(fd)
    failed = _announce_exec_start(settings, fd)
    if failed is not None:
        return failed
    restore_exec_signals(_signal_module(), os.environ)
    try:
        if "/" in argv[0]:
            os.execv(argv[0], argv)  # noqa: S606 - running the service is the point
        os.execvp(argv[0], argv)  # noqa: S606
    except OSError as err:
        return _cannot_exec(settings, argv[0], err)
    return EXIT_APP_ERROR  # not reached: exec either replaces this process or raises


# ---------------------------------------------------------------------------------------------
# Waiting for the lock and python mode: the lock is taken in a helper thread.


def _unshare_fd_table() -> None:
    unshare = getattr(os, "unshare", None)  # Python 3.12+
    if unshare is not None:
        unshare(_CLONE_FILES)
        return
    # Python 3.11: libc's unshare() through `_ctypes` itself. The `ctypes` package around it costs
    # ~2.5 ms and ~0.5 MB per launcher (dozens of classes) and, on import, makes a callback
    # trampoline, which MemoryDenyWriteExecute= may refuse; calling a libc function needs neither.
    import _ctypes

    class CInt(_ctypes._SimpleCData):  # type: ignore[type-arg]  # ctypes.c_int
        _type_ = "i"

    class Unshare(_ctypes.CFuncPtr):  # a function of CDLL(None, use_errno=True)
        _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
        _restype_ = CInt
        _argtypes_ = (CInt,)

    class Libc:
        _handle = _ctypes.dlopen(None, _ctypes.RTLD_LOCAL)  # type: ignore[arg-type]  # dlopen(NULL): the program

    if Unshare(("unshare", Libc()))(_CLONE_FILES) != 0:  # type: ignore[arg-type]  # any object with _handle
        err = _ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class _LockThread:
    """Takes the lock in a thread; with `private_table` it also keeps the lock alive forever."""

    def __init__(self, path: str, user: str | None, wait: bool, private_table: bool) -> None:
        import threading

        self.path = path
        self.user = user
        self.wait = wait
        self.private_table = private_table
        self.unshare_error: OSError | None = None
        self.fd = -1
        self.holder: int | None = None  # set while busy
        self.error: LockError | None = None
        self.pid_error: OSError | None = None  # locked, but the PID could not be written
        self.locked = False
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="unitgen-lock", daemon=True)
        self.thread.start()

    def _post(self, **state: object) -> None:
        with self.changed:
            for key, value in state.items():
                setattr(self, key, value)
            self.changed.notify_all()

    def _run(self) -> None:
        try:
            self._lock()
        except BaseException as err:  # never leave the main thread waiting for an outcome
            self._post(error=LockError(f"cannot lock {self.path}: {type(err).__name__}: {err}", 0))

    def _lock(self) -> None:
        if self.private_table:
            try:
                _unshare_fd_table()
            except OSError as err:
                self.unshare_error = err
            except Exception as err:  # e.g. ctypes unusable under MemoryDenyWriteExecute=
                self.unshare_error = OSError(errno.ENOSYS, f"{type(err).__name__}: {err}")
        try:
            fd, holder = acquire(self.path, self.user)
            if holder is not None:
                self._post(fd=fd, holder=holder)
                if not self.wait:
                    return
                fcntl.lockf(fd, fcntl.LOCK_EX)  # F_SETLKW
            pid_error = take_ownership(fd, self.path, self.user)
        except LockError as err:
            self._post(error=err)
            return
        except OSError as err:
            self._post(error=LockError(f"cannot lock {self.path}: {err.strerror}", err.errno or 0))
            return
        self._post(fd=fd, holder=None, locked=True, pid_error=pid_error)
        if self.private_table:
            # The lock belongs to this thread's fd table and lives exactly as long as the thread.
            import threading

            threading.Event().wait()

    def first_outcome(self) -> None:
        with self.changed:
            self.changed.wait_for(lambda: self.locked or self.error is not None or self.holder is not None)

    def wait_locked(self, seconds: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.locked or self.error is not None, seconds)


def _take_lock_waiting(settings: LauncherSettings, private_table: bool) -> tuple[int, _LockThread | None]:
    """Lock via a helper thread. Returns (exit code or -1 when locked, the thread)."""
    name, path = settings["name"], settings["lock_file"]
    wait = settings["on_contention"] == "wait"
    keeper = _LockThread(path, settings.get("user"), wait, private_table)
    keeper.first_outcome()
    if keeper.error is not None:
        return _lock_failed(name, keeper.error, path), keeper
    if not keeper.locked:
        holder = keeper.holder or 0
        report_contention(name, path, holder, settings["on_contention"])
        if not wait:
            return EXIT_ALREADY_RUNNING, keeper
        _stop_while_waiting()
        start = time.monotonic()
        deadline = _Deadline(settings["wait_timeout_sec"])
        while True:
            waited = time.monotonic() - start
            notify(
                f"STATUS=Waiting for lock {path} held by PID {holder or 'unknown'} ({waited:.0f} s)\n"
                f"EXTEND_TIMEOUT_USEC={_WAIT_EXTEND_USEC}"
            )
            left = deadline.left()
            if keeper.wait_locked(_WAIT_PING_SEC if left is None else min(_WAIT_PING_SEC, left)):
                break
            if deadline.expired():
                message = (
                    f"{contention_message(name, path, holder)}; gave up waiting after "
                    f"{settings['wait_timeout_sec']:g} s (wait_timeout_sec)"
                )
                log(name, 3, message, MESSAGE_ID=MESSAGE_ID_ALREADY_RUNNING, LOCK_PATH=path, **holder_fields(holder))
                notify(f"STATUS={message}")
                return EXIT_WAIT_TIMEOUT, keeper
        if keeper.error is not None:
            return _lock_failed(name, keeper.error, path), keeper
        log(name, 6, f"{name} acquired lock {path} after waiting {time.monotonic() - start:.1f} s", LOCK_PATH=path)
    if keeper.pid_error is not None:
        _pid_not_written(name, path, keeper.pid_error)
    if keeper.unshare_error is not None:
        log(
            name,
            4,
            f"{name}: unshare(CLONE_FILES) failed ({keeper.unshare_error.strerror}); the lock "
            f"is held in the shared fd table, so the app must not open and close {path}",
            LOCK_PATH=path,
        )
    return -1, keeper


def restore_exec_signals(signal: ModuleType, environ: Mapping[str, str]) -> None:
    """Give an exec'd app the signal dispositions it would have had without a Python launcher.

    Python ignores SIGPIPE and SIGXFSZ at start-up and exec keeps ignored signals: run by hand or
    from cron, `yes | head -n1` in the app would then print EPIPE errors instead of ending quietly.
    Under systemd SIGPIPE stays ignored, as IgnoreSIGPIPE=yes (systemd's default, which unitgen's
    units keep) gives every service; systemd sets INVOCATION_ID for exactly those processes."""
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    if not environ.get("INVOCATION_ID"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)


def _signal_module() -> ModuleType:
    """The C module behind `signal`: the same functions and constants without the IntEnum classes
    that `signal` builds at import (enum costs start-up time and memory in every launcher)."""
    import _signal  # type: ignore[import-not-found]  # typeshed describes only `signal`

    module: ModuleType = _signal
    return module


def _stop_while_waiting() -> None:
    signal = _signal_module()

    def on_term(signum: int, frame: FrameType | None) -> None:
        notify("STOPPING=1")
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)


def _install_stop_handler(settings: LauncherSettings) -> None:
    signal = _signal_module()

    def on_term(signum: int, frame: FrameType | None) -> None:
        notify("STOPPING=1")
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills outright
        raise SystemExit(_stop_code[0])

    signal.signal(signal.SIGTERM, on_term)


_stop_code = [0]


def _load_site() -> None:
    """The interpreter's site-packages (a venv's: where the app is installed) on sys.path.

    The rendered launcher runs with -S, so exec mode never pays for `site`; the app needs it.
    Run by hand without -S (`python3 launcher.py`), site is loaded already and is left alone."""
    if "site" not in sys.modules:
        import site

        site.main()


# Modules deployed next to this one for the app to import, when the spec needs them (issue 15:
# `import unitgen_credentials` with credentials).
HELPER_MODULES = ("unitgen_credentials",)


class _HelperFinder:
    """Finds the helper modules deployed next to this one when the app imports one: the launcher's
    directory is on sys.path only while the stub imports us. Consulted after every other finder,
    for those names only, so an app that never imports a helper pays nothing for it at start-up."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def find_spec(self, name: str, path: object = None, target: object = None) -> object:
        if name not in HELPER_MODULES:
            return None
        from importlib.machinery import PathFinder

        return PathFinder.find_spec(name, [self.directory])


def _expose_helpers() -> None:
    """Let the app `import unitgen_credentials` (and the other helpers) from this directory."""
    if __package__:  # in the unitgen package (tests): nothing is deployed next to it
        return
    directory = os.path.dirname(os.path.abspath(__file__))  # noqa: PTH100 - pathlib costs start-up time
    sys.meta_path.append(_HelperFinder(directory))  # type: ignore[arg-type]


def _resolve_entry(entry: str) -> tuple[ModuleType, Callable[[], object]]:
    import importlib

    module_name, _, attribute = entry.partition(":")
    module = importlib.import_module(module_name)
    target: object = module
    for part in attribute.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{entry} is not callable")
    return module, target


def _run_python(settings: LauncherSettings, extra: list[str]) -> int:
    code, _keeper = _take_lock_waiting(settings, private_table=True)
    if code >= 0:
        return code
    guard = None
    if settings.get("fleet_etcd"):
        guard, code = _take_fleet_lock(settings)
        if guard is None:
            return code
    try:
        return _run_python_app(settings, extra, guard)
    finally:
        if guard is not None:
            guard.release()  # the next holder goes at once, not after the lease's TTL


def _run_python_app(settings: LauncherSettings, extra: list[str], guard: FleetGuard | None) -> int:
    name, entry = settings["name"], settings["entry"] or ""
    signal = _signal_module()
    import threading

    _install_stop_handler(settings)
    if guard is not None:

        def request_stop(code: int) -> None:  # the fleet lock is lost: stop the app as SIGTERM would
            _stop_code[0] = code
            os.kill(os.getpid(), signal.SIGTERM)

        guard.guard_python(request_stop)
    sys.argv = [name, *(extra[1:] if extra[:1] == ["--"] else extra)]
    try:
        _load_site()
        _expose_helpers()
        module, func = _resolve_entry(entry)
    except Exception as err:
        import traceback

        message = (
            f"{name} cannot start: importing {entry} failed ({type(err).__name__}: {err}); install the "
            f"app into the environment of {sys.executable} (the launcher runs with -I, so PYTHONPATH "
            f"and the current directory are ignored)"
        )
        log(name, 3, message, PYTHON_ENTRY=entry, TRACEBACK=traceback.format_exc())
        notify(f"STATUS={message}")
        return EXIT_APP_ERROR

    reload_requested = threading.Event()

    def on_hup(signum: int, frame: FrameType | None) -> None:
        # Only set a flag: the hook runs in a thread, never inside a signal handler, where it
        # could re-enter whatever I/O the main thread was doing.
        reload_requested.set()

    def reloader() -> None:
        while reload_requested.wait():
            reload_requested.clear()
            notify(f"RELOADING=1\nMONOTONIC_USEC={_monotonic_usec()}\nSTATUS=Reloading")
            hook = getattr(module, RELOAD_HOOK, None)
            if callable(hook):
                try:
                    hook()
                except Exception as err:
                    log(name, 3, f"{name}: {RELOAD_HOOK}() failed: {type(err).__name__}: {err}")
            notify(f"READY=1\nSTATUS={ready_status(name, settings['ready'])}")

    threading.Thread(target=reloader, name="unitgen-reload", daemon=True).start()
    signal.signal(signal.SIGHUP, on_hup)
    kind = parse_ready(settings["ready"])[0]
    if not settings["oneshot"] and kind != "notify":
        if kind == "immediate":
            notify(f"READY=1\nSTATUS={ready_status(name, settings['ready'])}")
        main_thread = threading.main_thread()
        threading.Thread(
            target=_python_readiness, args=(settings, main_thread), name="unitgen-ready", daemon=True
        ).start()
    return _exit_status(func())


def _python_readiness(settings: LauncherSettings, main_thread: threading.Thread) -> None:
    pid = os.getpid()

    def alive(seconds: float) -> bool:
        time.sleep(seconds)
        return main_thread.is_alive()

    def healthy() -> bool:
        return main_thread.is_alive()

    if parse_ready(settings["ready"])[0] != "immediate":
        if not wait_ready(settings, alive, healthy, pid):
            if main_thread.is_alive():
                _stop_code[0] = EXIT_READY_TIMEOUT
                _ready_timed_out(settings, pid)
            return
        notify(f"READY=1\nSTATUS={ready_status(settings['name'], settings['ready'])}")
    keep_watchdog(settings, pid, alive, healthy)


def _exit_status(result: object) -> int:
    if result is None:
        return 0
    if isinstance(result, int) and not isinstance(result, bool):
        return result
    sys.stderr.write(f"{result}\n")
    return 1


# ---------------------------------------------------------------------------------------------
# The fleet lock (settings fleet_etcd/fleet_key/fleet_ttl; unitgen_fleet_guard.py next to this module).


def _fleet_guard_module() -> ModuleType:
    """unitgen_fleet_guard, the sibling module installed next to this one with lock.scope = "fleet"
    (in the unitgen package, where this module is unitgen.launcher.runtime: its fleet_guard).
    __import__, not importlib: importing importlib (and the warnings module it pulls in) cost ~0.3 ms."""
    if __package__:
        module: ModuleType = __import__(f"{__package__}.fleet_guard", fromlist=["Guard"])
        return module
    # Deployed as unitgen_launcher.py: the stub took its directory off sys.path again after importing
    # this module, so put it back for this one import (root's directory, like the stub's).
    directory = os.path.dirname(os.path.abspath(__file__))  # noqa: PTH100 - pathlib costs start-up time
    sys.path.insert(0, directory)
    try:
        module = __import__("unitgen_fleet_guard")
        return module
    finally:
        sys.path.remove(directory)


def _take_fleet_lock(settings: LauncherSettings) -> tuple[FleetGuard | None, int]:
    """After the local lock: the fleet lock. (guard, -1) when held, else (None, exit code), logged."""
    name = settings["name"]
    try:
        module = _fleet_guard_module()
    except ImportError as err:
        log(name, 3, f"{name} cannot start: the fleet lock module is missing ({err}); reinstall the package")
        return None, EXIT_CONFIG_ERROR
    etcd, key, ttl = settings.get("fleet_etcd") or [], str(settings.get("fleet_key")), settings.get("fleet_ttl") or 0
    guard: FleetGuard = module.Guard(name, list(etcd), key, int(ttl), log=log, notify=notify,
                                     tls=module.tls_from_credentials(os.environ))
    if settings["on_contention"] == "wait":
        _stop_while_waiting()
    code: int = guard.acquire(settings["on_contention"], settings["wait_timeout_sec"])
    return (guard, -1) if code < 0 else (None, code)


def _run_fleet_exec(settings: LauncherSettings, fd: int, extra: list[str]) -> int:
    """exec mode with a fleet lock: the launcher stays, runs the app as its child and stops it when the
    lock is lost (unitgen_fleet_guard); the local lock stays with the launcher, so $UNITGEN_LOCK_FD is
    not set."""
    guard, code = _take_fleet_lock(settings)
    if guard is None:
        return code
    argv = command(settings, extra)
    failed = _unrunnable(settings, argv)
    if failed is None:
        failed = _announce_exec_start(settings, fd)
    if failed is not None:
        guard.release()
        return failed
    result: int = guard.run_exec(argv, os.environ)
    return result


# ---------------------------------------------------------------------------------------------
# Entry point.


def check_settings(settings: LauncherSettings) -> str | None:
    """What is wrong with `settings`, or None."""
    problems = []
    keys = set(settings) | set(OPTIONAL_SETTINGS)
    missing = sorted(set(SETTINGS_KEYS) - keys)
    unknown = sorted(keys - set(SETTINGS_KEYS) - set(FLEET_SETTINGS))
    if missing or unknown:
        return f"settings keys: missing {missing}, unknown {unknown}"
    if not settings["name"] or not isinstance(settings["name"], str):
        problems.append("name must be a non-empty string")
    if settings["mode"] == "exec":
        argv = settings["argv"]
        # Empty arguments are legal ("" is a real argument); only the program must be named.
        if not argv or not all(isinstance(a, str) for a in argv) or not argv[0]:
            problems.append("exec mode needs argv: the program and its arguments")
    elif settings["mode"] == "python":
        entry = settings["entry"]
        if not isinstance(entry, str) or not entry.partition(":")[0] or not entry.partition(":")[2]:
            problems.append("python mode needs entry 'package.module:callable'")
    else:
        problems.append(f"mode must be exec or python, not {settings['mode']!r}")
    if not isinstance(settings["lock_file"], str) or not settings["lock_file"].startswith("/"):
        problems.append("lock_file must be an absolute path")
    try:
        parse_ready(settings["ready"])
    except (ValueError, AttributeError, TypeError) as err:
        problems.append(str(err))
    user = settings.get("user")
    if user is not None and (not isinstance(user, str) or not user or "/" in user or ":" in user):
        problems.append("user must be a user name or None (DynamicUser=)")
    if settings["on_contention"] not in ("exit", "wait"):
        problems.append("on_contention must be exit or wait")
    etcd, fleet_key, ttl = settings.get("fleet_etcd") or [], settings.get("fleet_key"), settings.get("fleet_ttl")
    if not isinstance(etcd, list) or not all(isinstance(e, str) and e for e in etcd):
        problems.append("fleet_etcd must be a list of etcd URLs (empty: no fleet lock)")
    elif etcd and (not isinstance(fleet_key, str) or not fleet_key.startswith("/")):
        problems.append("fleet_key must be an absolute etcd key with fleet_etcd")
    elif etcd and (not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 1):
        problems.append("fleet_ttl must be a whole number of seconds >= 1 with fleet_etcd")
    for key in ("ready_timeout_sec", "wait_timeout_sec"):
        value = settings[key]
        if value is not None and (not isinstance(value, int | float) or value < 0):
            problems.append(f"{key} must be a number >= 0")
    return "; ".join(problems) or None


def instance_problem(instance: str) -> str | None:
    """Why `instance` cannot name a lock file, or None. An admin may start NAME@anything that is a
    valid unit name, so this holds %i (unit-name characters, `\\` included) to a file name: never
    empty, `.` or `..` (the lock would leave its directory), no `/`, no leading `-` or `.`."""
    if not instance or len(instance) > _INSTANCE_MAX:
        return f"must be 1 to {_INSTANCE_MAX} characters"
    if instance[0] in ".-":
        return "must not start with '.' or '-'"
    for ch in instance:
        if not (ch.isascii() and (ch.isalnum() or ch in "_.:-\\")):
            return f"contains {ch!r}: allowed are letters, digits, '_', '.', ':', '-' and '\\'"
    return None


def with_instance(settings: LauncherSettings) -> LauncherSettings | str:
    """A template's settings for this instance ($UNITGEN_INSTANCE, which the unit sets to %i):
    `{instance}` in the lock file and the rendered argv replaced. Plain settings are returned as
    they are; a problem is returned as its message."""
    if INSTANCE_PLACEHOLDER not in settings["lock_file"]:
        return settings
    instance = os.environ.get(INSTANCE_ENV, "")
    problem = instance_problem(instance)
    if problem is not None:
        shown = repr(instance[:80])
        return (
            f"{settings['name']} is a template: ${INSTANCE_ENV} names the instance (the unit sets it to %i; "
            f"by hand: {INSTANCE_ENV}=NAME {settings['name']}-launcher), and {shown} {problem}"
        )
    _instance[0] = instance
    new: LauncherSettings = {**settings}
    new["lock_file"] = settings["lock_file"].replace(INSTANCE_PLACEHOLDER, instance)
    new["argv"] = [a.replace(INSTANCE_PLACEHOLDER, instance) for a in settings["argv"]]
    return new


def listen_fds() -> list[tuple[int, str]]:
    """The sockets the service manager passed to this process (sd_listen_fds(3)), as (fd, name)
    pairs from fd 3 on, in the order of the socket unit's ListenStream= lines; [] when none were
    passed or they are meant for another process ($LISTEN_PID)."""
    try:
        if int(os.environ.get("LISTEN_PID", "")) != os.getpid():
            return []
        count = int(os.environ.get("LISTEN_FDS", ""))
    except ValueError:
        return []
    names = os.environ.get("LISTEN_FDNAMES", "").split(":")
    return [
        (fd, names[i] if i < len(names) else "unknown")
        for i, fd in enumerate(range(_LISTEN_FDS_START, _LISTEN_FDS_START + max(count, 0)))
    ]


_listen_sockets: list[socket.socket] = []


def listen_sockets() -> list[socket.socket]:
    """Python mode: the listening sockets systemd passed (the spec's `listen`, in its order), as
    socket objects, the same ones on every call. `import unitgen_launcher;
    unitgen_launcher.listen_sockets()` from the app, which runs once the launcher holds the lock.
    They are made close-on-exec (as sd_listen_fds does): a program the app runs does not get them."""
    import socket

    if not _listen_sockets:
        for fd, _name in listen_fds():
            os.set_inheritable(fd, False)
            _listen_sockets.append(socket.socket(fileno=fd))
    return list(_listen_sockets)


def main(settings: LauncherSettings, argv: list[str] | None = None) -> int:
    """Take the lock for settings["name"] and run the service; returns the exit status."""
    extra = sys.argv[1:] if argv is None else argv
    _service_name[0] = str(settings.get("name") or "")
    problem = check_settings(settings)
    if problem is not None:
        name = str(settings.get("name") or "unitgen-launcher")
        log(name, 3, f"invalid launcher settings for {name}: {problem}; re-render the launcher")
        return EXIT_CONFIG_ERROR
    instanced = with_instance(settings)
    if isinstance(instanced, str):
        log(settings["name"], 3, f"{settings['name']} cannot start: {instanced}")
        return EXIT_CONFIG_ERROR
    settings = instanced
    if settings["mode"] == "python":
        return _run_python(settings, extra)
    name, path = settings["name"], settings["lock_file"]
    if settings["on_contention"] == "wait":
        code, keeper = _take_lock_waiting(settings, private_table=False)
        if code >= 0:
            return code
        if keeper is None:
            return EXIT_LOCK_ERROR
        keeper.thread.join()
        fd = keeper.fd
    else:
        try:
            fd, holder = acquire(path, settings.get("user"))
        except LockError as err:
            return _lock_failed(name, err, path)
        if holder is not None:
            report_contention(name, path, holder, "exit")
            return EXIT_ALREADY_RUNNING
        pid_error = take_ownership(fd, path, settings.get("user"))
        if pid_error is not None:
            _pid_not_written(name, path, pid_error)
    if settings.get("fleet_etcd"):
        return _run_fleet_exec(settings, fd, extra)
    return _exec(settings, fd, extra)


def _cli(args: list[str]) -> int:
    import json

    if len(args) >= 2 and args[0] in ("--settings", "--settings-file"):
        try:
            if args[0] == "--settings-file":
                with open(args[1], encoding="utf-8") as f:
                    settings = json.load(f)
            else:
                settings = json.loads(args[1])
        except (OSError, ValueError) as err:
            sys.stderr.write(f"launcher: cannot read settings: {err}\n")
            return EXIT_USAGE
        return main(settings, args[2:])
    sys.stderr.write("usage: launcher.py --settings JSON | --settings-file PATH [-- ARGS...]\n")
    return EXIT_USAGE


# unitgen: the renderer cuts the file here and appends the settings and its own entry point.
if __name__ == "__main__":
    raise SystemExit(_cli(sys.argv[1:]))
