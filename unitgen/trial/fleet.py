"""`unitgen try NAME --fleet N`: the fleet lock (issue 13) on N sandboxed hosts, shown to a user.

It boots N sandboxes (each its own host: PID, mount, UTS and network namespaces, its own systemd
and journald), joins them on one bridge (`FleetNetwork`), starts a real 3-member etcd cluster
listening there, installs the same rendered service on every host (the spec with the trial's etcd
endpoints) and starts it on all of them at once. Then it shows who holds the lock and with which
fencing token, what the others did (exit 17 or waiting, and their journal entry), cuts the
holder's link (it stops its app before its lease can expire; another host takes over), heals it,
stops the new holder with `systemctl stop` (the next host takes over at once), and prints every
host's fleet journal entries. Everything it started (sandboxes, etcd, links, files) is removed at
the end, on an error, and on Ctrl-C, SIGTERM or SIGHUP.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unitgen.app.payload import AppPayload
from unitgen.errors import UnitgenError
from unitgen.launcher.fleet_guard import (
    EXIT_ALREADY_RUNNING,
    EXIT_FLEET_LOST,
    MESSAGE_ID_ALREADY_RUNNING,
    MESSAGE_ID_FLEET_ACQUIRED,
    MESSAGE_ID_FLEET_LOST,
    MESSAGE_ID_FLEET_UNREACHABLE,
)
from unitgen.render.units import launcher_cleanup_argv, launcher_compile_argv, render
from unitgen.sandbox import Sandbox
from unitgen.spec import OnContention, Spec
from unitgen.trial import _terminate_like_interrupt, _uninterrupted, install_staging
from unitgen.trial.etcd import EtcdCluster, require_etcd, start_cluster
from unitgen.trial.network import FleetNetwork

Print = Callable[[str], None]
MIN_HOSTS, MAX_HOSTS = 2, 5
FLEET_MESSAGE_IDS = (MESSAGE_ID_FLEET_ACQUIRED, MESSAGE_ID_FLEET_LOST, MESSAGE_ID_ALREADY_RUNNING,
                     MESSAGE_ID_FLEET_UNREACHABLE)
_POLL = 0.2
_START_EVERY = 0.5  # on_contention = "exit": how often the trial starts the other hosts' services after a loss


@dataclass(frozen=True)
class FleetOptions:
    hosts: int = 3
    payload: AppPayload | None = None  # the app's venv in the staging tree, if any
    template_dirs: tuple[Path, ...] = ()
    timeout: float = 60.0  # for the first holder and the others to settle


@dataclass
class HostReport:
    host: str
    address: str  # on the trial's bridge
    role: str = "unknown"  # holder, refused, waiting, not running, unknown (at the first look)
    token: int | None = None  # its first fencing token
    state: str = ""  # ActiveState of NAME.service at the end
    sub_state: str = ""
    result: str = ""
    exit_status: int | None = None
    journal: list[str] = field(default_factory=list)  # its fleet entries


@dataclass
class Handover:
    cause: str  # "partition" or "stop"
    from_host: str
    from_token: int
    to_host: str | None = None
    to_token: int | None = None
    seconds: float | None = None  # from the cut or the stop to the next host's acquisition
    app_gone_before_expiry: float | None = None  # partition: the old app was gone this long before its lease could end


@dataclass
class FleetReport:
    """What the fleet trial saw, as data (`unitgen try --fleet N --json`)."""

    hosts: list[HostReport] = field(default_factory=list)
    endpoints: list[str] = field(default_factory=list)
    key: str = ""
    ttl: int = 0
    holder: str | None = None
    token: int | None = None
    handovers: list[Handover] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    ok: bool = False

    def document(self, name: str) -> dict[str, Any]:
        return {
            "command": "try",
            "name": name,
            "fleet": len(self.hosts),
            "ok": self.ok,
            "etcd": {"endpoints": self.endpoints, "key": self.key, "ttl": self.ttl},
            "holder": None if self.holder is None else {"host": self.holder, "token": self.token},
            "hosts": [dataclasses.asdict(h) for h in self.hosts],
            "handovers": [
                {"cause": h.cause, "from": {"host": h.from_host, "token": h.from_token},
                 "to": None if h.to_host is None else {"host": h.to_host, "token": h.to_token},
                 "seconds": h.seconds, "app_gone_before_expiry": h.app_gone_before_expiry}
                for h in self.handovers
            ],
            "problems": self.problems,
        }


def check_fleet(spec: Spec, hosts: int) -> None:
    """Refuse up front (before anything is built) what a fleet trial cannot show."""
    if not spec.lock.is_fleet:
        raise UnitgenError(
            f"{spec.name}: --fleet needs a fleet lock, and [lock] scope is {spec.lock.scope.value!r}",
            hint='add [lock] scope = "fleet" and etcd = [...] to the spec (README: One instance across hosts); '
            "the trial runs its own etcd in place of those endpoints",
        )
    if not MIN_HOSTS <= hosts <= MAX_HOSTS:
        raise UnitgenError(f"--fleet {hosts}: allowed {MIN_HOSTS} to {MAX_HOSTS} hosts")
    require_etcd()


def trial_spec(spec: Spec, endpoints: list[str]) -> Spec:
    """The spec as the trial's hosts run it: the trial's etcd, plain http (its own CA is not the
    user's), so no TLS files either."""
    lock = dataclasses.replace(spec.lock, etcd=tuple(endpoints), ca_file=None, cert_file=None, key_file=None)
    return dataclasses.replace(spec, lock=lock)


@dataclass
class _Host:
    sandbox: Sandbox
    number: int  # its link on the bridge
    report: HostReport

    @property
    def name(self) -> str:
        return self.report.host


@dataclass(frozen=True)
class _Acquired:
    host: str
    token: int
    at: float  # CLOCK_MONOTONIC, shared by every namespace (no time namespaces here)


class _Trial:
    def __init__(self, spec: Spec, staging: Path, options: FleetOptions, say: Print, report: FleetReport) -> None:
        self.spec, self.staging, self.options, self.say, self.report = spec, staging, options, say, report
        self.unit = f"{spec.name}.service"
        self.hosts: list[_Host] = []
        self.cluster: EtcdCluster | None = None
        self.network: FleetNetwork | None = None
        self.waits = spec.on_contention is OnContention.WAIT

    # -- set-up --

    def set_up(self, stack: contextlib.ExitStack) -> None:
        work = Path(tempfile.mkdtemp(prefix=f"unitgen-fleet-{self.spec.name}-"))
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        self.network = FleetNetwork.create()
        stack.callback(self.network.delete)
        for number in range(self.options.hosts):
            name = f"try-{self.spec.name[:40]}-{number + 1}"
            sb = Sandbox.boot(name)
            stack.callback(sb.teardown)
            address = self.network.attach(sb.pid)
            self.hosts.append(_Host(sb, number, HostReport(host=name, address=address)))
            self.say(f"booted host {name} ({sb.id}, PID {sb.pid}) in {sb.boot_seconds:.2f} s, {address} on the bridge")
        self.report.hosts = [h.report for h in self.hosts]
        self.cluster = start_cluster(work / "etcd", more_addresses=(self.network.address,))
        stack.callback(self.cluster.stop_all)
        endpoints = self.cluster.endpoints_via(self.network.address)
        self.report.endpoints, self.report.key, self.report.ttl = endpoints, self.spec.lock.key, self.spec.lock.ttl
        pids = ", ".join(str(m.process.pid) for m in self.cluster.members if m.process is not None)
        self.say(f"etcd: {len(self.cluster.members)} members (PIDs {pids}) at {', '.join(endpoints)}, "
                 f"data in {work}; bridge {self.network.bridge}")
        if self.spec.lock.credentials():
            self.say("  the trial's etcd speaks plain http: the spec's TLS files are not used")
        self.install(work / "trial")

    def install(self, tree: Path) -> None:
        """The staging tree on every host, with the files rendered for the trial's endpoints over it."""
        for f in render(trial_spec(self.spec, self.report.endpoints), template_dirs=self.options.template_dirs):
            path = tree / f.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f.content)
            path.chmod(f.mode)
        for host in self.hosts:
            sb = host.sandbox
            install_staging(sb, self.staging, self.spec, self.options.payload)
            sb.copy_in(tree, "/")
            sb.run(launcher_cleanup_argv(self.spec))
            sb.run(launcher_compile_argv(self.spec))
            sb.systemctl("daemon-reload")
        self.say(f"installed {self.unit} on every host (lock key {self.spec.lock.key}, ttl {self.spec.lock.ttl} s)")

    # -- looking --

    def acquisitions(self, hosts: list[_Host] | None = None) -> list[_Acquired]:
        found = []
        for host in hosts if hosts is not None else self.hosts:
            for e in host.sandbox.journal(f"MESSAGE_ID={MESSAGE_ID_FLEET_ACQUIRED}"):
                found.append(_Acquired(host.name, int(e["FENCING_TOKEN"]), int(e["__MONOTONIC_TIMESTAMP"]) / 1e6))
        return sorted(found, key=lambda a: a.token)

    def props(self, host: _Host) -> dict[str, str]:
        return host.sandbox.show(self.unit, "ActiveState", "SubState", "Result", "ExecMainStatus", "MainPID",
                                 "StatusText", "ExecMainStartTimestampMonotonic")

    def contention(self, host: _Host) -> dict[str, str] | None:
        entries = host.sandbox.journal(f"MESSAGE_ID={MESSAGE_ID_ALREADY_RUNNING}")
        fleet = [e for e in entries if e.get("LOCK_SCOPE") == "fleet"]
        return fleet[-1] if fleet else None

    def role(self, host: _Host, holder: str) -> str:
        if host.name == holder:
            return "holder"
        props = self.props(host)
        # Exit 17 with its contention entry; a timer job's skipped run ends inactive (17 is a success for
        # it, and systemd may show its status as 0 then): the entry alone says it.
        if props["ActiveState"] in ("failed", "inactive") and self.contention(host) is not None:
            return "refused"
        if props["ActiveState"] == "activating" and self.contention(host) is not None:
            return "waiting"
        return "unknown"

    def wait_until(self, what: str, timeout: float, predicate: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(_POLL)
        self.problem(f"timed out after {timeout:g} s waiting for {what}")
        return False

    def problem(self, text: str) -> None:
        self.report.problems.append(text)
        self.say(f"  PROBLEM: {text}")

    def app_processes(self, host: _Host) -> list[int]:
        """The processes of the unit other than its main process (exec mode: the app and what it
        started); python mode: the main process itself, which runs the app. Empty: no app."""
        script = (
            'cg=$(systemctl show -P ControlGroup "$1"); main=$(systemctl show -P MainPID "$1"); echo "$main"; '
            'for h in systemd unified ""; do f=/sys/fs/cgroup/$h$cg/cgroup.procs; '
            '[ -n "$cg" ] && [ -r "$f" ] && { cat "$f"; break; }; done'
        )
        lines = host.sandbox.run(["/bin/sh", "-c", script, "sh", self.unit], check=False).stdout.split()
        main, procs = (int(lines[0]) if lines else 0), {int(p) for p in lines[1:]}
        if self.spec.entry is not None:
            return [main] if main and main in procs else ([] if not procs else sorted(procs))
        return sorted(procs - {main}) if procs else []

    # -- the story --

    def start_all(self) -> None:
        for host in self.hosts:
            host.sandbox.systemctl("start", "--no-block", self.unit)
        self.say(f"started {self.unit} on {len(self.hosts)} hosts at once")

    def first_holder(self) -> _Acquired | None:
        found: list[_Acquired] = []

        def settled() -> bool:
            found[:] = self.acquisitions()
            if not found:
                return False
            return all(self.role(h, found[0].host) != "unknown" or h.name in {a.host for a in found}
                       for h in self.hosts)

        self.wait_until("one host to take the lock and the others to be refused or wait", self.options.timeout,
                        settled)
        if not found:
            return None
        first = found[0]
        self.report.holder, self.report.token = first.host, first.token
        self.say(f"holder: {first.host}, fencing token {first.token}")
        for host in self.hosts:
            role = self.role(host, first.host)
            tokens = [a.token for a in found if a.host == host.name]
            if role == "unknown" and tokens:
                role = "holder"  # it took the lock once the first holder's run was over (a short job)
            host.report.role = role
            host.report.token = tokens[0] if tokens else None
            props = self.props(host)
            line = f"  {host.name}: {role}; {self.unit} {props['ActiveState']} ({props['SubState']})"
            if role == "holder" and host.name != first.host:
                line += f", after {first.host}'s run, fencing token {tokens[0]}"
            elif role == "holder":
                line += f", main PID {props['MainPID']}"
            elif role == "refused":
                line += f" (exit {EXIT_ALREADY_RUNNING}: another host holds it)"
            elif role == "waiting":
                line += f", status: {props['StatusText'] or '-'}"
            self.say(line)
            entry = self.contention(host) if role in ("refused", "waiting") else None
            if entry is not None:
                self.say(f"    journal: {entry.get('MESSAGE', '')}")
        others = [h.name for h in self.hosts if h.name != first.host]
        if len(found) > 1 and any(a.host in others and a.token < first.token for a in found):
            self.problem("tokens out of order")  # cannot happen: sorted; kept as the observer's check
        self.show_etcd()
        return first

    def show_etcd(self) -> None:
        assert self.cluster is not None
        out = self.cluster.etcdctl("get", "--prefix", self.spec.lock.key.rstrip("/") + "/", "--sort-by=CREATE",
                                   "--order=ASCEND").stdout.splitlines()
        pairs = list(zip(out[::2], out[1::2], strict=False))
        if pairs:
            self.say(f"  etcd (etcdctl get --prefix {self.spec.lock.key}/): owner {pairs[0][0]} = {pairs[0][1]}"
                     + (f", {len(pairs) - 1} queued behind it" if len(pairs) > 1 else ""))

    def host(self, name: str) -> _Host:
        return next(h for h in self.hosts if h.name == name)

    def takeover(self, others: list[_Host], after: float, above: int, timeout: float) -> _Acquired | None:
        """The first acquisition on `others` after `after` with a token above `above`. In exit mode
        nobody waits, so the others' services are started every _START_EVERY s, as a timer or an operator would."""
        found: list[_Acquired] = []
        last_start = 0.0

        def taken() -> bool:
            nonlocal last_start
            found[:] = [a for a in self.acquisitions(others) if a.at > after and a.token > above]
            if not found and not self.waits and time.monotonic() - last_start >= _START_EVERY:
                last_start = time.monotonic()
                for h in others:
                    if self.props(h)["ActiveState"] in ("inactive", "failed"):
                        # These starts are the trial's, twice a second: not the unit's start limit to count.
                        h.sandbox.systemctl("reset-failed", self.unit, check=False)
                        h.sandbox.systemctl("start", "--no-block", self.unit, check=False)
            return bool(found)

        self.wait_until("another host to take over", timeout, taken)
        return found[0] if found else None

    def partition(self, holder: _Acquired) -> _Acquired | None:
        assert self.network is not None
        old = self.host(holder.host)
        if not self.app_processes(old):
            self.say(f"{holder.host}'s app is no longer running: no partition to show")
            return None
        others = [h for h in self.hosts if h is not old]
        if not self.waits:
            self.say(f"on_contention = exit: the other hosts' services are started every {_START_EVERY:g} s, "
                     "as a timer would")
        cut = time.monotonic()
        self.network.partition(old.number)
        self.say(f"partition: {holder.host}'s link is down (cut at {cut:.3f}, CLOCK_MONOTONIC)")
        gone: list[float] = []

        def app_gone() -> bool:
            if not gone and not self.app_processes(old):
                gone.append(time.monotonic())
            return bool(gone)

        ttl = self.spec.lock.ttl
        self.wait_until(f"{holder.host} to stop its app", ttl + 5, app_gone)
        new = self.takeover(others, cut, holder.token, ttl + 10)
        handover = Handover("partition", holder.host, holder.token)
        self.report.handovers.append(handover)
        lost = old.sandbox.journal(f"MESSAGE_ID={MESSAGE_ID_FLEET_LOST}")
        if lost and gone:
            expiry = int(lost[-1]["LAST_RENEWAL_MONOTONIC_USEC"]) / 1e6 + ttl
            handover.app_gone_before_expiry = round(expiry - gone[0], 3)
            self.say(f"  {holder.host} lost the lock ({lost[-1].get('ERROR', '?')}); its app was gone "
                     f"{gone[0] - cut:.2f} s after the cut, {expiry - gone[0]:.2f} s before its lease could expire")
            if gone[0] >= expiry:
                self.problem(f"{holder.host}'s app ran until its lease could have expired")
        elif gone and self.spec.timer is not None:
            # A job's run may simply end while cut off: nothing to stop, its lease runs out on the server.
            self.say(f"  {holder.host}'s run ended by itself {gone[0] - cut:.2f} s after the cut, before the "
                     "lock could be lost (no lost-lock entry); its lease runs out on the server")
        else:
            self.problem(f"{holder.host} logged no lost-lock entry (MESSAGE_ID={MESSAGE_ID_FLEET_LOST})")
        if new is not None:
            handover.to_host, handover.to_token, handover.seconds = new.host, new.token, round(new.at - cut, 3)
            self.say(f"  takeover: {new.host} holds it {new.at - cut:.2f} s after the cut, fencing token {new.token} "
                     f"(> {holder.token}); the bound is ttl + 1 s = {ttl + 1} s")
            if gone and new.at <= gone[0]:
                self.problem(f"{new.host} took the lock while {holder.host}'s app was still running")
        if lost:
            self.launcher_end(old, cut)
        self.network.heal(old.number)
        self.say(f"healed {holder.host}'s link" + (": its service restarts as a contender (exit 76 is not final)"
                                                   if lost and self.spec.timer is None else ""))
        return new

    def launcher_end(self, old: _Host, after: float) -> None:
        """How the cut-off holder's launcher ended, as systemd logged it: exit 76 (the lock was lost)."""
        ends: list[str] = []

        def ended() -> bool:
            messages = [e.get("MESSAGE", "") for e in old.sandbox.journal(unit=self.unit)
                        if int(e["__MONOTONIC_TIMESTAMP"]) / 1e6 > after]
            ends[:] = [m for m in messages if "Main process exited" in m or "Watchdog timeout" in m]
            return bool(ends)

        if not self.wait_until(f"{old.name}'s launcher to end", self.spec.lock.ttl + 5, ended):
            return
        self.say(f"  systemd on {old.name}: {ends[0]}")
        if f"status={EXIT_FLEET_LOST}/" not in ends[0]:
            self.problem(f"{old.name}'s launcher did not end with exit status {EXIT_FLEET_LOST} (lock lost)")

    def stop(self, holder: _Acquired) -> None:
        old = self.host(holder.host)
        if not self.app_processes(old):  # a service's app, or a job's run (its unit still activating)
            self.say(f"{holder.host}'s app is no longer running: no stop to show")
            return
        stopped = time.monotonic()  # before: a waiting host takes over while `systemctl stop` still runs
        old.sandbox.systemctl("stop", self.unit)
        self.say(f"systemctl stop {self.unit} on {holder.host}: the launcher revokes its lease")
        new = self.takeover([h for h in self.hosts if h is not old], stopped, holder.token, self.spec.lock.ttl + 10)
        handover = Handover("stop", holder.host, holder.token)
        self.report.handovers.append(handover)
        if new is not None:
            handover.to_host, handover.to_token, handover.seconds = new.host, new.token, round(new.at - stopped, 3)
            self.say(f"  handover: {new.host} holds it {new.at - stopped:.2f} s after the stop, token {new.token}")

    def finish(self) -> None:
        """Every host's state and fleet journal entries."""
        matches = [m for mid in FLEET_MESSAGE_IDS for m in (f"MESSAGE_ID={mid}", "+")][:-1]
        self.say("journal, fleet entries of each host:")
        for host in self.hosts:
            props = self.props(host)
            r = host.report
            r.state, r.sub_state, r.result = props["ActiveState"], props["SubState"], props["Result"]
            r.exit_status = int(props["ExecMainStatus"]) if props["ExecMainStatus"].lstrip("-").isdigit() else None
            argv = ["journalctl", "--no-pager", "-o", "short-monotonic", "-n", "8", *matches]
            r.journal = host.sandbox.run(argv, check=False).stdout.splitlines()
            self.say(f"  {host.name} ({self.unit} {r.state}, {r.sub_state}):")
            for line in r.journal:
                self.say(f"    {line}")
        ids = " ".join(f"MESSAGE_ID={m}" for m in FLEET_MESSAGE_IDS[:2])
        self.say(f"  query them on a host: journalctl {ids} (taken, lost)")
        tokens = [a.token for a in self.acquisitions()]
        if tokens != sorted(set(tokens)):
            self.problem(f"fencing tokens not strictly increasing: {tokens}")


def try_fleet(spec: Spec, staging: Path, options: FleetOptions, say: Print = print,
              report: FleetReport | None = None) -> int:
    """Returns the exit code; `report`, when given, receives what was seen (for --json)."""
    check_fleet(spec, options.hosts)
    report = report if report is not None else FleetReport()
    trial = _Trial(spec, staging, options, say, report)
    with _terminate_like_interrupt(), contextlib.ExitStack() as stack:
        try:
            trial.set_up(stack)
            trial.start_all()
            holder = trial.first_holder()
            if holder is None:
                trial.problem("no host took the fleet lock")
            else:
                refused = [h for h in trial.hosts if h.report.role == "unknown"]
                for h in refused:
                    trial.problem(f"{h.name} neither holds, nor was refused (exit 17), nor waits")
                new = trial.partition(holder)
                trial.stop(new if new is not None else holder)
            trial.finish()
        finally:
            with _uninterrupted():
                stack.close()
        say("tore down the hosts, etcd and the bridge")
    report.ok = not report.problems and report.holder is not None
    if not report.ok:
        say("ERROR the fleet trial found problems: " + "; ".join(report.problems))
    return 0 if report.ok else 1
