"""Helpers for the end-to-end tests: render a spec, install it into a sandboxed systemd, look at it."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from unitgen.render.units import launcher_path, render
from unitgen.sandbox import Sandbox
from unitgen.spec import Spec, parse_spec
from unitgen.staging.tree import write_tree
from unitgen.trial import install_staging

EXAMPLES = Path(__file__).parent.parent / "examples"


# Part of a program run inside the sandbox: `holders`, inode -> PID of each POSIX lock in
# /proc/locks. Matched by inode: lslocks finds paths through /proc/PID/fd, which misses a lock taken
# from a thread with its own fd table (python mode); the kernel still reports the PID.
LOCK_HOLDERS = r"""
holders = {}
with open("/proc/locks") as f:
    for line in f:
        parts = line.split()
        if "->" not in parts and parts[1] == "POSIX":
            holders[int(parts[5].rsplit(":", 1)[1])] = int(parts[4])
"""


def example_toml(name: str, **overrides: Any) -> dict[str, Any]:
    raw = tomllib.loads((EXAMPLES / name / f"{name}.toml").read_text())
    raw.update(overrides)
    return raw


def install(sb: Sandbox, tmp_path: Path, name: str, raw: dict[str, Any]) -> Spec:
    """Render `raw` as service `name` and install it the way `unitgen try` does."""
    spec = parse_spec(raw, name=name, where=f"{name}.toml")
    staging = tmp_path / f"stage-{name}"
    write_tree(render(spec), staging)
    install_staging(sb, staging, spec)
    return spec


def launcher(spec: Spec) -> str:
    return str(launcher_path(spec))


def main_pid(sb: Sandbox, unit: str) -> int:
    return int(sb.show(unit, "MainPID")["MainPID"])


def lslocks_paths(sb: Sandbox) -> dict[str, int]:
    """lslocks' view: {path: PID} of POSIX locks (what an operator would look at)."""
    out = sb.run(["lslocks", "--noheadings", "--raw", "-o", "PID,TYPE,PATH"], check=False).stdout
    return {f[2]: int(f[0]) for f in (line.split(" ", 2) for line in out.splitlines()) if f[1] == "POSIX"}


def start_by_hand(sb: Sandbox, argv: list[str]) -> int:
    """Start a command inside the sandbox in the background, as an operator's shell would; its PID."""
    script = 'setsid "$@" </dev/null >/dev/null 2>&1 & echo $!'
    return int(sb.run(["/bin/sh", "-c", script, "sh", *argv]).stdout.strip())


def http_get(sb: Sandbox, port: int, path: str = "/") -> str:
    """One HTTP GET over the sandbox's loopback, no retries: 'STATUS BODY' or the error."""
    code = (
        "import http.client, sys\n"
        "c = http.client.HTTPConnection('127.0.0.1', int(sys.argv[1]), timeout=5)\n"
        "try:\n"
        "    c.request('GET', sys.argv[2]); r = c.getresponse(); print(r.status, r.read().decode())\n"
        "except OSError as e:\n"
        "    print('error', e)\n"
    )
    return sb.run(["/usr/bin/python3", "-c", code, str(port), path]).stdout.strip()


def notifications(sb: Sandbox, unit: str) -> list[str]:
    """sd_notify messages PID 1 received for `unit` (needs `systemd-analyze log-level debug`)."""
    marker = "Got notification message from PID "
    return [e["MESSAGE"] for e in sb.journal(f"UNIT={unit}") if marker in e.get("MESSAGE", "")]
