"""[config], credentials and encrypted_credentials in the spec and the rendered unit (issue 15
items 1, 2 and 4): what they render, and bad input refused in one line naming the key, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from unitgen.package.from_spec import package_info
from unitgen.render.units import RenderedFile, render
from unitgen.spec import load_spec
from unitgen.spec.fields import SpecError

ROOT = Path(__file__).resolve().parent.parent
NAME = "demo"
BASE = 'description = "Config and credentials"\nexec = ["/usr/bin/python3", "-m", "http.server"]\n'


def project(tmp_path: Path, body: str) -> Path:
    (tmp_path / "demo.conf").write_text("greeting = hello\n")
    (tmp_path / "conf.d").mkdir()
    spec = tmp_path / f"{NAME}.toml"
    spec.write_text(BASE + body)
    return spec


def unit(files: list[RenderedFile]) -> str:
    return next(f.content.decode() for f in files if f.path.name == f"{NAME}.service")


def test_config_files_are_rendered_under_etc_with_configuration_directory(tmp_path: Path) -> None:
    spec = load_spec(project(tmp_path, '[config]\n"/etc/demo/demo.conf" = "demo.conf"\n'))
    files = render(spec)
    [conf] = [f for f in files if str(f.path).startswith("etc/")]
    assert (str(conf.path), conf.content, conf.mode) == ("etc/demo/demo.conf", b"greeting = hello\n", 0o644)
    assert "ConfigurationDirectory=demo\n" in unit(files)
    assert "ReadWritePaths=/etc" not in unit(files)  # read-only to the service (ProtectSystem=strict)


def test_credentials_render_load_credential_and_the_check_naming_the_file(tmp_path: Path) -> None:
    body = 'credentials = { db_password = "/etc/demo/db_password" }\n'
    body += 'encrypted_credentials = { "token.v1" = "/etc/demo/token.cred" }\n'
    text = unit(render(load_spec(project(tmp_path, body))))
    assert "LoadCredential=db_password:/etc/demo/db_password\n" in text
    assert "LoadCredentialEncrypted=token.v1:/etc/demo/token.cred\n" in text
    [check] = [line for line in text.splitlines() if line.startswith("ExecCondition=")]
    assert check.startswith("ExecCondition=+/bin/sh -c ")
    assert check.endswith(" demo-credentials db_password /etc/demo/db_password token.v1 /etc/demo/token.cred")
    assert "Environment=" not in text.replace('Environment="PYTHONUNBUFFERED=1"', "")


def test_without_credentials_nothing_is_added(tmp_path: Path) -> None:
    text = unit(render(load_spec(project(tmp_path, ""))))
    assert "Credential" not in text and "ExecCondition" not in text and "ConfigurationDirectory" not in text


BAD = [
    pytest.param(
        '[config]\n"/etc/demo/demo.conf" = "missing.conf"\n',
        "config.\"/etc/demo/demo.conf\": the source 'missing.conf' cannot be read: No such file or directory",
        id="config-source-missing",
    ),
    pytest.param(
        '[config]\n"/etc/demo/x.conf" = "conf.d"\n',
        "config.\"/etc/demo/x.conf\": the source 'conf.d' is not a regular file",
        id="config-source-a-directory",
    ),
    pytest.param(
        '[config]\n"/etc/other/demo.conf" = "demo.conf"\n',
        "config.\"/etc/other/demo.conf\": '/etc/other/demo.conf' is outside /etc/demo",
        id="config-dest-outside",
    ),
    pytest.param(
        '[config]\n"/etc/demo-x/demo.conf" = "demo.conf"\n',
        "config.\"/etc/demo-x/demo.conf\": '/etc/demo-x/demo.conf' is outside /etc/demo",
        id="config-dest-prefix-only",
    ),
    pytest.param(
        '[config]\n"/etc/demo" = "demo.conf"\n',
        "config.\"/etc/demo\": '/etc/demo' is outside /etc/demo",
        id="config-dest-the-directory",
    ),
    pytest.param(
        '[config]\n"/etc/demo/../passwd" = "demo.conf"\n',
        "config: /etc/demo/../passwd: '/etc/demo/../passwd' is not a normalized path",
        id="config-dest-dotdot",
    ),
    pytest.param(
        '[config]\n"demo.conf" = "demo.conf"\n',
        "config: demo.conf: 'demo.conf' is not an absolute path",
        id="config-dest-relative",
    ),
    pytest.param(
        'credentials = { "db:pw" = "/etc/demo/pw" }\n',
        "credentials: db:pw: 'db:pw' is not a valid credential ID",
        id="credential-id-colon",
    ),
    pytest.param(
        'credentials = { ".." = "/etc/demo/pw" }\n',
        "credentials: ..: '..' is not a valid credential ID",
        id="credential-id-dotdot",
    ),
    pytest.param(
        'credentials = { "a b" = "/etc/demo/pw" }\n',
        "credentials: a b: 'a b' is not a valid credential ID",
        id="credential-id-space",
    ),
    pytest.param(
        'credentials = { "%n" = "/etc/demo/pw" }\n',
        "credentials: %n: '%n' is not a valid credential ID",
        id="credential-id-specifier",
    ),
    pytest.param(
        f'credentials = {{ {"x" * 256} = "/etc/demo/pw" }}\n',
        "is not a valid credential ID",
        id="credential-id-too-long",
    ),
    pytest.param(
        'credentials = { pw = "pw.txt" }\n',
        "credentials: pw: 'pw.txt' is not an absolute path",
        id="credential-path-relative",
    ),
    pytest.param(
        'credentials = { pw = "/etc/demo/pw" }\nencrypted_credentials = { pw = "/etc/demo/pw.cred" }\n',
        "encrypted_credentials.pw: the credential ID 'pw' is already used by credentials",
        id="credential-id-twice",
    ),
    pytest.param(
        'credentials = { pw = "/etc/demo/demo.conf" }\n[config]\n"/etc/demo/demo.conf" = "demo.conf"\n',
        "credentials.pw: '/etc/demo/demo.conf' is also a config file: the package would ship the secret",
        id="credential-shipped-as-config",
    ),
    pytest.param(
        'credentials = { etcd-ca = "/etc/demo/ca.pem" }\n[lock]\nscope = "fleet"\n'
        'etcd = ["https://10.0.0.1:2379"]\nca_file = "/etc/demo/etcd-ca.pem"\n',
        "credentials.etcd-ca: the credential ID 'etcd-ca' is already used by lock",
        id="credential-id-of-the-fleet-lock",
    ),
]


@pytest.mark.parametrize(("body", "message"), BAD)
def test_bad_config_and_credentials_are_one_line_errors_naming_the_key(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(project(tmp_path, body))
    text = caught.value.message  # the hint, when there is one, is the line after it
    assert message in text
    assert "\n" not in text
    assert text.startswith(f"{tmp_path / 'demo.toml'}: ")


def test_the_cli_writes_nothing_for_a_missing_config_source(tmp_path: Path) -> None:
    project(tmp_path, '[config]\n"/etc/demo/demo.conf" = "gone.conf"\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "unitgen", "render", NAME],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    error = result.stderr.splitlines()[0]
    assert error.startswith("ERROR ") and "config.\"/etc/demo/demo.conf\": the source 'gone.conf'" in error
    assert not (tmp_path / "build").exists()


@pytest.mark.parametrize(
    ("body", "depends"),
    [
        pytest.param("", None, id="none"),
        pytest.param('credentials = { pw = "/etc/demo/pw" }\n', "systemd (>= 247)", id="load-credential-247"),
        pytest.param(
            'credentials = { pw = "/etc/demo/pw" }\nencrypted_credentials = { t = "/etc/demo/t.cred" }\n',
            "systemd (>= 250)",
            id="load-credential-encrypted-250",
        ),
    ],
)
def test_packages_with_credentials_depend_on_a_systemd_that_loads_them(
    tmp_path: Path, body: str, depends: str | None
) -> None:
    package = '[package]\nversion = "1.0"\nmaintainer = "Jane Doe <jane@example.com>"\n'
    info = package_info(load_spec(project(tmp_path, body + package)), None)
    systemd = [d for d in info.depends if d.startswith("systemd")]
    assert systemd == ([depends] if depends else [])
