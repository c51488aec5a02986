"""The spec: what it accepts, and the error a user gets for what it does not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from unitgen.spec import OnContention, ReadyKind, load_spec, parse_spec
from unitgen.spec.fields import SpecError

MINIMAL: dict[str, Any] = {"description": "Demo", "exec": ["/usr/bin/python3", "-m", "http.server"]}


def spec_with(**changes: Any) -> dict[str, Any]:
    raw = dict(MINIMAL)
    for key, value in changes.items():
        if value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    return raw


def test_minimal_spec_gets_the_documented_defaults() -> None:
    spec = parse_spec(MINIMAL, name="demo")
    assert spec.lock_file == "/run/demo/demo.pid"
    assert spec.runtime_directory == "demo"
    assert spec.user is None  # DynamicUser=yes
    assert spec.network is True
    assert spec.ready.kind is ReadyKind.IMMEDIATE
    assert spec.on_contention is OnContention.EXIT
    assert spec.timer is None and spec.package is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("immediate", "immediate", id="immediate"),
        pytest.param("notify", "notify", id="notify"),
        pytest.param("tcp:8080", "tcp:127.0.0.1:8080", id="tcp-port"),
        pytest.param("tcp:0.0.0.0:80", "tcp:0.0.0.0:80", id="tcp-host-port"),
        pytest.param("tcp:[::1]:8080", "tcp:::1:8080", id="tcp-ipv6"),
        pytest.param("path:/run/demo/ready", "path:/run/demo/ready", id="path"),
    ],
)
def test_ready_conditions(value: str, expected: str) -> None:
    assert str(parse_spec(spec_with(ready=value), name="demo").ready) == expected


@pytest.mark.parametrize(
    ("raw", "key", "problem"),
    [
        pytest.param(spec_with(restrt="no"), "restrt", "did you mean 'restart'", id="typo-suggests"),
        pytest.param(spec_with(exec=None), "exec", "exactly one of", id="neither-exec-nor-entry"),
        pytest.param(spec_with(entry="app:main"), "exec", "exactly one of", id="both-exec-and-entry"),
        pytest.param(spec_with(exec=["python3"]), "exec[0]", "absolute path", id="relative-program"),
        pytest.param(spec_with(exec=[]), "exec", "at least 1", id="empty-exec"),
        pytest.param(
            spec_with(description="a\nExecStartPre=/bin/evil"), "description", "U+000A", id="newline-injection"
        ),
        pytest.param(spec_with(description="trailing \\"), "description", "backslash", id="line-continuation"),
        pytest.param(spec_with(exec=["/bin/echo", "a\rb"]), "exec", "U+000D", id="control-char-in-argv"),
        pytest.param(spec_with(ready="tcp:99999"), "ready", "not a readiness", id="port-out-of-range"),
        pytest.param(spec_with(ready="socket"), "ready", "not a readiness", id="unknown-ready"),
        pytest.param(spec_with(on_contention="kill"), "on_contention", "'exit', 'wait'", id="bad-enum"),
        pytest.param(spec_with(wait_timeout=5), "wait_timeout", "on_contention = 'wait'", id="timeout-without-wait"),
        pytest.param(spec_with(lock_file="/var/demo.pid"), "lock_file", "under /run", id="lock-outside-run"),
        pytest.param(spec_with(lock_file="/run/demo.pid"), "lock_file", "under /run", id="lock-directly-in-run"),
        pytest.param(spec_with(lock_file="/run/my dir/x.pid"), "lock_file", "may only contain", id="lock-dir-space"),
        pytest.param(spec_with(user="Root!"), "user", "not a valid user name", id="bad-user"),
        pytest.param(spec_with(group="staff"), "group", "needs 'user'", id="group-without-user"),
        pytest.param(spec_with(network="yes"), "network", "true or false", id="bool-as-string"),
        pytest.param(spec_with(stop_timeout=-1), "stop_timeout", "out of range", id="negative-timeout"),
        pytest.param(spec_with(environment={"BAD-NAME": "x"}), "environment", "variable name", id="env-name"),
        pytest.param(spec_with(environment={"A": "x\ny"}), "environment", "U+000A", id="env-newline"),
        pytest.param(spec_with(after=["network.target\n[Service]"]), "after", "U+000A", id="after-injection"),
        pytest.param(spec_with(after=["not a unit"]), "after", "unit name", id="after-not-a-unit"),
        pytest.param(
            spec_with(extra={"Servce": {"LimitCORE": "0"}}),
            "extra.Servce",
            "did you mean 'Service'",
            id="extra-section-typo",
        ),
        pytest.param(
            spec_with(extra={"Service": {"limit core": "0"}}),
            "extra.Service.limit core",
            "directive name",
            id="extra-bad-directive",
        ),
        pytest.param(spec_with(timer={}), "timer", "at least one of", id="empty-timer"),
        pytest.param(
            spec_with(timer={"on_calendar": "daily"}, ready="tcp:80"), "ready", "oneshot", id="timer-with-readiness"
        ),
        pytest.param(
            spec_with(package={"version": "1.0"}), "package.maintainer", "is required", id="package-needs-maintainer"
        ),
        pytest.param(
            spec_with(package={"version": "1.0", "maintainer": "x <y@z>", "deb": {"dependz": []}}),
            "package.deb.dependz",
            "did you mean 'depends'",
            id="package-override-typo",
        ),
        pytest.param(
            spec_with(hardening={"memory_deny_write_exec": False}),
            "hardening.memory_deny_write_exec",
            "did you mean 'memory_deny_write_execute'",
            id="hardening-typo",
        ),
        pytest.param(spec_with(limits="none"), "limits", "must be a table", id="table-expected"),
        pytest.param(spec_with(watchdog=10), "watchdog", "nothing would ping", id="watchdog-without-pinger"),
        pytest.param(
            spec_with(reload=["/bin/kill", "-HUP", "$MAINPID"]), "reload", "reload_signal", id="reload-with-mainpid"
        ),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(raw: dict[str, Any], key: str, problem: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(raw, name="demo", where="demo.toml")
    assert caught.value.key == key
    assert str(caught.value).startswith(f"demo.toml: {key}: ")
    assert problem in str(caught.value)


@pytest.mark.parametrize("name", ["Demo", "-demo", "demo_svc", "d", "a" * 33, "demo.service", "démo"])
def test_service_names_must_work_as_unit_package_and_user_names(name: str) -> None:
    with pytest.raises(SpecError, match="not a valid service name"):
        parse_spec(MINIMAL, name=name)


def test_load_spec_reports_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(SpecError, match="no such file"):
        load_spec(missing)
    broken = tmp_path / "broken.toml"
    broken.write_text('description = "x\n', encoding="utf-8")
    with pytest.raises(SpecError, match=r"broken\.toml: not valid TOML"):
        load_spec(broken)
    latin1 = tmp_path / "latin.toml"
    latin1.write_bytes(b'description = "caf\xe9"\n')
    with pytest.raises(SpecError, match="not UTF-8"):
        load_spec(latin1)


def test_odd_but_legal_values_are_accepted() -> None:
    spec = parse_spec(
        spec_with(
            description='100% "quoted" $HOME ; back\\slash — ünïcode',
            exec=["/usr/bin/env", "", " ", ";", "$VAR", "%n", "'", '"', "\\"],
            environment={"EMPTY": "", "SPACES": "  a  b  ", "PCT": "100%"},
            state_directory=True,
            timer={"on_calendar": ["*:0/5", "daily"]},
        ),
        name="odd-1",
    )
    assert spec.exec is not None and spec.exec[1:4] == ("", " ", ";")
    assert spec.state_directory == "odd-1"
    assert spec.timer is not None and spec.timer.on_calendar == ("*:0/5", "daily")


def test_app_paths_are_relative_to_the_spec_file_and_select_the_venv_interpreter(tmp_path: Path) -> None:
    spec_file = tmp_path / "svc" / "web.toml"
    (tmp_path / "svc" / "src").mkdir(parents=True)
    (tmp_path / "svc" / "src" / "pyproject.toml").write_text("[project]\nname = 'web'\n")
    (tmp_path / "svc" / "requirements.txt").write_text("")
    spec_file.write_text(
        'description = "x"\nentry = "web.app:main"\n[app]\nproject = "src"\nrequirements = "requirements.txt"\n'
    )
    spec = load_spec(spec_file)
    assert spec.app is not None
    assert spec.app.project == str(tmp_path / "svc" / "src")
    assert spec.app.requirements == str(tmp_path / "svc" / "requirements.txt")
    assert spec.app.venv == "/usr/lib/web/venv"
    assert spec.python == "/usr/lib/web/venv/bin/python"


@pytest.mark.parametrize(
    ("app", "key", "problem"),
    [
        pytest.param({}, "app", "needs 'project' or 'wheels'", id="nothing-to-install"),
        pytest.param({"project": ".", "venv": "/opt/web/venv"}, "app.venv", "not under /usr/lib", id="venv-in-opt"),
        pytest.param({"project": ".", "no_index": True}, "app.no_index", "needs 'find_links'", id="offline-no-source"),
        pytest.param({"projct": "."}, "app.projct", "did you mean 'project'", id="typo"),
    ],
)
def test_bad_app_tables(app: dict[str, Any], key: str, problem: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(spec_with(app=app), name="web", where="web.toml")
    assert caught.value.key == key
    assert problem in str(caught.value)
