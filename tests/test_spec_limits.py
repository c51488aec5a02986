"""Issue 11.8: hostile spec files never crash unitgen, never put raw bytes on the terminal, and
values too long for a unit are refused by key, not found later by systemd.

Through the real CLI where the terminal is the point (what `unitgen render` prints), through
`load_spec` for the parser's limits, and through `systemd-analyze verify` for the claim that
what the spec accepts, systemd loads.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from unitgen.render.units import render
from unitgen.spec import SPEC_FILE_MAX, load_spec, parse_spec
from unitgen.spec.fields import LINE_MAX, TEXT_MAX, SpecError
from unitgen.staging.check import verify
from unitgen.staging.tree import write_tree

MINIMAL = 'description = "Demo"\nexec = ["/bin/true"]\n'
MB = 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, content: str) -> Path:
    path = tmp_path / "demo.toml"
    path.write_text(content, encoding="utf-8")
    return path


def load_error(path: Path) -> SpecError:
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    return caught.value


def assert_safe_to_print(message: str) -> None:
    """Only the hint's line break; no control character, no megabyte."""
    assert all(ch.isprintable() for line in message.split("\n  hint: ") for ch in line), repr(message[:300])
    assert len(message) < 1000, len(message)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("x = " + "[" * 5000 + "]" * 5000 + "\n", id="nested-arrays"),
        pytest.param("x = " + "{a = " * 3000 + "1" + "}" * 3000 + "\n", id="nested-inline-tables"),
        pytest.param(MINIMAL + "start_limit_burst = " + "9" * 5000 + "\n", id="5000-digit-integer"),
    ],
)
def test_parser_blow_ups_are_spec_errors(tmp_path: Path, content: str) -> None:
    error = load_error(write(tmp_path, content))
    assert str(error).startswith(f"{tmp_path / 'demo.toml'}: ")
    assert_safe_to_print(str(error))


def test_deep_nesting_through_the_cli_is_one_line_and_no_traceback(tmp_path: Path) -> None:
    write(tmp_path, "x = " + "[" * 5000 + "]" * 5000 + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "unitgen", "render", "demo", "--out", str(tmp_path / "out")],
        cwd=tmp_path,
        # This checkout's unitgen, whatever the venv's editable install points at.
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "RecursionError" not in result.stderr
    assert "nested too deeply" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("content", "key"),
    [
        pytest.param(MINIMAL + '"A\\u001b[2J" = 1\n', "A\x1b[2J", id="escape-sequence-key"),
        pytest.param(MINIMAL + '"a\\nExecStart=/bin/evil" = 1\n', "a\nExecStart=/bin/evil", id="newline-key"),
        pytest.param(MINIMAL + '"\\u202egnp.exe" = 1\n', "\u202egnp.exe", id="bidi-override-key"),
        pytest.param(
            MINIMAL + '[extra."Se\\u001b]0;pwned\\u0007"]\nA = "1"\n', "extra.Se\x1b]0;pwned\x07", id="section"
        ),
        pytest.param(MINIMAL + '[environment]\n"B\\u001bAD" = "1"\n', "environment", id="env-name"),
        pytest.param(MINIMAL + '[extra.Service]\n"Li\\u001bmit" = "1"\n', "extra.Service.Li\x1bmit", id="directive"),
        pytest.param('description = "A\\u001b[2J"\nexec = ["/bin/true"]\n', "description", id="escape-in-value"),
        pytest.param(MINIMAL + 'ready = "\\u001b[2J"\n', "ready", id="escape-in-echoed-value"),
    ],
)
def test_hostile_keys_and_values_are_escaped_in_messages(tmp_path: Path, content: str, key: str) -> None:
    error = load_error(write(tmp_path, content))
    assert error.key == key  # kept raw for programs; shown escaped
    assert_safe_to_print(str(error))


@pytest.mark.parametrize(
    ("content", "key"),
    [
        pytest.param(MINIMAL + f'ready = "{"x" * MB}"\n', "ready", id="ready"),
        pytest.param(MINIMAL + f'"{"k" * MB}" = 1\n', "k" * MB, id="key"),
        pytest.param(MINIMAL + f'on_contention = "{"w" * MB}"\n', "on_contention", id="enum"),
        pytest.param(MINIMAL + f'user = "{"u" * MB}"\n', "user", id="pattern"),
    ],
)
def test_a_megabyte_bad_value_is_not_echoed_in_full(tmp_path: Path, content: str, key: str) -> None:
    error = load_error(write(tmp_path, content))
    assert error.key == key
    assert_safe_to_print(str(error))
    assert "..." in str(error) or "too long" in str(error)


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        pytest.param({"description": "d" * 81}, "description", id="description-over-80"),
        pytest.param({"package": {"version": "1", "maintainer": "a <b@c>", "summary": "s" * 81}}, "package.summary"),
        pytest.param({"exec": ["/bin/echo", "a" * MB]}, "exec", id="exec-megabyte-arg"),
        pytest.param({"exec": ["/bin/echo", *["a" * 1000] * 5]}, "exec", id="exec-line-over-4095"),
        pytest.param({"exec": ["/bin/echo", *[""] * 1400]}, "exec", id="exec-many-empty-args"),
        pytest.param({"exec": ["/bin/echo", "$" * 3000]}, "exec", id="exec-escaping-doubles"),
        pytest.param({"reload": ["/bin/kill", "x" * 4090]}, "reload", id="reload"),
        pytest.param({"environment": {"BIG": "v" * MB}}, "environment", id="env-megabyte"),
        pytest.param({"environment": {"BIG": "%" * 3000}}, "environment.BIG", id="env-line-after-escaping"),
        pytest.param({"working_directory": "/" + "d" * 300}, "working_directory", id="path-name-over-255"),
        pytest.param({"working_directory": ("/" + "d" * 200) * 25}, "working_directory", id="path-over-4095"),
        pytest.param({"state_directory": "demo/" + "s" * 256}, "state_directory", id="directory-name-over-255"),
        pytest.param({"hardening": {"read_write_paths": [f"/srv/demo/{i:0200}" for i in range(30)]}}, None),
        pytest.param({"after": ["a" * 250 + ".service"] * 20}, "after", id="after-line"),
        pytest.param({"extra": {"Service": {"LimitCORE": "x" * 4090}}}, "extra.Service.LimitCORE", id="extra"),
        pytest.param({"package": {"version": "1", "maintainer": "a <b@c>", "description": "p" * MB}}, None),
    ],
)
def test_values_too_long_for_a_unit_are_refused_by_key(changes: dict[str, Any], key: str | None) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({"description": "Demo", "exec": ["/bin/true"], **changes}, name="demo", where="demo.toml")
    if key is not None:
        assert caught.value.key == key
    assert "too long" in str(caught.value)
    assert_safe_to_print(str(caught.value))


def test_values_at_the_limits_render_a_unit_systemd_loads(tmp_path: Path) -> None:
    # The longest accepted values, escaping included, still make a unit systemd-analyze verifies.
    launcher_overhead = len("ExecStart=/usr/libexec/demo/demo-launcher -- /bin/echo ") + 1
    spec = parse_spec(
        {
            "description": "d" * 80,
            "exec": ["/bin/echo", "a" * (LINE_MAX - launcher_overhead - 1)],
            "environment": {"BIG": "v" * (LINE_MAX - len('Environment="BIG="') - 1)},
            "working_directory": "/" + "w" * 255,
        },
        name="demo",
    )
    units = [f for f in render(spec) if f.path.suffix == ".service"]
    assert max(len(line) for f in units for line in f.content.split(b"\n")) == LINE_MAX - 1
    write_tree(render(spec), tmp_path / "stage")
    assert verify(tmp_path / "stage", "demo") == ""


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        pytest.param(lambda p: p.write_bytes(b"#" * (SPEC_FILE_MAX + 1)), "larger than", id="over-1-MiB"),
        pytest.param(lambda p: p.mkdir(), "cannot be read", id="a-directory"),
        pytest.param(lambda p: p.symlink_to("/dev/zero"), "larger than", id="dev-zero-does-not-hang"),
    ],
)
def test_spec_files_that_are_not_specs(tmp_path: Path, make: Any, problem: str) -> None:
    path = tmp_path / "demo.toml"
    make(path)
    assert problem in str(load_error(path))


def test_strings_are_bounded_even_where_no_unit_line_is_involved() -> None:
    with pytest.raises(SpecError, match=f"at most {TEXT_MAX}"):
        parse_spec(
            {"description": "Demo", "exec": ["/bin/true"], "package": {"version": "1", "maintainer": "x" * MB}},
            name="demo",
        )


def test_text_refuses_exactly_the_control_and_surrogate_code_points() -> None:
    """`text` checks with one regex, not unicodedata per character: the same set, every code point."""
    import sys
    import unicodedata

    from unitgen.spec.fields import FieldError, text

    def refused(ch: str) -> bool:
        try:
            text(f"a{ch}b")
        except FieldError:
            return True
        return False

    everything = range(sys.maxunicode + 1)
    extra = (0x2028, 0x2029)  # line and paragraph separators
    expected = {cp for cp in everything if unicodedata.category(chr(cp)) in ("Cc", "Cs") or cp in extra}
    assert {cp for cp in everything if refused(chr(cp))} == expected
