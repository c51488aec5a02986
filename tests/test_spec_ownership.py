"""Issue 9.2: every directory a spec names for the service must be the service's own.

systemd creates, chowns and chmods RuntimeDirectory= (the lock's directory), StateDirectory=,
CacheDirectory=, LogsDirectory= and ConfigurationDirectory=, and the package purges state,
cache and logs: naming /run/lock, /run/systemd, /var/cache/apt or /var/lib/dpkg would hand a
system directory to the service, and delete it on purge. Only directories named after the
service (NAME, NAME/SUB, NAME-SOMETHING) are accepted.
"""

from __future__ import annotations

from typing import Any

import pytest

from unitgen.spec import parse_spec
from unitgen.spec.fields import SpecError

NAME = "demo"
MINIMAL: dict[str, Any] = {"description": "Demo", "exec": ["/usr/bin/python3", "-m", "http.server"]}


def parse(**changes: Any) -> Any:
    return parse_spec({**MINIMAL, **changes}, name=NAME, where="demo.toml")


def refused(key: str, *values: str) -> list[Any]:
    return [pytest.param(key, value, id=f"{key}={value}") for value in values]


BAD = [
    # The reproductions first, then what the base system and systemd create.
    *refused(
        "lock_file",
        "/run/lock/demo.pid",  # /run/lock is 1777 and shared: tmpfiles would reset it to 0755
        "/run/systemd/demo.pid",  # systemd would move /run/systemd to /run/private/systemd
        "/run/user/demo.pid",
        "/run/dbus/demo.pid",
        "/run/lock/demo/demo.pid",  # below a shared directory is no better
        "/run/log/demo.pid",
        "/run/shm/demo.pid",
        "/run/udev/demo.pid",
        "/run/sshd/demo.pid",
        "/run/mount/demo.pid",
        "/run/private/demo.pid",
        "/run/credentials/demo.pid",
        "/run/data/demo.pid",  # not a system name, but not the service's either
        "/run/demon/demo.pid",  # starts with the name without a separator
    ),
    *refused("cache_directory", "apt", "debconf", "man", "ldconfig", "private", "private/demo", "fontconfig"),
    *refused("state_directory", "dpkg", "apt", "systemd", "private", "dbus", "polkit-1", "postgresql", "ucf", "data"),
    *refused("logs_directory", "journal", "apt", "private", "installer", "README"),
    *refused("configuration_directory", "ssl", "systemd", "default", "apt", "ssh", "pam.d", "security", "sudoers.d"),
    *refused("state_directory", "Demo", "demo..x/../dpkg", "../lib/dpkg", "/var/lib/demo", ".", "demo/", "demo//x"),
]


@pytest.mark.parametrize(("key", "value"), BAD)
def test_directories_that_are_not_the_services_own_are_refused(key: str, value: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse(**{key: value})
    assert caught.value.key == key
    message = str(caught.value)
    assert message.startswith(f"demo.toml: {key}: ")
    assert repr(value) in message  # the value, quoted
    if "own directory" in message:
        assert "named after the service" in message  # what is allowed


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        pytest.param("state_directory", True, "demo", id="state-true"),
        pytest.param("state_directory", "demo", "demo", id="state-name"),
        pytest.param("state_directory", "demo/data", "demo/data", id="state-sub"),
        pytest.param("cache_directory", "demo-cache", "demo-cache", id="cache-dash"),
        pytest.param("logs_directory", "demo_logs", "demo_logs", id="logs-underscore"),
        pytest.param("configuration_directory", "demo.d", "demo.d", id="config-dot"),
        pytest.param("lock_file", "/run/demo/demo.pid", "/run/demo/demo.pid", id="lock-default"),
        pytest.param("lock_file", "/run/demo-worker/w.pid", "/run/demo-worker/w.pid", id="lock-dash"),
        pytest.param("lock_file", "/run/demo/sub/x.pid", "/run/demo/sub/x.pid", id="lock-sub"),
    ],
)
def test_directories_named_after_the_service_are_accepted(key: str, value: Any, expected: str) -> None:
    assert getattr(parse(**{key: value}), key) == expected


@pytest.mark.parametrize("name", ["systemd", "dpkg", "apt", "user", "lock", "private", "journal", "ssl", "dbus"])
def test_a_service_named_like_a_system_directory_is_refused(name: str) -> None:
    # The name alone gives /run/NAME (the default lock), the package NAME and the user NAME.
    with pytest.raises(SpecError, match="belongs to the system"):
        parse_spec(MINIMAL, name=name)


def test_a_service_whose_name_prefixes_a_system_directory_cannot_take_it() -> None:
    # "ca" + "-certificates" looks service-named; the list of system names still refuses it.
    with pytest.raises(SpecError, match="ca-certificates"):
        parse_spec({**MINIMAL, "state_directory": "ca-certificates"}, name="ca")


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/", id="root"),
        pytest.param("/var", id="var"),
        pytest.param("/var/lib", id="var-lib"),
        pytest.param("/var/lib/dpkg", id="dpkg"),
        pytest.param("/var/lib/private/demo", id="private"),
        pytest.param("/etc", id="etc"),
        pytest.param("/etc/ssl/private", id="etc-ssl"),
        pytest.param("/run/lock/demo", id="run-lock"),
        pytest.param("/run/systemd", id="run-systemd"),
        pytest.param("/tmp/demo", id="tmp"),  # noqa: S108 - a path the spec must refuse
        pytest.param("/var/tmp/demo", id="var-tmp"),  # noqa: S108 - refused, not used
        pytest.param("/dev/shm/demo", id="dev-shm"),  # noqa: S108 - refused, not used
        pytest.param("/usr/lib/demo", id="usr"),
        pytest.param("/var/spool/cron", id="spool-cron"),
        pytest.param("/var/www/html", id="www"),
        pytest.param("/var/somewhere", id="var-other"),
        pytest.param("/srv", id="srv"),
        pytest.param("/home", id="home"),
    ],
)
def test_read_write_paths_of_the_system_are_refused(path: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse(hardening={"read_write_paths": ["/srv/demo", path]})
    assert caught.value.key == "hardening.read_write_paths[1]"
    assert repr(path) in str(caught.value)


def test_read_write_paths_of_the_service_are_accepted() -> None:
    paths = ["/srv/demo", "/var/lib/demo/uploads", "/var/spool/demo", "/etc/demo", "/run/demo-extra", "/opt/demo/data"]
    assert parse(hardening={"read_write_paths": paths}).hardening.read_write_paths == tuple(paths)


@pytest.mark.parametrize(
    "venv",
    [
        pytest.param("/usr/lib/python3/dist-packages", id="python3"),
        pytest.param("/usr/lib/systemd/venv", id="systemd"),
        pytest.param("/usr/lib/x86_64-linux-gnu/venv", id="multiarch"),
        pytest.param("/usr/lib/other/venv", id="other-package"),
    ],
)
def test_the_app_venv_must_be_under_the_services_own_usr_lib_directory(venv: str) -> None:
    # The package owns the venv tree and its scripts delete bytecode in it.
    with pytest.raises(SpecError) as caught:
        parse(app={"wheels": ["x.whl"], "venv": venv})
    assert caught.value.key == "app.venv"
    assert repr(venv) in str(caught.value)
