"""Issue 14, the spec: `instances`, `listen` and `{instance}`, and the errors for what they refuse."""

from __future__ import annotations

from typing import Any

import pytest

from unitgen.spec import parse_spec
from unitgen.spec.fields import SpecError
from unitgen.spec.model import Instance, ListenKind

BASE: dict[str, Any] = {"description": "Pool", "exec": ["/usr/bin/worker", "--queue", "{instance}"]}


def spec(**changes: Any) -> dict[str, Any]:
    raw = {**BASE, "instances": ["a", "b"], **changes}
    return {k: v for k, v in raw.items() if v is not None}


def test_instances_make_a_template_with_a_lock_per_instance() -> None:
    parsed = parse_spec(spec(), name="pool")
    assert parsed.instances == (Instance("a"), Instance("b"))
    assert parsed.is_template and parsed.unit_stem == "pool@"
    assert parsed.lock_file == "/run/pool/{instance}.pid"
    assert parsed.runtime_directory == "pool"


def test_an_instance_table_carries_its_own_environment() -> None:
    parsed = parse_spec(spec(instances={"eu": {"environment": {"REGION": "eu-1"}}, "us": {}}), name="pool")
    assert parsed.instances == (Instance("eu", (("REGION", "eu-1"),)), Instance("us"))


def test_a_plain_service_is_no_template() -> None:
    parsed = parse_spec({"description": "x", "exec": ["/bin/true"]}, name="plain")
    assert not parsed.is_template and parsed.unit_stem == "plain" and parsed.listen == ()
    assert parsed.lock_file == "/run/plain/plain.pid"


@pytest.mark.parametrize(
    ("value", "kind", "address"),
    [
        pytest.param("tcp:80", ListenKind.TCP, "80", id="port"),
        pytest.param("tcp:127.0.0.1:8080", ListenKind.TCP, "127.0.0.1:8080", id="ipv4"),
        pytest.param("tcp:[::1]:8080", ListenKind.TCP, "[::1]:8080", id="ipv6"),
        pytest.param("tcp:[0:0::1]:8080", ListenKind.TCP, "[::1]:8080", id="ipv6-normalised"),
        pytest.param("unix:/run/pool/api.sock", ListenKind.UNIX, "/run/pool/api.sock", id="unix"),
        pytest.param("unix:/run/pool/{instance}.sock", ListenKind.UNIX, "/run/pool/{instance}.sock", id="unix-inst"),
    ],
)
def test_listen_forms(value: str, kind: ListenKind, address: str) -> None:
    raw = spec(listen=[value]) if "{instance}" in value else spec(listen=[value], instances=None, exec=["/bin/x"])
    (sock,) = parse_spec(raw, name="pool").listen
    assert (sock.kind, sock.address) == (kind, address)


@pytest.mark.parametrize(
    ("raw", "key", "problem"),
    [
        pytest.param(spec(instances=["a/b"]), "instances", "not a valid instance name", id="slash"),
        pytest.param(spec(instances=["%i"]), "instances", "not a valid instance name", id="specifier"),
        pytest.param(spec(instances=[".."]), "instances", "not a valid instance name", id="dotdot"),
        pytest.param(spec(instances=["-x"]), "instances", "not a valid instance name", id="leading-dash"),
        pytest.param(spec(instances=["a\\x2d"]), "instances", "not a valid instance name", id="backslash"),
        pytest.param(spec(instances=["x" * 65]), "instances", "not a valid instance name", id="too-long"),
        pytest.param(spec(instances=[]), "instances", "at least 1", id="empty"),
        pytest.param(spec(instances=["a", "a"]), "instances", "listed twice", id="duplicate"),
        pytest.param(spec(instances="a"), "instances", "expected an array", id="string"),
        pytest.param(spec(instances={"a": {"env": {}}}), "instances", "only 'environment'", id="table-typo"),
        pytest.param(spec(instances={"a": {"environment": {"1X": "y"}}}), "instances", "variable", id="env-name"),
        pytest.param(spec(instances={"a b": {}}), "instances", "not a valid instance name", id="table-key"),
        pytest.param(spec(instances=None), "exec[2]", "without 'instances'", id="placeholder-no-instances"),
        pytest.param(spec(exec=["/bin/{instance}"]), "exec[0]", "cannot depend", id="placeholder-program"),
        pytest.param(spec(lock_file="/run/pool/one.pid"), "lock_file", "{instance}", id="shared-lock"),
        pytest.param(spec(lock_file="/run/{instance}/x.pid"), "lock_file", "", id="placeholder-in-dir"),
        pytest.param(spec(listen=["tcp:host.example:80"]), "listen", "IP address", id="hostname"),
        pytest.param(spec(listen=["tcp:0"]), "listen", "not a socket", id="port-0"),
        pytest.param(spec(listen=["tcp:080"]), "listen", "not a socket", id="port-leading-zero"),
        pytest.param(spec(listen=["udp:53"]), "listen", "not a socket", id="udp"),
        pytest.param(spec(listen=["tcp:[::1:80"]), "listen", "IP address", id="bad-brackets"),
        pytest.param(spec(listen=["tcp:80", "tcp:80"]), "listen", "twice", id="duplicate"),
        pytest.param(spec(listen=[]), "listen", "1 to 16", id="empty"),
        pytest.param(spec(listen=["unix:/tmp/x.sock"]), "listen[0]", "own directory", id="unix-outside-run"),
        pytest.param(spec(listen=["unix:/run/x.sock"]), "listen[0]", "own directory", id="unix-in-run"),
        pytest.param(spec(listen=["unix:/run/systemd/x.sock"]), "listen[0]", "", id="unix-foreign-dir"),
        pytest.param(spec(listen=["unix:/run/pool/a b.sock"]), "listen", "may only contain", id="unix-space"),
        pytest.param(spec(listen=["unix:/run/pool/" + "x" * 100]), "listen", "too long", id="unix-too-long"),
        pytest.param(
            spec(instances=None, exec=["/bin/x"], listen=["unix:/run/pool/{instance}.sock"]),
            "listen[0]",
            "without 'instances'",
            id="unix-placeholder-no-instances",
        ),
        pytest.param(spec(listen=["tcp:80"], network=False), "listen[0]", "needs the network", id="no-network"),
        pytest.param(spec(listen=["unix:/run/pool/one.sock"]), "listen[0]", "its own unix socket", id="unix-shared"),
        pytest.param(spec(listen=["tcp:80"], ready="tcp:80"), "ready", "pass at once", id="tcp-ready"),
        pytest.param(spec(listen=["tcp:80"], timer={"on_calendar": "daily"}), "listen", "timer job", id="timer-listen"),
    ],
)
def test_refused_with_the_key_and_what_is_allowed(raw: dict[str, Any], key: str, problem: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(raw, name="pool", where="pool.toml")
    assert err.value.key.startswith(key)
    assert problem in str(err.value)
    assert str(err.value).startswith("pool.toml: ")


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        pytest.param(spec(instances=["a", "b/c"]), "item 1: ", id="instance"),
        pytest.param(spec(listen=["tcp:80", "udp:53"]), "item 1: ", id="listen"),
    ],
)
def test_a_bad_array_item_is_named_by_its_index(raw: dict[str, Any], where: str) -> None:
    # Both arrays go through fields.each_item, as every other array of the spec does.
    with pytest.raises(SpecError) as err:
        parse_spec(raw, name="pool", where="pool.toml")
    assert where in str(err.value)
