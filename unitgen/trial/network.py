"""The network of a fleet trial: sandboxed hosts on one bridge with the etcd cluster's host side.

Each sandbox has a network namespace of its own with only its loopback; `FleetNetwork` adds a
bridge on 10.233.N.0/24 in this namespace (the cluster listens on its .1) and gives each host a
veth pair into the bridge (.2, .3, ...). Every host then reaches etcd at the same address, like
the machines of a real fleet, so one rendering (one package) serves them all. `partition(host)`
takes that host's link down; `heal()` brings it back. `delete()` removes the bridge and the
host-side ends (a sandbox's end goes with its namespace, and takes its pair along).
"""

from __future__ import annotations

import contextlib
import os
import subprocess

from unitgen.errors import UnitgenError

SUBNET = "10.233"  # 10.231/10.232 are the tests' own namespaces and links
INSIDE = "fleet0"  # the link's name inside each sandbox


def ip(*args: str, target: int | None = None) -> None:
    """ip(8) here, or in the network namespace of the process `target` (a sandbox's PID 1)."""
    prefix = [] if target is None else ["nsenter", f"--target={target}", "--net"]
    result = subprocess.run([*prefix, "ip", *args], capture_output=True, text=True, check=False,
                            stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise UnitgenError(f"ip {' '.join(args)}: {result.stderr.strip()}", hint="the fleet trial needs iproute2")


def _used_subnets() -> set[int]:
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=False).stdout
    used = set()
    for word in out.split():
        if word.startswith(SUBNET + "."):
            with contextlib.suppress(ValueError):
                used.add(int(word.split(".")[2]))
    return used


class FleetNetwork:
    def __init__(self, index: int) -> None:
        self.index = index
        self.bridge = f"ugtry{index}"
        self.address = f"{SUBNET}.{index}.1"
        self.links: list[str] = []  # host-side veth ends, one per host, in the order hosts joined

    @classmethod
    def create(cls) -> FleetNetwork:
        """A bridge on a 10.233.N.0/24 no interface here uses yet (another trial may run at once:
        creating the bridge is what claims N, and a name taken meanwhile just moves on)."""
        used = _used_subnets()
        start = os.getpid() % 250
        for n in range(250):
            index = (start + n) % 250 + 1
            if index in used:
                continue
            net = cls(index)
            try:
                ip("link", "add", net.bridge, "type", "bridge")
            except UnitgenError as exc:
                if "exists" in exc.message:
                    continue
                raise
            try:
                ip("addr", "add", f"{net.address}/24", "dev", net.bridge)
                ip("link", "set", net.bridge, "up")
            except BaseException:
                net.delete()
                raise
            return net
        raise UnitgenError(f"no free subnet left in {SUBNET}.0.0/16 for a fleet trial's bridge")

    def attach(self, pid: int) -> str:
        """Link the sandbox whose PID 1 is `pid` to the bridge; its address there."""
        number = len(self.links)
        outside, address = f"ugt{self.index}h{number}", f"{SUBNET}.{self.index}.{number + 2}"
        ip("link", "add", outside, "type", "veth", "peer", "name", INSIDE, "netns", str(pid))
        self.links.append(outside)
        ip("link", "set", outside, "master", self.bridge)
        ip("link", "set", outside, "up")
        ip("addr", "add", f"{address}/24", "dev", INSIDE, target=pid)
        ip("link", "set", INSIDE, "up", target=pid)
        return address

    def partition(self, number: int) -> None:
        ip("link", "set", self.links[number], "down")

    def heal(self, number: int) -> None:
        ip("link", "set", self.links[number], "up")

    def delete(self) -> None:
        """Idempotent; never raises (it runs while tearing down)."""
        for name in [*self.links, self.bridge]:
            subprocess.run(["ip", "link", "del", name], capture_output=True, check=False, stdin=subprocess.DEVNULL)
        self.links = []
