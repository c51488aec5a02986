"""`unitgen try`: the service in a real, throw-away systemd, shown the way an operator looks at it.

It boots a `Sandbox`, installs the staging tree (or a built .deb/.rpm with the real dpkg/rpm),
starts the service, and prints its status, the lock holder, the live security score and the
journal, then runs a second instance by hand to show it refused and logged.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from unitgen.app.payload import AppPayload
from unitgen.errors import UnitgenError
from unitgen.launcher.runtime import EXIT_ALREADY_RUNNING, MESSAGE_ID_ALREADY_RUNNING
from unitgen.render.units import launcher_cleanup_argv, launcher_compile_argv, launcher_path
from unitgen.sandbox import Sandbox
from unitgen.spec import OnContention, ReadyKind, Spec
from unitgen.staging.tree import NOT_CONTENT

Print = Callable[[str], None]
POLICY_RC_D = "/usr/sbin/policy-rc.d"


@dataclass(frozen=True)
class TryOptions:
    install: Path | None = None  # a .deb or .rpm to install instead of the staging tree
    payload: AppPayload | None = None  # the app's venv in the staging tree, if any
    keep: bool = False  # leave the sandbox running (tear down later with --teardown)
    shell: bool = False  # open an interactive shell inside before tearing down
    timeout: float = 60.0
    # --credential ID=@FILE: (ID, the file on this host) written where the unit loads it (issue 15).
    credentials: tuple[tuple[str, Path], ...] = ()


@dataclass
class TryReport:
    """What `try` saw, as data (`unitgen try --json`); filled in as it goes, so a failed start
    still reports the state and journal it found."""

    state: str = ""  # ActiveState of NAME.service
    sub_state: str = ""
    result: str = ""
    main_pid: int = 0
    restarts: int = 0
    lock_file: str = ""
    lock_holder_pid: int | None = None
    lock: str = ""  # the same, in words
    security: str = ""  # systemd-analyze security, live: "1.2 OK"
    journal: list[str] = field(default_factory=list)
    second_instance: str = "not run"  # "refused", "waited", "not refused", "not waiting", "not run"
    second_instance_exit_code: int | None = None
    ok: bool = False


def sandbox_name(spec: Spec) -> str:
    return f"try-{spec.name}"


def install_staging(sb: Sandbox, staging: Path, spec: Spec, payload: AppPayload | None = None) -> None:
    """What a package's maintainer scripts would do, for a bare staging tree: fresh bytecode for
    the app's venv and the launcher module (a ProtectSystem=strict service cannot write
    __pycache__ itself)."""
    for top in sorted(staging.iterdir()):
        if top.name not in NOT_CONTENT:  # unitgen's own files in its output directory, not the service's
            sb.copy_in(top, f"/{top.name}")
    if payload is not None:
        sb.run(payload.cleanup_argv)
        sb.run(payload.compile_argv)
    sb.run(launcher_cleanup_argv(spec))
    sb.run(launcher_compile_argv(spec))
    sb.run(["systemd-sysusers"])
    sb.run(["systemd-tmpfiles", "--create", f"/usr/lib/tmpfiles.d/{spec.name}.conf"])
    # The catalog file: what the systemd package's dpkg trigger (or the rpm's %post) does.
    sb.run(["journalctl", "--update-catalog"])
    sb.systemctl("daemon-reload")


def install_package(sb: Sandbox, package: Path) -> str:
    """Install with the real dpkg or rpm; their maintainer scripts enable and start the service."""
    target = f"/var/tmp/{package.name}"  # noqa: S108 - inside the sandbox, a private tmpfs
    sb.copy_in(package, target)
    if package.suffix == ".deb":
        argv = ["dpkg", "-i", target]
    elif package.suffix == ".rpm":
        argv = ["rpm", "-i", "--nodeps", target]
    else:
        raise UnitgenError(f"{package}: not a .deb or .rpm")
    return sb.run(argv).stdout.strip()


def parse_credential(spec: Spec, option: str) -> tuple[str, Path]:
    """`--credential ID=@FILE`: one of the spec's credentials, its value from a file of this host.
    Never a value on the command line: every user on the machine can read that in `ps`."""
    cid, sep, value = option.partition("=")
    known = dict(_credential_paths(spec))
    if cid not in known:
        allowed = ", ".join(known) or "none: the spec has no credentials"
        raise UnitgenError(f"--credential {cid!r}: not a credential of {spec.name}", hint=f"its credentials: {allowed}")
    if not sep or not value.startswith("@") or len(value) < 2:
        raise UnitgenError(
            f"--credential {cid}: give the value in a file, as {cid}=@FILE",
            hint="a secret on the command line is visible to every user in ps and in the shell's history",
        )
    source = Path(value[1:])
    if not source.is_file():
        raise UnitgenError(f"--credential {cid}: {source} is not a file")
    return cid, source


def _credential_paths(spec: Spec) -> list[tuple[str, str]]:
    fleet = list(spec.lock.credentials()) if spec.lock.is_fleet else []
    return [*fleet, *spec.credentials, *spec.encrypted_credentials]


def put_credentials(sb: Sandbox, spec: Spec, credentials: tuple[tuple[str, Path], ...], say: Print) -> None:
    """Write each trial credential where the unit loads it (root's, 0600), before anything starts the
    service; an encrypted one is encrypted inside with the sandbox's own host key (systemd-creds)."""
    paths = dict(_credential_paths(spec))
    encrypted = {cid for cid, _path in spec.encrypted_credentials}
    for cid, source in credentials:
        path = paths[cid]
        if cid in encrypted:
            plain = f"/run/unitgen-credential-{cid}"
            sb.write_file(plain, source.read_bytes(), 0o600)
            sb.run(["systemd-creds", "encrypt", f"--name={cid}", "--with-key=host", plain, path])
            sb.run(["rm", "-f", plain])
            say(f"credential {cid}: {path} (encrypted with systemd-creds from {source}, not shown)")
        else:
            sb.write_file(path, source.read_bytes(), 0o600)
            say(f"credential {cid}: {path} (from {source}, mode 0600, not shown)")


def _main_unit(spec: Spec) -> str:
    return _unit(spec, "timer") if spec.timer is not None else _unit(spec, "service")


# Issue 14: a template is tried through its first listed instance (NAME@a.service, its lock
# /run/NAME/a.pid), and the second instance by hand gets that instance as the unit would give it.
def _unit(spec: Spec, suffix: str) -> str:
    return f"{spec.name}@{spec.instances[0].name}.{suffix}" if spec.instances else f"{spec.name}.{suffix}"


def _lock_file(spec: Spec) -> str:
    return spec.lock_file.replace("{instance}", spec.instances[0].name) if spec.instances else spec.lock_file


def _by_hand(spec: Spec, argv: list[str]) -> list[str]:
    return ["/usr/bin/env", f"UNITGEN_INSTANCE={spec.instances[0].name}", *argv] if spec.instances else argv


class Outcome(enum.Enum):
    """How the start went: a service runs; a timer job's run either still runs or has finished."""

    RUNNING = "running"  # the service is up, or the job's run holds the lock right now
    FINISHED = "finished"  # the job's run is over and succeeded (Result=success)
    FAILED = "failed"


RUN_PROPS = ("ActiveState", "SubState", "Result", "ExecMainStatus", "ExecMainStartTimestampMonotonic")


def _run_over(props: dict[str, str]) -> bool:
    """A oneshot that has started once and is no longer activating has a result to judge."""
    started = props.get("ExecMainStartTimestampMonotonic", "0") not in ("", "0")
    return started and props["ActiveState"] in ("inactive", "failed", "active")


def start(sb: Sandbox, spec: Spec, timeout: float) -> Outcome:
    """Start the service; for a timer job, the timer plus one run now, judged by its result.

    A job's run is not waited for by the calendar: `minutely` would take up to a minute, and a
    quick run (`/bin/true`) is over long before anyone could look at it while it runs.
    """
    service = _unit(spec, "service")
    if spec.timer is None:
        if sb.run(["systemctl", "start", service], check=False, timeout=timeout).returncode != 0:
            return Outcome.FAILED
        try:
            sb.wait_for(lambda: sb.show(service, "ActiveState")["ActiveState"] == "active", 5, f"{service} to come up")
        except UnitgenError:
            return Outcome.FAILED
        return Outcome.RUNNING
    sb.systemctl("start", _unit(spec, "timer"))
    sb.systemctl("start", "--no-block", service)

    def settled() -> bool:
        props = sb.show(service, *RUN_PROPS)
        if props["ActiveState"] == "activating" and props["SubState"] == "start":
            return bool(lock_holders(sb, _lock_file(spec)))  # a long run: its launcher holds the lock
        return _run_over(props)

    try:
        sb.wait_for(settled, timeout=timeout, what=f"the run of {service}")
    except UnitgenError:
        return Outcome.FAILED
    props = sb.show(service, *RUN_PROPS)
    if props["ActiveState"] == "activating":
        return Outcome.RUNNING
    return Outcome.FINISHED if props["Result"] == "success" else Outcome.FAILED


def security_score(sb: Sandbox, unit: str) -> str:
    out = sb.run(["systemd-analyze", "security", "--no-pager", unit], check=False).stdout
    lines = [line for line in out.splitlines() if line.startswith("→ Overall exposure level")]
    return lines[-1].split(": ", 1)[1] if lines else "unknown"


def lock_holders(sb: Sandbox, path: str) -> list[int]:
    """PIDs holding a POSIX lock on `path`, as the kernel reports them in /proc/locks, matched by
    device and inode (lslocks cannot name the path of a lock held in a thread-private fd table,
    which is how the launcher holds it in python mode)."""
    stat = sb.run(["stat", "-c", "%d %i", path], check=False).stdout.split()
    if not stat:
        return []
    dev = int(stat[0])
    want = f"{os.major(dev):02x}:{os.minor(dev):02x}:{stat[1]}"
    holders = []
    for line in sb.read_file("/proc/locks").decode().splitlines():
        fields = line.split()  # "1: POSIX ADVISORY WRITE 52 00:50:122 0 EOF"
        if fields[1] == "POSIX" and fields[5] == want:
            holders.append(int(fields[4]))
    return holders


def lock_holder(sb: Sandbox, spec: Spec) -> str:
    try:
        content = sb.read_file(_lock_file(spec)).decode(errors="replace").strip()
    except (OSError, UnitgenError):
        return f"{_lock_file(spec)} does not exist"
    holders = lock_holders(sb, _lock_file(spec))
    if not holders:
        return f"{_lock_file(spec)} contains {content or 'nothing'}, but no process holds a lock on it"
    comm = sb.run(["cat", f"/proc/{holders[0]}/comm"], check=False).stdout.strip() or "?"
    return f"{_lock_file(spec)}: POSIX write lock held by PID {holders[0]} ({comm}); the file says {content}"


def show_status(sb: Sandbox, spec: Spec, say: Print, report: TryReport | None = None) -> None:
    service = _unit(spec, "service")
    if spec.timer is not None:
        timer = sb.show(_unit(spec, "timer"), "ActiveState", "NextElapseUSecRealtime")
        say(f"{_unit(spec, 'timer')}: {timer['ActiveState']}, next run {timer['NextElapseUSecRealtime'] or '-'}")
    props = sb.show(service, "ActiveState", "SubState", "MainPID", "StatusText", "NRestarts", "Result", *RUN_PROPS)
    say(f"{service}: {props['ActiveState']} ({props['SubState']}), result {props['Result']}")
    if spec.timer is not None and _run_over(props):
        say(f"  last run:   finished, exit status {props['ExecMainStatus']} (result {props['Result']})")
    say(f"  main PID:   {props['MainPID']}")
    say(f"  status:     {props['StatusText'] or '-'}")
    say(f"  restarts:   {props['NRestarts']}")
    lock, score = lock_holder(sb, spec), security_score(sb, service)
    say(f"  lock:       {lock}")
    say(f"  security:   {score} (systemd-analyze security, live)")
    if report is not None:
        holders = lock_holders(sb, _lock_file(spec))
        report.state, report.sub_state, report.result = props["ActiveState"], props["SubState"], props["Result"]
        report.main_pid, report.restarts = int(props["MainPID"] or 0), int(props["NRestarts"] or 0)
        report.lock_file, report.lock_holder_pid = _lock_file(spec), (holders[0] if holders else None)
        report.lock, report.security = lock, score


def show_journal(sb: Sandbox, spec: Spec, say: Print, lines: int = 15, report: TryReport | None = None) -> None:
    # The unit's own lines, and the launcher's entries from runs by hand (same identifier).
    matches = [
        f"_SYSTEMD_UNIT={_unit(spec, 'service')}",
        "+",
        f"UNIT={_unit(spec, 'service')}",
        "+",
        f"SYSLOG_IDENTIFIER={spec.name}",
    ]
    argv = ["journalctl", "--no-pager", "-o", "short-monotonic", "-n", str(lines), *matches]
    out = sb.run(argv, check=False).stdout
    say(f"journal (last {lines} lines):")
    for line in out.splitlines():
        say("  " + line)
    if report is not None:
        report.journal = out.splitlines()


def probe_http(sb: Sandbox, spec: Spec, say: Print) -> None:
    """For a tcp: service, one HTTP request over the sandbox's loopback, as a client would."""
    if spec.ready.kind is not ReadyKind.TCP:
        return
    wildcard = ("0.0.0.0", "::")  # noqa: S104 - comparing, not binding: a client connects to loopback
    host = "127.0.0.1" if spec.ready.host in wildcard else spec.ready.host
    code = (
        "import http.client, sys\n"
        f"c = http.client.HTTPConnection({host!r}, {spec.ready.port}, timeout=5)\n"
        "c.request('GET', sys.argv[1]); r = c.getresponse()\n"
        "print(r.status, r.reason, len(r.read()), 'bytes')"
    )
    result = sb.run(["/usr/bin/python3", "-c", code, "/"], check=False)
    answer = result.stdout.strip() or result.stderr.strip().splitlines()[-1:]
    say(f"  GET http://{host}:{spec.ready.port}/ -> {answer}")


# A process that takes the lock the way the launcher does (a POSIX write lock) and keeps it.
STAND_IN = "import fcntl, os, sys, time; fcntl.lockf(os.open(sys.argv[1], os.O_RDWR), fcntl.LOCK_EX); time.sleep(300)"


def _background(sb: Sandbox, argv: list[str]) -> int:
    """Start `argv` inside, detached from this command, as an operator's shell would; its PID inside."""
    script = 'setsid "$@" </dev/null >/dev/null 2>&1 & echo $!'
    return int(sb.run(["/bin/sh", "-c", script, "sh", *argv]).stdout.strip())


def _alive(sb: Sandbox, pid: int) -> bool:
    return sb.run(["kill", "-0", str(pid)], check=False).returncode == 0


def _contention_entries(sb: Sandbox, say: Print) -> bool:
    entries = sb.journal(f"MESSAGE_ID={MESSAGE_ID_ALREADY_RUNNING}")
    if entries:
        entry = entries[-1]
        say(f"  journal: {entry.get('MESSAGE', '')}")
        shown = ("PRIORITY", "MESSAGE_ID", "UNITGEN_INSTANCE")
        fields = {k: v for k, v in entry.items() if k.startswith("LOCK_") or k in shown}
        say("  fields:  " + json.dumps(fields, sort_keys=True))
        say(f"  find them all: journalctl MESSAGE_ID={MESSAGE_ID_ALREADY_RUNNING}")
    return bool(entries)


def _second_instance_waits(sb: Sandbox, spec: Spec, launcher: str, say: Print) -> bool:
    """With on_contention = "wait" a second instance blocks until the lock is free (or until
    wait_timeout, then exit 75): it must still be waiting, without the lock, a moment later."""
    watch = 2.0 if spec.wait_timeout is None else min(2.0, spec.wait_timeout / 2)
    holders = lock_holders(sb, _lock_file(spec))
    pid = _background(sb, _by_hand(spec, [launcher]))
    try:
        time.sleep(watch)
        waiting = _alive(sb, pid) and lock_holders(sb, _lock_file(spec)) == holders
        state = "still waiting" if waiting else "not waiting"
        say(f"  {state} after {watch:g} s (expected: on_contention = wait blocks until the lock is free)")
    finally:
        sb.run(["kill", "-KILL", str(pid)], check=False)
    return waiting


def demonstrate_contention(
    sb: Sandbox, spec: Spec, say: Print, outcome: Outcome = Outcome.RUNNING, report: TryReport | None = None
) -> bool:
    """Run a second instance by hand, as an operator or cron would; it must be refused (or wait)."""
    launcher = str(launcher_path(spec))
    stand_in = None
    if outcome is Outcome.FINISHED:
        # The job's run is already over: a stand-in process holds the lock, as a long run would.
        say("the run is over; a stand-in process takes the lock the way a long run holds it")
        stand_in = _background(sb, ["/usr/bin/python3", "-I", "-c", STAND_IN, _lock_file(spec)])
        sb.wait_for(lambda: bool(lock_holders(sb, _lock_file(spec))), 10, f"a stand-in to hold {_lock_file(spec)}")
    try:
        say(f"second instance, by hand: {launcher}")
        if spec.on_contention is OnContention.WAIT:
            waited = _second_instance_waits(sb, spec, launcher, say) and _contention_entries(sb, say)
            if report is not None:
                report.second_instance = "waited" if waited else "not waiting"
            return waited
        result = sb.run(_by_hand(spec, [launcher]), check=False, timeout=30)
        say(f"  exit code {result.returncode} (expected {EXIT_ALREADY_RUNNING}: already running)")
        refused = _contention_entries(sb, say) and result.returncode == EXIT_ALREADY_RUNNING
        if report is not None:
            report.second_instance = "refused" if refused else "not refused"
            report.second_instance_exit_code = result.returncode
        return refused
    finally:
        if stand_in is not None:
            sb.run(["kill", "-KILL", str(stand_in)], check=False)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def _terminate_like_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP (kill, a closed terminal) tear the sandbox down like Ctrl-C does.

    Their default action would end the process at once: no `finally`, so the sandbox's state
    and cgroups would wait for the next run's clean-up. A handler the caller set is kept.
    """
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    for sig, handler in previous.items():
        if handler is signal.SIG_DFL:
            signal.signal(sig, _interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """Hold INT, TERM and HUP back while tearing down: a second signal must not cut the clean-up
    short. They are delivered when it is done."""
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def try_service(
    spec: Spec, staging: Path, options: TryOptions, say: Print = print, report: TryReport | None = None
) -> int:
    """Returns the exit code; `report`, when given, receives what was seen (for --json)."""
    with _terminate_like_interrupt():
        code = _try_service(spec, staging, options, say, report or TryReport())
    if report is not None:
        report.ok = code == 0
    return code


def _try_service(spec: Spec, staging: Path, options: TryOptions, say: Print, report: TryReport) -> int:
    sb = Sandbox.boot(sandbox_name(spec), detach=options.keep)
    say(f"booted a sandboxed systemd ({sb.id}, PID {sb.pid}) in {sb.boot_seconds:.2f} s")
    try:
        put_credentials(sb, spec, options.credentials, say)  # before a package's scripts start it
        if options.install is not None:
            if sb.run(["test", "-e", POLICY_RC_D], check=False).returncode == 0:
                # Container images ship a policy-rc.d that forbids starting services; a real
                # machine has none. Without it the package's own scripts start the service.
                say(f"removing {POLICY_RC_D} (the host image's 'start nothing' policy) inside the sandbox")
                sb.run(["rm", "-f", POLICY_RC_D])
            say(f"installing {options.install.name} with {'dpkg' if options.install.suffix == '.deb' else 'rpm'}")
            install_package(sb, options.install)
            unit = _main_unit(spec)
            state = sb.show(unit, "ActiveState", "UnitFileState")
            say(f"after install: {unit} is {state['UnitFileState']} and {state['ActiveState']} (the package's scripts)")
        else:
            install_staging(sb, staging, spec, options.payload)
        outcome = start(sb, spec, options.timeout)
        up = outcome is not Outcome.FAILED
        show_status(sb, spec, say, report)
        if outcome is Outcome.RUNNING:
            probe_http(sb, spec, say)
        refused = demonstrate_contention(sb, spec, say, outcome, report) if up else False
        show_journal(sb, spec, say, report=report)
        if options.shell:
            say("a shell inside the sandbox; exit it to tear the sandbox down")
            subprocess.run(sb.enter_argv(["/bin/bash", "-l"]), check=False)
        if options.keep:
            say(f"the sandbox keeps running: get a shell with `{' '.join(sb.enter_argv(['/bin/bash']))}`")
            say(f"tear it down with `unitgen try {spec.name} --teardown`")
        if not up:
            service = _unit(spec, "service")
            what = f"the run of {service} failed" if spec.timer else f"{service} did not come up"
            say(f"ERROR {what}; the journal above says why")
            return 1
        if not refused:
            expected = "wait" if spec.on_contention is OnContention.WAIT else "be refused"
            say(f"ERROR the second instance did not {expected} as expected")
            return 1
        return 0
    finally:
        if not options.keep:
            with _uninterrupted():
                sb.teardown()


def teardown(spec: Spec, say: Print = print) -> int:
    found = [sb for sb in Sandbox.running() if sb.name == sandbox_name(spec)]
    for sb in found:
        sb.teardown()
        say(f"tore down {sb.id}")
    if not found:
        say(f"no sandbox of {spec.name} is running")
    return 0
