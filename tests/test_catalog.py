"""The journal catalog (issue 15 item 3): every unitgen-made package ships the launcher's catalog
entries in a file of its own, two packages install side by side, the real dpkg trigger (Debian's
systemd) or the rpm's %post rebuilds the catalog, and `journalctl -x` explains a contention."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e_helpers import example_toml
from unitgen.launcher.runtime import MESSAGE_ID_ALREADY_RUNNING, MESSAGE_ID_LOCK_ERROR
from unitgen.package import build_deb, build_rpm
from unitgen.package.from_spec import package_info
from unitgen.render.config import CATALOG_IDS, catalog_text
from unitgen.render.units import launcher_path, render
from unitgen.sandbox import Sandbox
from unitgen.spec import parse_spec
from unitgen.staging.tree import write_tree

PKGS = "/root/packages"
SUBJECT = "A unitgen single-instance service refused to start a second instance"
NAMES = ("cata", "catb")


def build(tmp: Path, name: str) -> dict[str, Path]:
    raw = example_toml("hello", exec=["/usr/bin/sleep", "600"], ready="immediate")
    spec = parse_spec(raw, name=name, where=f"{name}.toml")
    staging = tmp / f"staging-{name}"
    write_tree(render(spec), staging)
    info = package_info(spec, None)
    return {"deb": build_deb(staging, info, tmp / "dist"), "rpm": build_rpm(staging, info, tmp / "dist")}


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    tmp = tmp_path_factory.mktemp("catalog")
    return {name: build(tmp, name) for name in NAMES}


@pytest.fixture
def sb(sandbox: Sandbox, packages: dict[str, dict[str, Path]]) -> Iterator[Sandbox]:
    for name, built in packages.items():
        for fmt, path in built.items():
            sandbox.copy_in(path, f"{PKGS}/{name}.{fmt}")
    sandbox.run(["rm", "-f", "/usr/sbin/policy-rc.d"])
    yield sandbox


def explained(sb: Sandbox, name: str) -> str:
    """`journalctl -x` for the service's contention entries, as an operator would look."""
    argv = ["journalctl", "-x", "--no-pager", f"MESSAGE_ID={MESSAGE_ID_ALREADY_RUNNING}", f"SYSLOG_IDENTIFIER={name}"]
    return sb.run(argv).stdout


def contend(sb: Sandbox, name: str) -> None:
    """A second instance by hand: refused with exit 17 and one contention entry."""
    sb.wait_for(lambda: sb.show(f"{name}.service", "ActiveState")["ActiveState"] == "active", 10, f"{name} up")
    assert sb.run([f"/usr/libexec/{name}/{name}-launcher"], check=False).returncode == 17
    sb.run(["journalctl", "--sync"])


def test_the_catalog_file_is_the_same_for_every_service_without_headers() -> None:
    a, b = (render(parse_spec(example_toml("hello"), name=n, where=f"{n}.toml")) for n in NAMES)
    [file_a] = [f for f in a if f.path.parent.name == "catalog"]
    [file_b] = [f for f in b if f.path.parent.name == "catalog"]
    assert str(file_a.path) == "usr/lib/systemd/catalog/cata.catalog"
    assert file_a.content == file_b.content == catalog_text()
    text = catalog_text().decode()
    assert [line for line in text.splitlines() if line.startswith("-- ")] == [f"-- {i}" for i in CATALOG_IDS.values()]
    # No header lines: right after each "-- ID" line comes the empty line that starts the body.
    lines = text.splitlines()
    assert all(lines[i + 1] == "" for i, line in enumerate(lines) if line.startswith("-- "))
    # journalctl reads it in the sandbox tests below; never run --update-catalog on the host (systemd 252
    # ignores $SYSTEMD_CATALOG and would rewrite the host's /var/lib/systemd/catalog/database).


@pytest.mark.root
def test_two_debs_install_side_by_side_and_journalctl_x_explains_a_contention_once(sb: Sandbox) -> None:
    sb.run(["dpkg", "-i", f"{PKGS}/cata.deb", f"{PKGS}/catb.deb"])  # no file conflict; the trigger runs
    contend(sb, "cata")

    text = explained(sb, "cata")
    assert text.count(SUBJECT) == 1, text  # two files with the same entries: shown once
    assert "lslocks" in text and "LOCK_HOLDER_PID" in text

    sb.run(["dpkg", "--purge", "catb"])  # the other package's file is enough
    assert explained(sb, "cata").count(SUBJECT) == 1
    sb.run(["dpkg", "--purge", "cata"])  # no unitgen package left: no entry left
    assert SUBJECT not in explained(sb, "cata")


@pytest.mark.root
def test_the_rpm_rebuilds_the_catalog_in_its_scriptlets(sb: Sandbox) -> None:
    sb.run(["rpm", "-i", "--nodeps", f"{PKGS}/catb.rpm"])
    contend(sb, "catb")
    assert explained(sb, "catb").count(SUBJECT) == 1
    sb.run(["rpm", "-e", "--nodeps", "catb"])
    assert SUBJECT not in explained(sb, "catb")


@pytest.mark.root
def test_a_lock_error_entry_is_explained_with_its_fields(sb: Sandbox) -> None:
    sb.run(["dpkg", "-i", f"{PKGS}/cata.deb"])
    sb.systemctl("stop", "cata.service")
    sb.run(["rm", "-rf", "/run/cata"])  # the lock's directory is gone: run by hand, exit 73
    assert sb.run([str(launcher_path(parse_spec(example_toml("hello"), name="cata")))], check=False).returncode == 73
    sb.run(["journalctl", "--sync"])
    text = sb.run(["journalctl", "-x", "--no-pager", f"MESSAGE_ID={MESSAGE_ID_LOCK_ERROR}"]).stdout
    assert "could not open or lock its single-instance lock file" in text
    assert "(/run/cata/cata.pid, errno 2)" in text  # @LOCK_PATH@ and @ERRNO@ filled in
