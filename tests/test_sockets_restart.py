"""Issue 14, the proof in a real systemd (sandboxed): socket activation loses no request over
restarts, and serves port 80 as an unprivileged DynamicUser without any capability.

The client runs inside the sandbox: 2000 sequential HTTP requests, paced at 500 a second at most
(a refused connection fails in microseconds: unpaced, a down service would fail hundreds in the
time one restart takes), with `systemctl restart --no-block` of the service at requests 500, 1000
and 1500 (the requests go on while systemd restarts it). The same app, binding its port itself
instead of getting it from systemd, is the comparison: its restarts refuse connections while no
process listens.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e_helpers import example_toml, http_get, install, main_pid
from unitgen.sandbox import Sandbox

pytestmark = pytest.mark.root

REQUESTS = 2000
CLIENT = """
import http.client, json, subprocess, sys, time
port, unit, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
restart_at = {n // 4, n // 2, 3 * n // 4}
failures, pids, errors = 0, set(), {}
started = time.monotonic()
for i in range(n):
    time.sleep(max(0.0, started + i * 0.002 - time.monotonic()))  # paced: 500 requests/s at most
    if i in restart_at:
        subprocess.run(["systemctl", "restart", "--no-block", unit], check=True)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", f"/{i}")
        r = c.getresponse()
        body = r.read().decode()
        if r.status != 200 or not body.startswith(f"echo /{i} "):
            raise ValueError(f"{r.status} {body!r}")
        pids.add(body.split()[2])
    except Exception as e:
        failures += 1
        errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
    finally:
        c.close()
print(json.dumps({"failures": failures, "pids": len(pids), "errors": errors,
                  "seconds": round(time.monotonic() - started, 2)}))
"""


def self_bound_echo() -> dict[str, Any]:
    """The echo example without socket activation: the app binds 127.0.0.1:8080 itself."""
    raw = example_toml("echo")
    del raw["listen"]
    program = raw["exec"][2]
    bound = program.replace("S=h.HTTPServer(('',0),H,False);S.socket=socket.socket(fileno=3)",
                            "S=h.HTTPServer(('127.0.0.1',8080),H)")  # fmt: skip
    assert bound != program
    raw["exec"] = [*raw["exec"][:2], bound]
    raw["ready"] = "tcp:8080"
    return raw


@pytest.fixture(scope="module")
def sb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    tmp = tmp_path_factory.mktemp("sockets")
    with Sandbox.boot("i14-sockets") as box:
        install(box, tmp, "echo", example_toml("echo"))
        install(box, tmp, "bound", self_bound_echo())
        box.systemctl("enable", "--now", "echo.socket")
        box.systemctl("start", "bound.service")
        yield box


def client(sb: Sandbox, port: int, unit: str) -> dict[str, Any]:
    result = sb.run(["/usr/bin/python3", "-I", "-c", CLIENT, str(port), unit, str(REQUESTS)], timeout=300)
    outcome: dict[str, Any] = json.loads(result.stdout)
    print(unit, outcome)  # the numbers the README records
    return outcome


def test_restarts_under_socket_activation_lose_no_request(sb: Sandbox) -> None:
    outcome = client(sb, 80, "echo.service")
    assert outcome["pids"] == 4, outcome  # served by the first process and three restarted ones
    assert outcome["failures"] == 0, outcome


def test_the_same_app_binding_its_own_port_loses_requests_at_each_restart(sb: Sandbox) -> None:
    outcome = client(sb, 8080, "bound.service")
    assert outcome["pids"] == 4, outcome
    assert outcome["failures"] > 0, outcome
    assert set(outcome["errors"]) <= {"ConnectionRefusedError", "ConnectionResetError", "RemoteDisconnected"}


def test_port_80_is_served_by_a_dynamic_user_without_capabilities(sb: Sandbox) -> None:
    assert http_get(sb, 80, "/x").startswith("200 echo /x ")  # (socket-)activated if it was not running
    pid = main_pid(sb, "echo.service")
    status = dict(
        line.split(":\t", 1) for line in sb.run(["cat", f"/proc/{pid}/status"]).stdout.splitlines() if ":\t" in line
    )
    uid = int(status["Uid"].split()[0])
    assert 61184 <= uid <= 65519, status["Uid"]  # systemd's DynamicUser= range
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0 and int(status["CapAmb"], 16) == 0
    assert sb.show("echo.service", "DynamicUser")["DynamicUser"] == "yes"
    listeners = sb.run(["ss", "-Htlnp", "sport = :80"]).stdout
    assert f"pid={pid}," in listeners and "pid=1," in listeners  # systemd holds it, the app serves it
