"""`unitgen check`: ask systemd itself about what `render` produced.

`systemd-analyze verify` must print nothing; `systemd-analyze security --offline=true`
gives the exposure score. The launcher is not installed yet when we check a staging tree,
so the units are verified from a scratch copy whose /usr/libexec/NAME/ paths point into the
staging tree: verify then checks the very launcher that will be installed, and nothing else
in the unit differs.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from unitgen.errors import UnitgenError
from unitgen.render.units import UNIT_DIR
from unitgen.run import run

_SCORE = re.compile(r"Overall exposure level for \S+: ([0-9.]+) (\S+)")


@dataclass(frozen=True)
class CheckReport:
    units: list[str]
    verify_output: str
    score: float
    verdict: str  # systemd's word: SAFE, OK, MEDIUM, EXPOSED, UNSAFE
    threshold: float
    within: bool  # systemd-analyze security --threshold's own verdict

    @property
    def score_ok(self) -> bool:
        return self.within and self.score <= self.threshold

    @property
    def ok(self) -> bool:
        return not self.verify_output and self.score_ok

    def problems(self, name: str) -> list[str]:
        """One line per failed check, for the user (empty when `ok`)."""
        problems = []
        if self.verify_output:
            problems.append(f"systemd-analyze verify reports problems in the units of {name} (shown above)")
        if not self.score_ok:
            problems.append(
                f"{name}.service: exposure score {self.score:.1f} is over the threshold {self.threshold:.1f}"
            )
        return problems


def _scratch_units(staging: Path, name: str, scratch: Path) -> list[Path]:
    unit_dir = staging / UNIT_DIR
    # NAME.service, or NAME@.service and friends for a template (issue 14); never NAME@a.service.d/.
    patterns = (f"{name}.*", f"{name}@.*")
    units = sorted(p for pattern in patterns for p in unit_dir.glob(pattern)) if unit_dir.is_dir() else []
    if not units:
        raise UnitgenError(f"{unit_dir}: no units named {name}.*", hint=f"run 'unitgen render {name}' first")
    copies = []
    for unit in units:
        text = unit.read_text(encoding="utf-8")
        copy = scratch / unit.name
        copy.write_text(text.replace(f"/usr/libexec/{name}/", f"{staging}/usr/libexec/{name}/"), encoding="utf-8")
        copies.append(copy)
    return copies


def _scratch_env(scratch: Path) -> dict[str, str]:
    # A trailing ':' keeps systemd's own search path after ours (targets, sockets...).
    return {**os.environ, "SYSTEMD_UNIT_PATH": f"{scratch}:"}


def verify(staging: Path, name: str) -> str:
    """What `systemd-analyze verify` says about the units (empty: nothing to complain about)."""
    return verify_many([(staging, name)])[name]


def verify_many(trees: Sequence[tuple[Path, str]]) -> dict[str, str]:
    """`verify` for several services (see `check_many`)."""
    with tempfile.TemporaryDirectory(prefix="unitgen-check.") as tmp:
        scratch = Path(tmp)
        units = {name: _scratch_units(staging.absolute(), name, scratch) for staging, name in trees}
        return _verify_each(units, scratch, [staging for staging, _ in trees])


def _verify_each(units: dict[str, list[Path]], scratch: Path, stagings: Sequence[Path]) -> dict[str, str]:
    # One `systemd-analyze verify` for every unit: each call loads systemd's whole unit search
    # path, which is most of its time. Only when that call complains is each service verified
    # alone, to say whose units the complaint is about.
    together = _verify(sorted(u for us in units.values() for u in us), scratch, stagings)
    if not together or len(units) == 1:
        return dict.fromkeys(units, together)
    return {name: _verify(own, scratch, stagings) for name, own in units.items()}


def _verify(units: Sequence[Path], scratch: Path, stagings: Sequence[Path]) -> str:
    result = run(["systemd-analyze", "verify", *units], check=False, env=_scratch_env(scratch))
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0 and not output:
        output = f"systemd-analyze verify exited with {result.returncode}"
    output = output.replace(str(scratch) + "/", "")
    for staging in stagings:
        output = output.replace(str(staging.absolute()), "")
    return output


def security(staging: Path, name: str, threshold: float = 10.0) -> tuple[float, str, bool]:
    """The exposure score, systemd's verdict word for NAME.service, and whether systemd-analyze
    itself finds it within `threshold` (its --threshold counts in tenths: 1.5 is 15)."""
    with tempfile.TemporaryDirectory(prefix="unitgen-check.") as tmp:
        scratch = Path(tmp)
        _scratch_units(staging.absolute(), name, scratch)
        return _security(scratch, name, threshold)


def _security(scratch: Path, name: str, threshold: float) -> tuple[float, str, bool]:
    argv = [
        "systemd-analyze",
        "security",
        "--offline=true",
        f"--threshold={round(threshold * 10)}",
        "--no-pager",
        str(next((p for p in (scratch / f"{name}.service", scratch / f"{name}@.service") if p.exists()),
                 scratch / f"{name}.service")),
    ]
    result = run(argv, check=False, env=_scratch_env(scratch))
    match = _SCORE.search(result.stdout + result.stderr)
    if match is None:
        raise UnitgenError("systemd-analyze security printed no score:\n" + (result.stdout + result.stderr))
    return float(match.group(1)), match.group(2), result.returncode == 0


def check(staging: Path, name: str, *, threshold: float) -> CheckReport:
    return check_many([(staging, name, threshold)])[0]


def check_many(trees: Sequence[tuple[Path, str, float]]) -> list[CheckReport]:
    """`check` for several services from one scratch copy of their units: one verify call for all
    of them, and one security call per service (it scores one unit per call), several at a time:
    each is a process of its own, mostly loading systemd's unit path, so they use every core."""
    stagings = [staging.absolute() for staging, _, _ in trees]
    with tempfile.TemporaryDirectory(prefix="unitgen-check.") as tmp:
        scratch = Path(tmp)
        units = {
            name: _scratch_units(staging, name, scratch) for staging, (_, name, _) in zip(stagings, trees, strict=True)
        }
        verified = _verify_each(units, scratch, stagings)
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            scores = list(pool.map(lambda t: _security(scratch, t[1], t[2]), trees))
    return [
        CheckReport(
            units=[unit.name for unit in units[name]],
            verify_output=verified[name],
            score=score,
            verdict=verdict,
            threshold=threshold,
            within=within,
        )
        for (_, name, threshold), (score, verdict, within) in zip(trees, scores, strict=True)
    ]
