"""The .deb writer, checked with the real dpkg-deb and lintian (they only read the package)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_package_helpers import EPOCH, NAME, golden, make_info, make_staging, tool
from unitgen.app.payload import AppPayload
from unitgen.package import Compression, PackageInfo, build_deb, build_rpm
from unitgen.package.from_spec import package_info
from unitgen.package.scripts import deb_scripts
from unitgen.render.units import render
from unitgen.spec import load_spec
from unitgen.staging.tree import write_tree


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    tmp = tmp_path_factory.mktemp("deb")
    staging = make_staging(tmp / "staging")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOURCE_DATE_EPOCH", EPOCH)
        yield staging, build_deb(staging, make_info(), tmp / "dist")


def test_file_name_and_members(built: tuple[Path, Path]) -> None:
    _, deb = built
    assert deb.name == f"{NAME}_1.0-1_all.deb"
    assert tool("ar", "t", str(deb)).split() == ["debian-binary", "control.tar.gz", "data.tar.gz"]
    assert deb.read_bytes()[:8] == b"!<arch>\n"


def test_control_fields(built: tuple[Path, Path]) -> None:
    _, deb = built
    control = tool("dpkg-deb", "-f", str(deb))
    golden("deb-control", control)
    fields = dict(re.findall(r"^([A-Za-z-]+): (.*)$", control, re.M))
    assert fields["Package"] == NAME
    assert fields["Version"] == "1.0-1"
    assert fields["Architecture"] == "all"
    assert fields["Depends"] == "python3 (>= 3.11), systemd | systemd-standalone-sysusers | systemd-sysusers"
    listing = tool("dpkg-deb", "-c", str(deb))
    sizes = [int(line.split()[2]) for line in listing.splitlines()]
    kinds = [line[0] for line in listing.splitlines()]
    expected = sum((s + 1023) // 1024 if k == "-" else 1 for s, k in zip(sizes, kinds, strict=True)) - 1
    assert int(fields["Installed-Size"]) == expected  # "./" itself is not counted, as dpkg-gencontrol


def test_contents_are_sorted_root_owned_with_parents(built: tuple[Path, Path]) -> None:
    _, deb = built
    lines = tool("dpkg-deb", "-c", str(deb)).splitlines()
    names = [line.split()[-1] for line in lines]
    golden("deb-contents", "\n".join(line.split(maxsplit=5)[5] + " " + line.split()[0] for line in lines) + "\n")
    assert names[0] == "./"
    assert all(line.split()[1] == "root/root" for line in lines)
    assert all(f"{line.split()[3]} {line.split()[4]}" == "2023-11-14 22:13" for line in lines)
    assert names == sorted(names, key=lambda n: n.rstrip("/").encode())
    for name in names[1:]:
        parent = name.rstrip("/").rpartition("/")[0] + "/"
        assert parent in names[: names.index(name)], name
    assert f"./usr/share/doc/{NAME}/copyright" in names
    assert f"./usr/share/doc/{NAME}/changelog.Debian.gz" in names


def test_extracted_tree_matches_staging_and_md5sums(built: tuple[Path, Path], tmp_path: Path) -> None:
    staging, deb = built
    tool("dpkg-deb", "-x", str(deb), str(tmp_path / "root"))
    tool("dpkg-deb", "-e", str(deb), str(tmp_path / "control"))
    for path in staging.rglob("*"):
        rel = path.relative_to(staging)
        if path.is_file():
            assert (tmp_path / "root" / rel).read_bytes() == path.read_bytes()
            assert (tmp_path / "root" / rel).stat().st_mode & 0o777 == path.stat().st_mode & 0o777
    assert (tmp_path / "control/conffiles").read_text() == f"/etc/default/{NAME}\n"
    sums = (tmp_path / "control/md5sums").read_text().splitlines()
    listed = {line.split("  ", 1)[1] for line in sums}
    assert f"etc/default/{NAME}" not in listed  # conffiles are tracked by dpkg itself
    for line in sums:
        digest, name = line.split("  ", 1)
        assert hashlib.md5((tmp_path / "root" / name).read_bytes(), usedforsecurity=False).hexdigest() == digest
    golden("deb-copyright", (tmp_path / "root" / f"usr/share/doc/{NAME}/copyright").read_text())


def test_lintian_has_no_errors_or_warnings(built: tuple[Path, Path]) -> None:
    _, deb = built
    out = tool("lintian", "--display-info", "--display-experimental", "--pedantic", "--tag-display-limit", "0",
               str(deb), check=False)  # fmt: skip
    tags = [line for line in out.splitlines() if re.match(r"^[EWIPXO]: ", line)]
    bad = [t for t in tags if t[0] in "EW"]
    assert not bad, "\n".join(tags)
    # What is left is informational; these are the ones the realistic package is known to get.
    left = {t.split()[2] for t in tags}
    assert left <= {
        "package-supports-alternative-init-but-no-init.d-script",
        "systemd-service-file-missing-hardening-features",
    }, tags


def test_scripts_golden(built: tuple[Path, Path], tmp_path: Path) -> None:
    _, deb = built
    tool("dpkg-deb", "-e", str(deb), str(tmp_path / "control"))
    for name in ("postinst", "prerm", "postrm"):
        path = tmp_path / "control" / name
        assert path.stat().st_mode & 0o777 == 0o755
        golden(f"deb-{name}", path.read_text())
    assert not (tmp_path / "control/preinst").exists()


VARIANTS = [
    pytest.param({}, id="default"),
    pytest.param({"units": (f"{NAME}.service", f"{NAME}.timer"), "timer": True}, id="timer"),
    pytest.param({"start": False}, id="no-start"),
    pytest.param({"enable": False}, id="no-enable"),
    pytest.param({"restart_on_upgrade": False}, id="no-restart"),
    pytest.param({"restart_on_upgrade": False, "start": False}, id="no-restart-no-start"),
    pytest.param({"sysusers": (), "tmpfiles": (), "purge": ()}, id="units-only"),
    pytest.param({"purge": ("/var/lib/ugdemo", "/var/log/ugdemo dir")}, id="purge-with-space"),
    pytest.param(
        {"configure": (("find", "/x y", "-name", "*.pyc"), ("true",)), "unconfigure": (("rm", "-rf", "/x y"),)},
        id="commands",
    ),
]


@pytest.mark.parametrize("change", VARIANTS)
def test_maintainer_scripts_pass_sh_n_and_shellcheck(tmp_path: Path, change: dict[str, Any]) -> None:
    staging = make_staging(tmp_path / "st", timer=True)
    scripts = deb_scripts(staging, make_info(**change))
    assert set(scripts) == {"postinst", "prerm", "postrm"}
    for name, text in scripts.items():
        assert text.startswith("#!/bin/sh\n") and "\nset -e\n" in text
        path = tmp_path / name
        path.write_text(text)
        tool("sh", "-n", str(path))
        tool("shellcheck", "--shell=sh", "--severity=style", str(path))
    postinst = scripts["postinst"]
    enabled = re.findall(r"deb-systemd-helper enable (\S+)", postinst)
    if change.get("timer"):
        assert enabled == [f"{NAME}.timer"]
        assert f"stop {NAME}.service {NAME}.timer" in scripts["prerm"]
    if change.get("start") is False:
        assert "deb-systemd-invoke start" not in postinst
    if change.get("restart_on_upgrade") is False:
        assert "deb-systemd-invoke restart" not in postinst
    if "configure" in change:
        # configured after tmpfiles, before the units are enabled and started
        assert postinst.index("systemd-tmpfiles") < postinst.index("find '/x y' -name '*.pyc'\n        true\n")
        assert postinst.index("true\n") < postinst.index("deb-systemd-helper")
        assert "        rm -rf '/x y' || true\n" in scripts["prerm"]


def test_no_scripts_without_lifecycle(tmp_path: Path) -> None:
    staging = make_staging(tmp_path / "st")
    info = make_info(units=(), sysusers=(), tmpfiles=(), purge=())
    assert deb_scripts(staging, info) == {}


def _build_twice(tmp_path: Path, info: PackageInfo, compression: Compression) -> tuple[bytes, bytes]:
    first = build_deb(make_staging(tmp_path / "a"), info, tmp_path / "d1", compression=compression)
    staging = make_staging(tmp_path / "b")
    for path in staging.rglob("*"):  # different, later mtimes: clamped away
        os.utime(path, (int(EPOCH) + 1000, int(EPOCH) + 1000))
    second = build_deb(staging, info, tmp_path / "d2", compression=compression)
    return first.read_bytes(), second.read_bytes()


@pytest.mark.parametrize("compression", [pytest.param(c, id=c.value) for c in Compression])
def test_reproducible_with_source_date_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compression: Compression
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    a, b = _build_twice(tmp_path, make_info(), compression)
    assert a == b
    (tmp_path / "x.deb").write_bytes(a)
    suffix = {Compression.GZIP: ".gz", Compression.XZ: ".xz", Compression.ZSTD: ".zst"}[compression]
    assert tool("ar", "t", str(tmp_path / "x.deb")).split()[1:] == [f"control.tar{suffix}", f"data.tar{suffix}"]
    assert "./etc/default/" in tool("dpkg-deb", "-c", str(tmp_path / "x.deb"))


def test_run_entries_are_not_shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    staging = make_staging(tmp_path / "st")
    (staging / "run" / NAME).mkdir(parents=True)
    deb = build_deb(staging, make_info(), tmp_path / "dist")
    assert "./run" not in tool("dpkg-deb", "-c", str(deb))


def test_existing_copyright_in_staging_is_refused(tmp_path: Path) -> None:
    from unitgen.errors import UnitgenError

    staging = make_staging(tmp_path / "st")
    (staging / f"usr/share/doc/{NAME}/copyright").write_text("mine\n")
    with pytest.raises(UnitgenError, match="already has"):
        build_deb(staging, make_info(), tmp_path / "dist")
    assert not list((tmp_path / "dist").glob("*.deb"))


def test_dpkg_accepts_non_first_release_without_override(tmp_path: Path) -> None:
    staging = make_staging(tmp_path / "st")
    deb = build_deb(staging, make_info(release="2"), tmp_path / "dist")
    assert "lintian/overrides" not in tool("dpkg-deb", "-c", str(deb))
    assert shutil.which("dpkg-deb")


@pytest.mark.parametrize(
    ("license_", "text", "expected"),
    [
        pytest.param("Apache-2.0", "ignored", "/usr/share/common-licenses/Apache-2.0", id="common-referenced"),
        pytest.param("GPL-3.0-or-later", None, "License: GPL-3+", id="dep5-short-name"),
        pytest.param("MIT", "Permission is hereby granted.", " Permission is hereby granted.", id="text"),
        pytest.param("LicenseRef-x", None, "distributed with the upstream sources", id="unknown"),
    ],
)
def test_copyright_license_paragraph(license_: str, text: str | None, expected: str) -> None:
    from unitgen.package.deb import copyright_file

    body = copyright_file(make_info(license=license_, license_text=text, copyright=None), 1_700_000_000)
    assert expected in body
    assert "Copyright: 2023 Jane Doe" in body  # a year, for lintian's copyright-notice check


def test_symlinks_are_packaged(tmp_path: Path) -> None:
    staging = make_staging(tmp_path / "st")
    (staging / "usr/sbin").mkdir()
    (staging / "usr/sbin" / NAME).symlink_to(f"../libexec/{NAME}/{NAME}-launcher")
    deb = build_deb(staging, make_info(), tmp_path / "dist")
    assert f"./usr/sbin/{NAME} -> ../libexec/{NAME}/{NAME}-launcher" in tool("dpkg-deb", "-c", str(deb))


def test_lintian_overrides_carry_their_justification() -> None:
    from unitgen.package.deb import lintian_overrides

    text = lintian_overrides(make_info(lintian_overrides=("unusual-interpreter # the venv's own python",)))
    assert text.splitlines() == [
        "# Built by unitgen for direct distribution, not uploaded to Debian: no ITP bug to close.",
        f"initial-upload-closes-no-bugs [usr/share/doc/{NAME}/changelog.Debian.gz:1]",
        "# the venv's own python",
        "unusual-interpreter",
    ]
    assert lintian_overrides(make_info(release="2")) == ""


def _app_payload(name: str) -> AppPayload:
    """The payload description package_info gets after a venv build for Python 3.11."""
    venv = f"/usr/lib/{name}/venv"
    return AppPayload(venv, "/usr/bin/python3", (3, 11), (), (), (f"{venv}/lib",), pure=True)


@pytest.mark.parametrize(
    ("app", "overrides", "deb_depends", "rpm_requires"),
    [
        pytest.param(
            False,
            '[package.deb]\ndepends = ["libfoo1"]\n[package.rpm]\ndepends = ["libfoo"]\n',
            "python3 (>= 3.11), libfoo1",
            ["libfoo", "python3 >= 3.11"],
            id="launcher-python-kept",
        ),
        pytest.param(
            True,
            '[package.deb]\ndepends = ["libfoo1", "python3 (>= 3.11)"]\n[package.rpm]\ndepends = ["libfoo"]\n',
            "python3 (>= 3.11), python3 (<< 3.12), libfoo1",
            ["libfoo", "python3 < 3.12", "python3 >= 3.11"],
            id="venv-python-pinned-kept",
        ),
        pytest.param(
            True,
            "",
            "python3 (>= 3.11), python3 (<< 3.12)",
            ["python3 < 3.12", "python3 >= 3.11"],
            id="no-override",
        ),
    ],
)
def test_format_overrides_add_to_what_unitgen_requires(
    tmp_path: Path, app: bool, overrides: str, deb_depends: str, rpm_requires: list[str]
) -> None:
    toml = tmp_path / "ugdep.toml"
    toml.write_text(
        'description = "Dependency test service"\nexec = ["/bin/sleep", "infinity"]\n'
        '[package]\nversion = "1.0"\nmaintainer = "Jane Doe <jane@example.com>"\n' + overrides
    )
    spec = load_spec(toml)
    staging = tmp_path / "staging"
    write_tree(render(spec), staging)
    info = package_info(spec, _app_payload(spec.name) if app else None)
    deb = build_deb(staging, info, tmp_path / "dist")
    assert tool("dpkg-deb", "-f", str(deb), "Depends").strip() == deb_depends
    rpm = build_rpm(staging, info, tmp_path / "dist")
    requires = tool("rpm", "-qp", "--requires", str(rpm)).splitlines()
    assert sorted(r for r in requires if not r.startswith(("rpmlib(", "/"))) == rpm_requires
