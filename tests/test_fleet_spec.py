"""The [lock] table (issue 13): parsing and its errors."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from unitgen.errors import UnitgenError
from unitgen.spec import LockScope, Spec, parse_spec

BASE = 'description = "demo"\nexec = ["/usr/bin/sleep", "60"]\n'
FLEET = '[lock]\nscope = "fleet"\netcd = ["http://10.0.0.1:2379", "http://10.0.0.2:2379", "http://etcd3:2379"]\n'


def spec(text: str) -> Spec:
    raw: dict[str, Any] = tomllib.loads(text)
    return parse_spec(raw, name="demo", where="demo.toml")


def test_host_scope_is_the_default() -> None:
    s = spec(BASE)
    assert s.lock.scope is LockScope.HOST and not s.lock.is_fleet


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
