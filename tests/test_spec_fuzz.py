"""Whatever a user writes, parsing either succeeds or raises SpecError: never a crash, never a
traceback for bad input. Random values of every TOML type go under every known key."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from unitgen.fields import SpecError
from unitgen.render import render
from unitgen.spec import (
    APP_KEYS,
    HARDENING_KEYS,
    LIMITS_KEYS,
    PACKAGE_KEYS,
    TIMER_KEYS,
    TOP_KEYS,
    parse_spec,
)

scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(["/usr/bin/true", "tcp:80", "notify", "wait", "SIGHUP", "1.0", "a <b@c>", "daily"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def table(keys: tuple[Any, ...]) -> st.SearchStrategy[dict[str, Any]]:
    names = [k.name for k in keys]
    return st.dictionaries(st.sampled_from(names) | st.text(max_size=8), values, max_size=4)


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
        return
    # What parses also renders (the launcher settings check included).
    assert render(spec)
