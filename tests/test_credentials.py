"""Credentials (issue 15 item 2) in a real systemd: LoadCredential= and LoadCredentialEncrypted=
reach the app through $CREDENTIALS_DIRECTORY (python mode: `unitgen_credentials`), the value is
nowhere else to be seen, and a missing file fails the start with an entry naming it."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e_helpers import install, main_pid
from tests.launcher_helpers import DEBIAN_PYTHON, HELPERS, env, make_settings, rendered_launcher, run
from unitgen.launcher import credentials as unitgen_credentials
from unitgen.sandbox import Sandbox

# Test values, made up here: what must not leak anywhere.
SECRET = "s3cret-7f2c9e1b-not-in-the-environment"  # noqa: S105
TOKEN = "tok-a41d55e0-decrypted-by-systemd"  # noqa: S105
NAME = "credapp"
ROOT = Path(__file__).resolve().parent.parent
UNIT = f"{NAME}.service"

# The app logs digests, never the values: a value found in the journal would be the leak.
APP = """\
import hashlib, os, time
import unitgen_credentials


def main():
    for name in ("db_password", "token"):
        value = unitgen_credentials.read_text(name).strip()
        print(name, hashlib.sha256(value.encode()).hexdigest(), flush=True)
    print("credentials dir", os.environ["CREDENTIALS_DIRECTORY"], flush=True)
    while True:
        time.sleep(0.2)
"""

SPEC = {
    "description": "credentials in python mode",
    "entry": "unitgen_cred_app:main",
    "credentials": {"db_password": f"/etc/{NAME}/db_password"},
    "encrypted_credentials": {"token": f"/etc/{NAME}/token.cred"},
}


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def messages(sb: Sandbox) -> list[str]:
    return [e.get("MESSAGE", "") for e in sb.journal(f"_SYSTEMD_UNIT={UNIT}")]


@pytest.fixture
def sb(sandbox: Sandbox, tmp_path: Path) -> Sandbox:
    sandbox.write_file("/usr/lib/python3/dist-packages/unitgen_cred_app.py", APP)
    install(sandbox, tmp_path, NAME, SPEC)
    return sandbox


def put_secrets(sb: Sandbox) -> None:
    sb.write_file(f"/etc/{NAME}/db_password", SECRET + "\n", 0o600)
    sb.write_file("/root/token.plain", TOKEN + "\n", 0o600)
    encrypt = ["systemd-creds", "encrypt", "--name=token", "--with-key=host"]
    sb.run([*encrypt, "/root/token.plain", f"/etc/{NAME}/token.cred"])
    sb.run(["rm", "/root/token.plain"])


@pytest.mark.root
def test_the_app_reads_its_credentials_and_the_values_are_nowhere_else(sb: Sandbox) -> None:
    put_secrets(sb)
    sb.systemctl("start", UNIT)
    sb.wait_for(lambda: f"token {digest(TOKEN)}" in messages(sb), 10, "the app to read its credentials")
    assert f"db_password {digest(SECRET)}" in messages(sb)
    assert f"credentials dir /run/credentials/{UNIT}" in messages(sb)

    pid = main_pid(sb, UNIT)
    environ = sb.read_file(f"/proc/{pid}/environ")
    show = sb.systemctl("show", UNIT).stdout
    journal = sb.run(["journalctl", "-o", "export", "--no-pager"]).stdout
    for value in (SECRET, TOKEN):
        assert value.encode() not in environ
        assert value not in show
        assert value not in journal
    assert b"CREDENTIALS_DIRECTORY=" in environ  # the place, not the value
    assert "LoadCredential=db_password:/etc/credapp/db_password" in sb.systemctl("cat", UNIT).stdout
    # Root-only on disk (0600), readable to the DynamicUser= service through its private copy.
    mode = sb.run(["stat", "-c", "%a %U", f"/run/credentials/{UNIT}/db_password"]).stdout.split()
    assert mode[0] == "400" and mode[1] != "root"


@pytest.mark.root
@pytest.mark.parametrize("missing", ["db_password", "token"])
def test_a_missing_credential_file_fails_the_start_with_an_entry_naming_it(sb: Sandbox, missing: str) -> None:
    put_secrets(sb)
    path = dict(SPEC["credentials"] | SPEC["encrypted_credentials"])[missing]  # type: ignore[operator]
    sb.run(["rm", path])

    assert sb.systemctl("start", UNIT, check=False).returncode != 0

    assert sb.show(UNIT, "Result")["Result"] == "exit-code"  # failed (Restart=on-failure tries again)
    entries = [e for e in sb.journal(f"_SYSTEMD_UNIT={UNIT}") if "does not exist" in e.get("MESSAGE", "")]
    assert entries, messages(sb)
    assert entries[0]["MESSAGE"].startswith(f"credential {missing}: {path} does not exist")
    assert entries[0]["PRIORITY"] == "3"
    assert not [m for m in messages(sb) if m.startswith(("db_password ", "token "))], "the app never ran"


def test_the_helper_reads_from_credentials_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "db_password").write_bytes(b"value\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert unitgen_credentials.read("db_password") == b"value\n"
    assert unitgen_credentials.read_text("db_password") == "value\n"
    with pytest.raises(unitgen_credentials.CredentialError, match="no credential 'other'"):
        unitgen_credentials.read("other")
    with pytest.raises(unitgen_credentials.CredentialError, match="not a credential ID"):
        unitgen_credentials.read("../db_password")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(unitgen_credentials.CredentialError, match="CREDENTIALS_DIRECTORY is not set"):
        unitgen_credentials.read("db_password")
    assert "CREDENTIALS_DIRECTORY" not in os.environ


def test_the_helper_is_loaded_when_the_app_imports_it_not_before(tmp_path: Path) -> None:
    """Deployed as the package does (the stub, the launcher module and unitgen_credentials.py in one
    directory). `python -P` keeps the stub's directory off sys.path, as the service's `-I` does,
    while PYTHONPATH still finds the test's app."""
    settings = make_settings(tmp_path / "demo.pid", mode="python", entry="demoapp:helper")
    stub = rendered_launcher(tmp_path, settings)
    shutil.copyfile(ROOT / "unitgen/launcher/credentials.py", tmp_path / "unitgen_credentials.py")
    result = run([DEBIAN_PYTHON, "-P", str(stub)], env(PYTHONPATH=str(HELPERS / "apps")))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "loaded before the import: False",
        f"imported from: {tmp_path / 'unitgen_credentials.py'}",
    ]


def unitgen(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "unitgen", *args]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=300)


CHECK = 'test "$(cat "$CREDENTIALS_DIRECTORY/api_key")" = VALUE && echo matched && exec sleep 600'
TRY_SPEC = f"""\
description = "a credential passed in for a trial"
exec = ["/bin/sh", "-c", {json.dumps(CHECK)}]
credentials = {{ api_key = "/etc/trycred/api_key" }}
"""


@pytest.mark.root
def test_try_passes_a_credential_from_a_file_and_never_shows_it(tmp_path: Path) -> None:
    (tmp_path / "trycred.toml").write_text(TRY_SPEC.replace("VALUE", SECRET))
    (tmp_path / "api_key").write_text(SECRET)
    result = unitgen("try", "trycred", "--credential", f"api_key=@{tmp_path / 'api_key'}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "credential api_key: /etc/trycred/api_key (from " in result.stdout
    assert "trycred.service: active (running)" in result.stdout
    assert "matched" in result.stdout  # the journal lines try shows: the app got the value
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.root
def test_try_install_puts_the_credential_in_place_before_the_package_starts_the_service(tmp_path: Path) -> None:
    package = '[package]\nversion = "1.0"\nmaintainer = "unitgen tests <tests@example.org>"\n'
    (tmp_path / "trycred.toml").write_text(TRY_SPEC.replace("VALUE", SECRET) + package)
    (tmp_path / "api_key").write_text(SECRET)
    built = unitgen("package", "trycred", "--format", "deb", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    [deb] = (tmp_path / "dist").glob("*.deb")
    result = unitgen(
        "try", "trycred", "--install", str(deb), "--credential", f"api_key=@{tmp_path / 'api_key'}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.index("credential api_key: /etc/trycred/api_key") < out.index("installing trycred_1.0-1_all.deb")
    assert "after install: trycred.service is enabled and active (the package's scripts)" in out
    assert "restarts:   0" in out  # started once, by the postinst, with the credential there
    assert SECRET not in out + result.stderr


@pytest.mark.root
@pytest.mark.parametrize(
    ("option", "message"),
    [
        pytest.param(f"api_key={SECRET}", "give the value in a file, as api_key=@FILE", id="value-on-the-command-line"),
        pytest.param("other=@/etc/hostname", "'other': not a credential of trycred", id="unknown-id"),
        pytest.param("api_key=@/nonexistent/file", "/nonexistent/file is not a file", id="missing-file"),
    ],
)
def test_try_refuses_a_bad_credential_before_writing_anything(tmp_path: Path, option: str, message: str) -> None:
    (tmp_path / "trycred.toml").write_text(TRY_SPEC)
    result = unitgen("try", "trycred", "--credential", option, cwd=tmp_path)
    assert result.returncode == 1
    assert message in result.stderr.splitlines()[0]
    assert SECRET not in result.stderr
    assert not (tmp_path / "build").exists()


def test_the_helper_module_is_standard_library_only() -> None:
    # Deployed next to the launcher and imported into the app's process: never unitgen, never a
    # third-party module (the app's venv may not have it).
    source = Path(unitgen_credentials.__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported and imported <= sys.stdlib_module_names
