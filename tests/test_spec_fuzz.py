"""Whatever a user writes, parsing either succeeds or raises SpecError: never a crash, never a
traceback for bad input, never a message that puts raw control characters or a megabyte on the
terminal. Random values of every TOML type (hostile text, huge numbers, deep nesting) go under
every known key and under random keys; random files go through `load_spec`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unitgen.render.units import render
from unitgen.spec import (
    APP_KEYS,
    HARDENING_KEYS,
    LIMITS_KEYS,
    PACKAGE_KEYS,
    TIMER_KEYS,
    TOP_KEYS,
    load_spec,
    parse_spec,
)
from unitgen.spec.fields import SpecError

# What a hostile spec puts in strings: escape sequences, newlines, bidi overrides, and long runs.
HOSTILE = ["\x1b[2J", "\n", "\r", "\u202e", "\x00", "\x07", "\\", "%", "$", "\u2028"]
hostile_text = st.lists(st.one_of(st.sampled_from(HOSTILE), st.text(max_size=6)), max_size=5).map("".join)
long_text = st.builds(lambda ch, n: ch * n, st.sampled_from(["a", "\x1b", "é", "/", "%"]), st.integers(0, 20000))
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=10**4000, max_value=10**4500),  # str() of these raises ValueError
    st.floats(allow_nan=False),
    st.text(max_size=12),
    hostile_text,
    long_text,
    st.sampled_from(["/usr/bin/true", "tcp:80", "notify", "wait", "SIGHUP", "1.0", "a <b@c>", "daily"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def table(keys: tuple[Any, ...]) -> st.SearchStrategy[dict[str, Any]]:
    names = [k.name for k in keys]
    return st.dictionaries(st.sampled_from(names) | st.text(max_size=8) | hostile_text | long_text, values, max_size=4)


def assert_safe_to_print(message: str) -> None:
    assert all(ch.isprintable() for line in message.split("\n  hint: ") for ch in line), repr(message[:200])
    assert len(message) < 1200, len(message)


specs = st.fixed_dictionaries(
    {"description": st.just("fuzz"), "exec": st.just(["/usr/bin/true"])},
    optional={
        "limits": table(LIMITS_KEYS),
        "hardening": table(HARDENING_KEYS),
        "timer": table(TIMER_KEYS),
        "package": table(PACKAGE_KEYS),
        "app": table(APP_KEYS),
        "extra": st.dictionaries(st.sampled_from(["Unit", "Service", "Servce"]), values, max_size=2),
    },
).flatmap(lambda base: table(TOP_KEYS).map(lambda top: {**base, **top}))


@settings(max_examples=300, deadline=None)
@given(raw=specs)
def test_any_input_parses_or_fails_with_a_spec_error(raw: dict[str, Any]) -> None:
    try:
        spec = parse_spec(raw, name="fuzz", where="fuzz.toml")
    except SpecError as exc:
        assert str(exc).startswith("fuzz.toml: ")
        assert_safe_to_print(str(exc))
        return
    # What parses also renders (the launcher settings check included), every line within LINE_MAX.
    for file in render(spec):
        if file.path.suffix in (".service", ".timer"):
            assert max(len(line) for line in file.content.split(b"\n")) < 4096


# TOML-ish text: fragments that open and close nesting, quote keys, and escape characters.
FRAGMENTS = ["[", "]", "{", "}", "=", '"', "'", ",", ".", "\n", "a", "x = ", "\\u001b", "[[t]]", "9" * 30, "#"]
toml_text = st.one_of(
    st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join),
    st.builds(
        lambda n, o, c: "x = " + o * n + c * n, st.integers(0, 4000), st.sampled_from("[{"), st.sampled_from("]}")
    ),
    st.text(max_size=60),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=toml_text)
def test_any_file_loads_or_fails_with_a_spec_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "fuzz.toml"
    path.write_text(content, encoding="utf-8", errors="surrogatepass")
    try:
        load_spec(path)
    except SpecError as exc:
        assert_safe_to_print(str(exc))
