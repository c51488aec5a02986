"""Property: whatever printable arguments, environment values and description a spec holds, the
rendered unit is accepted by systemd and the service gets exactly those values.

Offline, `systemd-analyze verify` must stay silent. In a real (sandboxed) systemd the service
is started for real: the launcher execs a program that prints the argv and environment it was
given, as JSON, so the check covers systemd's parsing, its run-time `$` expansion and the
launcher's exec, end to end. The description is read back over D-Bus.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unitgen.render.units import render
from unitgen.sandbox import Sandbox
from unitgen.spec import ENV_NAME_PATTERN, parse_spec
from unitgen.staging.check import verify
from unitgen.staging.tree import write_tree

# Printable text as a spec may hold it: no control characters (refused by the spec), no
# surrogates (not valid UTF-8), no line/paragraph separators (refused too).
printable = st.text(st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\u2028\u2029"), max_size=24)
# What systemd treats specially, mixed into the random text so that every run meets it.
TRICKY = ["$", "$HOME", "${PATH}", "$$", "%", "%n", "%%", "\\", "\\;", '"', "'", ";", " ", "=", "@", "-"]
tricky_text = st.lists(st.one_of(st.sampled_from(TRICKY), printable), max_size=4).map("".join)
words = st.lists(tricky_text, max_size=6)
# "T_" keeps generated names clear of what systemd and the launcher set (NOTIFY_SOCKET, PATH...).
env_names = st.from_regex(ENV_NAME_PATTERN, fullmatch=True).filter(lambda n: len(n) < 40).map(lambda n: "T_" + n)
environments = st.dictionaries(env_names, tricky_text, max_size=4)
descriptions = printable.map(str.strip).filter(lambda d: d != "" and not d.endswith("\\"))

NAME = "prop"


# Writes what it was given (its arguments and the environment variables named T_*) as JSON into
# its runtime directory; atomically, so a reader never sees half of it. (Its stdout would reach
# the journal, but journald may miss the unit metadata of a process that exits at once.)
GOT = f"/run/{NAME}/got.json"
SHOW_ARGV = (
    "import json, os, sys; "
    "got = json.dumps([sys.argv[1:], {k: v for k, v in os.environ.items() if k[:2] == 'T_'}]); "
    f"open('{GOT}.tmp', 'w').write(got); os.rename('{GOT}.tmp', '{GOT}')"
)


def spec_for(args: list[str], env: dict[str, str], description: str) -> dict[str, object]:
    return {"description": description, "exec": ["/usr/bin/python3", "-c", SHOW_ARGV, *args], "environment": env}


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
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with Sandbox.boot("roundtrip") as sb:
        sb.systemctl("start", "dbus.socket")  # busctl needs the system bus; the sandbox starts none by itself
        # The launcher, once: each example below only replaces the unit (its `-- ARGS` override the
        # launcher's built-in command).
        staging = tmp_path_factory.mktemp("roundtrip")
        write_tree(render(parse_spec(spec_for([], {}, "base"), name=NAME)), staging)
        sb.copy_in(staging, "/")
        yield sb


def busctl(sb: Sandbox, *args: str) -> Any:
    return json.loads(sb.run(["busctl", "--json=short", *args]).stdout)["data"]


def busctl_property(sb: Sandbox, interface: str, prop: str) -> Any:
    manager = ("org.freedesktop.systemd1", "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager")
    [unit_path] = busctl(sb, "call", *manager, "LoadUnit", "s", f"{NAME}.service")
    return busctl(sb, "get-property", "org.freedesktop.systemd1", unit_path, interface, prop)


def what_the_service_got(sb: Sandbox) -> Any:
    sb.run(["rm", "-f", GOT])
    sb.systemctl("start", f"{NAME}.service")
    sb.wait_for(lambda: sb.run(["test", "-e", GOT], check=False).returncode == 0, 20, "the service's output")
    return json.loads(sb.read_file(GOT))


@pytest.mark.root
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=words, env=environments, description=descriptions)
def test_the_service_gets_exactly_the_values_given(
    sandbox: Sandbox, args: list[str], env: dict[str, str], description: str
) -> None:
    raw = spec_for(args, env, description)
    sandbox.write_file(f"/run/systemd/system/{NAME}.service", unit_text(raw))
    sandbox.systemctl("daemon-reload")

    assert what_the_service_got(sandbox) == [args, env]
    assert busctl_property(sandbox, "org.freedesktop.systemd1.Unit", "Description") == description
