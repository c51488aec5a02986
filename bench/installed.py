"""unitgen in its installed form, for the benches' child processes (issue 12). Not a test.

Users do not run unitgen from the dev venv (pyenv's interpreter, an editable install whose site
imports setuptools' editable finder: `-c pass` takes 50-70 ms here, /usr/bin/python3's 22-27 ms).
unitgen's own .deb (packaging/unitgen.in, built by scripts/package-self) runs `#!/usr/bin/python3` with its modules
on sys.path (/usr/share/unitgen), their bytecode compiled at install, and Debian's python3-jinja2;
a pip install into a plain venv has no editable finder either. So the benches run unitgen as that:
`/usr/bin/python3 STUB`, STUB being packaging/unitgen.in with this checkout's root in place of
/usr/share/unitgen, and the checkout's bytecode compiled beforehand by that interpreter
(`-m compileall`). When /usr/bin/python3 cannot run unitgen (no jinja2, older than 3.11), the
benches say so and fall back to the interpreter running them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"
INSTALLED_PRIVATE = '"/usr/share/unitgen"'  # the line of unitgen.in that the stub changes


@dataclass(frozen=True)
class Installed:
    python: str  # the interpreter of every unitgen child
    stub: Path  # `unitgen`: packaging/unitgen.in with the checkout on sys.path
    env: dict[str, str]  # the children's environment
    note: str  # what was chosen and why, for the bench's header

    @property
    def unitgen(self) -> list[str]:
        """argv of the `unitgen` command, as the kernel runs it from its #! line."""
        return [self.python, str(self.stub)]

    def code(self, source: str) -> list[str]:
        """argv of `python -c SOURCE` with the checkout on sys.path, as the stub puts it."""
        return [self.python, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r})\n{source}"]

    def compile(self) -> float:
        """Compile the checkout's bytecode with this interpreter, as the package does at install;
        return when it started, for `warn_if_changed`. Others edit this checkout while a bench runs:
        each bench compiles again before it starts."""
        started = time.time()
        subprocess.run([self.python, "-m", "compileall", "-q", "unitgen"], cwd=ROOT, env=self.env, check=True)
        return started


def warn_if_changed(started: float) -> None:
    """Say so when a unitgen module was edited since `started`: its bytecode was then stale, every
    child compiled it again (the stub writes no bytecode), and the times include that."""
    changed = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "unitgen").rglob("*.py") if p.stat().st_mtime >= started)
    if changed:
        print(f"  WARNING: edited while the bench ran (compiled in every child that imports them, which "
              f"inflates its times): {', '.join(changed)}")  # fmt: skip


def child_env(**extra: str) -> dict[str, str]:
    """The environment, less what an installed unitgen would not see: PYTHONDONTWRITEBYTECODE (the
    bytecode is compiled beforehand, and the stub writes none anyway) and PYTHONPATH."""
    drop = {"PYTHONDONTWRITEBYTECODE", "PYTHONPATH"}
    return {k: v for k, v in os.environ.items() if k not in drop} | extra


def _runs_unitgen(python: str) -> str | None:
    """None when `python` can run unitgen (3.11 or newer, jinja2 importable), else why not."""
    probe = "import sys, jinja2; sys.exit(sys.version_info < (3, 11))"
    try:
        done = subprocess.run([python, "-c", probe], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except OSError as e:
        return str(e)
    if done.returncode == 0:
        return None
    return done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "older than Python 3.11"


def prepare(scratch: Path) -> Installed:
    """Pick the interpreter and write the stub into `scratch`."""
    why_not = _runs_unitgen(SYSTEM_PYTHON)
    if why_not is None:
        python = SYSTEM_PYTHON
        note = f"unitgen installed form: {SYSTEM_PYTHON} STUB (packaging/unitgen.in, this checkout on sys.path)"
    else:
        python = sys.executable
        note = (f"unitgen installed form NOT AVAILABLE: {SYSTEM_PYTHON} cannot run unitgen ({why_not}); "
                f"falling back to {python} (with its site)")  # fmt: skip
    text = (ROOT / "packaging/unitgen.in").read_text()
    if not text.startswith("#!") or INSTALLED_PRIVATE not in text:
        raise SystemExit(f"bench: packaging/unitgen.in is no longer a #! script with {INSTALLED_PRIVATE} on sys.path")
    lines = text.replace(INSTALLED_PRIVATE, repr(str(ROOT))).splitlines(keepends=True)
    stub = scratch / "unitgen"
    stub.write_text(f"#!{python}\n" + "".join(lines[1:]))
    stub.chmod(0o755)
    return Installed(python, stub, child_env(), note)
