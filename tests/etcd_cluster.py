"""A real 3-member etcd cluster on 127.0.0.1 for the fleet lock tests (issue 13): unitgen.trial.etcd's,
with free ports, data dirs and logs under the test's tmp_path; members are our own child processes,
stopped by their PIDs (kill -9 / restart / SIGSTOP to lose quorum) and all killed at teardown.
Also network namespaces and links of the tests' own, and the contender processes they run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from unitgen.trial.etcd import ETCD, ETCDCTL, EtcdCluster, Member, TLSMaterial, free_port, free_ports, start_cluster

# The cluster itself lives in unitgen.trial.etcd (`unitgen try --fleet` runs the same one).
__all__ = ["ETCD", "ETCDCTL", "EtcdCluster", "Member", "Netns", "SandboxLink", "TLSMaterial", "free_port",
           "free_ports", "running_cluster", "start_cluster"]


class Netns:
    """A network namespace of our own, joined to this one by a veth pair on 10.231.N.0/24.

    partition() takes the link down (the namespace's processes lose etcd, their connections hang),
    heal() brings it back; delete() removes the namespace and with it the veth pair."""

    def __init__(self, tag: str) -> None:
        # Unique per process and test: names stay within IFNAMSIZ (15), the subnet within 10.231/16.
        self.index = (os.getpid() * 7 + len(tag) * 13 + time.monotonic_ns() // 1000) % 250 + 1
        self.name = f"ugfl-{os.getpid()}-{tag}"
        self.host_if, self.ns_if = f"ugfh{self.index}", f"ugfn{self.index}"
        self.host_address, self.ns_address = f"10.231.{self.index}.1", f"10.231.{self.index}.2"
        self._ip("netns", "add", self.name)
        try:
            self._ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if, "netns", self.name)
            self._ip("addr", "add", f"{self.host_address}/24", "dev", self.host_if)
            self._ip("link", "set", self.host_if, "up")
            self._ip("-n", self.name, "addr", "add", f"{self.ns_address}/24", "dev", self.ns_if)
            self._ip("-n", self.name, "link", "set", self.ns_if, "up")
            self._ip("-n", self.name, "link", "set", "lo", "up")
        except BaseException:
            self.delete()
            raise

    @staticmethod
    def _ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, stdin=subprocess.DEVNULL)

    def argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def partition(self) -> None:
        self._ip("link", "set", self.host_if, "down")

    def heal(self) -> None:
        self._ip("link", "set", self.host_if, "up")

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], check=False, capture_output=True)


class SandboxLink:
    """A veth pair from this network namespace into a sandbox's (found by its systemd's PID), on
    10.232.N.0/24: the sandbox reaches etcd members listening on `host_address`; partition() takes the
    link down. The sandbox's end is deleted with the sandbox, ours by delete()."""

    def __init__(self, pid: int, index: int) -> None:
        self.index = index
        self.host_if, self.ns_if = f"ugsh{index}", "ugfleet0"
        self.host_address, self.ns_address = f"10.232.{index}.1", f"10.232.{index}.2"
        self._pid = pid
        Netns._ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if, "netns", str(pid))
        try:
            Netns._ip("addr", "add", f"{self.host_address}/24", "dev", self.host_if)
            Netns._ip("link", "set", self.host_if, "up")
            inside = ["nsenter", f"--target={pid}", "--net", "ip"]
            address = ["addr", "add", f"{self.ns_address}/24", "dev", self.ns_if]
            for args in (address, ["link", "set", self.ns_if, "up"]):
                subprocess.run([*inside, *args], check=True, capture_output=True, stdin=subprocess.DEVNULL)
        except BaseException:
            self.delete()
            raise

    @staticmethod
    def indexes(count: int) -> list[int]:
        """count distinct subnet numbers, unlikely to collide with another test run's."""
        base = (os.getpid() * 7 + time.monotonic_ns() // 1000) % (250 - count) + 1
        return [base + i for i in range(count)]

    def partition(self) -> None:
        Netns._ip("link", "set", self.host_if, "down")

    def heal(self) -> None:
        Netns._ip("link", "set", self.host_if, "up")

    def delete(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_if], check=False, capture_output=True)


def running_cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    """Body of a pytest fixture: a fresh healthy cluster, every member killed at teardown."""
    if not Path(ETCD).exists():
        pytest.skip("etcd-server is not installed (scripts/bootstrap installs it)")
    cluster = start_cluster(tmp_path / "etcd")
    try:
        yield cluster
    finally:
        cluster.stop_all()


# ---- a contender process: `python -m tests.etcd_cluster MODE ...` ---------------------------------

def _worker(argv: list[str]) -> int:
    """loop ENDPOINTS PREFIX TTL LOG N HOLD: take the lock N times, log `pid,token,start,end` under flock.
    hold ENDPOINTS PREFIX TTL: take it, print `token N`, then print `holding T` while held() (T: monotonic
    time read before asking), `lost T REASON` from on_lost; exit 3 once no longer held."""
    import fcntl
    import sys

    from unitgen.launcher.fleet import FleetLock

    mode, endpoints, prefix, ttl = argv[0], argv[1].split(","), argv[2], int(argv[3])
    if mode == "loop":
        log, count, hold = Path(argv[4]), int(argv[5]), float(argv[6])
        for _ in range(count):
            lock = FleetLock(endpoints, prefix, ttl)
            token = lock.acquire(wait=True, deadline=time.monotonic() + 60)
            start = time.monotonic()
            time.sleep(hold)
            end = time.monotonic()
            ok = lock.held()  # the interval only counts if we were still surely the holder at its end
            with log.open("a") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                f.write(f"{os.getpid()},{token},{start:.6f},{end:.6f},{int(ok)}\n")
            lock.release()
        return 0
    lock = FleetLock(endpoints, prefix, ttl,
                     on_lost=lambda reason: print("lost", f"{time.monotonic():.6f}", reason, flush=True))
    print("token", lock.acquire(wait=True), flush=True)
    while True:
        now = time.monotonic()
        if not lock.held():
            print("stale", flush=True)
            # held() reads the clock and can see it first; give the keep-alive thread time to report too.
            time.sleep(0.5)
            return 3
        print("holding", f"{now:.6f}", flush=True)
        sys.stdout.flush()
        time.sleep(0.02)


def _guard(argv: list[str]) -> int:
    """guard exec|python ENDPOINTS PREFIX TTL ON_CONTENTION WAIT_TIMEOUT [-- ARGV...]: what the launcher does
    with a fleet lock, through unitgen.launcher.fleet_guard with the launcher's own log and notify.
    exec: run ARGV as the supervised app. python: the app is a loop in the main thread that prints
    `token T` (from `import unitgen_fleet`) and then `holding T` every 20 ms while held; with ARGV
    `stubborn` it ignores the stop request; with `worker` it also forks a `sleep 600` worker."""

    from unitgen.launcher import fleet_guard, runtime

    mode, endpoints, prefix, ttl, on_contention = argv[0], argv[1].split(","), argv[2], int(argv[3]), argv[4]
    wait_timeout = float(argv[5]) if argv[5] != "-" else None
    rest = argv[7:] if argv[6:7] == ["--"] else argv[6:]
    guard = fleet_guard.Guard("demo", endpoints, prefix, ttl, log=runtime.log, notify=runtime.notify,
                              request_timeout=1.0)
    code = guard.acquire(on_contention, wait_timeout)
    if code >= 0:
        return code
    if mode == "exec":
        return guard.run_exec(rest, os.environ)
    stop_code = [0]

    def on_term(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise SystemExit(stop_code[0])

    def request_stop(code: int) -> None:  # the launcher's python-mode stop: SIGTERM to itself
        stop_code[0] = code
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    guard.guard_python(request_stop)
    try:
        import unitgen_fleet  # type: ignore[import-not-found]

        print("token", unitgen_fleet.fencing_token(), os.environ[fleet_guard.TOKEN_ENV], flush=True)
        if "worker" in rest:
            worker = subprocess.Popen(["sleep", "600"])
            print("worker", worker.pid, flush=True)
        while True:
            try:
                now = time.monotonic()
                if unitgen_fleet.held():
                    print("holding", f"{now:.6f}", flush=True)
                time.sleep(0.02)
            except SystemExit:
                if "stubborn" not in rest:
                    raise
                print("ignoring the stop", flush=True)
    finally:
        guard.release()
    return 0


if __name__ == "__main__":
    import sys

    if sys.argv[1] == "guard":
        raise SystemExit(_guard(sys.argv[2:]))
    raise SystemExit(_worker(sys.argv[1:]))
