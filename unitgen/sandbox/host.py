"""The host side of a sandbox: `Sandbox` boots one, talks to it, tears it down, and cleans up after killed runs.

It writes an owner record before anything else of a sandbox exists, starts the helper process
(`unitgen.sandbox.stage2`) with the boot plan, waits for systemd to be running, runs commands
inside with `nsenter`, copies files in with `tar` run inside, and removes every cgroup and state
directory at teardown, or from a later process (`Sandbox.clean_stale()`) when its owner was killed.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import os
import re
import secrets
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import tty
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

from unitgen.errors import UnitgenError
from unitgen.run import CommandError, run
from unitgen.sandbox.leftovers import (
    legacy_in_use,
    pid_alive,
    remove_cgroup,
    remove_dead_app_builds,
    sandbox_cgroups,
    starttime,
)
from unitgen.sandbox.operations import encode
from unitgen.sandbox.plan import (
    CGROUP_PREFIX,
    DROPPED_CAPABILITIES,
    PATH,
    STATE_ROOT,
    SYSTEMD,
    SYSTEMD_ARGS,
    boot_plan,
    cgroup_child,
    host_hierarchies,
)

RECORD_SUFFIX = ".json"  # STATE_ROOT/ID.json: the owner record, next to the state directory STATE_ROOT/ID
# What systemd as PID 1 prints when it hits a fatal error and stops (freeze() in its main.c).
FROZEN = "Freezing execution"
TIMED_OUT = 124  # the exit status of timeout(1) when the time ran out


def require_root() -> None:
    if os.geteuid() != 0:
        raise UnitgenError(
            "a systemd sandbox needs root",
            hint="it boots systemd as PID 1 of new PID, mount, network and cgroup namespaces, mounts an "
            "overlay of / and creates cgroups; run it as root",
        )


def _check_name(name: str) -> None:
    ok = 0 < len(name) <= 48 and name[0].isalnum() and all(c.isalnum() or c in "-_." for c in name)
    if not ok or not name.isascii():
        raise UnitgenError(
            f"invalid sandbox name {name!r}",
            hint="use up to 48 ASCII letters, digits, '-', '_' or '.', starting with a letter or digit",
        )


def _tail(path: Path, lines: int = 30) -> str:
    """The last `lines` of the console, after the earlier lines where systemd said what went wrong:
    a failing boot goes on printing (rescue mode's sulogin prompt), which pushes the cause out of
    a plain tail."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    head, tail = text[:-lines], text[-lines:]
    causes = [line for line in head if _CAUSE.search(line)][-10:]
    return "\n".join([*causes, "..."] if causes else []) + ("\n" if causes else "") + "\n".join(tail)


_CAUSE = re.compile(r"(?i)fail|error|falling back|freezing|assertion")


def _decode_field(value: Any) -> str:
    if isinstance(value, list):
        if all(isinstance(v, int) for v in value):
            return bytes(value).decode(errors="replace")
        return "\n".join(_decode_field(v) for v in value)
    return "" if value is None else str(value)


_live: set[Sandbox] = set()  # not detached and not yet torn down: torn down at exit


class Sandbox:
    """A running systemd in private namespaces; a context manager that always tears it down."""

    sandbox_env: ClassVar[Mapping[str, str]] = {
        "PATH": PATH,
        "LANG": "C.UTF-8",
        "SYSTEMD_PAGER": "",
        "SYSTEMD_COLORS": "0",
        "TERM": "dumb",
    }

    def __init__(self, name: str, state: Path, cgroups: Sequence[Path], *, detach: bool = False) -> None:
        self.name = name
        self.state = state
        self.cgroups = list(cgroups)
        self.detach = detach
        self.pid = 0
        self.boot_seconds = 0.0
        self._starttime: int | None = None
        self._helper: subprocess.Popen[bytes] | None = None
        self._lifeline = -1
        self._torn_down = False
        # The process that booted it, from its owner record: a record whose owner is dead (and
        # whose systemd is gone, or was not detached) belongs to a killed run.
        self.owner_pid = os.getpid()
        self._owner_starttime = starttime(self.owner_pid)

    @property
    def record(self) -> Path:
        """The owner record, written before anything else of the sandbox exists."""
        return self.state.with_name(self.state.name + RECORD_SUFFIX)

    @property
    def id(self) -> str:
        return self.state.name

    @property
    def console_log(self) -> Path:
        """systemd's console output (PID 1's status and log lines)."""
        return self.state / "console.log"

    def __repr__(self) -> str:
        return f"<Sandbox {self.id} pid={self.pid}>"

    # -- life cycle --

    @classmethod
    def boot(cls, name: str = "unitgen", *, timeout: float = 30.0, detach: bool = False) -> Sandbox:
        """Boot a sandbox; return when `systemctl is-system-running --wait` says running/degraded.

        With `detach`, the sandbox outlives this process (find it again with `attach()`);
        otherwise it dies with the thread that booted it, even on SIGKILL.
        """
        require_root()
        _check_name(name)
        for tool in (SYSTEMD, "nsenter", "setpriv", "tar"):
            if shutil.which(tool, path=PATH) is None:
                raise UnitgenError(f"{tool}: not found", hint="install systemd and util-linux (scripts/bootstrap)")
        start = time.monotonic()
        cls.clean_stale()
        sandbox = cls._prepare(name, detach=detach)
        try:
            sandbox._start(start + timeout)
            sandbox._wait_running(start + timeout)
        except BaseException:
            sandbox.teardown()
            raise
        sandbox.boot_seconds = time.monotonic() - start
        return sandbox

    @classmethod
    def _prepare(cls, name: str, *, detach: bool = False) -> Sandbox:
        """A not yet started sandbox: its owner record first, then its state directory.

        The record names everything the sandbox will create (state directory, one cgroup per
        hierarchy) before any of it exists, so a run killed at any moment, even by SIGKILL, leaves
        nothing that `clean_stale()` cannot find.
        """
        _check_name(name)
        STATE_ROOT.mkdir(parents=True, exist_ok=True, mode=0o700)
        hierarchies = host_hierarchies()
        while True:
            sid = secrets.token_hex(4)
            sandbox = cls(
                name,
                STATE_ROOT / f"{name}.{sid}",
                [Path(h.mountpoint + cgroup_child(h, sid)) for h in hierarchies],
                detach=detach,
            )
            if sandbox._write_record():
                break
        try:
            sandbox.state.mkdir(mode=0o700)
            (sandbox.state / "mnt").mkdir()
        except BaseException:
            sandbox.teardown()
            raise
        return sandbox

    def _write_record(self) -> bool:
        """Create the owner record atomically (complete or absent); False if the id is taken."""
        record = {
            "name": self.name,
            "owner_pid": self.owner_pid,
            "owner_starttime": self._owner_starttime,
            "state": str(self.state),
            "cgroups": [str(c) for c in self.cgroups],
            "detach": self.detach,
        }
        # The temporary file names its owner too, for the one moment before the link.
        scratch = STATE_ROOT / f".{self.id}.{self.owner_pid}{RECORD_SUFFIX}"
        scratch.write_text(json.dumps(record))
        try:
            os.link(scratch, self.record)
        except FileExistsError:
            return False
        finally:
            scratch.unlink()
        return True

    def _start(self, deadline: float, exec_argv: Sequence[str] = ()) -> None:
        read_end, write_end = os.pipe()
        # The lifeline's write end stays open in this process only (pipes are close-on-exec).
        life_read, self._lifeline = os.pipe() if not self.detach else (-1, -1)
        # The helper keeps both ends of PID 1's console open: a terminal whose slave side is
        # never closed does not hang up, and one whose master is read never blocks PID 1.
        master, slave = os.openpty()
        tty.setraw(slave)
        plan = boot_plan(self.name, self.state, host_hierarchies(), secrets.token_hex(16), os.ttyname(slave))
        spec = {
            "name": self.name,
            "exec": list(exec_argv) or [SYSTEMD, *SYSTEMD_ARGS],
            "status_fd": write_end,
            "console_fd": master,
            "console_slave_fd": slave,
            "lifeline_fd": life_read,
            "detach": self.detach,
            "cgroups": [str(c) for c in self.cgroups],
            "plan": [encode(op) for op in plan],
        }
        package_parent = str(Path(__file__).resolve().parent.parent.parent)  # .../unitgen/sandbox/host.py
        code = f"import sys; sys.path.insert(0, {package_parent!r}); from unitgen.sandbox.stage2 import main; main()"
        try:
            with self.console_log.open("ab") as console:
                self._helper = subprocess.Popen(
                    [sys.executable, "-I", "-S", "-c", code, f"unitgen-sandbox-helper {self.id}"],
                    stdin=subprocess.PIPE,
                    stdout=console,
                    stderr=console,
                    pass_fds=tuple(fd for fd in (write_end, master, slave, life_read) if fd >= 0),
                    start_new_session=True,  # a Ctrl-C on the terminal must not reach PID 1
                    env={"PATH": PATH, "LANG": "C.UTF-8"},
                )
        finally:
            for fd in (write_end, master, slave, life_read):
                if fd >= 0:
                    os.close(fd)
        if not self.detach:
            _live.add(self)
        if self._helper.stdin is not None:
            with contextlib.suppress(BrokenPipeError), self._helper.stdin as instructions:
                instructions.write(json.dumps(spec).encode())  # a helper that died says so below
        try:
            status = self._read_status(read_end, deadline)
        finally:
            os.close(read_end)
        if self.detach:
            self._helper.wait()  # the intermediate process; the helper itself was re-parented
            self._helper = None
        errors = [line[6:] for line in status if line.startswith("error ")]
        pids = [int(line[4:]) for line in status if line.startswith("pid ")]
        if pids:
            self.pid = pids[0]
            self._starttime = starttime(self.pid)
        if errors or not pids:
            raise self._boot_error("; ".join(errors) or "the helper process exited before systemd started")
        self._write_info()

    def _read_status(self, fd: int, deadline: float) -> list[str]:
        data = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._boot_error("timed out setting up the namespaces")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:  # PID 1 exec'd systemd (close-on-exec) or died
                    return data.decode().splitlines()
                data += chunk

    def _write_info(self) -> None:
        info = {
            "name": self.name,
            "pid": self.pid,
            "starttime": self._starttime,
            "cgroups": [str(c) for c in self.cgroups],
            "detach": self.detach,
        }
        (self.state / "info.json").write_text(json.dumps(info))

    def _wait_running(self, deadline: float) -> None:
        private = Path(f"/proc/{self.pid}/root/run/systemd/private")
        state = ""
        while time.monotonic() < deadline:
            if not self.alive():
                raise self._boot_error("systemd exited during boot")
            if FROZEN in _tail(self.console_log, 5):
                raise self._boot_error("systemd gave up and froze")
            if private.exists():
                left = max(1.0, deadline - time.monotonic())
                try:
                    result = self.run(["systemctl", "is-system-running", "--wait"], check=False, timeout=left)
                except UnitgenError:
                    result = None
                if result is not None:
                    state = result.stdout.strip()
                    if state in ("running", "degraded"):
                        return
                    if state in ("maintenance", "stopping"):
                        raise self._boot_error(f"systemd is {state}")
            time.sleep(0.02)
        raise self._boot_error(f"timed out waiting for systemd to be running (last state: {state or 'none'})")

    def _boot_error(self, reason: str) -> UnitgenError:
        tail = _tail(self.console_log)
        message = f"sandbox {self.id} failed to boot: {reason}"
        if tail:
            message += f"\n--- {self.console_log} (last lines) ---\n{tail}"
        return UnitgenError(message, hint="the console log above is systemd's own output")

    @classmethod
    def probe(cls, argv: Sequence[str], *, name: str = "probe", timeout: float = 30.0) -> str:
        """Set up exactly what `boot()` sets up, but run `argv` as PID 1 instead of systemd.

        Returns its output. A dry run of the isolation: e.g. write files and show the mounts, then
        check on the host that nothing leaked.
        """
        require_root()
        sandbox = cls._prepare(name)
        try:
            sandbox._start(time.monotonic() + timeout, argv)
            if sandbox._helper is not None:
                sandbox._helper.wait(timeout)
            return sandbox.console_log.read_text(errors="replace")
        finally:
            sandbox.teardown()

    @classmethod
    def attach(cls, name_or_id: str) -> Sandbox:
        """A handle on a running (e.g. detached) sandbox, by its id or its unique name."""
        require_root()
        found = [s for s in cls.running() if name_or_id in (s.id, s.name)]
        if len(found) != 1:
            what = "no" if not found else "more than one"
            raise UnitgenError(
                f"{what} running sandbox called {name_or_id!r}",
                hint="list them with Sandbox.running(); use the id to choose",
            )
        return found[0]

    @classmethod
    def running(cls) -> list[Sandbox]:
        """Sandboxes whose PID 1 is alive, from their records in STATE_ROOT."""
        return [s for s in cls._recorded() if s.alive()]

    @classmethod
    def _recorded(cls) -> list[Sandbox]:
        """Every sandbox with an owner record, whatever its state (booting, running, abandoned)."""
        result = []
        for record in sorted(STATE_ROOT.glob(f"*{RECORD_SUFFIX}")) if STATE_ROOT.is_dir() else []:
            if record.name.startswith("."):
                continue
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                owner = json.loads(record.read_text())
                sandbox = cls(
                    owner["name"], Path(owner["state"]), [Path(c) for c in owner["cgroups"]], detach=owner["detach"]
                )
                sandbox.owner_pid, sandbox._owner_starttime = owner["owner_pid"], owner["owner_starttime"]
                with contextlib.suppress(OSError, ValueError, KeyError):
                    info = json.loads((sandbox.state / "info.json").read_text())
                    sandbox.pid, sandbox._starttime = info["pid"], info["starttime"]
                result.append(sandbox)
        return result

    @classmethod
    def owned(cls) -> list[Sandbox]:
        """Sandboxes this process booted (not detached) and has not torn down yet."""
        return sorted(_live, key=lambda s: s.id)

    @classmethod
    def clean_stale(cls) -> list[str]:
        """Remove everything left by sandboxes whose owner was killed; returns their ids.

        A sandbox is stale when its systemd is gone, or when its owner is dead and it was not
        detached (its systemd is dying with the owner anyway). Its processes are killed and its
        cgroups, state directory and owner record removed. Also removed: state directories and
        `unitgen-sandbox-*` cgroups that no record names (left by versions that wrote the record
        last), half-written records of dead owners, and the app build directories
        (`unitgen-app-PID.*`) of dead unitgen processes.
        """
        # Listed before the records: a boot writes its record before it creates anything else,
        # so what exists now and has no record now belongs to no live boot.
        cgroups = sandbox_cgroups()
        states = sorted(p for p in STATE_ROOT.iterdir() if p.is_dir()) if STATE_ROOT.is_dir() else []
        scratch = sorted(STATE_ROOT.glob(f".*{RECORD_SUFFIX}")) if STATE_ROOT.is_dir() else []
        recorded = cls._recorded()
        stale = [s for s in recorded if not s._in_use()]
        for sandbox in stale:
            sandbox.teardown()
        known = {s.state for s in recorded}
        orphans = [state for state in states if state not in known and not legacy_in_use(state)]
        # Names may contain dots; ids end in ".SID", the suffix of the cgroups' names.
        kept = {s.id.rsplit(".", 1)[1] for s in recorded} | {p.name.rsplit(".", 1)[1] for p in states}
        kept -= {p.name.rsplit(".", 1)[1] for p in orphans}
        deadline = time.monotonic() + 10
        for cgroup in cgroups:
            if cgroup.name.removeprefix(CGROUP_PREFIX) not in kept:
                remove_cgroup(cgroup, deadline)
        for state in orphans:
            shutil.rmtree(state, ignore_errors=True)
        for path in scratch:  # ".ID.PID.json": a record being written when its owner died
            if not pid_alive(int(path.name.removesuffix(RECORD_SUFFIX).rsplit(".", 1)[1])):
                path.unlink(missing_ok=True)
        remove_dead_app_builds()
        return [s.id for s in stale] + [state.name for state in orphans]

    def _in_use(self) -> bool:
        owner_alive = starttime(self.owner_pid) == self._owner_starttime
        if self.detach:
            return self.alive() or owner_alive
        return owner_alive

    def alive(self) -> bool:
        """Whether this sandbox's PID 1 is still running (and is still the same process)."""
        if not self.pid or self._starttime is None:
            return False
        if self._helper is not None and self._helper.poll() is not None:
            return False
        return starttime(self.pid) == self._starttime

    def teardown(self) -> None:
        """Kill PID 1 (the kernel then kills everything in its PID namespace), wait, clean up.

        Idempotent, and safe on a half-booted sandbox.
        """
        if self._torn_down:
            return
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        if self._helper is not None:
            if self._helper.poll() is None and not self.pid:
                self._helper.kill()  # still setting up: there is no PID 1 yet
            with contextlib.suppress(subprocess.TimeoutExpired):
                # PID 1 exits once every process of its namespace has been reaped; one whose parent
                # is outside (a command run inside) waits for that parent. Never hang for ever.
                self._helper.wait(timeout=30)
        deadline = time.monotonic() + 10
        while self.pid and starttime(self.pid) == self._starttime and time.monotonic() < deadline:
            time.sleep(0.01)
        if self._lifeline >= 0:
            os.close(self._lifeline)
            self._lifeline = -1
        for cgroup in self.cgroups:
            remove_cgroup(cgroup, deadline)
        shutil.rmtree(self.state, ignore_errors=True)
        self.record.unlink(missing_ok=True)  # last: while anything of it is left, the record names it
        self._torn_down = True
        _live.discard(self)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.teardown()

    # -- talking to it --

    def enter_argv(self, argv: Sequence[str]) -> list[str]:
        """The host command line that runs `argv` inside (all namespaces, root = sandbox root).

        Useful for an interactive shell: `os.execvpe(a[0], a, Sandbox.sandbox_env)`.
        """
        drop = ",".join(f"-{name}" for name in DROPPED_CAPABILITIES)
        return [
            "nsenter", f"--target={self.pid}",
            "--mount", "--uts", "--ipc", "--net", "--pid", "--cgroup", "--root", "--wd",
            "--", "setpriv", f"--bounding-set={drop}", "--", *argv,
        ]  # fmt: skip

    def _bounded(self, argv: Sequence[str], timeout: float | None) -> list[str]:
        """`enter_argv`, with the time limit enforced inside by timeout(1).

        Killing nsenter on the host would hand its child inside to the host's reaper, and the
        sandbox's PID namespace cannot finish dying (teardown waits) until that one reaps it.
        """
        if timeout is None:
            return self.enter_argv(argv)
        return self.enter_argv(["timeout", "--kill-after=2", f"{timeout}s", *argv])

    def _timed_out(self, argv: Sequence[str], timeout: float | None) -> UnitgenError:
        return UnitgenError(f"timed out after {timeout:g}s in sandbox {self.id}: {shlex.join(argv)}")

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        input: str | None = None,
        timeout: float | None = 60,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside as root, with a clean environment (`sandbox_env` plus `env`).

        Raises `CommandError` (naming `argv`, with its stderr) when it fails and `check` is set,
        and `UnitgenError` when it runs longer than `timeout` seconds (it is killed then).
        """
        self._require_alive()
        started = time.monotonic()
        try:
            result = run(
                self._bounded(argv, timeout),
                check=False,
                input=input,
                timeout=None if timeout is None else timeout + 10,
                env={**self.sandbox_env, **(env or {})},
            )
        except subprocess.TimeoutExpired as exc:
            raise self._timed_out(argv, timeout) from exc
        if timeout is not None and result.returncode == TIMED_OUT and time.monotonic() - started >= timeout:
            raise self._timed_out(argv, timeout)
        if check and result.returncode != 0:
            raise CommandError(list(argv), result.returncode, result.stdout, result.stderr)
        return result

    def _run_bytes(self, argv: Sequence[str], data: bytes | None, timeout: float = 60) -> bytes:
        """`run()` for binary input/output (tar streams, file contents); unitgen.run is text-only."""
        self._require_alive()
        started = time.monotonic()
        try:
            result = subprocess.run(
                self._bounded(argv, timeout),
                input=data,
                stdin=None if data is not None else subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout + 10,
                env=dict(self.sandbox_env),
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise self._timed_out(argv, timeout) from exc
        if result.returncode == TIMED_OUT and time.monotonic() - started >= timeout:
            raise self._timed_out(argv, timeout)
        if result.returncode != 0:
            stdout, stderr = (b.decode(errors="replace") for b in (result.stdout, result.stderr))
            raise CommandError(list(argv), result.returncode, stdout, stderr)
        return result.stdout

    def _require_alive(self) -> None:
        if not self.alive():
            raise UnitgenError(
                f"sandbox {self.id} is not running"
                + ("" if self._torn_down else f"\n--- console ---\n{_tail(self.console_log)}")
            )

    def _extract(self, archive: bytes) -> None:
        # --no-overwrite-dir keeps the modes of /, /etc, ...; --keep-directory-symlink keeps /lib -> usr/lib.
        self._run_bytes(
            [
                "tar",
                "-x",
                "-p",
                "--same-owner",
                "--numeric-owner",
                "--no-overwrite-dir",
                "--keep-directory-symlink",
                "-C",
                "/",
                "-f",
                "-",
            ],
            archive,
        )

    def copy_in(self, src: Path, dest: str = "/") -> None:
        """Copy a host tree's contents (a staging tree mirroring the target fs) or a file in.

        A directory's contents are merged under `dest`; a file lands at `dest`, or in it when `dest`
        ends with '/'. Modes, owners and symbolic links are kept; existing directories keep theirs.
        """
        src = Path(src)
        if not dest.startswith("/"):
            raise ValueError(f"dest must be an absolute path in the sandbox: {dest!r}")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            if src.is_dir() and not src.is_symlink():
                base = dest.strip("/")
                for path in sorted(_walk(src)):
                    rel = path.relative_to(src).as_posix()
                    tar.add(path, arcname=f"{base}/{rel}" if base else rel, recursive=False)
            else:
                target = dest + src.name if dest.endswith("/") else dest
                tar.add(src, arcname=target.lstrip("/"), recursive=False)
        self._extract(buffer.getvalue())

    def write_file(self, path: str, content: str | bytes, mode: int = 0o644) -> None:
        """Write a file inside (parents created), owned by root."""
        if not path.startswith("/"):
            raise ValueError(f"path must be absolute: {path!r}")
        data = content.encode() if isinstance(content, str) else content
        info = tarfile.TarInfo(path.lstrip("/"))
        info.size, info.mode, info.mtime = len(data), mode, int(time.time())
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(info, io.BytesIO(data))
        self._extract(buffer.getvalue())

    def read_file(self, path: str) -> bytes:
        return self._run_bytes(["cat", "--", path], None)

    def journal(self, *matches: str, unit: str | None = None) -> list[dict[str, str]]:
        """Journal entries (journalctl -o json, after --sync), byte-array fields decoded.

        `matches` are journalctl matches such as "MESSAGE_ID=..." or "SYSLOG_IDENTIFIER=x".
        A field that occurs more than once has its values joined by newlines.
        """
        self.run(["journalctl", "--sync"])
        argv = ["journalctl", "-o", "json", "--no-pager", "--all"]
        if unit is not None:
            argv += ["-u", unit]
        result = self.run([*argv, *matches])
        return [
            {k: _decode_field(v) for k, v in json.loads(line).items()}
            for line in result.stdout.splitlines()
            if line.startswith("{")
        ]

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(["systemctl", *args], check=check)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        """`systemctl show -p PROP ... UNIT`, parsed; all properties when none are given."""
        argv = ["show"]
        for prop in props:
            argv += ["-p", prop]
        out = self.systemctl(*argv, "--", unit).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll `predicate` until it is true; raise UnitgenError naming `what` on timeout."""
        deadline = time.monotonic() + timeout
        delay = 0.01
        while not predicate():
            if not self.alive():
                raise UnitgenError(f"sandbox {self.id} died while waiting for {what}")
            if time.monotonic() >= deadline:
                raise UnitgenError(f"timed out after {timeout:g}s waiting for {what} in sandbox {self.id}")
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in [*dirnames, *filenames]:
            yield base / name


def _teardown_leftovers() -> None:
    for sandbox in list(_live):
        with contextlib.suppress(Exception):
            sandbox.teardown()


atexit.register(_teardown_leftovers)
