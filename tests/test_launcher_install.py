"""The launcher as the packages install it, in a real systemd (a sandbox, never the host): the
postinst/%posttrans compiles the launcher module's bytecode, the service and a hand-run launcher
load it, the package itself ships none, and removal leaves no trace of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e_helpers import example_toml
from unitgen.launcher.runtime import EXIT_ALREADY_RUNNING
from unitgen.launcher.script import MODULE
from unitgen.package import build_deb, build_rpm
from unitgen.package.from_spec import package_info
from unitgen.render.units import launcher_path, render
from unitgen.sandbox import Sandbox
from unitgen.spec import parse_spec
from unitgen.staging.tree import write_tree

pytestmark = pytest.mark.root

DIRECTORY = "/usr/libexec/hello"


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox.boot("launcher-install") as sandbox:
        sandbox.run(["rm", "-f", "/usr/sbin/policy-rc.d"])  # the host image denies starts
        yield sandbox


@pytest.mark.parametrize(
    ("fmt", "install", "remove"),
    [
        pytest.param("deb", ["dpkg", "-i"], ["dpkg", "--purge", "hello"], id="deb"),
        pytest.param("rpm", ["rpm", "-i", "--nodeps"], ["rpm", "-e", "--nodeps", "hello"], id="rpm"),
    ],
)
def test_package_compiles_the_launcher_bytecode_and_removal_leaves_none(
    sb: Sandbox, tmp_path: Path, fmt: str, install: list[str], remove: list[str]
) -> None:
    spec = parse_spec(example_toml("hello"), name="hello", where="hello.toml")
    staging = tmp_path / "staging"
    write_tree(render(spec), staging)
    build = build_deb if fmt == "deb" else build_rpm
    package = build(staging, package_info(spec, None), tmp_path / "dist")
    sb.copy_in(package, f"/root/hello.{fmt}")

    sb.run([*install, f"/root/hello.{fmt}"])
    owned = sb.run(["dpkg", "-L", "hello"] if fmt == "deb" else ["rpm", "-ql", "hello"]).stdout.split()
    assert f"{DIRECTORY}/{MODULE}.py" in owned
    assert not [path for path in owned if "__pycache__" in path or path.endswith(".pyc")], "bytecode ships"
    pyc = sb.run(["find", f"{DIRECTORY}/__pycache__", "-name", f"{MODULE}.*.pyc"]).stdout.split()
    assert len(pyc) == 1, pyc

    # A second instance by hand loads that bytecode (python -v says where code objects come from).
    by_hand = sb.run(["/usr/bin/python3", "-IS", "-v", str(launcher_path(spec))], check=False)
    assert by_hand.returncode == EXIT_ALREADY_RUNNING, by_hand.stderr
    assert f"code object from '{pyc[0]}'" in by_hand.stderr

    sb.run(remove)
    assert sb.run(["test", "-e", DIRECTORY], check=False).returncode != 0, "removal left the launcher directory"
