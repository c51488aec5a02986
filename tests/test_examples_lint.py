"""The bundled examples, packaged through the CLI as a user would, pass lintian and rpmlint."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGED = ["hello", "ticker", "webapp", "echo", "pool"]

# Each warning left, and why it stays:
JUSTIFIED_RPMLINT = {
    "only-non-binary-in-usr-lib",  # units, sysusers.d and tmpfiles.d files must live in /usr/lib
    "invalid-license",  # Debian's rpmlint ships an empty list of valid licenses: every license warns
    "files-duplicate",  # the venv's dist-info INSTALLER files all say "pip"
    "dangling-relative-symlink",  # venv/bin/python3 -> /usr/bin/python3, which the python3 dependency provides
}


def run(*argv: str, cwd: Path, ok: tuple[int, ...] = (0,)) -> str:
    # A scratch TMPDIR per call: lintian leaves its mldbm-elf-* files behind in it.
    with tempfile.TemporaryDirectory(prefix="unitgen-lint.") as scratch:
        # PYTHONPATH: `-m unitgen` runs this checkout's code whatever the venv's install points at.
        env = {**os.environ, "TMPDIR": scratch, "PYTHONPATH": str(ROOT)}
        result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False, timeout=600, env=env)
    assert result.returncode in ok, f"{argv[0]} exited {result.returncode}: {result.stdout}{result.stderr}"
    return result.stdout + result.stderr


@pytest.fixture(scope="module", params=PACKAGED)
def packages(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    name: str = request.param
    work = tmp_path_factory.mktemp(name)
    spec = ROOT / "examples" / name / f"{name}.toml"
    out = run(sys.executable, "-m", "unitgen", "package", name, "--spec", str(spec), cwd=work)
    [deb] = (work / "dist").glob("*.deb") or [None]
    [rpm] = (work / "dist").glob("*.rpm") or [None]
    assert deb is not None and rpm is not None, out
    return name, deb, rpm


def test_lintian_has_no_errors_or_warnings(packages: tuple[str, Path, Path]) -> None:
    _, deb, _ = packages
    assert not lintian_problems(deb)


def lintian_problems(deb: Path) -> list[str]:
    """lintian's error and warning lines for `deb` (pedantic, with info tags shown for context)."""
    # lintian exits 0 when no tag is at error level, 1 when one is, 2+ when it could not check.
    out = run(
        "lintian",
        "--allow-root",
        "--pedantic",
        "--display-info",
        "--tag-display-limit",
        "0",
        str(deb),
        cwd=ROOT,
        ok=(0, 1),
    )
    return [line for line in out.splitlines() if re.match(r"^[EW]: ", line)]


MINIMAL = 'exec = ["/bin/sleep", "infinity"]\n'
PACKAGE = '[package]\nversion = "1.0"\nmaintainer = "Jane Doe <jane@example.com>"\n'
TIMER = 'exec = ["/bin/true"]\n[timer]\non_calendar = "daily"\n'


@pytest.mark.parametrize(
    ("name", "toml"),
    [
        pytest.param("tiny", f'description = "Tiny"\n{MINIMAL}{PACKAGE}', id="description-is-the-name"),
        pytest.param("tiny", f'description = "tiny: Server"\n{MINIMAL}{PACKAGE}', id="name-colon-one-word"),
        pytest.param("tiny", f'description = "Tiny web server."\n{MINIMAL}{PACKAGE}', id="starts-with-the-name"),
        pytest.param("service", f'description = "Service"\n{MINIMAL}{PACKAGE}', id="named-service"),
        pytest.param("tiny", f'description = "A static web server"\n{MINIMAL}{PACKAGE}', id="article"),
        pytest.param("ticktock", f'description = "Job"\n{TIMER}{PACKAGE}', id="timer-one-word"),
        pytest.param(
            "tiny",
            f'description = "Tiny serves {"files and " * 5}more from disk"\n{MINIMAL}{PACKAGE}',
            id="prefixed-over-80",  # 'Service: ' makes it 85 columns
        ),
        pytest.param(
            "tiny",
            f'description = "Static web server"\n{MINIMAL}{PACKAGE}description = "Static web server."\n',
            id="long-description-repeats-it",
        ),
        pytest.param(
            "tiny",
            f'description = "Static web server"\n{MINIMAL}{PACKAGE}description = """Static web server.\n\n'
            f'  {"preformatted " * 8}line"""\n',
            id="long-preformatted-line",
        ),
    ],
)
def test_minimal_specs_package_lintian_clean(tmp_path: Path, name: str, toml: str) -> None:
    """Whatever short or odd description a spec has, the .deb passes lintian (the synopsis and
    long description are derived, never the package name, one word, or each other's copy)."""
    spec = tmp_path / f"{name}.toml"
    spec.write_text(toml)
    out = run(sys.executable, "-m", "unitgen", "package", name, "--format", "deb", cwd=tmp_path)
    [deb] = (tmp_path / "dist").glob("*.deb") or [None]
    assert deb is not None, out
    assert not lintian_problems(deb)


def test_rpmlint_has_no_errors_and_only_justified_warnings(packages: tuple[str, Path, Path], tmp_path: Path) -> None:
    name, _, rpm = packages
    rc = tmp_path / "rpmlintrc"
    rc.write_text('addFilter("no-signature")\n')  # signing is a release step with the vendor's key
    out = run("rpmlint", "-r", str(rc), str(rpm), cwd=ROOT, ok=(0, 64, 66))  # 64: errors, 66: badness
    tags = re.findall(rf"^{name}\.noarch: ([EW]): (\S+)", out, re.M)
    assert tags or "0 errors" in out, out  # rpmlint really ran
    assert not [t for t in tags if t[0] == "E"], out
    assert {t[1] for t in tags} <= JUSTIFIED_RPMLINT, out
