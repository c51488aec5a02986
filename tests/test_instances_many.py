"""Issue 14, the proof in a real systemd (sandboxed): many instances of one template at once.

100 instances here (each start costs systemd ~50 ms of namespace and cgroup set-up on this 2-core
machine; bench/bench_instances.py does 500 and compares with plain units): all active, every lock
file held by its own instance's MainPID, no contention and no lock error. One instance stopping
leaves the shared RuntimeDirectory= and the other instances' locks alone. A second launcher for an
instance that runs is refused with exit 17 and a journal entry naming that instance.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.e2e_helpers import LOCK_HOLDERS, install, launcher
from unitgen.launcher.runtime import EXIT_ALREADY_RUNNING, MESSAGE_ID_ALREADY_RUNNING, MESSAGE_ID_LOCK_ERROR
from unitgen.sandbox import Sandbox
from unitgen.spec import Spec

pytestmark = pytest.mark.root

COUNT = 100
RAW = {
    "description": "Many",
    "exec": ["/usr/bin/python3", "-I", "-c", "import _signal; _signal.pause()", "{instance}"],
    "instances": ["1"],
    "start_limit_burst": 1000,
}
# Runs inside the sandbox: {instance: [MainPID, ActiveState, PID holding /run/many/INSTANCE.pid]}.
INSPECT = r"""
import json, os, subprocess, sys
n = int(sys.argv[1])
units = [f"many@{i}.service" for i in range(1, n + 1)]
out = subprocess.run(["systemctl", "show", "-p", "MainPID,ActiveState", *units], capture_output=True, text=True,
                     check=True).stdout.strip().split("\n\n")
""" + LOCK_HOLDERS + r"""
result = {}
for i, block in enumerate(out, 1):
    props = dict(line.split("=", 1) for line in block.splitlines())
    path = f"/run/many/{i}.pid"
    holder = holders.get(os.stat(path).st_ino) if os.path.exists(path) else None
    result[i] = [int(props["MainPID"]), props["ActiveState"], holder]
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, Spec]]:
    with Sandbox.boot("i14-many") as sb:
        spec = install(sb, tmp_path_factory.mktemp("many"), "many", RAW)
        sb.systemctl("start", *(f"many@{i}.service" for i in range(1, COUNT + 1)))
        yield sb, spec


def inspect(sb: Sandbox) -> dict[int, list[object]]:
    out = sb.run(["/usr/bin/python3", "-I", "-c", INSPECT, str(COUNT)], timeout=120).stdout
    return {int(k): v for k, v in json.loads(out).items()}


def test_every_instance_is_active_and_holds_its_own_lock(many: tuple[Sandbox, Spec]) -> None:
    sb, _ = many
    seen = inspect(sb)
    assert [i for i, (pid, state, holder) in seen.items() if state != "active" or holder != pid] == []
    assert len({pid for pid, _, _ in seen.values()}) == COUNT
    assert sb.journal(f"MESSAGE_ID={MESSAGE_ID_LOCK_ERROR}") == []
    assert sb.journal(f"MESSAGE_ID={MESSAGE_ID_ALREADY_RUNNING}") == []


def test_one_instance_stopping_leaves_the_others_and_the_shared_directory(many: tuple[Sandbox, Spec]) -> None:
    sb, _ = many
    before = inspect(sb)
    sb.systemctl("stop", "many@1.service")
    after = inspect(sb)
    assert after[1][1] == "inactive" and after[1][2] is None  # its lock went with its process
    assert {i: v for i, v in after.items() if i != 1} == {i: v for i, v in before.items() if i != 1}
    sb.systemctl("start", "many@1.service")
    again = inspect(sb)[1]
    assert again[1] == "active" and again[2] == again[0]


def test_a_second_launcher_for_a_running_instance_names_the_instance(many: tuple[Sandbox, Spec]) -> None:
    sb, spec = many
    holder = inspect(sb)[7][0]
    result = sb.run(["/usr/bin/env", "UNITGEN_INSTANCE=7", launcher(spec), "--", "/bin/true"], check=False)
    assert result.returncode == EXIT_ALREADY_RUNNING, result.stderr
    (entry,) = sb.journal(f"MESSAGE_ID={MESSAGE_ID_ALREADY_RUNNING}", "UNITGEN_INSTANCE=7")
    assert entry["MESSAGE"] == f"many@7 is already running as PID {holder} (lock /run/many/7.pid)"
    assert entry["LOCK_HOLDER_UNIT"] == "many@7.service"
