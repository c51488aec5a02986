"""Rendering the launcher script: deterministic, injection-proof, standard-library only, fast path lean."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.launcher_helpers import (
    DEBIAN_PYTHON,
    LAUNCHER_PY,
    env,
    install_module,
    make_settings,
    rendered_launcher,
    run,
    short_tmpdir,
    start,
    stop,
    wait_for_holder,
)
from unitgen.errors import UnitgenError
from unitgen.launcher.runtime import EXIT_ALREADY_RUNNING, SETTINGS_KEYS, LauncherSettings
from unitgen.launcher.script import MODULE, compile_argv, launcher_source, notify_access, render_launcher

NASTY = "x'\"\\\n)); import os; os.system('touch /tmp/pwned') #{{ }}{% %}\u2028\0"


@pytest.fixture
def work() -> Iterator[Path]:
    with short_tmpdir() as path:
        yield path


def settings_in(source: str) -> object:
    """The SETTINGS literal of a rendered launcher, read back without executing anything."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == "SETTINGS":
            assert node.value is not None
            return ast.literal_eval(node.value)
    raise AssertionError("no SETTINGS in the rendered launcher")


def test_rendering_is_deterministic_and_ordered(work: Path) -> None:
    settings = make_settings(work / "demo.pid")
    shuffled: LauncherSettings = dict(reversed(list(settings.items())))  # type: ignore[assignment]
    assert render_launcher(settings) == render_launcher(shuffled)
    literal = settings_in(render_launcher(settings))
    assert isinstance(literal, dict) and list(literal) == list(SETTINGS_KEYS)


def test_rendered_stub_layout(work: Path) -> None:
    """The executable is a stub: the settings and a call into the module installed next to it."""
    source = render_launcher(make_settings(work / "demo.pid"), python="/opt/demo/venv/bin/python")
    assert source.startswith("#!/opt/demo/venv/bin/python -IS\n"), "one shebang argument: -I and -S"
    assert "def " not in source and "class " not in source, "the launcher's code is in the module"
    call = f"    from {MODULE} import main\n\n    del sys.path[0]\n    raise SystemExit(main(SETTINGS, sys.argv[1:]))\n"
    assert source.endswith(call)
    assert len(source.encode()) < 2048
    compile(source, "demo-launcher", "exec")


def test_module_is_the_runtime_without_its_main_block() -> None:
    module = launcher_source()
    assert LAUNCHER_PY.read_text().startswith(module.rstrip())
    assert 'if __name__ == "__main__":' not in module, "the module's own __main__ block is cut"
    compile(module, f"{MODULE}.py", "exec")


@pytest.mark.parametrize(
    "field", [pytest.param("name", id="name"), pytest.param("argv", id="argv"), pytest.param("lock_file", id="lock")]
)
def test_values_cannot_inject_code(work: Path, field: str) -> None:
    value: object = {"argv": [NASTY, NASTY], "lock_file": f"/{NASTY}"}.get(field, NASTY)
    settings = {**make_settings(work / "demo.pid"), field: value}
    source = render_launcher(settings)  # type: ignore[arg-type]
    assert settings_in(source) == settings
    tree = ast.parse(source)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", None) == "system"]
    assert calls == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"ready_timeout_sec": float("nan")}, "finite number", id="nan"),
        pytest.param({"ready_timeout_sec": float("inf")}, "finite number", id="inf"),
        pytest.param({"argv": ("/bin/true",)}, "unsupported type tuple", id="tuple"),
        pytest.param(
            {"name": type("Sneaky", (str,), {"__repr__": lambda self: "__import__('os')"})("x")},
            "unsupported type Sneaky",
            id="str-subclass",
        ),
        pytest.param({"argv": ["/bin/true", 3]}, "unsupported type list", id="non-str-in-list"),
        pytest.param({"mode": "fork"}, "mode must be exec or python", id="invalid"),
        pytest.param({"extra": 1}, "unknown ['extra']", id="unknown-key"),
    ],
)
def test_settings_that_cannot_be_rendered(work: Path, change: dict[str, object], message: str) -> None:
    settings = {**make_settings(work / "demo.pid"), **change}
    with pytest.raises(UnitgenError, match=message.replace("[", r"\[").replace("]", r"\]")):
        render_launcher(settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "python",
    [
        pytest.param("python3", id="relative"),
        pytest.param("/usr/bin/python3 -S", id="space"),
        pytest.param("/x\n", id="newline"),
    ],
)
def test_interpreter_must_be_a_plain_absolute_path(work: Path, python: str) -> None:
    with pytest.raises(UnitgenError, match="absolute path"):
        render_launcher(make_settings(work / "demo.pid"), python=python)


@pytest.mark.parametrize(
    ("overrides", "access"),
    [
        pytest.param({}, "main", id="exec-immediate"),
        pytest.param({"ready": "notify"}, "main", id="exec-notify"),
        pytest.param({"ready": "tcp:8080"}, "all", id="exec-tcp"),
        pytest.param({"ready": "path:/run/demo/ready"}, "all", id="exec-path"),
        pytest.param({"ready": "tcp:8080", "oneshot": True}, "main", id="exec-tcp-oneshot"),
        pytest.param({"mode": "python", "entry": "demo:main", "ready": "tcp:8080"}, "main", id="python-tcp"),
    ],
)
def test_notify_access(overrides: dict[str, object], access: str) -> None:
    assert notify_access(make_settings("/run/demo/demo.pid", **overrides)) == access


def test_launcher_never_imports_unitgen() -> None:
    tree = ast.parse(LAUNCHER_PY.read_text())
    modules = {alias.name for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names}
    modules |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(m == "unitgen" or m.startswith("unitgen.") for m in modules)
    assert modules <= {
        "__future__", "_socket", "errno", "fcntl", "os", "stat", "sys", "time", "collections.abc", "types",
        "typing", "struct", "select", "threading", "_ctypes", "importlib", "traceback", "_signal", "json", "pwd",
        "site", "socket", "importlib.machinery",
    }  # fmt: skip
    # socket: only in listen_sockets(), which a python-mode app calls (issue 14); never at start-up.
    # importlib.machinery: loaded with the interpreter; used when the app imports a helper module.
    # Never systemd._journal: its sendv() blocks for ever when journald does not read.


def test_rendered_launcher_runs_by_hand(work: Path) -> None:
    """The installed file, run directly (shebang), takes the lock; a second copy sees it."""
    settings = make_settings(work / "demo.pid")
    script = rendered_launcher(work, settings)
    proc = start([str(script)])
    try:
        wait_for_holder(work / "demo.pid", proc.pid)
        second = run([str(script)])
        assert second.returncode == EXIT_ALREADY_RUNNING
        assert f"as PID {proc.pid} " in second.stderr
    finally:
        stop(proc)


def imported_modules(argv: list[str]) -> set[str]:
    result = run([DEBIAN_PYTHON, "-I", "-X", "importtime", *argv], env())
    return {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}


# Modules whose import would cost start-up time on the way to READY=1 / to the contention exit.
SLOW = {
    "socket", "typing", "json", "threading", "ctypes", "_ctypes", "pathlib", "re", "enum", "signal", "subprocess",
    "logging", "site",
}  # fmt: skip


def test_start_path_imports_nothing_slow(work: Path) -> None:
    script = rendered_launcher(work, make_settings(work / "demo.pid", argv=["/bin/true"]))
    baseline = imported_modules(["-c", "pass"])
    assert imported_modules([str(script)]) - baseline <= {"__future__", "_socket", "errno", "fcntl", MODULE}


def test_contention_path_imports_nothing_slow(work: Path) -> None:
    settings = make_settings(work / "demo.pid")
    script = rendered_launcher(work, settings)
    proc = start([str(script)])
    try:
        wait_for_holder(work / "demo.pid", proc.pid)
        extra = imported_modules([str(script)]) - imported_modules(["-c", "pass"])
    finally:
        stop(proc)
    assert "struct" in extra, "the contention path did run"
    assert not extra & SLOW, extra & SLOW
    assert "systemd.journal" not in extra, "systemd.journal costs ~30 ms; only its C sender may be used"


def test_rendered_launcher_type_checks(work: Path) -> None:
    """mypy --strict on the installed files: the settings literal matches LauncherSettings."""
    settings = make_settings(work / "demo.pid", ready="tcp:8080", on_contention="wait", wait_timeout_sec=30.0)
    script = work / "demo_launcher.py"
    script.write_text(render_launcher(settings))
    install_module(work, compiled=False)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir=/dev/null", "--no-error-summary", str(script)],
        capture_output=True,
        text=True,
        check=False,
        cwd=work,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def bytecode(directory: Path) -> Path:
    (pyc,) = (directory / "__pycache__").glob(f"{MODULE}.*.pyc")
    return pyc


def test_installed_launcher_runs_the_compiled_bytecode(work: Path) -> None:
    """The stub imports the module from the bytecode compiled at install: nothing is compiled at
    start (python -v names where each code object came from) and the .pyc is not rewritten."""
    script = rendered_launcher(work, make_settings(work / "demo.pid", argv=["/bin/true"]))
    pyc = bytecode(work)
    before = pyc.read_bytes(), pyc.stat().st_mtime_ns
    result = run([DEBIAN_PYTHON, "-IS", "-v", str(script)])
    assert result.returncode == 0, result.stderr
    assert f"code object from '{pyc}'" in result.stderr.replace(f"{work}/./", f"{work}/")
    assert f"code object from {work / MODULE}.py" not in result.stderr, "compiled from source"
    assert (pyc.read_bytes(), pyc.stat().st_mtime_ns) == before


def test_exec_mode_never_loads_site(work: Path) -> None:
    """-S in the shebang: exec mode pays for no site-packages set-up; python mode loads site itself."""
    script = rendered_launcher(work, make_settings(work / "demo.pid", argv=["/bin/true"]))
    result = run([DEBIAN_PYTHON, "-IS", "-X", "importtime", str(script)])
    modules = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert MODULE in modules
    assert "site" not in modules


def test_launcher_works_without_bytecode(work: Path) -> None:
    """A staging tree run by hand has no .pyc: the launcher compiles the module in memory (-B: as
    on a read-only /usr, nothing is written) and behaves the same."""
    lock = work / "demo.pid"
    script = rendered_launcher(work, make_settings(lock), compiled=False)
    proc = start([DEBIAN_PYTHON, "-B", "-IS", str(script)])
    try:
        wait_for_holder(lock, proc.pid)
        second = run([DEBIAN_PYTHON, "-B", "-IS", "-v", str(script)])
        assert second.returncode == EXIT_ALREADY_RUNNING
        assert f"code object from {work / MODULE}.py" in second.stderr.replace(f"{work}/./", f"{work}/")
    finally:
        stop(proc)
    assert not (work / "__pycache__").exists()


def test_launcher_runs_through_a_symbolic_link(work: Path) -> None:
    """An admin's link to the stub (from a PATH directory, say) still finds the module next to the
    stub itself, not next to the link."""
    lock = work / "demo.pid"
    script = rendered_launcher(work, make_settings(lock))
    elsewhere = work / "bin"
    elsewhere.mkdir()
    (elsewhere / "demo").symlink_to(script)
    proc = start([str(elsewhere / "demo")])
    try:
        wait_for_holder(lock, proc.pid)
        assert run([str(elsewhere / "demo")]).returncode == EXIT_ALREADY_RUNNING
    finally:
        stop(proc)


def test_compile_covers_every_module_next_to_the_stub_and_nothing_below(work: Path) -> None:
    """Modules deployed next to the launcher module get their bytecode too; nothing below is touched."""
    install_module(work, compiled=False)
    (work / "unitgen_extra.py").write_text("X = 1\n")
    (work / "sub").mkdir()
    (work / "sub" / "deeper.py").write_text("Y = 2\n")
    subprocess.run(compile_argv(DEBIAN_PYTHON, str(work)), check=True)
    compiled = sorted(p.name.split(".")[0] for p in (work / "__pycache__").glob("*.pyc"))
    assert compiled == ["unitgen_extra", MODULE]
    assert not (work / "sub" / "__pycache__").exists()
