"""The .rpm writer, checked with the real rpm, rpm2cpio and rpmlint (they only read the package)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_package_helpers import EPOCH, NAME, golden, make_info, make_staging, tool
from unitgen.package import Compression, build_rpm
from unitgen.package.from_spec import package_info
from unitgen.package.scripts import rpm_scriptlets, sysusers_compat
from unitgen.render.units import render
from unitgen.sandbox import Sandbox
from unitgen.spec import load_spec
from unitgen.staging.tree import write_tree

EXAMPLES = Path(__file__).parent.parent / "examples"

# rpmlint warnings the realistic package gets, each with the reason it stays.
JUSTIFIED_RPMLINT_WARNINGS = {
    # rpmlint 2.4 as packaged by Debian has no distribution license list configured
    # (ValidLicenses = []), so every License value is "invalid"; ours are SPDX identifiers.
    "invalid-license",
    # systemd units, sysusers.d and tmpfiles.d live in /usr/lib by definition (systemd.unit(5),
    # sysusers.d(5), tmpfiles.d(5)); /usr/share would not be read.
    "only-non-binary-in-usr-lib",
    # The ghost /run/NAME is created by tmpfiles.d (systemd-tmpfiles --create NAME.conf in %post,
    # and at every boot), which rpmlint cannot see: it looks for the path in the %post text.
    "postin-without-ghost-file-creation",
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    tmp = tmp_path_factory.mktemp("rpm")
    staging = make_staging(tmp / "staging")
    (staging / "run" / NAME).mkdir(parents=True)  # a ghost
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOURCE_DATE_EPOCH", EPOCH)
        yield staging, build_rpm(staging, make_info(), tmp / "dist")


def q(rpm: Path, *args: str) -> str:
    return tool("rpm", "-qp", *args, str(rpm))


def test_digests_verify(built: tuple[Path, Path]) -> None:
    _, rpm = built
    assert rpm.name == f"{NAME}-1.0-1.noarch.rpm"
    assert tool("rpm", "-K", str(rpm)).strip() == f"{rpm}: digests OK"
    verbose = tool("rpm", "-Kv", str(rpm))
    for digest in ("Header SHA256", "Header SHA1", "Payload SHA256", "MD5"):
        assert f"{digest} digest: OK" in verbose


def test_tags(built: tuple[Path, Path]) -> None:
    _, rpm = built
    fmt = "%{NAME}|%{VERSION}|%{RELEASE}|%{ARCH}|%{LICENSE}|%{URL}|%{SUMMARY}|%{BUILDTIME}|%{SOURCERPM}"
    assert q(rpm, "--qf", fmt).split("|") == [
        NAME, "1.0", "1", "noarch", "MIT", "https://example.org/ugdemo",
        "Example service used by the packaging tests", EPOCH, f"{NAME}-1.0-1.src.rpm",
    ]  # fmt: skip
    assert q(rpm, "--qf", "%{PAYLOADCOMPRESSOR} %{PAYLOADFLAGS} %{PAYLOADFORMAT}") == "gzip 6 cpio"
    golden("rpm-info", q(rpm, "-i"))
    golden("rpm-changelog", q(rpm, "--changelog"))


def test_file_list_flags_and_ownership(built: tuple[Path, Path]) -> None:
    _, rpm = built
    listing = q(rpm, "--qf", "[%{FILENAMES}|%{FILEFLAGS:fflags}|%{FILEMODES:perms}|%{FILEUSERNAME}:%{FILEGROUPNAME}\n]")
    golden("rpm-files", listing)
    rows = {line.split("|")[0]: line.split("|")[1:] for line in listing.splitlines()}
    assert rows[f"/etc/default/{NAME}"][0] == "cn"  # %config(noreplace)
    assert rows[f"/run/{NAME}"][0] == "g"  # %ghost
    assert rows[f"/usr/share/doc/{NAME}/README"][0] == "d"
    assert rows[f"/usr/share/licenses/{NAME}/LICENSE"][0] == "l"
    assert rows[f"/usr/libexec/{NAME}/{NAME}-launcher"][1] == "-rwxr-xr-x"
    assert rows[f"/usr/libexec/{NAME}"][1] == "drwxr-xr-x"  # the package's own directory
    for system_dir in ("/usr", "/usr/lib", "/usr/lib/systemd/system", "/etc", "/etc/default", "/run"):
        assert system_dir not in rows  # owned by the filesystem package, never by us
    assert all(owner == "root:root" for _, _, owner in rows.values())
    assert q(rpm, "--configfiles").split() == [f"/etc/default/{NAME}"]


def test_dump_matches_staging(built: tuple[Path, Path]) -> None:
    staging, rpm = built
    for line in q(rpm, "--dump").splitlines():
        path, size, mtime, digest, mode = line.split()[:5]
        assert int(mtime) <= int(EPOCH)
        source = staging / path.lstrip("/")
        if source.is_file():
            assert int(size) == source.stat().st_size
            assert digest == hashlib.sha256(source.read_bytes()).hexdigest()
            assert int(mode, 8) & 0o777 == source.stat().st_mode & 0o777


def test_payload_extracts_to_staging(built: tuple[Path, Path], tmp_path: Path) -> None:
    staging, rpm = built
    root = tmp_path / "root"
    root.mkdir()
    tool("sh", "-c", 'cd "$1" && rpm2cpio "$2" | cpio -idmu --quiet', "sh", str(root), str(rpm))
    for path in staging.rglob("*"):
        rel = path.relative_to(staging)
        if path.is_file():
            assert (root / rel).read_bytes() == path.read_bytes()
    assert not (root / "run").exists()  # ghosts have no payload


def test_dependencies(built: tuple[Path, Path]) -> None:
    _, rpm = built
    requires = q(rpm, "--requires")
    golden("rpm-requires", requires)
    assert "python3 >= 3.11" in requires.splitlines()
    assert "/usr/bin/python3" in requires.splitlines()  # the launcher's interpreter
    assert not [r for r in requires.splitlines() if "PayloadIsXz" in r]  # gzip needs no rpmlib feature
    assert q(rpm, "--provides").splitlines() == [f"config({NAME}) = 1.0-1", f"{NAME} = 1.0-1"]


def test_rpmlint_has_no_errors(built: tuple[Path, Path], tmp_path: Path) -> None:
    _, rpm = built
    # An unsigned package is an rpmlint error; signing is a release step with the vendor's key
    # (rpmsign --addsign), which an unsigned build, rpmbuild's included, cannot do for itself.
    rc = tmp_path / "rpmlintrc"
    rc.write_text('addFilter("no-signature")\n')
    out = tool("rpmlint", "-r", str(rc), str(rpm), check=False)
    tags = re.findall(rf"^{NAME}\.noarch: ([EW]): (\S+)", out, re.M)
    assert not [t for t in tags if t[0] == "E"], out
    assert {t[1] for t in tags} <= JUSTIFIED_RPMLINT_WARNINGS, out


def test_scriptlets_golden_and_shellcheck(built: tuple[Path, Path], tmp_path: Path) -> None:
    _, rpm = built
    golden("rpm-scripts", q(rpm, "--scripts"))
    for tag in ("PREIN", "POSTIN", "PREUN", "POSTUN"):
        assert q(rpm, "--qf", f"%{{{tag}PROG}}") == "/bin/sh"
        body = q(rpm, "--qf", f"%{{{tag}}}")
        path = tmp_path / tag
        path.write_text("#!/bin/sh\n" + body)
        tool("sh", "-n", str(path))
        tool("shellcheck", "--shell=sh", "--severity=style", str(path))


VARIANTS = [
    pytest.param({}, id="default"),
    pytest.param({"units": (f"{NAME}.service", f"{NAME}.timer"), "timer": True}, id="timer"),
    pytest.param({"start": False}, id="no-start"),
    pytest.param({"enable": False}, id="no-enable"),
    pytest.param({"restart_on_upgrade": False}, id="no-restart"),
    pytest.param({"sysusers": (), "tmpfiles": (), "purge": ()}, id="units-only"),
    pytest.param(
        {"configure": (("find", "/x y", "-name", "*.pyc"),), "unconfigure": (("rm", "-r", "/x y"),)}, id="commands"
    ),
]


@pytest.mark.parametrize("change", VARIANTS)
def test_scriptlet_semantics(tmp_path: Path, change: dict[str, Any]) -> None:
    staging = make_staging(tmp_path / "st", timer=True)
    s = rpm_scriptlets(staging, make_info(**change))
    for name, body in s.items():
        path = tmp_path / name
        path.write_text("#!/bin/sh\n" + body)
        tool("sh", "-n", str(path))
        tool("shellcheck", "--shell=sh", "--severity=style", str(path))
    enable = f"{NAME}.timer" if change.get("timer") else f"{NAME}.service"
    # %systemd_post: presets on first install only ($1 = 1), never on upgrade.
    if change.get("enable", True):
        assert re.search(rf'if \[ "\$1" -eq 1 \]; then\n\s+systemctl --no-reload preset {enable} ', s["post"])
    else:
        assert "systemctl --no-reload preset" not in s["post"]
    # %systemd_preun: disable and stop only on erase ($1 = 0), so an upgrade keeps it running.
    assert re.search(r'if \[ "\$1" -eq 0 \]; then\n\s+systemctl --no-reload disable', s["preun"])
    assert "systemctl stop" not in s["preun"].split("-eq 0 ]; then", 1)[0]
    # %systemd_postun_with_restart: try-restart after an upgrade ($1 >= 1).
    if change.get("restart_on_upgrade", True):
        assert re.search(rf'if \[ "\$1" -ge 1 \]; then\n\s+systemctl try-restart {enable} ', s["postun"])
    else:
        assert "try-restart" not in s["postun"]
    if change.get("start") is False:
        assert "systemctl start" not in s["post"]
    assert ("pre" in s) == bool(change.get("sysusers", True))
    assert ("posttrans" in s) == ("configure" in change)
    if "configure" in change:
        assert "find '/x y' -name '*.pyc'\n" in s["posttrans"]
        assert re.search(r'if \[ "\$1" -eq 0 \]; then\n\s+rm -r \'/x y\' \|\| :', s["preun"])


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param(
            'u web 990 "Web server" /srv/web /bin/sh',
            [
                "getent group web >/dev/null || groupadd -r -g 990 web",
                "getent passwd web >/dev/null || useradd -r -g web -u 990 -d /srv/web -s /bin/sh -c 'Web server' web",
            ],
            id="user-with-ids",
        ),
        pytest.param(
            "u app -",
            [
                "getent group app >/dev/null || groupadd -r app",
                "getent passwd app >/dev/null || useradd -r -g app -d / -s /usr/sbin/nologin -c app app",
            ],
            id="user-defaults",
        ),
        pytest.param(
            'g ops -\nu web -:ops "Web server"',
            [
                "getent group ops >/dev/null || groupadd -r ops",
                "getent passwd web >/dev/null || useradd -r -g ops -d / -s /usr/sbin/nologin -c 'Web server' web",
            ],
            id="user-in-a-named-group",
        ),
        pytest.param(
            "u web 990:991",
            [
                "getent group web >/dev/null || groupadd -r -g 991 web",
                "getent passwd web >/dev/null || useradd -r -g web -u 990 -d / -s /usr/sbin/nologin -c web web",
            ],
            id="user-with-uid-and-gid",
        ),
        pytest.param("g grp 42", ["getent group grp >/dev/null || groupadd -r -g 42 grp"], id="group"),
        pytest.param("# comment\nm app grp", [], id="skipped"),
    ],
)
def test_sysusers_compat(line: str, expected: list[str]) -> None:
    assert sysusers_compat(line) == expected


@pytest.mark.root
def test_pre_fallback_without_sysusers_puts_the_user_in_its_group(tmp_path: Path) -> None:
    """The rendered %pre, run for real by rpm in the sandbox on a system without systemd-sysusers
    (hidden by a bind mount of /dev/null, which is not executable): the useradd fallback."""
    spec = load_spec(EXAMPLES / "hello/hello.toml")
    spec = dataclasses.replace(spec, user="ugweb", group="ugops")
    staging = tmp_path / "staging"
    write_tree(render(spec), staging)
    rpm = build_rpm(staging, package_info(spec, None), tmp_path / "dist")
    with Sandbox.boot("rpm-pre-fallback") as sb:
        sb.copy_in(rpm, "/root/hello.rpm")
        script = "mount --bind /dev/null /usr/bin/systemd-sysusers && rpm -i --nodeps /root/hello.rpm"
        sb.run(["unshare", "--mount", "sh", "-c", script])
        assert sb.run(["id", "-gn", "ugweb"]).stdout == "ugops\n"
        assert sb.run(["getent", "group", "ugweb"], check=False).returncode == 2  # no stray group


@pytest.mark.parametrize("compression", [pytest.param(c, id=c.value) for c in Compression])
def test_reproducible_with_source_date_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compression: Compression
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    first = build_rpm(make_staging(tmp_path / "a"), make_info(), tmp_path / "d1", compression=compression)
    staging = make_staging(tmp_path / "b")
    for path in staging.rglob("*"):
        os.utime(path, (int(EPOCH) + 1000, int(EPOCH) + 1000))
    second = build_rpm(staging, make_info(), tmp_path / "d2", compression=compression)
    assert first.read_bytes() == second.read_bytes()
    assert "digests OK" in tool("rpm", "-K", str(first))
    requires = q(first, "--requires").splitlines()
    assert ("rpmlib(PayloadIsXz) <= 5.2-1" in requires) == (compression is Compression.XZ)
    assert ("rpmlib(PayloadIsZstd) <= 5.4.18-1" in requires) == (compression is Compression.ZSTD)
    assert q(first, "--qf", "%{PAYLOADCOMPRESSOR}") == compression.value


def test_rich_and_versioned_dependencies(tmp_path: Path) -> None:
    info = make_info(
        depends=("python3 (>= 3.11)", "systemd | systemd-standalone-sysusers"),
        recommends=("python3-systemd",),
        conflicts=("ugdemo-legacy (<< 2)",),
    )
    rpm = build_rpm(make_staging(tmp_path / "st"), info, tmp_path / "dist")
    assert "(systemd or systemd-standalone-sysusers)" in q(rpm, "--requires").splitlines()
    assert "rpmlib(RichDependencies) <= 4.12.0-1" in q(rpm, "--requires").splitlines()
    assert q(rpm, "--recommends").split("\n")[0] == "python3-systemd"
    assert q(rpm, "--conflicts").strip() == "ugdemo-legacy < 2"
    assert "digests OK" in tool("rpm", "-K", str(rpm))


def test_symlinks_are_packaged(tmp_path: Path) -> None:
    staging = make_staging(tmp_path / "st")
    (staging / "usr/sbin").mkdir()
    target = f"../libexec/{NAME}/{NAME}-launcher"
    (staging / "usr/sbin" / NAME).symlink_to(target)
    rpm = build_rpm(staging, make_info(), tmp_path / "dist")
    rows = [line.split() for line in q(rpm, "--dump").splitlines()]
    link = next(r for r in rows if r[0] == f"/usr/sbin/{NAME}")
    assert link[4] == "0120777" and link[-1] == target and int(link[1]) == len(target)
    assert "digests OK" in tool("rpm", "-K", str(rpm))
    root = tmp_path / "root"
    root.mkdir()
    tool("sh", "-c", 'cd "$1" && rpm2cpio "$2" | cpio -idmu --quiet', "sh", str(root), str(rpm))
    assert (root / "usr/sbin" / NAME).readlink() == Path(target)
