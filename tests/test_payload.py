"""The app's venv in the staging tree: built by real pip for the target's /usr/bin/python3, laid
out at its final path, relocatable without a trace of the build paths, free of bytecode and of
pip itself, reproducible, and with clear errors for what a user can fix.

The example (examples/webapp, with bottle from the package index) is built once per session;
the error cases use small wheels made here and `no_index`, so they run offline.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from unitgen.app.payload import AppPayload, build_app
from unitgen.errors import UnitgenError
from unitgen.spec import App, Spec, load_spec

EXAMPLE = Path(__file__).parent.parent / "examples/webapp"
VENV = "/usr/lib/webapp/venv"
EPOCH = "1700000000"
TARGET = "/usr/bin/python3"


def target_version() -> tuple[int, int]:
    out = subprocess.run([TARGET, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True, text=True)
    major, minor = out.stdout.split()
    return int(major), int(minor)


@dataclass(frozen=True)
class Built:
    staging: Path
    payload: AppPayload

    @property
    def venv(self) -> Path:
        return self.staging / VENV.lstrip("/")

    @property
    def site(self) -> Path:
        major, minor = self.payload.python_version
        return self.venv / f"lib/python{major}.{minor}/site-packages"


def example_spec() -> Spec:
    return load_spec(EXAMPLE / "webapp.toml")


def build(app: App, staging: Path, *, umask: int = 0o022) -> Built:
    old = os.umask(umask)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SOURCE_DATE_EPOCH", EPOCH)
            return Built(staging, build_app(app, staging))
    finally:
        os.umask(old)


@pytest.fixture(scope="session")
def example(tmp_path_factory: pytest.TempPathFactory) -> Built:
    spec = example_spec()
    assert spec.app is not None
    return build(spec.app, tmp_path_factory.mktemp("payload") / "staging")


def tree(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            yield Path(dirpath) / name


def snapshot(root: Path) -> dict[str, tuple[str, int, int, bytes]]:
    """Everything a package would record of a tree: kind, mode, mtime, content or link target."""
    out = {}
    for path in tree(root):
        st = path.lstat()
        rel = path.relative_to(root).as_posix()
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("link", 0, int(st.st_mtime), str(path.readlink()).encode())
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", stat.S_IMODE(st.st_mode), int(st.st_mtime), b"")
        else:
            out[rel] = ("file", stat.S_IMODE(st.st_mode), int(st.st_mtime), path.read_bytes())
    return out


# --- the example's venv ------------------------------------------------------------------------


def test_payload_reports_the_venv_interpreter_scripts_and_what_to_compile(example: Built) -> None:
    p = example.payload
    major, minor = target_version()
    assert p.venv == VENV
    assert p.python == TARGET
    assert p.python_version == (major, minor)
    assert p.compile_dirs == (f"{VENV}/lib/python{major}.{minor}/site-packages",)
    assert p.depends == (f"python3 (>= {major}.{minor})", f"python3 (<< {major}.{minor + 1})")
    assert dict(p.distributions) == {"bottle": "0.13.4", "webapp": "1.0.0"}
    assert "webapp" in p.scripts
    assert p.bin_dir == f"{VENV}/bin"
    assert p.pure, "bottle and webapp are pure Python: the package is Architecture: all"
    for script in p.scripts:
        assert (example.venv / "bin" / script).is_file()


def test_venv_is_made_for_the_system_interpreter(example: Built) -> None:
    cfg = dict(line.split(" = ", 1) for line in (example.venv / "pyvenv.cfg").read_text().splitlines() if " = " in line)
    assert cfg["home"] == "/usr/bin"
    assert cfg["include-system-site-packages"] == "false"
    assert cfg["version"].startswith("{}.{}.".format(*example.payload.python_version))
    for name in ("python", "python3", "python{}.{}".format(*example.payload.python_version)):
        link = example.venv / "bin" / name
        assert link.is_symlink(), name
        assert os.path.realpath(link) == os.path.realpath(TARGET), name
        # The links resolve on the target too: absolute to /usr/bin or relative inside bin/.
        target = str(link.readlink())
        assert target.startswith("/usr/bin/") or "/" not in target, (name, target)


def test_console_scripts_run_the_final_venv_interpreter(example: Built) -> None:
    shebangs = {}
    for script in sorted((example.venv / "bin").iterdir()):
        if script.is_file() and not script.is_symlink() and script.read_bytes().startswith(b"#!"):
            shebangs[script.name] = script.read_bytes().split(b"\n", 1)[0].decode()
    assert shebangs["webapp"] == f"#!{VENV}/bin/python"
    assert set(shebangs.values()) == {f"#!{VENV}/bin/python"}, shebangs  # never /usr/bin/env, never staging
    assert set(example.payload.scripts) <= set(shebangs)
    assert "from webapp.app import main" in (example.venv / "bin/webapp").read_text()


def test_no_bytecode_no_installers_no_build_paths(example: Built) -> None:
    paths = list(tree(example.staging))
    assert not [p for p in paths if p.name == "__pycache__" or p.suffix in (".pyc", ".pyo")]
    installed = {p.name.split("-")[0].lower() for p in example.site.glob("*.dist-info")}
    assert installed == {"bottle", "webapp"}, "no pip, setuptools or wheel in the venv"
    assert not [p for p in example.site.iterdir() if p.name in ("pip", "setuptools", "wheel", "_distutils_hack")]
    assert not list(example.site.glob("*.dist-info/direct_url.json"))
    staging = str(example.staging).encode()
    for path in paths:
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            assert staging not in data, path
            assert b"/unitgen-app-" not in data and b".venv-" not in data, path
    assert not list(example.staging.rglob(".venv-*")), "the scratch directory is gone"


def test_record_files_match_the_installed_files(example: Built) -> None:
    listed = set()
    for record in sorted(example.site.glob("*.dist-info/RECORD")):
        for row in csv.reader(record.read_text(encoding="utf-8").splitlines()):
            path = Path(os.path.normpath(example.site / row[0]))
            listed.add(path)
            assert path.is_file(), row
            if row[1]:
                digest = base64.urlsafe_b64encode(hashlib.sha256(path.read_bytes()).digest()).rstrip(b"=").decode()
                assert row[1] == f"sha256={digest}", row
                assert int(row[2]) == path.stat().st_size, row
    installed = {p for p in tree(example.site) if p.is_file()} | {
        p for p in (example.venv / "bin").iterdir() if p.name in example.payload.scripts
    }
    assert installed == listed, "every file pip installed is in a RECORD, and only those"


def test_modes_are_normalised_and_mtimes_follow_source_date_epoch(example: Built) -> None:
    for rel, (kind, mode, mtime, _) in snapshot(example.venv).items():
        assert mtime == int(EPOCH), rel
        if kind == "dir":
            assert mode == 0o755, rel
        elif kind == "file":
            assert mode in (0o644, 0o755), rel
    assert stat.S_IMODE((example.venv / "bin/webapp").stat().st_mode) == 0o755
    for parent in (example.venv.parent, example.venv.parent.parent):
        assert stat.S_IMODE(parent.stat().st_mode) == 0o755


def test_app_and_dependency_import_with_the_target_interpreter(example: Built) -> None:
    code = "import bottle, webapp.app, sys; print(sys.prefix, webapp.app.version(), bottle.__version__)"
    result = subprocess.run(
        [example.venv / "bin/python", "-B", "-I", "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == [str(example.venv), "1.0.0", "0.13.4"]
    assert not list(example.staging.rglob("__pycache__"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_the_example_serves_health_from_the_built_venv(example: Built) -> None:
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "WEBAPP_PORT": str(port), "PYTHONDONTWRITEBYTECODE": "1"}
    server = subprocess.Popen(
        [example.venv / "bin/python", "-m", "webapp.app"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    assert response.status == 200
                    assert response.headers["Content-Type"].startswith("application/json")
                    body = response.read().decode()
                break
            except OSError:
                assert server.poll() is None, "the server died"
                assert time.monotonic() < deadline, "no answer on /health"
                time.sleep(0.1)
        assert body.replace(" ", "") == '{"status":"ok","version":"1.0.0"}'
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            assert response.read().decode().startswith("Hello from webapp 1.0.0 (bottle 0.13.4,")
    finally:
        server.terminate()
        server.wait(10)
        assert server.stdout is not None
        server.stdout.close()


def test_bytecode_commands_compile_checked_hash_pycs_and_remove_them(example: Built, tmp_path: Path) -> None:
    """What the maintainer scripts run, at a copy of the venv (its paths swapped in)."""
    venv = tmp_path / "venv"
    shutil.copytree(example.venv, venv, symlinks=True)

    def here(argv: tuple[str, ...]) -> list[str]:
        return [arg.replace(VENV, str(venv)) for arg in argv]

    subprocess.run(here(example.payload.compile_argv), check=True)
    site = venv / example.site.relative_to(example.venv)
    pycs = sorted(site.rglob("*.pyc"))
    assert {p.name.split(".")[0] for p in pycs} == {"bottle", "__init__", "app"}
    for pyc in pycs:
        flags = int.from_bytes(pyc.read_bytes()[4:8], "little")
        assert flags == 0b11, f"{pyc}: not a checked-hash pyc (PEP 552 flags {flags:#b})"

    subprocess.run(here(example.payload.cleanup_argv), check=True)
    assert not list(venv.rglob("__pycache__"))
    after = {rel: (kind, data) for rel, (kind, _, _, data) in snapshot(venv).items()}
    before = {rel: (kind, data) for rel, (kind, _, _, data) in snapshot(example.venv).items()}
    assert after == before, "compiling and cleaning up leave exactly the packaged files"


def test_same_inputs_give_the_same_tree_whatever_the_paths_and_umask(example: Built, tmp_path: Path) -> None:
    spec = example_spec()
    assert spec.app is not None
    again = build(spec.app, tmp_path / "a-different-and-much-longer-staging-directory", umask=0o077)

    assert again.payload == example.payload
    # The venv, that is; the parents of the venv belong to the rest of the staging tree.
    first, second = snapshot(example.venv), snapshot(again.venv)
    assert sorted(first) == sorted(second)
    differ = [rel for rel in first if first[rel] != second[rel]]
    assert differ == []


def test_a_new_build_replaces_the_previous_venv(tmp_path: Path) -> None:
    wheelhouse = tmp_path / "wheels"
    wheelhouse.mkdir()
    app_wheel = make_wheel(wheelhouse, "demo_app", "1.0", modules={"demo_app": "X = 1\n"})
    staging = tmp_path / "staging"
    app = App(None, (str(app_wheel),), None, (str(wheelhouse),), True, "/usr/lib/demo/venv")
    build(app, staging)
    stale = staging / "usr/lib/demo/venv/stale"
    stale.write_text("left over")

    build(app, staging)

    assert not stale.exists()
    assert (staging / "usr/lib/demo/venv/lib").is_dir()


# --- offline wheels for the error cases -------------------------------------------------------


def make_wheel(
    directory: Path,
    name: str,
    version: str,
    *,
    modules: dict[str, str],
    requires: tuple[str, ...] = (),
    requires_python: str | None = None,
    scripts: dict[str, str] | None = None,
    data_scripts: dict[str, str] | None = None,
    binary: dict[str, bytes] | None = None,
) -> Path:
    """A pure-Python wheel, written by hand (the format is a zip with a dist-info)."""
    dist_info = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    if requires_python:
        metadata += f"Requires-Python: {requires_python}\n"
    files = {f"{module}.py": source for module, source in modules.items()}
    files[f"{dist_info}/METADATA"] = metadata
    files[f"{dist_info}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    if scripts:
        files[f"{dist_info}/entry_points.txt"] = "[console_scripts]\n" + "".join(
            f"{k} = {v}\n" for k, v in scripts.items()
        )
    for script, text in (data_scripts or {}).items():
        files[f"{name}-{version}.data/scripts/{script}"] = text
    contents = {path: text.encode() for path, text in files.items()} | (binary or {})
    record = []
    for path, data in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}\n")
    contents[f"{dist_info}/RECORD"] = ("".join(record) + f"{dist_info}/RECORD,,\n").encode()
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in contents.items():
            info = zipfile.ZipInfo(path)
            info.external_attr = (stat.S_IFREG | (0o755 if "/scripts/" in path else 0o644)) << 16
            zf.writestr(info, data)
    return wheel


def offline_app(tmp_path: Path, **fields: object) -> App:
    app = App(
        project=None,
        wheels=(),
        requirements=None,
        find_links=(str(tmp_path / "wheels"),),
        no_index=True,
        venv="/usr/lib/demo/venv",
    )
    return replace(app, **fields)  # type: ignore[arg-type]


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    directory = tmp_path / "wheels"
    directory.mkdir()
    return directory


def test_offline_build_from_wheels_with_a_console_script(tmp_path: Path, wheelhouse: Path) -> None:
    make_wheel(wheelhouse, "demo_dep", "2.0", modules={"demo_dep": "VALUE = 42\n"})
    app_wheel = make_wheel(
        tmp_path,
        "demo_app",
        "1.0",
        modules={"demo_app": "import demo_dep\ndef main():\n    print(demo_dep.VALUE)\n"},
        requires=("demo_dep>=2",),
        scripts={"demo": "demo_app:main"},
        data_scripts={
            "pip-rewrites-this": "#!python\nimport demo_app\n",
            "env-python": "#!/usr/bin/env python3\nimport demo_app\n",
            "system-python": "#!/usr/bin/python3 -u\nimport demo_app\n",
            "shell": "#!/bin/sh\necho hello\n",
        },
    )

    built = build(offline_app(tmp_path, wheels=(str(app_wheel),)), tmp_path / "staging")

    assert built.payload.scripts == ("demo", "env-python", "pip-rewrites-this", "shell", "system-python")
    assert built.payload.pure
    assert dict(built.payload.distributions) == {"demo_app": "1.0", "demo_dep": "2.0"}
    venv = tmp_path / "staging/usr/lib/demo/venv"
    assert (venv / "bin/demo").read_text().startswith("#!/usr/lib/demo/venv/bin/python\n")
    # Scripts for "a Python" must run the venv's, or they would not see its packages on the target.
    assert (venv / "bin/pip-rewrites-this").read_text() == "#!/usr/lib/demo/venv/bin/python\nimport demo_app\n"
    assert (venv / "bin/env-python").read_text() == "#!/usr/lib/demo/venv/bin/python\nimport demo_app\n"
    assert (venv / "bin/system-python").read_text() == "#!/usr/lib/demo/venv/bin/python -u\nimport demo_app\n"
    assert (venv / "bin/shell").read_text() == "#!/bin/sh\necho hello\n"
    assert all(os.access(venv / "bin" / s, os.X_OK) for s in built.payload.scripts)
    run = subprocess.run(
        [venv / "bin/python", "-B", "-c", "import demo_app; demo_app.main()"], capture_output=True, text=True
    )
    assert run.stdout == "42\n"


def test_a_long_build_path_still_gives_plain_shebangs(
    tmp_path: Path, wheelhouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pip writes a /bin/sh trampoline when the interpreter's path exceeds 127 bytes.
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    app_wheel = make_wheel(
        tmp_path, "demo_app", "1.0", modules={"demo_app": "def main(): pass\n"}, scripts={"demo": "demo_app:main"}
    )

    build(offline_app(tmp_path, wheels=(str(app_wheel),)), tmp_path / "staging")

    script = (tmp_path / "staging/usr/lib/demo/venv/bin/demo").read_text()
    assert script.startswith("#!/usr/lib/demo/venv/bin/python\nimport sys\n"), script
    assert str(tmp_path) not in script


# A PEP 517 backend that lives in the project (backend-path), so a project build needs nothing
# from an index: it zips the package directory and a dist-info, as a real backend would.
IN_TREE_BACKEND = """
import base64, hashlib, pathlib, zipfile

NAME, VERSION = "demo_proj", "3.0"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    dist_info = f"{NAME}-{VERSION}.dist-info"
    files = {str(p): p.read_bytes() for p in sorted(pathlib.Path(NAME).rglob("*.py"))}
    files[f"{dist_info}/METADATA"] = (
        f"Metadata-Version: 2.1\\nName: {NAME}\\nVersion: {VERSION}\\nRequires-Dist: demo_dep\\n"
    ).encode()
    files[f"{dist_info}/WHEEL"] = b"Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
    files[f"{dist_info}/entry_points.txt"] = f"[console_scripts]\\ndemo-proj = {NAME}:main\\n".encode()
    record = ""
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += f"{path},sha256={digest},{len(data)}\\n"
    files[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\\n").encode()
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(pathlib.Path(wheel_directory) / name, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return name
"""


def test_offline_project_build_gets_its_backend_and_dependencies_only_from_find_links(
    tmp_path: Path, wheelhouse: Path
) -> None:
    project = tmp_path / "project"
    (project / "demo_proj").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
    )
    (project / "backend.py").write_text(IN_TREE_BACKEND)
    (project / "demo_proj/__init__.py").write_text("import demo_dep\ndef main():\n    print(demo_dep.VALUE)\n")
    make_wheel(wheelhouse, "demo_dep", "2.0", modules={"demo_dep": "VALUE = 7\n"})

    built = build(offline_app(tmp_path, project=str(project)), tmp_path / "staging")

    assert dict(built.payload.distributions) == {"demo_proj": "3.0", "demo_dep": "2.0"}
    assert built.payload.scripts == ("demo-proj",)
    assert sorted(p.name for p in project.iterdir()) == ["backend.py", "demo_proj", "pyproject.toml"], "tree untouched"
    venv = tmp_path / "staging/usr/lib/demo/venv"
    run = subprocess.run([venv / "bin/python", "-B", "-c", "import demo_proj; demo_proj.main()"], capture_output=True)
    assert run.stdout == b"7\n"


def test_compiled_code_makes_the_payload_architecture_dependent(tmp_path: Path, wheelhouse: Path) -> None:
    fake_so = b"\x7fELF\x02\x01\x01" + bytes(57)
    app_wheel = make_wheel(tmp_path, "demo_app", "1.0", modules={"demo_app": ""}, binary={"_speedups.so": fake_so})

    built = build(offline_app(tmp_path, wheels=(str(app_wheel),)), tmp_path / "staging")

    assert not built.payload.pure


def test_too_old_pip_is_a_clear_error(tmp_path: Path, wheelhouse: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("unitgen.app.payload.metadata.version", lambda name: "22.2.2")
    with pytest.raises(UnitgenError, match=r"pip 22.2.2 is too old"):
        build_app(offline_app(tmp_path), tmp_path / "staging")


def test_missing_target_interpreter_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UnitgenError, match=r"target interpreter /nonexistent/python3 does not exist") as info:
        build_app(offline_app(tmp_path, project=str(EXAMPLE)), tmp_path / "staging", python="/nonexistent/python3")
    assert info.value.hint is not None and "apt install python3" in info.value.hint


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"project": "project"}, r"app.project: .*/project has no pyproject.toml", id="no-pyproject"),
        pytest.param(
            {"wheels": ("gone-1.0-py3-none-any.whl",)},
            r"app.wheels: .*/gone-1.0-py3-none-any.whl does not exist",
            id="missing-wheel",
        ),
        pytest.param({"wheels": ("project",)}, r"app.wheels: .*/project is not a wheel", id="not-a-wheel"),
        pytest.param({"requirements": "lock.txt"}, r"app.requirements: .*/lock.txt does not exist", id="no-lock"),
        pytest.param({"find_links": ("nowhere",)}, r"app.find_links: .*/nowhere is not a directory", id="no-links"),
    ],
)
def test_missing_inputs_are_clear_errors(tmp_path: Path, fields: dict[str, object], message: str) -> None:
    (tmp_path / "project").mkdir()
    absolute = {
        k: tuple(str(tmp_path / v) for v in value) if isinstance(value, tuple) else str(tmp_path / str(value))
        for k, value in fields.items()
    }
    with pytest.raises(UnitgenError, match=message):
        build_app(offline_app(tmp_path, **absolute), tmp_path / "staging")
    assert not (tmp_path / "staging").exists()


def test_dependency_without_a_wheel_names_it_and_says_a_wheel_is_needed(tmp_path: Path, wheelhouse: Path) -> None:
    # The dependency exists, but only as a source distribution: pip would have to build it.
    with zipfile.ZipFile(wheelhouse / "onlysource-1.0.zip", "w") as sdist:
        sdist.writestr("onlysource-1.0/PKG-INFO", "Metadata-Version: 2.1\nName: onlysource\nVersion: 1.0\n")
        sdist.writestr("onlysource-1.0/setup.py", "from setuptools import setup\nsetup(name='onlysource')\n")
    app_wheel = make_wheel(tmp_path, "demo_app", "1.0", modules={"demo_app": ""}, requires=("onlysource==1.0",))

    with pytest.raises(UnitgenError) as info:
        build_app(offline_app(tmp_path, wheels=(str(app_wheel),)), tmp_path / "staging")

    assert "no wheel found for the dependency onlysource==1.0" in info.value.message
    assert info.value.hint is not None and "wheels only" in info.value.hint and "find_links" in info.value.hint
    assert not (tmp_path / "staging").exists(), "nothing half-built is left"


def test_dependency_for_another_python_is_a_clear_error(tmp_path: Path, wheelhouse: Path) -> None:
    make_wheel(wheelhouse, "oldstuff", "1.0", modules={"oldstuff": ""}, requires_python="<3")
    app_wheel = make_wheel(tmp_path, "demo_app", "1.0", modules={"demo_app": ""}, requires=("oldstuff",))

    with pytest.raises(UnitgenError, match=r"no wheel found for the dependency oldstuff|oldstuff requires Python"):
        build_app(offline_app(tmp_path, wheels=(str(app_wheel),)), tmp_path / "staging")


def test_requirements_lock_missing_a_dependency_fails_the_build(tmp_path: Path, wheelhouse: Path) -> None:
    make_wheel(wheelhouse, "demo_dep", "2.0", modules={"demo_dep": ""})
    make_wheel(wheelhouse, "other", "1.0", modules={"other": ""})
    app_wheel = make_wheel(tmp_path, "demo_app", "1.0", modules={"demo_app": ""}, requires=("demo_dep",))
    lock = tmp_path / "requirements.txt"
    lock.write_text("other==1.0\n")

    with pytest.raises(UnitgenError, match=r"misses dependencies of the app:\n.*demo.app 1.0 requires demo.dep"):
        build_app(offline_app(tmp_path, wheels=(str(app_wheel),), requirements=str(lock)), tmp_path / "staging")

    lock.write_text("other==1.0\ndemo_dep==2.0\n")
    built = build(offline_app(tmp_path, wheels=(str(app_wheel),), requirements=str(lock)), tmp_path / "staging")
    assert dict(built.payload.distributions) == {"demo_app": "1.0", "demo_dep": "2.0", "other": "1.0"}


def hashed(wheel: Path) -> str:
    """The lock line pip-compile --generate-hashes writes for `wheel`."""
    name, version = wheel.name.split("-")[:2]
    return f"{name}=={version} --hash=sha256:{hashlib.sha256(wheel.read_bytes()).hexdigest()}\n"


def test_a_hash_pinned_lock_missing_a_dependency_fails_the_build(tmp_path: Path, wheelhouse: Path) -> None:
    """With --hash pins the app is installed in the same pip run, pinned to its own hash: pip's
    hash-checking mode then refuses whatever the lock does not pin, and says which."""
    dep = make_wheel(wheelhouse, "demo_dep", "2.0", modules={"demo_dep": ""})
    other = make_wheel(wheelhouse, "other", "1.0", modules={"other": ""})
    app_wheel = make_wheel(tmp_path, "demo_app", "1.0", modules={"demo_app": ""}, requires=("demo_dep",))
    lock = tmp_path / "requirements.txt"
    lock.write_text(hashed(other))

    with pytest.raises(UnitgenError, match=r"misses dependencies of the app:\n(.|\n)*demo.dep") as info:
        build_app(offline_app(tmp_path, wheels=(str(app_wheel),), requirements=str(lock)), tmp_path / "staging")
    assert info.value.hint is not None and "pinned" in info.value.hint
    assert not (tmp_path / "staging").exists()

    lock.write_text(hashed(other) + hashed(dep))
    built = build(offline_app(tmp_path, wheels=(str(app_wheel),), requirements=str(lock)), tmp_path / "staging")
    assert dict(built.payload.distributions) == {"demo_app": "1.0", "demo_dep": "2.0", "other": "1.0"}


def test_a_hash_pinned_lock_with_a_wrong_hash_fails_the_build(tmp_path: Path, wheelhouse: Path) -> None:
    other = make_wheel(wheelhouse, "other", "1.0", modules={"other": ""})
    app_wheel = make_wheel(tmp_path, "demo_app", "1.0", modules={"demo_app": ""}, requires=("other",))
    lock = tmp_path / "requirements.txt"
    lock.write_text(hashed(other).replace("sha256:", "sha256:0")[:-2] + "\n")
    with pytest.raises(UnitgenError, match="pip could not install the app"):
        build_app(offline_app(tmp_path, wheels=(str(app_wheel),), requirements=str(lock)), tmp_path / "staging")


def test_a_build_path_left_in_a_binary_file_is_an_error_not_a_corruption(tmp_path: Path) -> None:
    from unitgen.app.payload import _rewrite_paths

    venv = tmp_path / "scratch/venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin/tool").write_text(f"#!{venv}/bin/python\n")
    assert _rewrite_paths(venv, old=str(venv).encode(), new=b"/usr/lib/x/venv", leaks=()) == {venv / "bin/tool"}
    assert (venv / "bin/tool").read_text() == "#!/usr/lib/x/venv/bin/python\n"

    (venv / "lib.so").write_bytes(b"\x7fELF\0" + str(venv).encode() + b"\0")
    with pytest.raises(UnitgenError, match=r"lib.so \(binary\) contains the build path"):
        _rewrite_paths(venv, old=str(venv).encode(), new=b"/usr/lib/x/venv", leaks=())


BROKEN_BACKEND = """\
def _read(depth):
    if depth:
        return _read(depth - 1)
    raise ValueError("invalid pyproject.toml config: `project.dependencies` must be array")


def get_requires_for_build_wheel(config_settings=None):
    return _read(10)  # a traceback of a dozen frames, like setuptools' validation


build_wheel = get_requires_for_build_wheel
"""


@pytest.mark.parametrize(
    ("pyproject", "cause"),
    [
        pytest.param(
            '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n',
            "ValueError: invalid pyproject.toml config: `project.dependencies` must be array",
            id="backend-rejects-it",
        ),
        pytest.param("[build-system\n", "TOMLDecodeError: ", id="not-toml"),
    ],
)
def test_bad_app_pyproject_is_a_short_error_and_debug_shows_pip_output(
    tmp_path: Path, wheelhouse: Path, pyproject: str, cause: str
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(pyproject)
    (project / "backend.py").write_text(BROKEN_BACKEND)
    (tmp_path / "badapp.toml").write_text(
        'description = "Broken app"\nentry = "badapp:main"\n'
        '[app]\nproject = "project"\nno_index = true\nfind_links = ["wheels"]\n'
        '[package]\nversion = "1.0"\nmaintainer = "Jane Doe <jane@example.com>"\n'
    )

    def package(*extra: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "unitgen", "package", "badapp", "--format", "deb", *extra]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}  # this checkout's unitgen
        return subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120, check=False)

    short = package()
    assert short.returncode == 1
    lines = short.stderr.splitlines()
    assert lines[0] == f"ERROR app.project: could not build a wheel of the app from {project}/pyproject.toml:"
    assert any(cause in line for line in lines), short.stderr
    assert len(lines) <= 6, short.stderr
    assert "Traceback" not in short.stderr and 'File "' not in short.stderr
    assert "unitgen-app-" not in short.stderr  # the scratch copy is named as the user's project
    full = package("--debug")
    assert full.returncode == 1
    assert "Traceback (most recent call last)" in full.stderr and cause in full.stderr
