"""Benchmark N instances of one rendered template against N plain units (issue 14). Not a test.

    .venv/bin/python bench/bench_instances.py [--count 500] [--rounds 2]

Everything runs in one sandboxed real systemd (unitgen.sandbox, as root), never on the host:
  many@.service   rendered by unitgen from a spec with `instances`: the launcher takes
                  /run/many/INSTANCE.pid, sends READY=1 (Type=notify, ready = immediate) and
                  execs the program (exec mode) or calls it (python mode, entry _signal:pause)
  floor@.service  the same unit with the launcher taken out: Type=simple, ExecStart= the program
                  itself, everything else (hardening, RuntimeDirectory=, user) unchanged, so the
                  ratio is what the launcher and the lock add, not what sandboxing costs
The program: `python3 -I -c "import _signal; _signal.pause()"` (exec mode and its floor); python
mode's floor is the same program (a python process that pauses).

Per variant and round: `systemctl start` of all N instances in one call, timed until it returns
(the issue's "time to all-active": Type=notify returns once each READY=1 came, Type=simple once each
process was forked), then checked: all N active; for many@: every /run/many/I.pid locked by its
own MainPID (/proc/locks), no contention and no lock-error journal entries. PSS: the sum of
/proc/PID/smaps_rollup Pss over the N main processes, divided by N. Then all are stopped.
Rounds alternate the variants (floor, exec, python, then python, exec, floor, ...).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from unitgen.launcher.runtime import MESSAGE_ID_ALREADY_RUNNING, MESSAGE_ID_LOCK_ERROR  # noqa: E402
from unitgen.render.units import render  # noqa: E402
from unitgen.sandbox import Sandbox  # noqa: E402
from unitgen.spec import parse_spec  # noqa: E402
from unitgen.staging.tree import write_tree  # noqa: E402
from unitgen.trial import install_staging  # noqa: E402

# The program marks itself up in its RuntimeDirectory= ($RUNTIME_DIRECTORY: /run/many or /run/floor),
# so that "all up" means the same for a Type=simple unit (active at fork) and a Type=notify one.
CODE = "import _signal,os,sys;open(os.environ['RUNTIME_DIRECTORY']+'/'+sys.argv[1]+'.up','w').close();_signal.pause()"
PROGRAM = ["/usr/bin/python3", "-I", "-c", CODE, "{instance}"]
# Runs inside the sandbox: waits until N instances are up (their .up files), prints nothing.
WAIT_UP = r"""
import os, sys, time
directory, n = sys.argv[1], int(sys.argv[2])
while sum(1 for f in os.listdir(directory) if f.endswith(".up")) < n:
    time.sleep(0.01)
"""
UNIT_DIR = "/usr/lib/systemd/system"

# Runs inside the sandbox: MainPID of each instance, its lock's holder, the mean PSS.
INSPECT = r"""
import json, subprocess, sys
prefix, n, lockdir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
units = [f"{prefix}@{i}.service" for i in range(1, n + 1)]
out = subprocess.run(["systemctl", "show", "-p", "Id,MainPID,ActiveState", *units], capture_output=True,
                     text=True, check=True).stdout
state, cur = {}, {}
for line in out.splitlines() + [""]:
    if not line:
        if cur:
            state[cur["Id"]] = cur
        cur = {}
        continue
    key, _, value = line.partition("=")
    cur[key] = value
active = sum(1 for u in units if state[u]["ActiveState"] == "active")
pids = [int(state[u]["MainPID"]) for u in units]
pss = 0
for pid in pids:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        pss += next(int(l.split()[1]) for l in f if l.startswith("Pss:"))
locks_ok = None
if lockdir:
    # /proc/locks, matched by inode: lslocks finds paths through /proc/PID/fd, which misses a lock
    # taken from a thread with its own fd table (python mode); the kernel still reports the PID.
    import os
    holders = {}
    with open("/proc/locks") as f:
        for line in f:
            parts = line.split()
            if "->" not in parts and parts[1] == "POSIX":
                holders[int(parts[5].rsplit(":", 1)[1])] = int(parts[4])
    locks_ok = sum(1 for i, u in enumerate(units, 1)
                   if holders.get(os.stat(f"{lockdir}/{i}.pid").st_ino) == int(state[u]["MainPID"]))
print(json.dumps({"active": active, "pss_kib": pss / n, "locks_ok": locks_ok}))
"""


def spec_raw(mode: str) -> dict[str, object]:
    raw: dict[str, object] = {"description": "Many", "instances": ["1"], "stop_timeout": 5,
                              "start_limit_burst": 1000}  # fmt: skip
    if mode == "exec":
        raw["exec"] = PROGRAM
    else:
        raw["entry"] = "_signal:pause"
    return raw


def floor_unit(template: str) -> str:
    """The rendered many@.service without the launcher: Type=simple running the program itself."""
    out = []
    for line in template.splitlines():
        if line.startswith("Type="):
            line = "Type=simple"
        elif line.startswith("NotifyAccess="):
            continue
        elif line.startswith("ExecStart="):
            line = "ExecStart=" + line.split(" -- ", 1)[1]
        elif line.startswith("RuntimeDirectory="):
            line = "RuntimeDirectory=floor"
        out.append(line)
    return "\n".join(out) + "\n"


def start_all(sb: Sandbox, prefix: str, n: int) -> float:
    units = [f"{prefix}@{i}.service" for i in range(1, n + 1)]
    started = time.monotonic()
    sb.systemctl("start", *units)
    return time.monotonic() - started


def stop_all(sb: Sandbox, prefix: str) -> None:
    sb.systemctl("stop", f"{prefix}@*.service")


def journal_count(sb: Sandbox, message_id: str) -> int:
    return len(sb.journal(f"MESSAGE_ID={message_id}"))


def measure(sb: Sandbox, variant: str, n: int) -> dict[str, float]:
    prefix = {"floor": "floor", "exec": "many", "python": "manypy"}[variant]
    sb.run(["sh", "-c", f"rm -f /run/{prefix}/*.up"])
    started = time.monotonic()
    seconds = start_all(sb, prefix, n)
    if variant != "python":  # python mode sends READY=1 right before it calls the entry (pause)
        sb.run(["/usr/bin/python3", "-I", "-c", WAIT_UP, f"/run/{prefix}", str(n)], timeout=600)
    up = time.monotonic() - started
    lockdir = "" if variant == "floor" else f"/run/{prefix}"
    result = json.loads(sb.run(["/usr/bin/python3", "-I", "-c", INSPECT, prefix, str(n), lockdir], timeout=300).stdout)
    stop_all(sb, prefix)
    row = {"seconds": seconds, "up": up, **result}
    print(f"{variant:6s} {n} instances: all active after {seconds:.2f} s, all up {up:.2f} s "
          f"({result['active']} active), "
          f"PSS {result['pss_kib'] / 1024:.2f} MiB each, locks held by own MainPID: {result['locks_ok']}",
          flush=True)  # fmt: skip
    if result["active"] != n or (variant != "floor" and result["locks_ok"] != n):
        raise SystemExit(f"{variant}: not all {n} instances active with their own lock: {result}")
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {"floor": [], "exec": [], "python": []}
    with tempfile.TemporaryDirectory() as tmp, Sandbox.boot("bench-instances") as sb:
        for name, mode in (("many", "exec"), ("manypy", "python")):
            spec = parse_spec(spec_raw(mode), name=name, where=f"{name}.toml")
            staging = Path(tmp) / name
            write_tree(render(spec), staging)
            install_staging(sb, staging, spec)
            if mode == "exec":
                template = (staging / UNIT_DIR.lstrip("/") / "many@.service").read_text()
        floor = Path(tmp) / "floor@.service"
        floor.write_text(floor_unit(template))
        sb.copy_in(floor, f"{UNIT_DIR}/floor@.service")
        sb.systemctl("daemon-reload")
        for variant in ("floor", "exec", "python"):  # warm-up: page cache, dynamic user, bytecode
            measure(sb, variant, 20)
        order = ["floor", "exec", "python"]
        for round_ in range(args.rounds):
            for variant in order if round_ % 2 == 0 else reversed(order):
                results[variant].append(measure(sb, variant, args.count))
        errors = journal_count(sb, MESSAGE_ID_LOCK_ERROR)
        contention = journal_count(sb, MESSAGE_ID_ALREADY_RUNNING)
    floor_s = statistics.median(r["seconds"] for r in results["floor"])
    floor_up = statistics.median(r["up"] for r in results["floor"])
    floor_pss = statistics.median(r["pss_kib"] for r in results["floor"])
    print(f"\nmedian of {args.rounds} rounds, {args.count} instances; lock errors {errors}, contention entries "
          f"{contention}")  # fmt: skip
    for variant in ("floor", "exec", "python"):
        secs = statistics.median(r["seconds"] for r in results[variant])
        up = statistics.median(r["up"] for r in results[variant])
        pss = statistics.median(r["pss_kib"] for r in results[variant])
        print(f"  {variant:6s} all-active {secs:6.2f} s ({secs / floor_s:.2f}x)   "
              f"all-up {up:6.2f} s ({up / floor_up:.2f}x)   "
              f"PSS {pss / 1024:6.2f} MiB ({pss / floor_pss:.2f}x)")  # fmt: skip
    return 0 if errors == 0 and contention == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
