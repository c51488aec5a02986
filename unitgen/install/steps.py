"""The systemd steps around the files, as the packages' maintainer scripts run them.

Live (the root is `/` and a systemd runs it: /run/systemd/system exists, as the deb scripts
test): systemd-sysusers, systemd-tmpfiles --create, the journal catalog rebuilt, the bytecode
compiled, daemon-reload, enable, then start (a first install, unless start_on_install = false)
or restart (an upgrade of a running or startable service). Uninstall: stop, disable, bytecode
removed, the catalog rebuilt, then daemon-reload.

Offline (--root DIR, or no running systemd: an image build, a chroot), like a package installed
with DPKG_ROOT: sysusers, tmpfiles, the catalog and enable with `--root`, which work on files alone; no
daemon-reload, start or stop, and no bytecode (compiling would run the image's interpreter;
the launcher works without it, a few milliseconds slower to start).

No command runs without a bound (`timeouts`): one that outlives it is killed, with its process
group, and `StepTimeoutError` says which, after how long, and what the install or uninstall leaves
at that point (`Steps.left`, which `apply` sets as it goes).
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from unitgen.errors import UnitgenError
from unitgen.install import timeouts
from unitgen.install.timeouts import Bound
from unitgen.run import run

Say = Callable[[str], None]


def live_systemd(root: Path) -> bool:
    return root.resolve() == Path("/") and Path("/run/systemd/system").is_dir()


class StepTimeoutError(UnitgenError):
    """A command ran longer than its bound and was killed."""

    def __init__(self, argv: Sequence[str], bound: Bound, left: str, unit: str) -> None:
        super().__init__(
            f"{shlex.join(argv)} timed out after {bound.seconds:g} s ({bound.why}) and was killed; {left}",
            hint=f"is systemd answering? 'systemctl status {unit}' and 'journalctl -u {unit}' show what it"
            " waits for; once it is done, run the same unitgen command again, with --timeout SECONDS"
            " if it needs longer",
        )
        self.argv = list(argv)
        self.bound = bound


@dataclass
class Steps:
    root: Path
    live: bool
    say: Say
    service: str  # the unit the hints name
    timeout: float | None = None  # --timeout: replaces every bound
    left: str = ""  # what a timeout leaves at this point, for the message: set by `apply` as it goes
    done: list[str] = field(default_factory=list)  # each command run, for the report

    def _run(self, argv: Sequence[str], *, check: bool = True, bound: Bound | None = None) -> bool:
        return self._output(argv, check=check, bound=bound).returncode == 0

    def _output(
        self, argv: Sequence[str], *, check: bool = True, bound: Bound | None = None, record: bool = True
    ) -> subprocess.CompletedProcess[str]:
        if record:
            self.done.append(" ".join(argv))
            self.say("+ " + " ".join(argv))
        bound = bound or timeouts.fixed(self.timeout)
        try:
            return run(list(argv), check=check, timeout=bound.seconds)
        except subprocess.TimeoutExpired:
            # unitgen.run killed the command's whole process group already.
            unit = next((a for a in argv if a.endswith(".service")), self.service)
            raise StepTimeoutError(argv, bound, self.left, unit) from None

    def _job(self, verb: str, units: Sequence[str]) -> Bound:
        return timeouts.for_job(self.root, verb, units, self.timeout)

    def _root_opt(self) -> list[str]:
        return [] if self.live else [f"--root={self.root}"]

    def sysusers(self, confs: Sequence[str]) -> None:
        if confs:
            self._run(["systemd-sysusers", *self._root_opt(), *confs])

    def tmpfiles(self, confs: Sequence[str]) -> None:
        if confs:
            # Like the postinst: a line it cannot apply must not fail the install (`|| true`).
            self._run(["systemd-tmpfiles", *self._root_opt(), "--create", *confs], check=False)

    def update_catalog(self) -> None:
        """Rebuild journalctl's catalog database from /usr/lib/systemd/catalog, as Debian's
        systemd trigger and the rpm's %post/%postun do, so `journalctl -x` explains the
        launcher's entries; like theirs, a failure does not fail the install."""
        self._run(["journalctl", *self._root_opt(), "--update-catalog"], check=False)

    def commands(self, argvs: Sequence[Sequence[str]]) -> None:
        """The bytecode compile/clean-up commands (absolute paths on the target): live only."""
        if self.live:
            for argv in argvs:
                self._run(argv, bound=timeouts.fixed(self.timeout, timeouts.COMPILE, "unitgen's bound for compiling"))

    def daemon_reload(self) -> None:
        if self.live:
            self._run(["systemctl", "daemon-reload"])

    def enable(self, units: Sequence[str]) -> None:
        if units:
            self._run(["systemctl", *self._root_opt(), "--quiet", "enable", *units])

    def disable(self, units: Sequence[str]) -> None:
        if units:
            self._run(["systemctl", *self._root_opt(), "--quiet", "disable", *units], check=False)

    def start(self, units: Sequence[str], *, restart: bool, only_running: bool = False) -> None:
        """Start (or restart) and wait for it: a Type=notify service is up when this returns."""
        if not self.live or not units:
            return
        verb = "try-restart" if only_running else "restart" if restart else "start"
        if not self._run(["systemctl", verb, *units], check=False, bound=self._job(verb, units)):
            raise UnitgenError(
                f"installed, but {' '.join(units)} did not {verb.removeprefix('try-')}",
                hint=f"journalctl -u {units[0]} says why; 'unitgen uninstall' removes it again",
            )

    def stop(self, units: Sequence[str]) -> None:
        if self.live and units:
            self._run(["systemctl", "stop", *units], check=False, bound=self._job("stop", units))

    def active_state(self, unit: str) -> str:
        """ActiveState= of `unit`, for the report: not a step, so not listed in `done`."""
        argv = ["systemctl", "show", "-p", "ActiveState", "--value", unit]
        return self._output(argv, check=False, record=False).stdout.strip()
