"""Property: whatever printable arguments, environment values and description a spec holds, the
rendered unit is accepted by systemd and systemd reads back exactly those values.

Offline, `systemd-analyze verify` must stay silent; in a real (sandboxed) systemd, the values are
read back over D-Bus with busctl, which returns ExecStart's argv as an array, so a wrong split or a
lost escape cannot hide.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unitgen.check import verify
from unitgen.render import launcher_path, render
from unitgen.sandbox import Sandbox
from unitgen.spec import ENV_NAME_PATTERN, parse_spec
from unitgen.staging import write_tree

# Printable text as a spec may hold it: no control characters (refused by the spec), no
# surrogates (not valid UTF-8), no line/paragraph separators (refused too).
printable = st.text(st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\u2028\u2029"), max_size=24)
words = st.lists(printable, max_size=6)
env_names = st.from_regex(ENV_NAME_PATTERN, fullmatch=True).filter(lambda n: len(n) < 40)
environments = st.dictionaries(env_names, printable, max_size=4)
descriptions = printable.map(str.strip).filter(lambda d: d != "" and not d.endswith("\\"))

NAME = "prop"


def spec_for(args: list[str], env: dict[str, str], description: str) -> dict[str, object]:
    return {"description": description, "exec": ["/usr/bin/printf", *args], "environment": env}


def unit_text(raw: dict[str, object]) -> bytes:
    spec = parse_spec(raw, name=NAME)
    [unit] = [f.content for f in render(spec) if str(f.path).endswith(f"{NAME}.service")]
    return unit


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=words, env=environments, description=descriptions)
def test_systemd_analyze_verify_accepts_any_printable_values(
    tmp_path: Path, args: list[str], env: dict[str, str], description: str
) -> None:
    spec = parse_spec(spec_for(args, env, description), name=NAME)
    staging = tmp_path / "stage"
    write_tree(render(spec), staging)
    assert verify(staging, NAME) == ""


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox.boot("roundtrip") as sb:
        sb.systemctl("start", "dbus.socket")  # busctl needs the system bus; the sandbox starts none by itself
        yield sb


def busctl(sb: Sandbox, *args: str) -> Any:
    return json.loads(sb.run(["busctl", "--json=short", *args]).stdout)["data"]


def busctl_property(sb: Sandbox, interface: str, prop: str) -> Any:
    manager = ("org.freedesktop.systemd1", "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager")
    [unit_path] = busctl(sb, "call", *manager, "LoadUnit", "s", f"{NAME}.service")
    return busctl(sb, "get-property", "org.freedesktop.systemd1", unit_path, interface, prop)


@pytest.mark.root
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=words, env=environments, description=descriptions)
def test_systemd_reads_back_exactly_the_values_given(
    sandbox: Sandbox, args: list[str], env: dict[str, str], description: str
) -> None:
    raw = spec_for(args, env, description)
    sandbox.write_file(f"/run/systemd/system/{NAME}.service", unit_text(raw))
    sandbox.systemctl("daemon-reload")

    [exec_start] = busctl_property(sandbox, "org.freedesktop.systemd1.Service", "ExecStart")
    assert exec_start[1] == [str(launcher_path(parse_spec(raw, name=NAME))), "--", "/usr/bin/printf", *args]
    environment = busctl_property(sandbox, "org.freedesktop.systemd1.Service", "Environment")
    assert environment == [f"{k}={v}" for k, v in env.items()]
    assert busctl_property(sandbox, "org.freedesktop.systemd1.Unit", "Description") == description
