"""`unitgen render` and `package` of an unchanged spec use the staging tree on disk, without loading
the spec or rendering (issue 12, unitgen.staging.stamp), and only when that tree is exactly what
rendering would write: any change of an input, or of the tree, renders again."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from unitgen.staging import stamp
from unitgen.staging.tree import STAMP

ROOT = Path(__file__).resolve().parent.parent
EPOCH = "1700000000"  # reproducible packages: two builds of the same tree are the same bytes

# The CLI in a process that reports whether it loaded the spec and the renderer. (Jinja alone
# does not say: the maintainer scripts have a cache of their own, unitgen.package.script_cache.)
RUN = """
import sys
from unitgen.cli import main
code = main(sys.argv[1:])
print("RENDERED" if "unitgen.spec" in sys.modules or "unitgen.render.units" in sys.modules else "REUSED")
raise SystemExit(code)
"""

CONFIG_SPEC = """\
description = "Reads its configuration from /etc"
exec = ["/usr/bin/sleep", "infinity"]

[config]
"/etc/cfgsvc/cfgsvc.conf" = "cfgsvc.conf"

[package]
version = "1.0"
maintainer = "unitgen tests <tests@example.org>"
"""


def package(cwd: Path, *args: str, pythonpath: Path = ROOT) -> str:
    """`unitgen package ARGS` in `cwd`: "RENDERED" or "REUSED"."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "SOURCE_DATE_EPOCH": EPOCH}
    result = subprocess.run(
        [sys.executable, "-c", RUN, "package", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.splitlines()[-1]


def deb_listing(deb: Path) -> str:
    return subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout


def control_field(deb: Path, field: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), field], capture_output=True, text=True, check=True).stdout


def unit_in(deb: Path, tmp: Path) -> str:
    out = tmp / "unpacked"
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(out)], check=True)
    return (out / "usr/lib/systemd/system/hello.service").read_text()


@pytest.fixture
def hello(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(ROOT / "examples/hello/hello.toml", work)
    return work


@pytest.fixture
def stamped(hello: Path) -> Path:
    """hello packaged once: its tree and stamp are on disk."""
    assert package(hello, "hello", "--format", "deb") == "RENDERED"
    assert (hello / "build/hello" / STAMP).is_file()
    return hello


def only_deb(work: Path) -> Path:
    [deb] = (work / "dist").glob("*.deb")
    return deb


def test_an_unchanged_spec_is_packaged_from_its_tree_to_the_same_bytes(stamped: Path) -> None:
    first = only_deb(stamped).read_bytes()
    only_deb(stamped).unlink()
    assert package(stamped, "hello", "--format", "deb") == "REUSED"
    assert only_deb(stamped).read_bytes() == first
    assert STAMP not in deb_listing(only_deb(stamped))
    assert package(stamped, "hello", "--format", "rpm") == "REUSED"
    [rpm] = (stamped / "dist").glob("*.rpm")
    files = subprocess.run(["rpm", "-qlp", str(rpm)], capture_output=True, text=True, check=True).stdout
    assert STAMP not in files and ".unitgen-output" not in files


def test_an_edited_spec_is_rendered_again(stamped: Path) -> None:
    spec = stamped / "hello.toml"
    spec.write_text(spec.read_text().replace('description = "', 'description = "Edited: ', 1))
    assert package(stamped, "hello", "--format", "deb") == "RENDERED"
    assert "Edited:" in unit_in(only_deb(stamped), stamped.parent)
    assert package(stamped, "hello", "--format", "deb") == "REUSED"  # stamped again


def test_a_package_version_bump_alone_reaches_the_package(stamped: Path) -> None:
    """The version is in the metadata, not in any rendered file: the tree stays, the stamp does not."""
    spec = stamped / "hello.toml"
    text = spec.read_text()
    assert 'version = "1.0.0"' in text
    spec.write_text(text.replace('version = "1.0.0"', 'version = "1.0.1"'))
    assert package(stamped, "hello", "--format", "deb") == "RENDERED"
    assert [p.name for p in (stamped / "dist").glob("*.deb")] == ["hello_1.0.0-1_all.deb", "hello_1.0.1-1_all.deb"]
    assert control_field(stamped / "dist/hello_1.0.1-1_all.deb", "Version").strip() == "1.0.1-1"


def test_a_file_edited_in_the_tree_is_rendered_over(stamped: Path) -> None:
    unit = stamped / "build/hello/usr/lib/systemd/system/hello.service"
    rendered = unit.read_text()
    unit.write_text(rendered.replace("NoNewPrivileges=yes", "NoNewPrivileges=no"))
    assert package(stamped, "hello", "--format", "deb") == "RENDERED"
    assert unit_in(only_deb(stamped), stamped.parent) == rendered


def test_a_file_added_to_the_tree_is_not_packaged(stamped: Path) -> None:
    planted = stamped / "build/hello/usr/bin/planted"
    planted.parent.mkdir(parents=True)
    planted.write_text("#!/bin/sh\n")
    assert package(stamped, "hello", "--format", "deb") == "RENDERED"
    assert "planted" not in deb_listing(only_deb(stamped))
    assert not planted.exists()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[: len(data) // 2], id="truncated"),
        pytest.param(lambda data: data[:-1] + bytes([data[-1] ^ 1]), id="one-bit"),
        pytest.param(lambda data: b"", id="empty"),
    ],
)
def test_a_damaged_stamp_renders_again(stamped: Path, damage: object) -> None:
    path = stamped / "build/hello" / STAMP
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    assert package(stamped, "hello", "--format", "deb") == "RENDERED"
    assert package(stamped, "hello", "--format", "deb") == "REUSED"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the stamp to another user (CI is root)")
def test_a_stamp_of_another_user_is_not_trusted(stamped: Path) -> None:
    path = stamped / "build/hello" / STAMP
    os.chown(path, 65534, 65534)
    assert package(stamped, "hello", "--format", "deb") == "RENDERED"


def test_a_stamp_others_can_write_is_not_trusted(stamped: Path) -> None:
    (stamped / "build/hello" / STAMP).chmod(0o666)
    assert package(stamped, "hello", "--format", "deb") == "RENDERED"


def test_an_edited_config_source_is_rendered_again(tmp_path: Path) -> None:
    (tmp_path / "cfgsvc.toml").write_text(CONFIG_SPEC)
    (tmp_path / "cfgsvc.conf").write_text("greeting = one\n")
    assert package(tmp_path, "cfgsvc", "--format", "deb") == "RENDERED"
    assert package(tmp_path, "cfgsvc", "--format", "deb") == "REUSED"
    (tmp_path / "cfgsvc.conf").write_text("greeting = two\n")
    assert package(tmp_path, "cfgsvc", "--format", "deb") == "RENDERED"
    shipped = tmp_path / "build/cfgsvc/etc/cfgsvc/cfgsvc.conf"
    assert shipped.read_text() == "greeting = two\n"


def test_an_edited_template_override_is_rendered_again(hello: Path) -> None:
    templates = hello / "templates/units"
    templates.mkdir(parents=True)
    service = (ROOT / "templates/units/service.j2").read_text()
    (templates / "service.j2").write_text(service)
    assert package(hello, "hello", "--format", "deb", "--templates", "templates") == "RENDERED"
    assert package(hello, "hello", "--format", "deb", "--templates", "templates") == "REUSED"
    (templates / "service.j2").write_text(service.replace("[Unit]", "[Unit]\n# site override", 1))
    assert package(hello, "hello", "--format", "deb", "--templates", "templates") == "RENDERED"
    assert "# site override" in unit_in(only_deb(hello), hello.parent)
    assert package(hello, "hello", "--format", "deb") == "RENDERED"  # without the override: another input


def test_a_changed_unitgen_renders_again(hello: Path, tmp_path: Path) -> None:
    """Another unitgen (here: one of its templates edited) is another input, though the spec is the same."""
    copy = tmp_path / "unitgen-copy"
    shutil.copytree(ROOT / "unitgen", copy / "unitgen", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "templates", copy / "templates")
    assert package(hello, "hello", "--format", "deb", pythonpath=copy) == "RENDERED"
    assert package(hello, "hello", "--format", "deb", pythonpath=copy) == "REUSED"
    template = copy / "templates/units/service.j2"
    template.write_text(template.read_text().replace("[Unit]", "[Unit]\n# a newer unitgen", 1))
    assert package(hello, "hello", "--format", "deb", pythonpath=copy) == "RENDERED"
    assert "# a newer unitgen" in unit_in(only_deb(hello), hello.parent)


def render(cwd: Path, *args: str) -> tuple[str, str]:
    """`unitgen render ARGS` in `cwd`: "RENDERED" or "REUSED", and what it printed before that."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", RUN, "render", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    *printed, verdict = result.stdout.splitlines()
    return verdict, "\n".join(printed)


def test_render_of_an_unchanged_spec_keeps_the_tree_and_reports_the_same(hello: Path) -> None:
    first = render(hello, "hello", "--json")
    tree = {p: p.read_bytes() for p in (hello / "build/hello").rglob("*") if p.is_file()}
    assert first[0] == "RENDERED"
    assert render(hello, "hello", "--json") == ("REUSED", first[1])  # the same document: paths, modes, digests
    assert render(hello, "hello")[0] == "REUSED"
    assert {p: p.read_bytes() for p in (hello / "build/hello").rglob("*") if p.is_file()} == tree


def test_render_then_package_then_render(hello: Path) -> None:
    """render's stamp carries no package metadata: the first package loads the spec once, and
    stamps it for the packages and renders after it."""
    assert render(hello, "hello")[0] == "RENDERED"
    assert package(hello, "hello", "--format", "deb") == "RENDERED"
    assert package(hello, "hello", "--format", "deb") == "REUSED"
    assert render(hello, "hello")[0] == "REUSED"
    assert package(hello, "hello", "--format", "deb") == "REUSED"


def test_a_batch_render_reuses_only_the_unchanged_trees(tmp_path: Path) -> None:
    for name in ("hello", "quiet", "ticker"):
        shutil.copy(ROOT / "examples" / name / f"{name}.toml", tmp_path)
    assert render(tmp_path, "hello", "quiet", "ticker")[0] == "RENDERED"
    assert render(tmp_path, "hello", "quiet", "ticker")[0] == "REUSED"
    spec = tmp_path / "quiet.toml"
    spec.write_text(spec.read_text().replace('description = "', 'description = "Edited: ', 1))
    verdict, printed = render(tmp_path, "hello", "quiet", "ticker")
    assert verdict == "RENDERED"
    assert "Edited:" in (tmp_path / "build/quiet/usr/lib/systemd/system/quiet.service").read_text()
    assert len(printed.splitlines()) > 3  # every service's files listed, reused or not


def test_a_spec_that_became_invalid_is_reported_not_packaged(stamped: Path) -> None:
    spec = stamped / "hello.toml"
    spec.write_text(spec.read_text() + "\nnot_a_key = 1\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "unitgen", "package", "hello"], cwd=stamped, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "not_a_key" in result.stderr


def test_the_files_a_spec_reads_are_the_ones_the_stamp_checks(tmp_path: Path) -> None:
    """Every file loading and rendering a spec opens is unitgen's code or templates, jinja2, the
    standard library, the Jinja bytecode cache, the spec, or one of `reads` (the [config] sources):
    a new key that reads a file must add it to what the stamp checks, or this fails."""
    (tmp_path / "cfgsvc.toml").write_text(CONFIG_SPEC)
    (tmp_path / "cfgsvc.conf").write_text("greeting = one\n")
    probe = f"""
import os, sys
from pathlib import Path
opened = []
sys.addaudithook(lambda event, args: opened.append(args[0]) if event == "open" and isinstance(args[0], str) else None)
from unitgen.spec import load_spec
from unitgen.render.units import render
spec = load_spec(Path("cfgsvc.toml"), "cfgsvc")
render(spec)
allowed = [{str(ROOT)!r}, os.path.dirname(os.__file__), os.path.dirname(os.path.dirname(__import__("jinja2").__file__)),
           os.path.expanduser("~/.cache/unitgen"), *[c.source for c in spec.config], os.path.abspath("cfgsvc.toml")]
print("\\n".join(p for p in map(os.path.abspath, opened) if not any(p == a or p.startswith(a + "/") for a in allowed)))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_a_stamp_that_cannot_be_written_is_no_error(tmp_path: Path) -> None:
    """Anything but plain data attached (a bug, never a user's input) leaves no stamp and no error:
    the next run renders, as without a stamp."""
    (tmp_path / "x.toml").write_text("description = 'x'\n")
    (tmp_path / STAMP).write_text("an older stamp\n")
    stamp.write(tmp_path, stamp.inputs(stamp.Source(tmp_path / "x.toml", "x")), (), [], {"not plain": object()})
    assert not (tmp_path / STAMP).exists()


def test_a_spec_edited_while_its_tree_is_rendered_leaves_a_stamp_that_does_not_match(
    hello: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The inputs are read before the spec is loaded: a spec edited after that (while rendering)
    gives a stamp of the older spec, so the next run renders again instead of trusting a tree
    that the stamp would vouch for wrongly."""
    from unitgen.render.units import render as render_files
    from unitgen.spec import load_spec
    from unitgen.staging.tree import write_tree

    monkeypatch.chdir(hello)
    source = stamp.Source(hello / "hello.toml", "hello")
    before = stamp.inputs(source)  # the spec as it was when the command started
    spec_file = hello / "hello.toml"
    spec_file.write_text(spec_file.read_text().replace('description = "', 'description = "Edited: ', 1))
    files = render_files(load_spec(spec_file, "hello"))
    out = hello / "build/hello"
    write_tree(files, out)
    stamp.write(out, before, stamp.digests(files), [], None)
    assert (out / STAMP).is_file()
    assert stamp.current(out, stamp.inputs(source)) is None
    stamp.write(out, stamp.inputs(source), stamp.digests(files), [], None)  # as the next run does
    assert stamp.current(out, stamp.inputs(source)) is not None
