"""unitgen's own .deb and .rpm (packaging/, scripts/package-self): lint-clean, reproducible, and working.

The install test runs in a sandboxed systemd (never on the host): install, run `unitgen render` and
`unitgen package` from /usr/bin/unitgen, remove, and check that nothing of the package is left.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest

from unitgen.sandbox import Sandbox

ROOT = Path(__file__).parent.parent
VERSION = "0.1.0"

JUSTIFIED_RPMLINT = {
    "no-url-tag",  # the project has no public home page yet
    "invalid-license",  # Debian's rpmlint ships an empty list of valid licenses: every license warns
    "manpage-not-compressed",  # Debian's rpmlint expects .bz2 man pages; Fedora's own rpms use gzip too
    "no-manual-page-for-binary",  # the same check: it does not count the .gz manual page
}


def package_self(dist: Path, epoch: str = "1700000000") -> tuple[Path, Path]:
    env = {**os.environ, "SOURCE_DATE_EPOCH": epoch}
    subprocess.run([ROOT / "scripts/package-self", dist], check=True, capture_output=True, env=env, timeout=300)
    return dist / f"unitgen_{VERSION}_all.deb", dist / f"unitgen-{VERSION}-1.noarch.rpm"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return package_self(tmp_path_factory.mktemp("self"))


def lint(*argv: str, ok: tuple[int, ...]) -> str:
    # A scratch TMPDIR per call: lintian leaves its mldbm-elf-* files behind in it.
    with tempfile.TemporaryDirectory(prefix="unitgen-lint.") as scratch:
        env = {**os.environ, "TMPDIR": scratch}
        result = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env, check=False)
    assert result.returncode in ok, f"{argv[0]} exited {result.returncode}: {result.stdout}{result.stderr}"
    return result.stdout + result.stderr


def test_deb_carries_the_command_modules_templates_and_manual(built: tuple[Path, Path]) -> None:
    deb, _ = built
    listing = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True, check=True).stdout
    for path in ("./usr/bin/unitgen", "./usr/share/unitgen/unitgen/cli/__init__.py",
                 "./usr/share/man/man1/unitgen.1.gz", "./usr/share/doc/unitgen/copyright",
                 "./usr/share/bash-completion/completions/unitgen", "./usr/share/zsh/vendor-completions/_unitgen",
                 "./usr/share/fish/vendor_completions.d/unitgen.fish",
                 "./usr/share/unitgen/unitgen-output.schema.json"):  # fmt: skip
        assert path in listing
    assert re.search(r"usr/share/unitgen/unitgen/templates/.*service\.j2", listing)
    assert "__pycache__" not in listing and ".pyc" not in listing  # compiled on the target, for its python3
    fields = subprocess.run(["dpkg-deb", "-f", deb, "Depends", "Recommends"], capture_output=True, text=True).stdout
    assert "python3-jinja2" in fields and "python3-systemd" in fields


def test_lintian_has_no_errors_or_warnings(built: tuple[Path, Path]) -> None:
    deb, _ = built
    out = lint("lintian", "--allow-root", "--pedantic", "--display-info", "--tag-display-limit", "0", str(deb), ok=(0,))
    assert not [line for line in out.splitlines() if re.match(r"^[EW]: ", line)], out


def test_rpmlint_has_no_errors_and_only_justified_warnings(built: tuple[Path, Path], tmp_path: Path) -> None:
    _, rpm = built
    rc = tmp_path / "rpmlintrc"
    rc.write_text('addFilter("no-signature")\n')  # signing is a release step with the vendor's key
    out = lint("rpmlint", "-r", str(rc), str(rpm), ok=(0, 64, 66))  # 64: errors, 66: badness
    tags = re.findall(r"^unitgen\.noarch: ([EW]): (\S+)", out, re.M)
    assert tags or "0 errors" in out, out  # rpmlint really ran
    assert not [t for t in tags if t[0] == "E"], out
    assert {t[1] for t in tags} <= JUSTIFIED_RPMLINT, out


def test_two_builds_of_one_commit_are_identical(built: tuple[Path, Path], tmp_path: Path) -> None:
    deb, rpm = built
    again_deb, again_rpm = package_self(tmp_path)
    assert again_deb.read_bytes() == deb.read_bytes()
    assert again_rpm.read_bytes() == rpm.read_bytes()


RUN_THE_COMMAND = """
set -e
cd /root/work
unitgen --version
unitgen render hello
test -f build/hello/usr/lib/systemd/system/hello.service
unitgen package hello --format deb
ls dist/hello_*.deb
"""


OWN = ("/usr/share/unitgen", "/usr/bin/unitgen", "/usr/share/doc/unitgen", "/usr/share/man/man1/unitgen")


def owned_paths(sb: Sandbox, listing: list[str]) -> list[str]:
    """The package's paths still on disk (directories shared with the system, like /usr/bin, excluded)."""
    own = [path for path in listing if path.startswith(OWN)]
    return [path for path in own if sb.run(["test", "-e", path], check=False).returncode == 0]


@pytest.mark.root
@pytest.mark.parametrize("kind", ["deb", "rpm"])
def test_installs_works_and_removes_cleanly_in_a_sandbox(built: tuple[Path, Path], sandbox: Sandbox, kind: str) -> None:
    deb, rpm = built
    package = deb if kind == "deb" else rpm
    sandbox.copy_in(package, f"/root/{package.name}")
    sandbox.copy_in(ROOT / "examples/hello", "/root/work")
    if kind == "deb":
        sandbox.run(["dpkg", "-i", f"/root/{package.name}"])
        listing = sandbox.run(["dpkg-query", "-L", "unitgen"]).stdout.split()
    else:
        # The sandbox's rpm database is empty: Debian's python3 and python3-jinja2 provide what it requires.
        sandbox.run(["rpm", "-i", "--nodeps", f"/root/{package.name}"])
        listing = sandbox.run(["rpm", "-ql", "unitgen"]).stdout.split()
    assert sandbox.run(["test", "-d", "/usr/share/unitgen/unitgen/__pycache__"], check=False).returncode == 0
    out = sandbox.run(["sh", "-c", RUN_THE_COMMAND], env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}).stdout
    assert re.search(r"dist/hello_.*\.deb", out)

    if kind == "deb":
        sandbox.run(["dpkg", "--purge", "unitgen"])
    else:
        sandbox.run(["rpm", "-e", "unitgen"])
    assert owned_paths(sandbox, listing) == []
    assert sandbox.run(["test", "-e", "/usr/share/unitgen"], check=False).returncode != 0  # bytecode gone too
