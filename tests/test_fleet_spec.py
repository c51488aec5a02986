"""The [lock] table (issue 13): parsing, its errors, and what a fleet lock adds to the rendered unit."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from unitgen.errors import UnitgenError
from unitgen.render.units import render
from unitgen.spec import LockScope, Spec, parse_spec

BASE = 'description = "demo"\nexec = ["/usr/bin/sleep", "60"]\n'
FLEET = '[lock]\nscope = "fleet"\netcd = ["http://10.0.0.1:2379", "http://10.0.0.2:2379", "http://etcd3:2379"]\n'


def spec(text: str) -> Spec:
    raw: dict[str, Any] = tomllib.loads(text)
    return parse_spec(raw, name="demo", where="demo.toml")


def unit(s: Spec) -> str:
    [service] = [f for f in render(s) if f.path.name == "demo.service"]
    return service.content.decode()


def lines(text: str, directive: str) -> list[str]:
    return [line.partition("=")[2] for line in text.splitlines() if line.startswith(directive + "=")]


def test_host_scope_is_the_default_and_renders_nothing_new() -> None:
    s = spec(BASE)
    assert s.lock.scope is LockScope.HOST and not s.lock.is_fleet
    text = unit(s)
    assert not lines(text, "After") and not lines(text, "LoadCredential") and not lines(text, "WatchdogSignal")


def test_fleet_defaults() -> None:
    s = spec(BASE + FLEET)
    assert s.lock.is_fleet and s.lock.ttl == 10 and s.lock.key == "/unitgen/locks/demo"
    assert s.lock.etcd == ("http://10.0.0.1:2379", "http://10.0.0.2:2379", "http://etcd3:2379")


@pytest.mark.parametrize(("text", "key", "message"), [
    pytest.param('[lock]\nscope = "fleet"\n', "lock.etcd", "is required with scope = 'fleet'", id="fleet-without-etcd"),
    pytest.param('[lock]\netcd = ["http://10.0.0.1:2379"]\n', "lock.etcd", "only applies with scope = 'fleet'",
                 id="etcd-with-host-scope"),
    pytest.param(FLEET + "ttl = 4\n", "lock.ttl", "out of range: allowed 5 to 3600", id="ttl-below-5"),
    pytest.param(FLEET + 'key = "unitgen/x"\n', "lock.key", "not a valid etcd key", id="relative-key"),
    pytest.param('[lock]\nscope = "fleet"\netcd = ["unix:///run/etcd.sock"]\n', "lock.etcd",
                 "not a valid etcd client URL", id="unix-socket"),
    pytest.param('[lock]\nscope = "fleet"\netcd = ["http://10.0.0.1:70000"]\n', "lock.etcd[0]",
                 "port 70000 is out of range", id="port-out-of-range"),
    pytest.param(FLEET + 'ca_file = "/etc/demo/ca.pem"\n', "lock.ca_file", "needs https:// endpoints",
                 id="tls-over-http"),
    pytest.param('[lock]\nscope = "fleet"\netcd = ["https://10.0.0.1:2379"]\ncert_file = "/etc/demo/c.pem"\n',
                 "lock.key_file", "other half of the client certificate", id="cert-without-key"),
    pytest.param('[lock]\nscope = "world"\n', "lock.scope", "'world' is not allowed", id="unknown-scope"),
    pytest.param(FLEET + "tll = 10\n", "lock.tll", "unknown key", id="typo"),
])
def test_bad_lock_tables_name_the_key_and_what_is_allowed(text: str, key: str, message: str) -> None:
    with pytest.raises(UnitgenError) as info:
        spec(BASE + text)
    assert f"demo.toml: {key}: " in str(info.value) and message in str(info.value), str(info.value)


@pytest.mark.parametrize(("top", "key"), [
    pytest.param("network = false\n", "lock.scope", id="no-network"),
    pytest.param('watchdog = 10\nready = "tcp:8080"\n', "watchdog", id="watchdog-is-the-locks"),
])
def test_fleet_refuses_what_it_cannot_work_with(top: str, key: str) -> None:
    with pytest.raises(UnitgenError, match=f"demo.toml: {key}: "):
        spec(BASE + top + FLEET)


def test_typo_in_the_table_name_suggests_lock() -> None:
    with pytest.raises(UnitgenError, match="did you mean 'lock'"):
        spec(BASE + FLEET.replace("[lock]", "[lokc]"))


def test_fleet_unit_waits_for_the_network_and_has_the_watchdog_signal() -> None:
    text = unit(spec('after = ["remote-fs.target"]\n' + BASE + FLEET))
    assert lines(text, "After") == ["remote-fs.target network-online.target"]
    assert lines(text, "Wants") == ["network-online.target"]
    assert lines(text, "WatchdogSignal") == ["SIGKILL"]
    assert not lines(text, "WatchdogSec")  # the launcher sets WATCHDOG_USEC= once it holds the lock


def test_tls_files_go_through_load_credential_never_the_environment() -> None:
    tls = ('[lock]\nscope = "fleet"\netcd = ["https://10.0.0.1:2379"]\nca_file = "/etc/demo/ca.pem"\n'
           'cert_file = "/etc/demo/client.pem"\nkey_file = "/etc/demo/client%.key"\n')
    text = unit(spec(BASE + tls))
    assert lines(text, "LoadCredential") == [
        "etcd-ca:/etc/demo/ca.pem", "etcd-cert:/etc/demo/client.pem", "etcd-key:/etc/demo/client%%.key"]
    assert "/etc/demo" not in "".join(lines(text, "Environment"))


@pytest.mark.parametrize(("allow", "expected"), [
    pytest.param(None, None, id="open-network-stays-open"),
    pytest.param('["192.168.0.0/16"]', "192.168.0.0/16 10.0.0.1 10.0.0.2", id="allow-list-gains-etcd-addresses"),
    pytest.param('["10.0.0.1", "localhost"]', "10.0.0.1 localhost 10.0.0.2", id="listed-once"),
])
def test_ip_address_allow_lets_the_launcher_reach_etcd_members_given_as_addresses(
        allow: str | None, expected: str | None) -> None:
    hardening = f"[hardening]\nip_address_allow = {allow}\n" if allow else ""
    text = unit(spec(BASE + FLEET + hardening))
    assert lines(text, "IPAddressAllow") == ([expected] if expected else [])
    assert lines(text, "IPAddressDeny") == (["any"] if expected else [])


def test_fleet_ships_its_modules_next_to_the_launcher_and_passes_its_settings() -> None:
    files = {str(f.path): f.content for f in render(spec(BASE + FLEET + "ttl = 7\n"))}
    assert {"usr/libexec/demo/unitgen_fleet_lock.py", "usr/libexec/demo/unitgen_fleet_guard.py"} <= set(files)
    stub = files["usr/libexec/demo/demo-launcher"].decode()
    assert "'fleet_etcd': ['http://10.0.0.1:2379', 'http://10.0.0.2:2379', 'http://etcd3:2379']," in stub
    assert "'fleet_key': '/unitgen/locks/demo'," in stub and "'fleet_ttl': 7," in stub
    host = {str(f.path): f.content for f in render(spec(BASE))}
    assert not [p for p in host if "fleet" in p] and b"fleet_" not in host["usr/libexec/demo/demo-launcher"]


@pytest.mark.parametrize(("top", "expected"), [
    pytest.param('ready = "notify"\n', "all", id="exec-notify-the-app-is-a-child"),
    pytest.param('ready = "immediate"\n', "main", id="exec-immediate-the-launcher-reports"),
])
def test_notify_access_follows_who_sends_ready(top: str, expected: str) -> None:
    assert lines(unit(spec(BASE + top + FLEET)), "NotifyAccess") == [expected]
