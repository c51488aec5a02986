"""Benchmark the rendered launcher against honest start-up floors (issues 3 and 12). Not a test.

    .venv/bin/python bench/bench_launcher.py [--runs N] [--python /usr/bin/python3]
                                             [--journal native|systemd-python] [--idle N]

The launcher is installed as a package installs it: the stub, the module next to it and the
module's bytecode compiled as the package's postinst does (`unitgen.launcher.script.compile_argv`).

Measured in one run, interleaved so that machine load hits every variant alike. Each floor is a
standard-library `python3 -I -S` program doing the same work as the launcher path it is compared with:
  floor ready       open the lock file, F_SETLK an F_WRLCK on the whole file, write the PID, send
                    READY=1 with the same STATUS= to $NOTIFY_SOCKET, exec the app (/bin/true):
                    spawn -> READY=1 received
  launcher ready    the rendered launcher (exec mode, ready=immediate, app /bin/true):
                    spawn -> READY=1 received (issue 12 target: within 1.10x of floor ready)
  floor contention  open the lock file, F_SETLK fails, F_GETLK names the holder, read its comm, cmdline
                    and cgroup from /proc, send the same journal entry (native protocol) and STATUS=,
                    exit 17: spawn -> exit
  contention        the rendered launcher while another process holds the lock: spawn -> exit
                    (issue 12 target: within 1.15x of floor contention)
The floors use `_socket`, not `socket` (whose IntEnum set-up costs milliseconds), as the launcher does.

Memory (python mode): N idle launchers (entry `_signal:pause`, ready=immediate, each its own lock)
and N floor processes, all alive at once so shared pages are split alike; the mean PSS from
/proc/PID/smaps_rollup of each group once every process has sent READY=1:
  floor python      a plain interpreter (`python3 -I`, with site, as an app needs it) that takes
                    the lock in a thread, writes the PID, sends READY=1 and pauses
                    (issue 12 target: launcher within 1.3x)
"""

from __future__ import annotations

import argparse
import fcntl
import os
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from floors import FLOOR_PYTHON, FLOOR_READY  # noqa: E402  # bench/ is sys.path[0] when run as a script

from unitgen.launcher.runtime import EXIT_ALREADY_RUNNING, LauncherSettings  # noqa: E402
from unitgen.launcher.script import compile_argv, launcher_source, module_file, render_launcher  # noqa: E402

# The floors: what any single-instance starter must do, written as plainly as the stdlib allows
# (FLOOR_READY and FLOOR_PYTHON in floors.py, shared with bench_instances.py).
FLOOR_CONTENTION = """
import _socket, fcntl, os, struct, sys
path = os.environ["LOCK"]
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except OSError:
    pass
else:
    sys.exit("the lock was free")
flock = struct.pack("hhqqi", fcntl.F_WRLCK, 0, 0, 0, 0)
pid = struct.unpack("hhqqi", fcntl.fcntl(fd, fcntl.F_GETLK, flock))[4]
def proc(name):
    with open(f"/proc/{pid}/{name}", "rb") as f:
        return f.read().decode()
message = f"bench is already running as PID {pid} (lock {path})"
fields = [("MESSAGE", message), ("PRIORITY", "4"), ("SYSLOG_IDENTIFIER", "bench"),
          ("LOCK_HOLDER_PID", str(pid)), ("LOCK_HOLDER_COMM", proc("comm").strip()),
          ("LOCK_HOLDER_CMDLINE", proc("cmdline").rstrip("\\0").replace("\\0", " ")),
          ("LOCK_HOLDER_CGROUP", proc("cgroup").strip()),
          ("MESSAGE_ID", "0f650170d0fd470bbe7f3aa2ef8e12e7"), ("LOCK_PATH", path),
          ("LOCK_CONTENTION_ACTION", "exit")]
s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)
s.sendto("".join(f"{k}={v}\\n" for k, v in fields).encode(), os.environ["UNITGEN_JOURNAL_SOCKET"].encode())
s.sendto(f"STATUS={message}".encode(), os.environ["NOTIFY_SOCKET"].encode())
sys.exit(17)
"""



class Receiver:
    """An AF_UNIX datagram socket standing in for systemd's notify or journal socket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))

    def wait_for(self, needle: bytes, timeout: float = 10.0) -> float:
        """Monotonic time at which a datagram containing `needle` arrived."""
        deadline = time.monotonic() + timeout
        while True:
            ready, _, _ = select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError(f"no datagram with {needle!r}")
            data = self.sock.recv(65536)
            if needle in data:
                return time.perf_counter()

    def drain(self) -> None:
        self.sock.setblocking(False)
        try:
            while True:
                self.sock.recv(65536)
        except BlockingIOError:
            pass
        finally:
            self.sock.setblocking(True)


def spawn_to_ready(argv: list[str], env: dict[str, str], notify: Receiver) -> tuple[float, float]:
    """(seconds from spawn to READY=1, seconds from spawn to exit)."""
    notify.drain()
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL)
    ready = notify.wait_for(b"READY=1")
    proc.wait()
    end = time.perf_counter()
    return ready - start, end - start


def spawn_to_exit(argv: list[str], env: dict[str, str], expect: int) -> float:
    start = time.perf_counter()
    code = subprocess.call(argv, env=env, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if code != expect:
        raise SystemExit(f"{argv[0]} exited {code}, expected {expect}")
    return elapsed


def settings(name: str, lock: Path, entry: str | None = None) -> LauncherSettings:
    return {
        "name": name,
        "mode": "exec" if entry is None else "python",
        "argv": [] if entry else ["/bin/true"],
        "entry": entry,
        "lock_file": str(lock),
        "ready": "immediate",
        "ready_timeout_sec": 10.0,
        "on_contention": "exit",
        "wait_timeout_sec": None,
        "oneshot": False,
    }


def bind_journal_socket(receiver: Path) -> None:
    """In a private mount namespace of this process (and so of every run), put `receiver` at
    /run/systemd/journal/socket on a fresh tmpfs; the host's /run/systemd is not touched."""
    import ctypes

    if os.geteuid() != 0:
        raise SystemExit("--journal systemd-python needs root (a private mount namespace)")
    if ctypes.CDLL(None, use_errno=True).unshare(0x00020000) != 0:  # CLONE_NEWNS
        raise SystemExit(f"unshare(CLONE_NEWNS): {os.strerror(ctypes.get_errno())}")
    for command in (
        ["mount", "--make-rprivate", "/"],
        ["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run/systemd"],
        ["mkdir", "/run/systemd/journal"],
        ["touch", "/run/systemd/journal/socket"],
        ["mount", "--bind", str(receiver), "/run/systemd/journal/socket"],
    ):
        subprocess.run(command, check=True)


def write_launcher(path: Path, source: str) -> None:
    path.write_text(source, encoding="utf-8")
    path.chmod(0o755)


def install_module(directory: Path, python: str) -> None:
    """The launcher module next to the stubs, its bytecode compiled as the package's postinst does."""
    Path(module_file(str(directory))).write_text(launcher_source(), encoding="utf-8")
    subprocess.run(compile_argv(python, str(directory)), check=True)


def pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise SystemExit(f"no Pss in /proc/{pid}/smaps_rollup")


def idle_pss(groups: dict[str, list[tuple[list[str], dict[str, str]]]], notify: Receiver) -> dict[str, float]:
    """Start every process of every group at once, wait for each one's READY=1, then the mean PSS
    (KiB) per group. All are alive together, so pages shared by both groups are split alike."""
    procs: dict[str, list[subprocess.Popen[bytes]]] = {key: [] for key in groups}
    notify.drain()
    try:
        for key, runs in groups.items():
            for argv, env in runs:
                procs[key].append(subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL))
        for _ in range(sum(len(runs) for runs in groups.values())):
            notify.wait_for(b"READY=1")
        time.sleep(0.5)  # the launcher's helper threads start right after READY=1
        return {key: statistics.mean(pss_kib(p.pid) for p in group) for key, group in procs.items()}
    finally:
        for group in procs.values():
            for proc in group:
                proc.kill()
                proc.wait()


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--python", default="/usr/bin/python3")
    parser.add_argument("--idle", type=int, default=20, help="processes per group for the PSS measurement")
    parser.add_argument(
        "--journal",
        choices=["native", "systemd-python"],
        default="native",
        help="where the contender logs: a receiver named by UNITGEN_JOURNAL_SOCKET (native protocol), "
        "or, as root, a receiver bound to /run/systemd/journal/socket in a private mount namespace, "
        "so the launcher uses systemd-python's sender as on a real system",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="unitgen-bench-") as tmp:
        work = Path(tmp)
        notify = Receiver(work / "notify")
        journal = Receiver(work / "journal")
        free_lock, held_lock = work / "free.pid", work / "held.pid"
        launcher, contender = work / "bench-launcher", work / "bench-contender"
        write_launcher(launcher, render_launcher(settings("bench", free_lock), python=args.python))
        write_launcher(contender, render_launcher(settings("bench", held_lock), python=args.python))
        install_module(work, args.python)
        env = {"PATH": "/usr/bin:/bin", "NOTIFY_SOCKET": str(notify.path)}
        if args.journal == "native":
            env["UNITGEN_JOURNAL_SOCKET"] = str(journal.path)
        else:
            bind_journal_socket(journal.path)
        holder = os.open(held_lock, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.lockf(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)  # this process is the running instance

        floor = [args.python, "-I", "-S", "-c"]
        floor_args = [str(free_lock), "bench is running", "/bin/true"]  # the launcher's STATUS= and app
        held_env = {**env, "LOCK": str(held_lock)}
        if args.journal != "native":  # the floor always speaks the native protocol to the receiver
            held_env["UNITGEN_JOURNAL_SOCKET"] = str(journal.path)
        results: dict[str, list[float]] = {"floor ready": [], "launcher ready": [], "floor contention": [],
                                           "contention": []}  # fmt: skip
        variants: list[Callable[[], None]] = [
            lambda: results["floor ready"].append(spawn_to_ready([*floor, FLOOR_READY, *floor_args], env, notify)[0]),
            lambda: results["launcher ready"].append(spawn_to_ready([str(launcher)], env, notify)[0]),
            lambda: results["floor contention"].append(
                spawn_to_exit([*floor, FLOOR_CONTENTION], held_env, EXIT_ALREADY_RUNNING)
            ),
            lambda: results["contention"].append(spawn_to_exit([str(contender)], env, EXIT_ALREADY_RUNNING)),
        ]
        for variant in variants:  # warm the page cache
            variant()
        for key in results:
            results[key].clear()
        for _ in range(args.runs):
            for variant in variants:
                variant()
            journal.drain()
            notify.drain()

        idle: dict[str, list[tuple[list[str], dict[str, str]]]] = {"floor": [], "launcher": []}
        for i in range(args.idle):
            stub = work / f"idle-{i}-launcher"
            python_mode = settings(f"idle{i}", work / f"idle{i}.pid", entry="_signal:pause")
            write_launcher(stub, render_launcher(python_mode, python=args.python))
            idle["launcher"].append(([str(stub)], env))
            floor_argv = [args.python, "-I", "-c", FLOOR_PYTHON, str(work / f"floor{i}.pid"), f"idle{i} is running"]
            idle["floor"].append((floor_argv, env))
        pss = idle_pss(idle, notify)

    ms = {key: median_ms(values) for key, values in results.items()}
    print(f"interpreter: {args.python}, journal: {args.journal}, {args.runs} runs each, medians")
    print(f"floor      spawn->READY=1  {ms['floor ready']:7.2f} ms")
    ratio = ms["launcher ready"] / ms["floor ready"]
    print(f"launcher   spawn->READY=1  {ms['launcher ready']:7.2f} ms   ratio {ratio:.2f} (target <= 1.10)")
    print(f"floor      contention      {ms['floor contention']:7.2f} ms")
    ratio = ms["contention"] / ms["floor contention"]
    print(f"contention spawn->exit     {ms['contention']:7.2f} ms   ratio {ratio:.2f} (target <= 1.15)")
    print(f"floor      python idle PSS {pss['floor'] / 1024:7.2f} MiB (mean of {args.idle})")
    ratio = pss["launcher"] / pss["floor"]
    print(f"launcher   python idle PSS {pss['launcher'] / 1024:7.2f} MiB   ratio {ratio:.2f} (target <= 1.30)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
