"""How long `install` and `uninstall` wait for each command before they kill it and say so.

systemctl waits for its job, and for an answer from PID 1 at all: a systemd that is stopped,
deadlocked or swamped would keep unitgen waiting for ever. A fixed short cap would instead cut a
legitimate slow start or stop short, so a start, restart or stop waits as long as the units
themselves allow systemd to take (their TimeoutStartSec=/TimeoutStopSec=, read from the unit files
and drop-ins on the host, as systemd reads them), plus a margin for PID 1's own work. Everything
else (daemon-reload, enable, disable, sysusers, tmpfiles, the catalog) gets systemd's own
DefaultTimeoutStartSec=. `--timeout SECONDS` replaces every bound.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

# systemd's DefaultTimeoutStartSec= and DefaultTimeoutStopSec= (systemd-system.conf(5)): what a
# unit without its own timeout gets, and how long a job of PID 1's own work can sensibly take.
SYSTEMD_DEFAULT = 90.0
# On top of the units' own timeouts: loading, forking, cgroup and D-Bus work, the final SIGKILL.
MARGIN = 30.0
# compileall over an app's venv: thousands of modules on a slow disk. Not systemd's work at all;
# bounded only so that a wedged interpreter (a hung file system) cannot hold the install for ever.
COMPILE = 600.0
# What "infinity" (or 0, the same to systemd) in a unit counts as: the longest timeout a spec
# can set. The admin asked systemd to wait without end; unitgen still ends, after a day.
LONGEST = 86400.0

# systemd.unit(5): the unit search path, highest priority first (/lib is /usr/lib, merged).
SEARCH_PATH = ("etc/systemd/system", "run/systemd/system", "usr/local/lib/systemd/system", "usr/lib/systemd/system")

# systemd.time(7) time span units, in seconds.
_SPAN_UNITS = {
    **dict.fromkeys(("usec", "us", "µs", "μs"), 1e-6),
    **dict.fromkeys(("msec", "ms"), 1e-3),
    **dict.fromkeys(("", "seconds", "second", "sec", "s"), 1.0),
    **dict.fromkeys(("minutes", "minute", "min", "m"), 60.0),
    **dict.fromkeys(("hours", "hour", "hr", "h"), 3600.0),
    **dict.fromkeys(("days", "day", "d"), 86400.0),
    **dict.fromkeys(("weeks", "week", "w"), 7 * 86400.0),
    **dict.fromkeys(("months", "month", "M"), 30.44 * 86400.0),
    **dict.fromkeys(("years", "year", "y"), 365.25 * 86400.0),
}
_SPAN_PART = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([^\d\s.]*)")


@dataclass(frozen=True)
class Bound:
    """How long one command may run, and why that long (for the error message)."""

    seconds: float
    why: str


def fixed(
    override: float | None, seconds: float = SYSTEMD_DEFAULT, why: str = "systemd's DefaultTimeoutStartSec="
) -> Bound:
    """The bound of a command that is not a job of the service's units."""
    return Bound(override, "--timeout") if override is not None else Bound(seconds, why)


def for_job(root: Path, verb: str, units: Sequence[str], override: float | None) -> Bound:
    """The bound of `systemctl VERB UNITS...` (start, restart, try-restart, stop).

    Per service: a stop takes up to TimeoutStopSec=; a start up to TimeoutStartSec= and then,
    when it times out, TimeoutStopSec= more while systemd kills what it started; a restart is a
    stop and a start. The jobs of one command run side by side: the longest counts. A .socket or
    .timer of unitgen's runs no command of its own: its job is PID 1's work, inside the margin.
    """
    if override is not None:
        return Bound(override, "--timeout")
    jobs = [(unit, _phases(verb, *service_timeouts(root, unit))) for unit in units if unit.endswith(".service")]
    if not jobs:
        return Bound(MARGIN, f"no service among {' '.join(units)}: PID 1's own work")
    unit, phases = max(jobs, key=lambda job: sum(seconds for _, seconds in job[1]))
    why = " + ".join(f"{name}{seconds:g}s" for name, seconds in phases)
    return Bound(sum(seconds for _, seconds in phases) + MARGIN, f"{unit}: {why} + {MARGIN:g}s for systemd")


def _phases(verb: str, start: float, stop: float) -> list[tuple[str, float]]:
    """What systemd may spend on one service's job, phase by phase."""
    stopping = [("TimeoutStopSec=", stop)]
    starting = [("TimeoutStartSec=", start), ("TimeoutStopSec=", stop)]
    return stopping if verb == "stop" else starting if verb == "start" else stopping + starting


def service_timeouts(root: Path, unit: str) -> tuple[float, float]:
    """(TimeoutStartSec=, TimeoutStopSec=) of `unit` under `root`, in seconds, as systemd computes
    them from the unit file and its drop-ins; "infinity" and 0 count as LONGEST."""
    start = stop = SYSTEMD_DEFAULT
    for key, value in _service_settings(_unit_files(root, unit)):
        if key not in {"TimeoutSec", "TimeoutStartSec", "TimeoutStopSec"}:
            continue
        # An empty assignment resets to the default; a value systemd cannot parse is ignored.
        seconds = SYSTEMD_DEFAULT if value == "" else parse_span(value)
        if seconds is None:
            continue
        seconds = LONGEST if seconds == 0 or seconds > LONGEST else seconds
        if key != "TimeoutStopSec":
            start = seconds
        if key != "TimeoutStartSec":
            stop = seconds
    return start, stop


def parse_span(text: str) -> float | None:
    """A systemd.time(7) time span in seconds ("90", "1min 30s", "500ms", "infinity"), None if invalid."""
    text = text.strip()
    if text == "infinity":
        return math.inf
    total, pos = 0.0, 0
    while pos < len(text):
        part = _SPAN_PART.match(text, pos)
        if part is None or part.group(2) not in _SPAN_UNITS:
            return None
        total += float(part.group(1)) * _SPAN_UNITS[part.group(2)]
        pos = part.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return total if text else None


def _unit_files(root: Path, unit: str) -> list[Path]:
    """The unit's file (the first on the search path; a template's for an instance) and then its
    drop-ins (systemd.unit(5)): every *.conf in NAME.d, TEMPLATE.d, the dash prefixes' (a-.service.d
    for a-b.service) and service.d on the search path, in the order of their file names, a name in a
    higher-priority directory masking the same name below."""
    stem, _, kind = unit.rpartition(".")
    template = f"{stem.partition('@')[0]}@.{kind}" if "@" in stem else None
    names = [n for n in (unit, template) if n]
    main = next((root / d / n for n in names for d in SEARCH_PATH if (root / d / n).is_file()), None)
    prefixes = [f"{stem[: i + 1]}.{kind}" for i, c in enumerate(stem.partition("@")[0]) if c == "-"]
    drop_ins: dict[str, Path] = {}
    for directory in reversed(SEARCH_PATH):  # lowest priority first: a higher one overwrites
        for name in (kind, *prefixes, *names):
            folder = root / directory / f"{name}.d"
            if folder.is_dir():
                drop_ins.update((conf.name, conf) for conf in folder.glob("*.conf") if conf.is_file())
    return ([main] if main else []) + [drop_ins[name] for name in sorted(drop_ins)]


def _service_settings(files: Iterable[Path]) -> list[tuple[str, str]]:
    """The (key, value) assignments of every [Service] section, in order; a line ending in a
    backslash continues on the next (systemd.syntax(7))."""
    settings: list[tuple[str, str]] = []
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue  # unreadable: systemd would not use it either
        section, pending = "", ""
        for raw in text.splitlines():
            line = pending + raw.strip()
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            pending = ""
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line.strip("[]")
            elif section == "Service" and "=" in line:
                key, _, value = line.partition("=")
                settings.append((key.strip(), value.strip()))
    return settings
