"""Rendering: golden units for the examples, determinism, escaping, atomic writes, and
systemd's own verdict (verify silent, exposure scores within the thresholds)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from unitgen.errors import UnitgenError
from unitgen.render.units import RenderedFile, render
from unitgen.spec import load_spec, parse_spec
from unitgen.staging.check import check
from unitgen.staging.tree import write_tree

ROOT = Path(__file__).parent.parent
EXAMPLES = sorted(p.parent.name for p in ROOT.glob("examples/*/*.toml") if p.stem == p.parent.name)
GOLDEN = Path(__file__).parent / "golden" / "render"
UPDATE_GOLDEN = os.environ.get("UNITGEN_UPDATE_GOLDEN") == "1"


def example(name: str) -> Path:
    return ROOT / "examples" / name / f"{name}.toml"


def by_path(files: list[RenderedFile]) -> dict[str, RenderedFile]:
    return {str(f.path): f for f in files}


@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_match_golden_units(name: str) -> None:
    """Unit files are reviewed as text: a change to a template shows up here as a diff.
    Regenerate with UNITGEN_UPDATE_GOLDEN=1 after checking the change is intended."""
    files = by_path(render(load_spec(example(name))))
    units = {p: f for p, f in files.items() if not p.startswith("usr/libexec/")}
    for path, rendered in units.items():
        golden = GOLDEN / name / path
        if UPDATE_GOLDEN:
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_bytes(rendered.content)
        assert golden.read_bytes().decode() == rendered.content.decode(), f"{path} differs from {golden}"
    expected = {str(p.relative_to(GOLDEN / name)) for p in (GOLDEN / name).rglob("*") if p.is_file()}
    assert expected == set(units)


@pytest.mark.parametrize("name", EXAMPLES)
def test_rendering_is_deterministic(name: str, tmp_path: Path) -> None:
    spec = load_spec(example(name))
    first, second = render(spec), render(load_spec(example(name)))
    assert first == second
    write_tree(first, tmp_path / "a")
    write_tree(second, tmp_path / "b")
    for f in first:
        assert (tmp_path / "a" / f.path).read_bytes() == (tmp_path / "b" / f.path).read_bytes()


def test_staging_tree_layout_and_modes(tmp_path: Path) -> None:
    out = tmp_path / "hello"
    write_tree(render(load_spec(example("hello"))), out)
    launcher = out / "usr/libexec/hello/hello-launcher"
    assert launcher.stat().st_mode & 0o777 == 0o755
    assert launcher.read_text().startswith("#!/usr/bin/python3")
    assert (out / "usr/lib/systemd/system/hello.service").stat().st_mode & 0o777 == 0o644
    assert (out / "usr/lib/sysusers.d/hello.conf").read_text().splitlines()[-1].startswith("u hello -")


def unit_lines(files: list[RenderedFile], unit: str) -> list[str]:
    return by_path(files)[f"usr/lib/systemd/system/{unit}"].content.decode().splitlines()


def test_hostile_values_are_escaped_not_injected() -> None:
    spec = parse_spec(
        {
            "description": '100% sure; $HOME "quoted"',
            "exec": ["/usr/bin/printf", "%s\\n", "$HOME", "a b", ";", "it's", '"'],
            "environment": {"A": 'x" "B=y', "P": "50%", "S": "back\\slash"},
        },
        name="hostile",
    )
    lines = unit_lines(render(spec), "hostile.service")
    assert 'Description=100%% sure; $HOME "quoted"' in lines
    exec_start = next(line for line in lines if line.startswith("ExecStart="))
    assert exec_start == (
        'ExecStart=/usr/libexec/hostile/hostile-launcher -- /usr/bin/printf "%%s\\\\n" $$HOME "a b" ";" "it\'s" "\\""'
    )
    assert 'Environment="A=x\\" \\"B=y"' in lines
    assert 'Environment="P=50%%"' in lines
    assert 'Environment="S=back\\\\slash"' in lines
    # One directive per line and nothing outside the known sections.
    assert [line for line in lines if line.startswith("[")] == ["[Unit]", "[Service]", "[Install]"]


def test_a_template_that_skips_escaping_still_cannot_emit_a_newline(tmp_path: Path) -> None:
    """Defence in depth: even a user template printing a raw value, fed a value that slipped
    past validation, cannot put a second directive into a unit."""
    (tmp_path / "units").mkdir()
    (tmp_path / "units/service.j2").write_text("Description={{ spec.description }}\n")
    spec = parse_spec({"description": "x", "exec": ["/bin/true"]}, name="guarded")
    assert render(spec, template_dirs=[tmp_path])  # the override is used and renders
    smuggled = dataclasses.replace(spec, description="x\nExecStartPre=/bin/evil")
    with pytest.raises(UnitgenError, match="control character"):
        render(smuggled, template_dirs=[tmp_path])


def test_user_templates_override_builtin_ones(tmp_path: Path) -> None:
    (tmp_path / "system").mkdir()
    (tmp_path / "system/tmpfiles.j2").write_text("# my own tmpfiles for {{ name }}\n")
    files = by_path(render(load_spec(example("hello")), template_dirs=[tmp_path]))
    assert files["usr/lib/tmpfiles.d/hello.conf"].content == b"# my own tmpfiles for hello\n"


def test_write_tree_is_all_or_nothing(tmp_path: Path) -> None:
    out = tmp_path / "svc"
    write_tree([RenderedFile(PurePosixPath("old.txt"), b"old")], out)
    # A real failure half-way: "a" is written as a file, then "a/b" needs it to be a directory.
    clash = [RenderedFile(PurePosixPath("a"), b"file"), RenderedFile(PurePosixPath("a/b"), b"x")]
    with pytest.raises(OSError):
        write_tree(clash, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["svc"]  # no temporary left behind
    assert sorted(p.name for p in out.iterdir()) == [".unitgen-output", "old.txt"]  # the previous tree untouched
    assert (out / "old.txt").read_bytes() == b"old"


THRESHOLDS: list[Any] = [
    pytest.param("hello", 1.5, id="network-service"),
    pytest.param("ticker", 1.5, id="timer-job"),
    pytest.param("quiet", 0.5, id="no-network"),
    pytest.param("webapp", 1.5, id="python-app"),
]


@pytest.mark.parametrize(("name", "threshold"), THRESHOLDS)
def test_systemd_analyze_verify_is_silent_and_scores_within_threshold(
    name: str, threshold: float, tmp_path: Path
) -> None:
    write_tree(render(load_spec(example(name))), tmp_path)
    report = check(tmp_path, name, threshold=threshold)
    assert report.verify_output == ""
    assert report.score <= threshold, f"{name}: exposure {report.score} > {threshold}"
    assert report.ok


def test_check_reports_a_broken_unit(tmp_path: Path) -> None:
    write_tree(render(load_spec(example("quiet"))), tmp_path)
    unit = tmp_path / "usr/lib/systemd/system/quiet.service"
    unit.write_text(unit.read_text().replace("Type=notify", "Type=notifyy"))
    report = check(tmp_path, "quiet", threshold=0.5)
    assert "Type" in report.verify_output or "notifyy" in report.verify_output
    assert not report.ok


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        pytest.param("service.j2", "move it to", id="flat-name-of-unitgen-0.1"),
        pytest.param("units/servcie.j2", "units/service.j2", id="typo"),
        pytest.param("launcher/launcher.py.j2", "units/service.j2", id="not-read-by-render"),
    ],
)
def test_an_override_that_replaces_nothing_is_an_error_not_ignored(tmp_path: Path, name: str, hint: str) -> None:
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_text("Description=mine\n")
    with pytest.raises(UnitgenError, match="does not override any template") as caught:
        render(load_spec(example("hello")), template_dirs=[tmp_path])
    assert hint in (caught.value.hint or "")
