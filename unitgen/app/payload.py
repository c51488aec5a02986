"""The app's virtual environment, built into a staging tree at its final path.

    payload = build_app(spec.app, staging)   # staging/usr/lib/NAME/venv, for /usr/bin/python3

What ends up under `staging/<app.venv>`: a venv made by the target's own interpreter
(`/usr/bin/python3 -m venv --without-pip`: `pyvenv.cfg` says `home = /usr/bin`, `bin/python*` are
symlinks to the system interpreter), the app and every dependency installed from wheels by pip
(`--only-binary=:all:`; the app's own project is built into a wheel first with `pip wheel
--no-deps`, from a copy of it, so the user's tree stays clean), scripts whose shebang is the
venv's final `bin/python`, no pip, setuptools or wheel, and no bytecode: the package compiles it
after install and removes it before removal (`AppPayload.compile_argv`, `cleanup_argv`).

How the venv gets its final path: build at a scratch path, then rewrite.
    The venv is made and filled at a short scratch path in the temporary directory (short: pip
    writes a /bin/sh trampoline instead of a shebang for interpreter paths over 127 bytes). Every
    occurrence of the scratch path is then replaced by the final path (shebangs, `pyvenv.cfg`, the
    activate scripts), the hashes in the `RECORD` files are recomputed for the files that changed,
    `direct_url.json` files that name a local file (the app wheel's scratch copy) are dropped, as
    PEP 610 allows for a non-URL install, and the venv is moved into the staging tree (renamed
    into place at the end, so a failed build leaves nothing). A binary file that still contains a
    build path is an error rather than a silent corruption; pure-Python wheels never have one, and
    compiled wheels from an index use relative RPATHs ($ORIGIN).
    The alternative, building directly at the final path inside a private mount namespace, was
    rejected: it needs root (or user namespaces), and a bind mount needs a mount point at
    `/usr/lib/NAME` on the build machine, i.e. a change to the host's `/usr` that a build must not
    make (bind-mounting over all of `/usr/lib` would hide the interpreter's own standard library).
    The rewrite runs unprivileged, on any machine with the target's interpreter.

pip is the one running unitgen (`python -m pip`, at least 22.3), driven with `--python` at the
scratch venv: the venv never contains pip, yet pip runs under the target interpreter, so markers,
tags and `Requires-Python` are judged for it (the build machine's own Python may differ).

With a requirements (lock) file the dependencies come from it alone: `pip install -r FILE`, then
the app with `--no-deps`, then `pip check`, so a lock that misses a dependency fails the build
instead of the service, and a lock with `--hash` pins works (pip cannot hash a freshly built
app wheel). Without one, pip resolves the app's dependencies itself.

Reproducibility: the same inputs give the same tree. File contents do not depend on the scratch
path or the time; modes are normalised (0755 for directories and executables, 0644 otherwise,
whatever the umask); with SOURCE_DATE_EPOCH every mtime is set to it (and the wheel build sees it).
"Same inputs" includes the index's answer: without a lock pip takes the newest matching release.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from unitgen.errors import UnitgenError
from unitgen.reproducible import source_date_epoch
from unitgen.run import CommandError, run
from unitgen.spec import App

TARGET_PYTHON = "/usr/bin/python3"
PIP_MIN = (22, 3)  # pip --python: run pip for another interpreter's environment

# Not copied when the app's project is built: build output and caches. The copy keeps the
# user's tree clean (an in-tree build writes build/ and *.egg-info) and lets builds run in parallel.
_PROJECT_IGNORE = shutil.ignore_patterns(
    ".git", ".hg", ".svn", ".venv", "venv", ".tox", ".nox", "build", "dist", "*.egg-info", "__pycache__", "*.pyc"
)
_NO_WHEEL = re.compile(r"No matching distribution found for (.+)")
_WRONG_PYTHON = re.compile(r"Package '([^']+)' requires a different Python: (\S+) not in '([^']+)'")


@dataclass(frozen=True)
class AppPayload:
    """What `build_app` put into the staging tree; paths are the target's (final) paths."""

    venv: str
    """The venv, e.g. /usr/lib/NAME/venv."""
    python: str
    """The interpreter the venv is made for (its `bin/python*` point at it), e.g. /usr/bin/python3."""
    python_version: tuple[int, int]
    scripts: tuple[str, ...]
    """Names of the executables pip installed into `venv/bin` (console scripts and data scripts)."""
    distributions: tuple[tuple[str, str], ...]
    """(name, version) of every distribution in the venv, sorted by name."""
    compile_dirs: tuple[str, ...]
    """Directories whose bytecode the package compiles after install and removes before removal."""
    pure: bool
    """Nothing in the venv is compiled code (no ELF file): the package can be Architecture: all / noarch."""

    @property
    def bin_dir(self) -> str:
        return f"{self.venv}/bin"

    @property
    def compile_argv(self) -> tuple[str, ...]:
        """What the package runs after install (deb postinst `configure`, rpm %posttrans), right
        after `cleanup_argv`: compile the bytecode the package does not ship.

        checked-hash pycs (PEP 552) stay correct whatever the files' mtimes: packages built with
        one SOURCE_DATE_EPOCH give every file the same mtime, so a timestamp pyc could pass for a
        changed file of the same size, and an administrator's edit of a module is still noticed.
        Hashing the source on import costs nothing measurable at the sizes involved."""
        return (
            f"{self.venv}/bin/python",
            "-m",
            "compileall",
            "-q",
            "-f",
            "--invalidation-mode",
            "checked-hash",
            *self.compile_dirs,
        )

    @property
    def cleanup_argv(self) -> tuple[str, ...]:
        """What the package runs before its files are removed or replaced (deb prerm, rpm %preun
        on erase) and before compiling: remove every `__pycache__` under the venv, which the
        package does not own and which would otherwise keep its directories from being removed."""
        return ("find", self.venv, "-type", "d", "-name", "__pycache__", "-prune", "-exec", "rm", "-rf", "{}", "+")

    @property
    def depends(self) -> tuple[str, ...]:
        """The package relations on the exact Python the venv was built for (Debian syntax)."""
        major, minor = self.python_version
        return (f"python3 (>= {major}.{minor})", f"python3 (<< {major}.{minor + 1})")


def build_app(
    app: App,
    staging: Path,
    *,
    python: str = TARGET_PYTHON,
    pip: Sequence[str] | None = None,
) -> AppPayload:
    """Build `app`'s venv into `staging/<app.venv>` (replacing any previous one) for `python`.

    `pip` is the pip command to drive (default: this interpreter's `python -m pip`).
    Raises `UnitgenError` for a missing interpreter, project, wheel or requirements file, and when
    a dependency has no wheel.
    """
    _check_inputs(app, python)
    pip_argv = list(pip) if pip is not None else _default_pip()
    staging = staging.absolute()
    dest = staging / app.venv.lstrip("/")
    # Named after this process: if it is killed, the next sandbox boot (Sandbox.clean_stale) removes it.
    work = Path(tempfile.mkdtemp(prefix=f"unitgen-app-{os.getpid()}."))
    # Short on purpose: a shebang longer than 127 bytes makes pip write a /bin/sh trampoline.
    scratch = work / "venv"
    try:
        _run_step(
            # The prompt would be the scratch directory's name: give it the final one's.
            [python, "-m", "venv", "--without-pip", "--prompt", Path(app.venv).name, scratch],
            f"{python} could not create a virtual environment",
        )
        version = _python_version(scratch)
        pip_venv = [*pip_argv, "--python", str(scratch / "bin/python"), "--disable-pip-version-check", "--no-input"]
        wheels = [*app.wheels]
        if app.project is not None:
            wheels.append(str(_build_project(Path(app.project), work, [*pip_venv, "wheel", *_index_options(app)])))
        _install(app, wheels, pip_venv, version, work)
        site = scratch / f"lib/python{version[0]}.{version[1]}/site-packages"
        _finish_tree(scratch, site, final=app.venv, leaks=[str(work), str(staging)])
        _move_into_place(scratch, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    site = dest / f"lib/python{version[0]}.{version[1]}/site-packages"
    return AppPayload(
        venv=app.venv,
        python=python,
        python_version=version,
        scripts=_scripts(dest, site),
        distributions=_distributions(site),
        compile_dirs=(f"{app.venv}/{site.relative_to(dest).as_posix()}",),
        pure=not any(_is_elf(p) for p in _walk(dest)),
    )


def _is_elf(path: Path) -> bool:
    if path.is_symlink() or not path.is_file():
        return False
    with path.open("rb") as f:
        return f.read(4) == b"\x7fELF"


def _move_into_place(venv: Path, dest: Path) -> None:
    """Replace `dest` by `venv`: copied next to it first (maybe across file systems), then renamed."""
    _make_parents(dest.parent)
    incoming = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        shutil.move(venv, incoming / "venv")
        _normalise(incoming / "venv")
        if dest.is_symlink() or dest.is_file():
            dest.unlink()
        elif dest.exists():
            shutil.rmtree(dest)
        (incoming / "venv").rename(dest)
    finally:
        shutil.rmtree(incoming, ignore_errors=True)


def _check_inputs(app: App, python: str) -> None:
    if not (Path(python).is_file() and os.access(python, os.X_OK)):
        raise UnitgenError(
            f"the target interpreter {python} does not exist",
            hint="the venv is built for the interpreter the target runs: install it (on Debian: apt install python3)",
        )
    if app.project is not None and not (Path(app.project) / "pyproject.toml").is_file():
        raise UnitgenError(
            f"app.project: {app.project} has no pyproject.toml",
            hint="point 'project' at the directory of the app's pyproject.toml, or list built 'wheels' instead",
        )
    for wheel in app.wheels:
        if not wheel.endswith(".whl"):
            raise UnitgenError(f"app.wheels: {wheel} is not a wheel (*.whl)")
        if not Path(wheel).is_file():
            raise UnitgenError(f"app.wheels: {wheel} does not exist", hint="build it first, e.g. pip wheel --no-deps")
    if app.requirements is not None and not Path(app.requirements).is_file():
        raise UnitgenError(f"app.requirements: {app.requirements} does not exist")
    for directory in app.find_links:
        if not Path(directory).is_dir():
            raise UnitgenError(f"app.find_links: {directory} is not a directory")


def _default_pip() -> list[str]:
    hint = "install pip 22.3 or newer next to unitgen (pip install --upgrade pip)"
    if importlib.util.find_spec("pip") is None:
        raise UnitgenError(f"pip is not installed for {sys.executable}, which drives the venv build", hint=hint)
    version = metadata.version("pip")
    if tuple(int(part) for part in re.findall(r"\d+", version)[:2]) < PIP_MIN:
        raise UnitgenError(f"pip {version} is too old to build a venv for another interpreter (--python)", hint=hint)
    return [sys.executable, "-m", "pip"]


def _make_parents(directory: Path) -> None:
    """mkdir -p, with 0755 whatever the umask: these directories ship as they are."""
    missing = [p for p in [directory, *directory.parents] if not p.exists()]
    for path in reversed(missing):
        path.mkdir()
        path.chmod(0o755)


def _env() -> dict[str, str]:
    """The environment for the target's interpreter: nothing that points it at the build's Python."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE")}


def _run_step(
    argv: Sequence[str | Path], problem: str, *, hint: str | None = None, paths: Mapping[str, str] | None = None
) -> str:
    try:
        return run(argv, env=_env()).stdout
    except CommandError as exc:
        raise UnitgenError(f"{problem}:\n{_errors(exc, paths)}", hint=hint) from exc


# The last line of a Python traceback: "ValueError: ...", "setuptools.errors.X: ...".
_EXCEPTION_LINE = re.compile(r"^\s*[A-Za-z_][\w.]*(?:Error|Exception|Exit|Failure)\b.*:")
_FRAME_LINE = re.compile(r'^\s*(?:Traceback \(most recent call last\)|File ".*", line \d+)')
_MAX_LINES, _MAX_WIDTH = 8, 200


def _errors(exc: CommandError, paths: Mapping[str, str] | None = None) -> str:
    """The few lines that say what went wrong, not pip's ~20 lines of build-backend traceback: the
    backend's exception message (what follows its last traceback frame) and pip's ERROR lines,
    with scratch paths shown as the user's (`paths`: scratch -> user path). The full output is
    logged by `unitgen.run` and shown with --debug."""
    text = (exc.stderr or exc.stdout).strip()
    for scratch, user in (paths or {}).items():
        text = text.replace(f"file://{scratch}", user).replace(scratch, user)
    lines = [line.rstrip() for line in text.splitlines()]
    # ("ERROR: Exception:" only announces pip's own traceback, whose last line is kept below.)
    errors = [line.strip() for line in lines if line.startswith("ERROR") and line.strip() != "ERROR: Exception:"]
    cause: list[str] = []
    if any(_FRAME_LINE.match(line) for line in lines):
        starts = [i for i, line in enumerate(lines) if _EXCEPTION_LINE.match(line)]
        if starts:
            for line in lines[starts[-1] :]:
                if line.strip() in ("[end of output]", "") or line.startswith(("ERROR", "note:")):
                    break
                cause.append(line.strip())
    picked = cause + errors if cause or errors else [line.strip() for line in lines[-_MAX_LINES:] if line.strip()]
    return "\n".join(
        "  " + (line if len(line) <= _MAX_WIDTH else line[: _MAX_WIDTH - 3] + "...") for line in picked[-_MAX_LINES:]
    )


def _python_version(venv: Path) -> tuple[int, int]:
    code = "import sys; print(*sys.version_info[:2])"
    out = run([venv / "bin/python", "-I", "-c", code], env=_env()).stdout.split()
    return int(out[0]), int(out[1])


def _index_options(app: App) -> list[str]:
    options = ["--no-index"] if app.no_index else []
    for directory in app.find_links:
        options += ["--find-links", directory]
    return options


def _build_project(project: Path, work: Path, pip_wheel: list[str]) -> Path:
    """The app's project as a wheel, built from a copy (the user's tree stays untouched). Its build
    backend comes from where the dependencies come from (`no_index`, `find_links`), as a wheel."""
    source = work / "src"
    shutil.copytree(project, source, symlinks=True, ignore=_PROJECT_IGNORE)
    out = work / "wheels"
    _run_step(
        [*pip_wheel, "--no-deps", "--only-binary=:all:", "--wheel-dir", out, source],
        f"app.project: could not build a wheel of the app from {project / 'pyproject.toml'}",
        hint=f"fix {project / 'pyproject.toml'} (or its build backend); --debug shows pip's full output",
        paths={str(source): str(project)},
    )
    [wheel] = out.glob("*.whl")
    return wheel


def _install(app: App, wheels: list[str], pip_venv: list[str], version: tuple[int, int], work: Path) -> None:
    """One `pip install` of the app and its dependencies, wherever pip's resolver can vouch for
    the result (every pip process costs ~0.4 s of start-up and index reading):
    - no lock: pip resolves the app's dependencies itself, consistent by construction;
    - a lock with --hash pins: the lock plus the app's wheels, each pinned to its own sha256, in
      one file: hash-checking mode refuses any dependency the lock does not pin, and the
      resolver checks the lock's versions against what the app requires;
    - a lock without hashes: installed as written with --no-deps (nothing added from the index
      behind the lock's back), then `pip check` says whether the lock missed a dependency."""
    install = [*pip_venv, "install", "--no-compile", "--no-warn-script-location", "--only-binary=:all:"]
    install += _index_options(app)
    lock = Path(app.requirements) if app.requirements is not None else None
    try:
        if lock is None:
            run([*install, *wheels], env=_env())
            return
        # Relative paths in a lock (./wheels/x.whl) are relative to the lock file.
        if _HASH_PIN.search(lock.read_text(encoding="utf-8", errors="replace")):
            combined = work / "requirements-with-app.txt"
            pins = "".join(f"{Path(w).absolute()} --hash=sha256:{_sha256(Path(w))}\n" for w in wheels)
            combined.write_text(f"--requirement {lock.absolute()}\n{pins}", encoding="utf-8")
            run([*install, "--requirement", combined], env=_env(), cwd=lock.parent)
            return
        run([*install, "--no-deps", "--requirement", lock, *wheels], env=_env(), cwd=lock.parent)
    except CommandError as exc:
        raise _install_error(exc, version, lock) from exc
    try:
        run([*pip_venv, "check"], env=_env())
    except CommandError as exc:
        raise _lock_incomplete(lock, exc.stdout.strip()) from exc


_HASH_PIN = re.compile(r"(^|\s)--hash[=\s]", re.M)
# pip in hash-checking mode, for a dependency the lock does not pin (no ==, or no hash): the
# indented lines after it name the dependency.
_UNPINNED = re.compile(
    r"In --require-hashes mode, all requirements must have their versions pinned"
    r"|Hashes are required in --require-hashes mode, but they are missing"
)


def _unpinned(text: str) -> str:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if _UNPINNED.search(line))
    named = [line.strip() for line in lines[start + 1 :] if line.startswith((" ", "\t")) and line.strip()]
    return "\n".join(named[:10]) or lines[start].strip()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _lock_incomplete(lock: Path, detail: str) -> UnitgenError:
    return UnitgenError(
        f"the requirements file {lock} misses dependencies of the app:\n{detail}",
        hint="add them (pinned) to the requirements file, e.g. regenerate it with pip-compile or pip freeze",
    )


def _install_error(exc: CommandError, version: tuple[int, int], lock: Path | None = None) -> UnitgenError:
    text = exc.stderr + exc.stdout
    if lock is not None and _UNPINNED.search(text):
        return _lock_incomplete(lock, _unpinned(text))
    python = f"Python {version[0]}.{version[1]}"
    if match := _NO_WHEEL.search(text):
        requirement = match.group(1).strip()
        return UnitgenError(
            f"no wheel found for the dependency {requirement} that installs on {python}",
            hint="dependencies are installed from wheels only (nothing is built or downloaded on the target): "
            "if it exists only as source, build a wheel (pip wheel --no-deps NAME -w DIR) and add DIR to "
            "[app] find_links, or pin a version that has one",
        )
    if match := _WRONG_PYTHON.search(text):
        return UnitgenError(
            f"{match.group(1)} requires Python {match.group(3)}, but the target's interpreter is {python}",
            hint="the venv is built for the target's /usr/bin/python3; pick a version that supports it",
        )
    return UnitgenError(f"pip could not install the app:\n{_errors(exc)}")


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(dirnames + filenames):
            yield base / name


def _finish_tree(venv: Path, site: Path, *, final: str, leaks: Sequence[str]) -> None:
    """Make the scratch venv's content what it will be at `final`: see the module docstring."""
    for cache in [p for p in _walk(venv) if p.name == "__pycache__" and p.is_dir() and not p.is_symlink()]:
        shutil.rmtree(cache)
    for pyc in [p for p in _walk(venv) if p.suffix in (".pyc", ".pyo") and p.is_file()]:
        pyc.unlink()
    removed = _drop_local_direct_urls(site)
    changed = _rewrite_paths(venv, old=str(venv).encode(), new=final.encode(), leaks=leaks)
    changed |= _simple_shebangs(venv / "bin", final)
    changed |= _blank_module_shebangs(site)
    _fix_records(site, changed, removed)
    _drop_empty_dirs(venv)


def _drop_local_direct_urls(site: Path) -> set[Path]:
    """direct_url.json files naming a local file: they hold build paths and mean nothing on the target."""
    removed = set()
    for path in sorted(site.glob("*.dist-info/direct_url.json")):
        try:
            url = json.loads(path.read_text(encoding="utf-8")).get("url", "")
        except (ValueError, OSError):
            url = "file:"
        if str(url).startswith("file:"):
            path.unlink()
            removed.add(path)
    return removed


def _rewrite_paths(venv: Path, *, old: bytes, new: bytes, leaks: Sequence[str]) -> set[Path]:
    changed = set()
    for path in _walk(venv):
        if path.is_symlink():
            if old.decode() in str(path.readlink()):
                raise UnitgenError(f"{path}: a symbolic link into the build directory: {path.readlink()}")
            continue
        if not path.is_file():
            continue
        data = path.read_bytes()
        if old in data:
            if b"\0" in data:
                raise UnitgenError(
                    f"{path.relative_to(venv)} (binary) contains the build path {old.decode()}",
                    hint="only text files can be relocated to the venv's final path",
                )
            path.write_bytes(data.replace(old, new))
            changed.add(path)
            data = path.read_bytes()
        for leak in leaks:
            if leak.encode() in data:
                raise UnitgenError(f"{path.relative_to(venv)} contains the build path {leak}")
    return changed


# A script a wheel ships as it is (only `#!python` is rewritten by pip) for "some Python": on the
# target that would be the system's interpreter, without the venv's packages.
_SYSTEM_PYTHON_SHEBANG = re.compile(rb"\A#! ?(?:/usr/bin/env +|/usr(?:/local)?/bin/)python[0-9.]*( +-[^\n]*)?[ \t]*\n")


def _simple_shebangs(bin_dir: Path, final: str) -> set[Path]:
    """Every Python script in bin/ starts `#!FINAL/bin/python`. pip writes a /bin/sh trampoline
    instead when the interpreter's path is long (or has spaces), which the final path is not;
    a script shipped with `#!/usr/bin/env python3` or `#!/usr/bin/python3` would miss the venv."""
    python = re.escape(f"{final}/bin/python".encode())
    trampoline = re.compile(b"\\A#!/bin/sh\n'''exec' \"?(" + python + b'[0-9.]*)"? "\\$0" "\\$@"\n\' \'\'\'\n')
    changed = set()
    for script in sorted(bin_dir.iterdir()):
        if script.is_file() and not script.is_symlink():
            data = script.read_bytes()
            if match := trampoline.match(data):
                script.write_bytes(b"#!" + match.group(1) + b"\n" + data[match.end() :])
                changed.add(script)
            elif match := _SYSTEM_PYTHON_SHEBANG.match(data):
                flags = (match.group(1) or b"").rstrip()
                script.write_bytes(f"#!{final}/bin/python".encode() + flags + b"\n" + data[match.end() :])
                script.chmod(0o755)  # pip marks only the scripts it rewrote itself executable
                changed.add(script)
    return changed


def _drop_empty_dirs(venv: Path) -> None:
    """venv makes include/pythonX.Y for C headers no wheel install uses; an empty directory in a
    package is only noise (lintian: package-contains-empty-directory)."""
    for directory in sorted((p for p in _walk(venv) if p.is_dir() and not p.is_symlink()), reverse=True):
        if not any(directory.iterdir()):
            directory.rmdir()


def _blank_module_shebangs(site: Path) -> set[Path]:
    """A module that is not executable but starts with `#!` (bottle.py: `#!/usr/bin/env python`)
    is a script that can never run as one; lintian and rpmlint flag it, and its interpreter would
    be the wrong Python anyway. The line becomes empty, so line numbers in tracebacks stay right."""
    changed = set()
    for module in _walk(site):
        if (
            module.suffix == ".py"
            and module.is_file()
            and not module.is_symlink()
            and not module.stat().st_mode & 0o111
        ):
            data = module.read_bytes()
            if data.startswith(b"#!"):
                module.write_bytes(b"\n" + data.partition(b"\n")[2])
                changed.add(module)
    return changed


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def _fix_records(site: Path, changed: set[Path], removed: set[Path]) -> None:
    """Keep every RECORD true: new hashes for rewritten files, no lines for removed ones."""
    for record in sorted(site.glob("*.dist-info/RECORD")):
        with record.open(encoding="utf-8", newline="") as f:
            lines = f.readlines()
        out = []
        for line in lines:
            row = next(csv.reader([line]), [])
            if not row:
                out.append(line)
                continue
            target = Path(os.path.normpath(site / row[0]))
            if target in removed or "__pycache__" in target.parts:
                continue
            if target in changed and len(row) == 3:
                data = target.read_bytes()
                buffer = io.StringIO()
                csv.writer(buffer, lineterminator=line[len(line.rstrip("\r\n")) :] or "\n").writerow(
                    [row[0], _record_hash(data), str(len(data))]
                )
                line = buffer.getvalue()
            out.append(line)
        if out != lines:
            with record.open("w", encoding="utf-8", newline="") as f:
                f.writelines(out)


def _normalise(venv: Path) -> None:
    """Modes independent of the umask; mtimes from SOURCE_DATE_EPOCH when it is set."""
    epoch = source_date_epoch()
    for path in [venv, *_walk(venv)]:
        st = path.lstat()
        if not stat.S_ISLNK(st.st_mode):
            executable = stat.S_ISDIR(st.st_mode) or bool(st.st_mode & 0o111)
            path.chmod(0o755 if executable else 0o644)
        if epoch is not None:
            os.utime(path, (epoch, epoch), follow_symlinks=False)


def _scripts(venv: Path, site: Path) -> tuple[str, ...]:
    """Executables pip installed into bin/, as the RECORD files list them."""
    names = set()
    for record in site.glob("*.dist-info/RECORD"):
        with record.open(encoding="utf-8", newline="") as f:
            for row in csv.reader(f):
                if row and Path(os.path.normpath(site / row[0])).parent == venv / "bin":
                    names.add(Path(row[0]).name)
    return tuple(sorted(names))


def _distributions(site: Path) -> tuple[tuple[str, str], ...]:
    found = {(d.metadata["Name"], d.version) for d in metadata.distributions(path=[str(site)])}
    return tuple(sorted(found, key=lambda nv: (nv[0].lower(), nv[1])))
