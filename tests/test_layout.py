"""The layout keeps its promises: folders import only what is below them, the CLI starts light,
and the wheel carries every template and renders every example exactly as the checkout does."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "unitgen"
GOLDEN = ROOT / "tests/golden/render"

# The modules every folder may use: small, dependency-free helpers.
BASE = {
    "unitgen", "unitgen.errors", "unitgen.run", "unitgen.reproducible", "unitgen.resources", "unitgen.escape",
    "unitgen.digest",
}  # fmt: skip
# What each folder may import besides BASE and itself: the pipeline, read from the bottom up.
ALLOWED: dict[str, set[str]] = {
    "base": set(),
    "launcher": set(),
    "spec": set(),
    "sandbox": set(),
    "app": {"spec"},
    "render": {"spec", "launcher"},
    "package": {"spec", "app", "launcher"},  # the commands that compile the launcher's bytecode
    "staging": {"spec", "launcher", "render", "app"},
    "trial": {"spec", "launcher", "render", "app", "staging", "sandbox"},
    "publish": {"package"},
    "install": {"spec", "launcher", "render", "app", "staging", "package"},  # package: its pure helpers
    "cli": {"spec", "launcher", "render", "app", "staging", "sandbox", "package", "trial", "publish", "install"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def folder(module: str) -> str:
    if module in BASE:
        return "base"
    parts = module.split(".")
    return "cli" if parts[1] in ("cli", "__main__") else parts[1]


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {n for n in names if n == "unitgen" or n.startswith("unitgen.")}


def existing_module(name: str) -> str | None:
    """`unitgen.x.y` if it is a module or package of ours, else its parent's (for `from m import attr`)."""
    while name.count(".") >= 1:
        rel = Path(*name.split(".")[1:])
        if (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file():
            return name
        name = name.rsplit(".", 1)[0]
    return name


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_no_module_reaches_up_or_sideways(path: Path) -> None:
    me = module_name(path)
    mine = folder(me)
    bad = []
    for name in imported(path):
        target = existing_module(name) or name
        theirs = folder(target)
        if target in BASE or theirs == mine or theirs in ALLOWED[mine]:
            continue
        bad.append(target)
    # Deployed inside every service (the launcher, the fleet lock and its guard): standard library only.
    if me == "unitgen.launcher.runtime" or me.startswith("unitgen.launcher.fleet"):
        bad = sorted(imported(path))
    assert not bad, f"{me} ({mine}) imports {sorted(set(bad))}"


def test_importing_the_cli_loads_no_command_code() -> None:
    code = "import sys, unitgen.cli; print(' '.join(sorted(m for m in sys.modules if m.startswith('unitgen'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["unitgen", "unitgen.cli", "unitgen.errors"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    source = out / "src"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(source)], check=True)
    # The working tree, not only the last commit: copy what git tracks over the clone.
    tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(source)],
        check=True, capture_output=True,
    )  # fmt: skip
    [built] = out.glob("unitgen-*.whl")
    return built


def test_the_wheel_carries_every_template(wheel: Path) -> None:
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".j2")}
    in_git = {f"unitgen/templates/{p.relative_to(ROOT / 'templates')}" for p in (ROOT / "templates").rglob("*.j2")}
    assert in_git and shipped == in_git


def test_an_installed_wheel_renders_the_examples_like_the_golden_files(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = "import unitgen.resources as r; print(r.template_root())"
    where = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                           check=True).stdout.strip()  # fmt: skip
    assert where == str(target / "unitgen/templates")  # the packaged copy, not the checkout's
    examples = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())
    assert examples
    for name in examples:
        out = tmp_path / "out" / name
        spec = ROOT / "examples" / name / f"{name}.toml"
        subprocess.run([sys.executable, "-m", "unitgen", "render", name, "--spec", str(spec), "--out", str(out)],
                       cwd=tmp_path, env=env, capture_output=True, check=True)  # fmt: skip
        golden = {p.relative_to(GOLDEN / name): p.read_bytes() for p in (GOLDEN / name).rglob("*") if p.is_file()}
        rendered = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        assert {k: v for k, v in rendered.items() if k in golden} == golden, name
