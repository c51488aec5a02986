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
from dataclasses import dataclass
from pathlib import Path

from unitgen.errors import UnitgenError
from unitgen.render import UNIT_DIR
from unitgen.run import run

_SCORE = re.compile(r"Overall exposure level for \S+: ([0-9.]+) (\S+)")


@dataclass(frozen=True)
class CheckReport:
    units: list[str]
    verify_output: str
    score: float
    verdict: str  # systemd's word: SAFE, OK, MEDIUM, EXPOSED, UNSAFE
    threshold: float

    @property
    def ok(self) -> bool:
        return not self.verify_output and self.score <= self.threshold


def _scratch_units(staging: Path, name: str, scratch: Path) -> list[Path]:
    unit_dir = staging / UNIT_DIR
    units = sorted(unit_dir.glob(f"{name}.*")) if unit_dir.is_dir() else []
    if not units:
        raise UnitgenError(f"{unit_dir}: no units named {name}.*", hint=f"run 'unitgen render {name}' first")
    copies = []
    for unit in units:
        text = unit.read_text(encoding="utf-8")
        copy = scratch / unit.name
        copy.write_text(text.replace(f"/usr/libexec/{name}/", f"{staging}/usr/libexec/{name}/"), encoding="utf-8")
        copies.append(copy)
    return copies


def check(staging: Path, name: str, *, threshold: float) -> CheckReport:
    staging = staging.absolute()
    with tempfile.TemporaryDirectory(prefix="unitgen-check.") as tmp:
        scratch = Path(tmp)
        units = _scratch_units(staging, name, scratch)
        # A trailing ':' keeps systemd's own search path after ours (targets, sockets...).
        env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{scratch}:"}
        verify = run(["systemd-analyze", "verify", *units], check=False, env=env)
        verify_output = (verify.stdout + verify.stderr).strip()
        if verify.returncode != 0 and not verify_output:
            verify_output = f"systemd-analyze verify exited with {verify.returncode}"
        service = scratch / f"{name}.service"
        security = run(
            ["systemd-analyze", "security", "--offline=true", "--no-pager", str(service)], check=False, env=env
        )
    match = _SCORE.search(security.stdout + security.stderr)
    if match is None:
        raise UnitgenError("systemd-analyze security printed no score:\n" + (security.stdout + security.stderr))
    return CheckReport(
        units=[u.name for u in units],
        verify_output=verify_output.replace(str(scratch) + "/", "").replace(str(staging), ""),
        score=float(match.group(1)),
        verdict=match.group(2),
        threshold=threshold,
    )
