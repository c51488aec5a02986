"""`hardening.ip_address_allow` guards a socket-activated service's sockets too.

systemd.resource-control(5), IPAddressAllow=: "the IP access list configured for the service is not
applied to any sockets passed into the service via socket activation"; the socket unit's list is.
So NAME.socket (NAME@.socket) carries the spec's list as well, or anyone could connect to a service
whose spec restricts it. The render tests check the lines; the sandbox test checks that a real
systemd drops a connection from an address the list leaves out, before the service even starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e_helpers import install
from unitgen.errors import UnitgenError
from unitgen.render.units import render
from unitgen.sandbox import Sandbox
from unitgen.spec import parse_spec

ETCD = ["http://10.0.0.1:2379", "http://etcd2:2379"]


def rendered(**raw: Any) -> dict[str, str]:
    spec = parse_spec({"description": "Api", "exec": ["/usr/bin/api"], **raw}, name="api", where="api.toml")
    return {f.path.name: f.content.decode() for f in render(spec)}


def ip_lines(unit: str) -> list[str]:
    return [line for line in unit.splitlines() if line.startswith("IPAddress")]


@pytest.mark.parametrize(
    ("raw", "socket", "expected"),
    [
        pytest.param({"listen": ["tcp:8080"]}, "api.socket", [], id="no-allow-list-open-as-before"),
        pytest.param(
            {"listen": ["tcp:8080"], "hardening": {"ip_address_allow": ["10.0.0.0/8", "::1"]}},
            "api.socket",
            ["IPAddressDeny=any", "IPAddressAllow=10.0.0.0/8 ::1"],
            id="allow-list",
        ),
        pytest.param(
            {"listen": ["tcp:8080"], "instances": ["a", "b"], "hardening": {"ip_address_allow": ["localhost"]}},
            "api@.socket",
            ["IPAddressDeny=any", "IPAddressAllow=localhost"],
            id="template-socket",
        ),
        pytest.param(
            {"listen": ["tcp:8080"], "hardening": {"ip_address_allow": []}},
            "api.socket",
            ["IPAddressDeny=any", "IPAddressAllow="],
            id="empty-list-admits-nobody-like-the-service",
        ),
        pytest.param(
            {"listen": ["unix:/run/api/api.sock"], "network": False, "hardening": {"ip_address_allow": ["10.0.0.1"]}},
            "api.socket",
            [],
            id="no-network-unix-only",  # the service has no allow list either, only IPAddressDeny=any
        ),
    ],
)
def test_the_socket_unit_carries_the_allow_list_exactly_when_the_spec_has_one(
    raw: dict[str, Any], socket: str, expected: list[str]
) -> None:
    assert ip_lines(rendered(**raw)[socket]) == expected


def test_the_socket_gets_the_users_list_and_not_the_etcd_members_the_service_adds() -> None:
    files = rendered(
        listen=["tcp:8080"],
        lock={"scope": "fleet", "etcd": ETCD},
        hardening={"ip_address_allow": ["192.168.0.0/16"]},
    )
    # etcd is the launcher's outgoing traffic, from sockets of the service, never through api.socket.
    assert ip_lines(files["api.service"]) == ["IPAddressDeny=any", "IPAddressAllow=192.168.0.0/16 10.0.0.1"]
    assert ip_lines(files["api.socket"]) == ["IPAddressDeny=any", "IPAddressAllow=192.168.0.0/16"]


def test_the_socket_unit_says_why_it_has_the_list() -> None:
    socket = rendered(listen=["tcp:8080"], hardening={"ip_address_allow": ["10.0.0.1"]})["api.socket"]
    section = socket.split("[Socket]\n", 1)[1].split("\n[", 1)[0]
    comment = section.split("IPAddressDeny=any", 1)[0]
    assert "systemd.resource-control(5)" in comment, section


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("10.0.0.1\nListenStream=0.0.0.0:81", id="newline-directive"),
        pytest.param("10.0.0.1 0.0.0.0/0", id="second-word"),
        pytest.param("10.0.0.1%i", id="specifier"),
        pytest.param("", id="empty"),
    ],
)
def test_a_value_that_could_reach_the_socket_unit_as_more_than_an_address_is_refused(value: str) -> None:
    with pytest.raises(UnitgenError, match=r"hardening\.ip_address_allow") as caught:
        rendered(listen=["tcp:8080"], hardening={"ip_address_allow": ["10.0.0.1", value]})
    assert "item 1" in str(caught.value)


# Accepts on the socket systemd passed (fd 3) and answers "served SOURCE"; logs each connection
# it sees, so the test can tell a dropped one never reached it.
APP = (
    "import socket\n"
    "listener = socket.socket(fileno=3)\n"
    "while True:\n"
    "    conn, (host, _port) = listener.accept()\n"
    "    print('connection from', host, flush=True)\n"
    "    conn.sendall(('served %s\\n' % host).encode())\n"
    "    conn.close()\n"
)
# Connects from a chosen source address (bound before connect): one line, the answer or the error.
# 3 s: a SYN the filter drops is never answered, so the attempt ends by the timeout.
CLIENT = (
    "import socket, sys\n"
    "s = socket.socket()\n"
    "s.settimeout(3)\n"
    "s.bind((sys.argv[1], 0))\n"
    "try:\n"
    "    s.connect(('127.0.0.1', int(sys.argv[2]))); print(s.makefile().readline().strip())\n"
    "except OSError as e:\n"
    "    print('error', type(e).__name__)\n"
)
PORT = 8123


def connect_from(sb: Sandbox, source: str) -> str:
    return sb.run(["/usr/bin/python3", "-I", "-c", CLIENT, source, str(PORT)]).stdout.strip()


def connections_seen(sb: Sandbox) -> list[str]:
    """The sources the app logged, in order (its stdout goes to the journal)."""
    messages = [e.get("MESSAGE", "") for e in sb.journal(unit="guarded.service")]
    return [m.removeprefix("connection from ") for m in messages if m.startswith("connection from ")]


@pytest.mark.root
def test_systemd_drops_connections_from_outside_the_list_before_starting_the_service(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    raw = {
        "description": "Guarded by its allow list",
        "exec": ["/usr/bin/python3", "-I", "-c", f"exec({APP!r})"],  # one line: a spec value has no newline
        "listen": [f"tcp:127.0.0.1:{PORT}"],
        "hardening": {"ip_address_allow": ["127.0.0.2"]},
    }
    install(sandbox, tmp_path, "guarded", raw)
    sandbox.systemctl("start", "guarded.socket")

    assert connect_from(sandbox, "127.0.0.1") == "error TimeoutError"  # the old socket served it
    # Dropped in the kernel: no connection reached the backlog, so nothing triggered the service.
    assert sandbox.show("guarded.service", "ActiveState")["ActiveState"] == "inactive"
    assert connect_from(sandbox, "127.0.0.2") == "served 127.0.0.2"
    sandbox.wait_for(lambda: connections_seen(sandbox) == ["127.0.0.2"], 10, "the app to log its connection")
    # READY=1 went out before the app ran; PID 1 may read it a moment after the app served.
    sandbox.wait_for(lambda: sandbox.show("guarded.service", "ActiveState")["ActiveState"] == "active", 10, "active")
    assert connect_from(sandbox, "127.0.0.1") == "error TimeoutError"  # and while it runs
    assert connections_seen(sandbox) == ["127.0.0.2"]
    socket = sandbox.show("guarded.socket", "IPAddressDeny", "IPAddressAllow")
    assert set(socket["IPAddressDeny"].split()) == {"0.0.0.0/0", "::/0"}  # "any", in no fixed order
    assert socket["IPAddressAllow"] == "127.0.0.2/32"
