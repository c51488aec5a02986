"""Benchmark N instances of one rendered template against N plain units (issue 14). Not a test.

    .venv/bin/python bench/bench_instances.py [--count 500] [--rounds 2]

Everything runs in one sandboxed real systemd (unitgen.sandbox, as root), never on the host:
  many@.service    rendered by unitgen from a spec with `instances`: the launcher takes
                   /run/many/INSTANCE.pid, sends READY=1 (Type=notify, ready = immediate) and
                   execs the program (exec mode)
  manypy@.service  the same in python mode: the lock in a thread, site, READY=1, the entry
                   _signal:pause called
and three floors, each the rendered many@.service with only ExecStart=, Type= and the
RuntimeDirectory= name changed (hardening, DynamicUser=, RuntimeDirectoryPreserve=, environment
unchanged), so a ratio is what the launcher adds, not what sandboxing costs:
  floor@.service   the issue's floor: Type=simple, ExecStart= the program itself. No lock, no
                   READY=1, and systemd counts it active at fork: it does less work than ours
  floorn@.service  the honest floor for exec mode: Type=notify, `python3 -I -S` running
                   floors.FLOOR_READY (the one bench_launcher.py uses): the same fcntl lock on
                   /run/floorn/INSTANCE.pid, the PID written, READY=1 with the same STATUS= to
                   $NOTIFY_SOCKET, then exec of the same program
  floorpy@.service the honest floor for python mode: Type=notify, `python3 -I` (site loaded, as
                   the launcher loads it for the app) running floors.FLOOR_PYTHON: the lock in a
                   thread, the PID, READY=1, then pause (the app _signal:pause)
The program: `python3 -I -c CODE INSTANCE`, which marks itself up in $RUNTIME_DIRECTORY and pauses.

Per variant and round: `systemctl start` of all N instances in one call, timed until it returns
("all active": a Type=notify unit once its READY=1 came, Type=simple once forked; checked right
after: all N ActiveState=active), and until all N programs run (their .up files; python mode and
its floor: no program, so the same as all active); every lock held by its own MainPID
(/proc/locks), no contention and no lock-error journal entries. PSS: the sum of
/proc/PID/smaps_rollup Pss over the N main processes, divided by N; CPU: their utime + stime
(/proc/PID/stat: systemd's set-up of the process after fork, the hardening, included), divided
by N. Then all are stopped.
Rounds alternate the order of the variants (forward, then backward, ...); medians are reported,
with each mode's ratio against the issue's floor and against its honest floor.
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

from floors import FLOOR_PYTHON, FLOOR_READY  # noqa: E402  # bench/ is sys.path[0] when run as a script

from tests.e2e_helpers import LOCK_HOLDERS  # noqa: E402
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
import json, os, subprocess, sys
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
pss = cpu = 0
for pid in pids:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        pss += next(int(l.split()[1]) for l in f if l.startswith("Pss:"))
    with open(f"/proc/{pid}/stat") as f:  # utime and stime, after the command name in parentheses
        cpu += sum(int(t) for t in f.read().rsplit(")", 1)[1].split()[11:13])
""" + LOCK_HOLDERS + r"""
locks_ok = None
if lockdir:
    locks_ok = sum(1 for i, u in enumerate(units, 1)
                   if holders.get(os.stat(f"{lockdir}/{i}.pid").st_ino) == int(state[u]["MainPID"]))
cpu_ms = cpu * 1000 / os.sysconf("SC_CLK_TCK") / n
print(json.dumps({"active": active, "pss_kib": pss / n, "cpu_ms": cpu_ms, "locks_ok": locks_ok}))
"""


def spec_raw(mode: str) -> dict[str, object]:
    raw: dict[str, object] = {"description": "Many", "instances": ["1"], "stop_timeout": 5,
                              "start_limit_burst": 1000}  # fmt: skip
    if mode == "exec":
        raw["exec"] = PROGRAM
    else:
        raw["entry"] = "_signal:pause"
    return raw


# The variants: unit prefix (also its RuntimeDirectory= name), and the floor each mode is held to.
PREFIX = {"floor": "floor", "floorn": "floorn", "exec": "many", "floorpy": "floorpy", "python": "manypy"}
VARIANTS = ("floor", "floorn", "exec", "floorpy", "python")
RATIOS = {"exec": ("floor", "floorn"), "python": ("floor", "floorpy")}
FLOOR_DIR = "/usr/libexec/unitgen-bench"  # the floor programs, root's and read-only as the launcher's


def floor_unit(template: str, prefix: str, unit_type: str, exec_start: str) -> str:
    """The rendered many@.service with the launcher taken out: `unit_type` running `exec_start`."""
    out = []
    for line in template.splitlines():
        if line.startswith("Type="):
            line = f"Type={unit_type}"
        elif line.startswith("NotifyAccess=") and unit_type == "simple":
            continue
        elif line.startswith("ExecStart="):
            line = f"ExecStart={exec_start}"
        elif line.startswith("RuntimeDirectory="):
            line = f"RuntimeDirectory={prefix}"
        out.append(line)
    return "\n".join(out) + "\n"


def floor_units(template: str) -> dict[str, str]:
    """floor@, floorn@ and floorpy@.service from the rendered many@.service."""
    program = template.split("\nExecStart=", 1)[1].split("\n", 1)[0].split(" -- ", 1)[1]  # as unit syntax
    python = "/usr/bin/python3"
    return {
        "floor": floor_unit(template, "floor", "simple", program),
        "floorn": floor_unit(
            template, "floorn", "notify",
            f'{python} -I -S {FLOOR_DIR}/floor_ready.py /run/floorn/%i.pid "floorn is running" {program}',
        ),
        "floorpy": floor_unit(
            template, "floorpy", "notify",
            f'{python} -I {FLOOR_DIR}/floor_python.py /run/floorpy/%i.pid "floorpy is running"',
        ),
    }  # fmt: skip


def start_all(sb: Sandbox, prefix: str, n: int) -> float:
    units = [f"{prefix}@{i}.service" for i in range(1, n + 1)]
    started = time.monotonic()
    sb.run(["systemctl", "start", *units], timeout=900)
    return time.monotonic() - started


def stop_all(sb: Sandbox, prefix: str) -> None:
    sb.run(["systemctl", "stop", f"{prefix}@*.service"], timeout=900)


def journal_count(sb: Sandbox, message_id: str) -> int:
    return len(sb.journal(f"MESSAGE_ID={message_id}"))


def measure(sb: Sandbox, variant: str, n: int) -> dict[str, float]:
    prefix = PREFIX[variant]
    sb.run(["sh", "-c", f"rm -f /run/{prefix}/*.up"])
    started = time.monotonic()
    seconds = start_all(sb, prefix, n)
    if variant in ("floor", "floorn", "exec"):  # python mode and its floor run no program
        sb.run(["/usr/bin/python3", "-I", "-c", WAIT_UP, f"/run/{prefix}", str(n)], timeout=600)
    up = time.monotonic() - started
    lockdir = "" if variant == "floor" else f"/run/{prefix}"
    result = json.loads(sb.run(["/usr/bin/python3", "-I", "-c", INSPECT, prefix, str(n), lockdir], timeout=300).stdout)
    stop_all(sb, prefix)
    row = {"seconds": seconds, "up": up, **result}
    print(f"{variant:7s} {n} instances: all active after {seconds:.2f} s, all up {up:.2f} s "
          f"({result['active']} active), "
          f"PSS {result['pss_kib'] / 1024:.2f} MiB, CPU {result['cpu_ms']:.1f} ms each, "
          f"locks held by own MainPID: {result['locks_ok']}",
          flush=True)  # fmt: skip
    if result["active"] != n or (variant != "floor" and result["locks_ok"] != n):
        raise SystemExit(f"{variant}: not all {n} instances active with their own lock: {result}")
    return row


def install(sb: Sandbox, tmp: Path) -> None:
    """many@ and manypy@ as unitgen installs them, the floors beside them, then daemon-reload."""
    for name, mode in (("many", "exec"), ("manypy", "python")):
        spec = parse_spec(spec_raw(mode), name=name, where=f"{name}.toml")
        staging = tmp / name
        write_tree(render(spec), staging)
        install_staging(sb, staging, spec)
        if mode == "exec":
            template = (staging / UNIT_DIR.lstrip("/") / "many@.service").read_text()
    sb.write_file(f"{FLOOR_DIR}/floor_ready.py", FLOOR_READY)
    sb.write_file(f"{FLOOR_DIR}/floor_python.py", FLOOR_PYTHON)
    for prefix, unit in floor_units(template).items():
        sb.write_file(f"{UNIT_DIR}/{prefix}@.service", unit)
    sb.systemctl("daemon-reload")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {variant: [] for variant in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp, Sandbox.boot("bench-instances") as sb:
        install(sb, Path(tmp))
        for variant in VARIANTS:  # warm-up: page cache, dynamic user, bytecode
            measure(sb, variant, 20)
        for round_ in range(args.rounds):
            for variant in VARIANTS if round_ % 2 == 0 else reversed(VARIANTS):
                results[variant].append(measure(sb, variant, args.count))
        errors = journal_count(sb, MESSAGE_ID_LOCK_ERROR)
        contention = journal_count(sb, MESSAGE_ID_ALREADY_RUNNING)
    median = {variant: {key: statistics.median(r[key] for r in rows) for key in ("seconds", "up", "pss_kib", "cpu_ms")}
              for variant, rows in results.items()}  # fmt: skip
    print(f"\nmedian of {args.rounds} rounds, {args.count} instances; lock errors {errors}, contention entries "
          f"{contention}")  # fmt: skip
    for variant in VARIANTS:
        m = median[variant]
        print(f"  {variant:7s} all-active {m['seconds']:6.2f} s   all-up {m['up']:6.2f} s   "
              f"PSS {m['pss_kib'] / 1024:5.2f} MiB   CPU {m['cpu_ms']:5.1f} ms")  # fmt: skip
        for floor in RATIOS.get(variant, ()):
            f = median[floor]
            print(f"      vs {floor:7s} all-active {m['seconds'] / f['seconds']:.2f}x   "
                  f"all-up {m['up'] / f['up']:.2f}x   PSS {m['pss_kib'] / f['pss_kib']:.2f}x   "
                  f"CPU {m['cpu_ms'] / f['cpu_ms']:.2f}x")  # fmt: skip
    return 0 if errors == 0 and contention == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
