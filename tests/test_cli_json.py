"""`--json`: exactly one document on stdout, valid against schemas/unitgen-output.schema.json,
with the same exit codes as the text output. Real `unitgen` processes in scratch directories."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.cli_helpers import SCHEMA, document, unitgen
from tests.test_interrupts import SLOW_BACKEND, SLOW_PYPROJECT
from unitgen.staging.tree import NOT_CONTENT

ROOT = Path(__file__).parent.parent
HELLO = ROOT / "examples/hello/hello.toml"
SPEC = 'description = "demo"\nexec = ["/bin/true"]\n\n[package]\nversion = "1.0"\nmaintainer = "A <a@example.com>"\n'


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_the_schema_refuses_what_it_does_not_describe() -> None:
    # The validation above would prove nothing if the schema accepted anything.
    validator = jsonschema.Draft202012Validator(SCHEMA)
    assert not validator.is_valid({"command": "render", "services": [{"name": "x", "out": "/o", "files": [{}]}]})
    assert not validator.is_valid({"error": {"message": "m"}})  # hint is always there, null when none
    assert not validator.is_valid({"command": "check", "ok": True, "services": [], "extra": 1})


def test_render_lists_every_file_with_its_mode_and_hash(tmp_path: Path) -> None:
    shutil.copy(HELLO, tmp_path)
    result = unitgen("render", "hello", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [service] = document(result)["services"]
    assert service["name"] == "hello" and service["out"] == str(tmp_path / "build/hello")
    on_disk = {p for p in (tmp_path / "build/hello").rglob("*") if p.is_file() and p.name not in NOT_CONTENT}
    assert {Path(f["path"]) for f in service["files"]} == on_disk
    for f in service["files"]:
        path = Path(f["path"])
        assert f["sha256"] == sha256(path)
        assert int(f["mode"], 8) == path.stat().st_mode & 0o7777
        assert path == tmp_path / "build/hello" / f["target"].lstrip("/")
    launcher = [f for f in service["files"] if f["target"] == "/usr/libexec/hello/hello-launcher"]
    assert launcher and launcher[0]["mode"] == "0755"


@pytest.mark.parametrize(
    "args",
    [pytest.param(["init", "demo", "--json"], id="after"), pytest.param(["--json", "init", "demo"], id="before")],
)
def test_init_names_the_spec_written_with_json_before_or_after_the_command(tmp_path: Path, args: list[str]) -> None:
    result = unitgen(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert document(result) == {"command": "init", "name": "demo", "path": str(tmp_path / "demo.toml")}
    assert (tmp_path / "demo.toml").is_file()


def test_a_batch_is_one_document_with_a_list(tmp_path: Path) -> None:
    for name in ("one", "two"):
        (tmp_path / f"{name}.toml").write_text(SPEC)
    result = unitgen("render", "one", "two", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [s["name"] for s in document(result)["services"]] == ["one", "two"]


@pytest.mark.parametrize(
    ("threshold", "code", "ok"),
    [
        pytest.param([], 0, True, id="passes"),
        pytest.param(["--threshold", "0.1"], 1, False, id="score-over-threshold"),
    ],
)
def test_check_reports_units_findings_and_score(tmp_path: Path, threshold: list[str], code: int, ok: bool) -> None:
    shutil.copy(HELLO, tmp_path)
    assert unitgen("render", "hello", cwd=tmp_path).returncode == 0
    result = unitgen("check", "hello", "--json", *threshold, cwd=tmp_path)
    assert result.returncode == code, result.stderr
    doc = document(result)
    [service] = doc["services"]
    assert doc["ok"] is ok and service["ok"] is ok
    assert service["units"] == ["hello.service"]
    assert service["verify"] == []
    assert 0 < service["score"] < 1.5 and service["verdict"] in ("OK", "SAFE")
    assert service["threshold"] == (0.1 if threshold else 1.5)
    assert bool(service["problems"]) is not ok


def test_check_lists_verify_findings_line_by_line(tmp_path: Path) -> None:
    (tmp_path / "demo.toml").write_text(SPEC)
    assert unitgen("render", "demo", cwd=tmp_path).returncode == 0
    unit = tmp_path / "build/demo/usr/lib/systemd/system/demo.service"
    unit.write_text(unit.read_text().replace("[Service]", "[Service]\nNoSuchSetting=1\nAlsoUnknown=2"))
    result = unitgen("check", "demo", "--json", cwd=tmp_path)
    assert result.returncode == 1
    [service] = document(result)["services"]
    assert len(service["verify"]) >= 2 and any("NoSuchSetting" in line for line in service["verify"])
    assert service["ok"] is False


def test_package_reports_path_format_size_and_hash(tmp_path: Path) -> None:
    (tmp_path / "demo.toml").write_text(SPEC)
    result = unitgen("package", "demo", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    packages = document(result)["packages"]
    assert sorted(p["format"] for p in packages) == ["deb", "rpm"]
    for p in packages:
        path = Path(p["path"])
        assert path.parent == tmp_path / "dist"
        assert p["size"] == path.stat().st_size and p["sha256"] == sha256(path)


@pytest.mark.parametrize(
    ("args", "spec", "code", "expected"),
    [
        pytest.param(["render", "nope"], None, 1, {"file": "nope.toml"}, id="missing-spec"),
        pytest.param(["render", "demo"], 'description = "x"\nexec = ["/bin/true"]\nusr = "x"\n', 1,
                     {"file": "demo.toml", "key": "usr"}, id="unknown-key"),
        pytest.param(["check", "demo"], SPEC, 1, {}, id="nothing-rendered"),
        pytest.param(["package", "demo", "--out", "."], SPEC, 1, {}, id="out-refused"),
        pytest.param(["render"], None, 2, {}, id="usage-missing-name"),
        pytest.param(["package", "demo", "--format", "zip"], SPEC, 2, {}, id="usage-bad-choice"),
        pytest.param(["completion", "bash"], None, 2, {}, id="completion-is-no-document"),
    ],
)  # fmt: skip
def test_errors_are_documents_with_the_usual_exit_code(
    tmp_path: Path, args: list[str], spec: str | None, code: int, expected: dict[str, str]
) -> None:
    if spec is not None:
        (tmp_path / "demo.toml").write_text(spec)
    result = unitgen(*args, "--json", cwd=tmp_path)
    assert result.returncode == code, result.stderr
    error = document(result)["error"]
    assert error["message"] and "hint" in error
    assert {k: error[k] for k in expected} == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == (["demo.toml"] if spec is not None else [])


def test_a_signal_gives_an_error_document_and_128_plus_n(tmp_path: Path) -> None:
    # A package build held inside pip by a slow build backend (see tests/test_interrupts.py).
    app = tmp_path / "slowapp"
    app.mkdir()
    (app / "slow_backend.py").write_text(SLOW_BACKEND)
    (app / "pyproject.toml").write_text(SLOW_PYPROJECT)
    (tmp_path / "wheels").mkdir()
    (tmp_path / "demo.toml").write_text(
        SPEC.replace('exec = ["/bin/true"]', 'entry = "slowapp:main"')
        + '\n[app]\nproject = "slowapp"\nno_index = true\nfind_links = ["wheels"]\n'
    )
    started = tmp_path / "backend-started"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SLOW_BACKEND_STARTED": str(started)}
    argv = [sys.executable, "-m", "unitgen", "package", "demo", "--json"]
    with subprocess.Popen(
        argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the build backend never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    result = subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)
    assert document(result)["error"]["message"] == "interrupted (SIGTERM); cleaned up"


@pytest.mark.root
def test_try_reports_state_lock_holder_journal_second_instance_and_score(tmp_path: Path) -> None:
    result = unitgen("try", "hello", "--json", "--spec", str(HELLO), "--out", str(tmp_path / "stage"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    doc = document(result)  # the sandbox's commands wrote their output to stderr, not into the document
    assert doc["ok"] is True and doc["name"] == "hello"
    assert (doc["state"], doc["sub_state"]) == ("active", "running")
    assert doc["main_pid"] > 0
    assert doc["lock"]["file"] == "/run/hello/hello.pid" and doc["lock"]["holder_pid"] == doc["main_pid"]
    assert doc["second_instance"] == {"result": "refused", "exit_code": 17}
    assert any("hello is already running as PID" in line for line in doc["journal"])
    assert 0 < doc["security"]["score"] < 1.5 and doc["security"]["verdict"] in ("OK", "SAFE")
    assert "booted a sandboxed systemd" in result.stderr  # progress goes to stderr


@pytest.mark.root
def test_try_that_fails_is_a_document_with_ok_false_and_the_journal(tmp_path: Path) -> None:
    (tmp_path / "broken.toml").write_text(
        'description = "exits at once"\nexec = ["/bin/sh", "-c", "echo cannot start >&2; exit 3"]\n'
    )
    result = unitgen("try", "broken", "--json", cwd=tmp_path)
    assert result.returncode == 1
    doc = document(result)
    assert doc["ok"] is False and doc["state"] in ("failed", "activating")
    assert doc["second_instance"] == {"result": "not run", "exit_code": None}
    assert any("cannot start" in line for line in doc["journal"])


def test_a_pipeline_driven_by_json_alone(tmp_path: Path) -> None:
    # What a CI job does: each step reads what it needs from the previous step's document.
    def step(*args: str) -> dict[str, Any]:
        result = unitgen("--json", *args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        return document(result)

    assert Path(step("init", "svc")["path"]).is_file()  # the starter spec has a [package] table
    out = Path(step("render", "svc")["services"][0]["out"])
    assert step("render", "svc", "--diff")["changed"] is False
    checked = step("check", "svc", "--out", str(out))["services"][0]
    assert checked["ok"] and checked["score"] <= checked["threshold"]
    deb = [p for p in step("package", "svc", "--format", "deb")["packages"] if p["format"] == "deb"]
    listing = subprocess.run(["dpkg-deb", "-c", deb[0]["path"]], capture_output=True, text=True, check=True).stdout
    assert "./usr/lib/systemd/system/svc.service" in listing
