"""Benchmark the fleet lock (issue 13) against `etcdctl lock` on one real 3-member etcd. Not a test.

    .venv/bin/python bench/bench_fleet.py [--runs N] [--handovers N] [--ttl S] [--python /usr/bin/python3]
                                          [--variants launcher,guard,...]

Started in one run on the same cluster, on the same lock KEY, interleaved (one run of each variant in turn,
after a warm-up run of each), so that load hits all alike; whole processes, spawn to exit:
  etcdctl    `etcdctl --endpoints E lock KEY /usr/bin/touch MARK` (Go: session, lock, run, unlock)
  fleet      `python3 -I -S prog` where prog is unitgen/launcher/fleet.py's source with a short main appended
             (the deployed launcher inlines the module the same way, so it is compiled on every start):
             acquire, posix_spawn /usr/bin/touch MARK, wait, release
  fleet-pyc  the same main as a script that imports fleet as a module from its own directory, with
             its __pycache__ written by the warm-up run: what a launcher that ships the lock as a module
             (and its .pyc) would pay; the difference to `fleet` is compiling ~700 lines (~4 ms)
  launcher   the real thing: a stub rendered by unitgen (lock.scope = "fleet") and its three modules, their
             bytecode compiled as the package's postinst does, lock file in a scratch directory: the fcntl
             lock, the fleet lock and its journal entry, fork and exec of touch MARK, wait, release
  guard      the launcher's own fleet path with .pyc files: runtime, fleet and fleet_guard imported from one
             directory, Guard(..., log=runtime.log).acquire() (journal entry included, to a socket this
             process drains), then run_exec(touch MARK): fork, PDEATHSIG, exec, wait, stop leftovers, release
Measured per run: spawn -> app running (MARK's mtime, both read the same CLOCK_REALTIME) and spawn -> exit.
Issue 13 target: the launcher's median (app running) at most 1.0x etcdctl's; --runs 100 on a busy machine.

Then the handover latency after kill -9: a holder process (fleet lock, TTL S) is killed; a waiter in this
process measures kill -> acquired, N times. The floor is the TTL (the lease must expire on the server;
etcd checks expiries every 500 ms).

As root, also after a partition: the holder runs in a network namespace of its own (tests.etcd_cluster.Netns)
whose link is taken down; measured: cut -> the holder's on_lost, cut -> the other side acquired, and the
safety gap between the two (the old holder gave up that long before anyone else could hold the lock).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))

from tests.etcd_cluster import ETCDCTL, EtcdCluster, Netns, start_cluster  # noqa: E402
from unitgen.launcher.fleet import FleetLock  # noqa: E402

# Every variant takes the same lock (etcdctl lock KEY and the launcher's fleet_key interoperate): runs
# are sequential, so nobody waits, and each pays for the same etcd work on the same keys' range.
KEY = "/bench/lock"

MAIN = '''

def _bench_main() -> None:
    import sys
    endpoints, prefix, mark = sys.argv[1].split(","), sys.argv[2], sys.argv[3]
    lock = FleetLock(endpoints, prefix, 10)
    lock.acquire(wait=True)
    pid = os.posix_spawn("/usr/bin/touch", ["touch", mark], os.environ)
    os.waitpid(pid, 0)
    lock.release()


_bench_main()
'''


GUARD_MAIN = '''
import os, sys
sys.path.insert(0, sys.argv[4])
import unitgen_fleet_guard as fleet_guard, unitgen_launcher as runtime
guard = fleet_guard.Guard("bench", sys.argv[1].split(","), sys.argv[2], 10, log=runtime.log, notify=runtime.notify)
if guard.acquire("wait") >= 0:
    raise SystemExit(1)
raise SystemExit(guard.run_exec(["/usr/bin/touch", sys.argv[3]], os.environ))
'''


def deployed_launcher(work: Path, endpoints: list[str], python: str) -> Path:
    """The launcher as a package installs it (stub + modules + bytecode), for a fleet-locked service."""
    from unitgen.launcher.fleet_guard import DEPLOYED_NAMES
    from unitgen.launcher.script import compile_argv, launcher_source, render_launcher

    libexec, run = work / "libexec", work / "run"
    libexec.mkdir(mode=0o755)
    run.mkdir(mode=0o755)
    (libexec / "unitgen_launcher.py").write_text(launcher_source())
    for module, name in DEPLOYED_NAMES.items():
        (libexec / f"{name}.py").write_text((ROOT / "unitgen" / "launcher" / f"{module}.py").read_text())
    settings = {"name": "bench", "mode": "exec", "argv": ["/usr/bin/true"], "entry": None,
                "lock_file": str(run / "bench.pid"), "ready": "immediate", "ready_timeout_sec": 5.0,
                # "exit": "wait" takes the local lock from a thread (threading costs ~4 ms); runs here are
                # sequential, so nothing contends
                "on_contention": "exit", "wait_timeout_sec": None, "oneshot": False, "user": None,
                "fleet_etcd": endpoints, "fleet_key": KEY, "fleet_ttl": 10}
    stub = libexec / "bench-launcher"
    stub.write_text(render_launcher(settings, python=python))  # type: ignore[arg-type]
    stub.chmod(0o755)
    subprocess.run([*compile_argv(python, str(libexec)), *(str(p) for p in libexec.glob("unitgen_fleet_*.py"))],
                   check=True)
    return stub


def journal_sink(work: Path) -> Path:
    """A datagram socket standing in for journald (the guard logs each acquisition), drained by a thread."""
    import socket
    import threading

    path = work / "journal.sock"
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(str(path))

    def drain() -> None:
        while True:
            sink.recv(65536)

    threading.Thread(target=drain, daemon=True).start()
    return path


def one_run(argv: list[str], mark: Path) -> tuple[float, float]:
    """(spawn -> app running, spawn -> exit) in ms."""
    mark.unlink(missing_ok=True)
    began = time.time_ns()
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    ended = time.time_ns()
    return (mark.stat().st_mtime_ns - began) / 1e6, (ended - began) / 1e6


def startup(cluster: EtcdCluster, work: Path, runs: int, python: str, only: list[str]) -> None:
    prog = work / "fleet_prog.py"
    prog.write_text((ROOT / "unitgen" / "launcher" / "fleet.py").read_text() + MAIN)
    module_dir = work / "module"
    module_dir.mkdir()
    (module_dir / "fleet.py").write_text((ROOT / "unitgen" / "launcher" / "fleet.py").read_text())
    stub = work / "fleet_stub.py"
    header = f"import os, sys\nsys.path.insert(0, {str(module_dir)!r})\nfrom fleet import FleetLock\n"
    stub.write_text(header + MAIN)
    for module, name in {"runtime": "unitgen_launcher", "fleet": "unitgen_fleet_lock",
                         "fleet_guard": "unitgen_fleet_guard"}.items():
        (module_dir / f"{name}.py").write_text((ROOT / "unitgen" / "launcher" / f"{module}.py").read_text())
    guard_stub = work / "guard_stub.py"
    guard_stub.write_text(GUARD_MAIN)
    launcher = deployed_launcher(work, cluster.endpoints, python)
    os.environ["UNITGEN_JOURNAL_SOCKET"] = str(journal_sink(work))
    mark = work / "mark"
    eps = ",".join(cluster.endpoints)
    variants = {
        "etcdctl": [ETCDCTL, "--endpoints", eps, "lock", KEY, "/usr/bin/touch", str(mark)],
        "fleet": [python, "-I", "-S", str(prog), eps, KEY, str(mark)],
        "fleet-pyc": [python, "-I", "-S", str(stub), eps, KEY, str(mark)],
        "guard": [python, "-I", "-S", str(guard_stub), eps, KEY, str(mark), str(module_dir)],
        "launcher": [str(launcher), "--", "/usr/bin/touch", str(mark)],
    }
    if only:  # etcdctl, the floor, always runs
        variants = {name: argv for name, argv in variants.items() if name == "etcdctl" or name in only}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for argv in variants.values():  # warm-up: page cache, etcd's first requests
        one_run(argv, mark)
    for _ in range(runs):
        for name, argv in variants.items():
            results[name].append(one_run(argv, mark))
    print(f"start-up, {runs} interleaved runs each (ms: median [p10 .. p90])")
    medians = {}
    for name, rows in results.items():
        for column, label in ((0, "app running"), (1, "exit")):
            values = sorted(r[column] for r in rows)
            med = statistics.median(values)
            medians[name, column] = med
            p10, p90 = values[len(values) // 10], values[(len(values) * 9) // 10]
            print(f"  {name:9} spawn -> {label:12} {med:7.1f}  [{p10:6.1f} .. {p90:6.1f}]")
    for name in [n for n in ("fleet", "fleet-pyc", "guard", "launcher") if n in variants]:
        for column, label in ((0, "app running"), (1, "exit")):
            ratio = medians[name, column] / medians["etcdctl", column]
            print(f"  ratio {name}/etcdctl ({label}): {ratio:.2f}x")


def handover(cluster: EtcdCluster, count: int, ttl: int) -> None:
    latencies = []
    for i in range(count):
        prefix = f"/bench/handover/{i}"
        holder = subprocess.Popen(
            [sys.executable, "-m", "tests.etcd_cluster", "hold", ",".join(cluster.endpoints), prefix, str(ttl)],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().startswith("token ")
            time.sleep(ttl / 3 * (i % 3) / 2)  # vary the kill's phase within the renewal period
            waiter = FleetLock(cluster.endpoints, prefix, ttl)
            killed = time.monotonic()
            holder.send_signal(signal.SIGKILL)
            waiter.acquire(wait=True, deadline=killed + ttl + 10)
            latencies.append(time.monotonic() - killed)
            waiter.release()
        finally:
            if holder.poll() is None:
                holder.kill()
            holder.wait()
            if holder.stdout is not None:
                holder.stdout.close()
    values = sorted(latencies)
    print(f"handover after kill -9, ttl {ttl} s, {count} runs (s): min {values[0]:.2f}  "
          f"median {statistics.median(values):.2f}  p90 {values[(len(values) * 9) // 10]:.2f}  max {values[-1]:.2f}"
          f"  (max - ttl: {values[-1] - ttl:+.2f})")


def summary(values: list[float]) -> str:
    v = sorted(values)
    return (f"min {v[0]:.2f}  median {statistics.median(v):.2f}  p90 {v[(len(v) * 9) // 10]:.2f}  "
            f"max {v[-1]:.2f}")


def partition_handover(cluster: EtcdCluster, netns: Netns, count: int, ttl: int) -> None:
    gave_up, took_over, gaps = [], [], []
    for i in range(count):
        prefix = f"/bench/partition/{i}"
        holder = subprocess.Popen(
            netns.argv(sys.executable, "-m", "tests.etcd_cluster", "hold", ",".join(cluster.endpoints_at()),
                       prefix, str(ttl)),
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().startswith("token ")
            time.sleep(ttl / 3 * (i % 3) / 2)
            waiter = FleetLock(cluster.endpoints, prefix, ttl)
            netns.partition()
            cut = time.monotonic()
            waiter.acquire(wait=True, deadline=cut + ttl + 10)
            acquired = time.monotonic()
            waiter.release()
            out, _ = holder.communicate(timeout=10)
            lost = next(float(line.split()[1]) for line in out.splitlines() if line.startswith("lost "))
            gave_up.append(lost - cut)
            took_over.append(acquired - cut)
            gaps.append(acquired - lost)
        finally:
            netns.heal()
            if holder.poll() is None:
                holder.kill()
            holder.wait()
    print(f"partition, ttl {ttl} s, {count} runs (s): cut -> holder gave up: {summary(gave_up)}")
    print(f"  cut -> other side acquired: {summary(took_over)}")
    print(f"  holder gave up before the takeover by: {summary(gaps)}  (never negative = never two holders)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--handovers", type=int, default=10)
    parser.add_argument("--ttl", type=int, default=2)
    parser.add_argument("--python", default="/usr/bin/python3")
    parser.add_argument("--variants", default="", help="comma-separated variants besides etcdctl (default: all)")
    args = parser.parse_args()
    netns = Netns("bench") if os.geteuid() == 0 else None
    try:
        with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
            work = Path(tmp)
            cluster = start_cluster(work / "etcd", extra_address=netns.host_address if netns else None)
            try:
                print(f"etcd {cluster.endpoints}, python {args.python}, pid {os.getpid()}")
                startup(cluster, work, args.runs, args.python, [v for v in args.variants.split(",") if v])
                handover(cluster, args.handovers, args.ttl)
                if netns is not None:
                    partition_handover(cluster, netns, args.handovers, args.ttl)
                else:
                    print("partition: skipped (needs root for a network namespace)")
            finally:
                cluster.stop_all()
    finally:
        if netns is not None:
            netns.delete()


if __name__ == "__main__":
    main()
