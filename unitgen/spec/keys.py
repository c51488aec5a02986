"""The spec's keys, each declared once: the `*_KEYS` tables (name, parser, default, doc) and the parsers they use.

The same tables drive parsing (`unitgen.spec.load`), error messages and the spec reference in
README.md (`python -m unitgen.spec.docs`), so they cannot drift apart.
"""

from __future__ import annotations

import re
from typing import Any

from unitgen.spec.config import CREDENTIAL_ALLOWED, config_table, credential_table
from unitgen.spec.fields import (
    FieldError,
    Key,
    absolute_path,
    array,
    boolean,
    choice,
    integer,
    matching,
    one_or_many,
    paragraphs,
    relative_dir,
    seconds,
    shown,
    single_line,
    string_table,
    text,
)
from unitgen.spec.instances import INSTANCE_ALLOWED, LISTEN_ALLOWED, parse_instances, parse_listen
from unitgen.spec.model import LockScope, OnContention, ProtectSystem, Ready, ReadyKind, ReloadSignal, Restart

USER_PATTERN = r"[a-z_][a-z0-9_-]{0,30}"
ENV_NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*"
UNIT_NAME_PATTERN = (
    r"[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]*)?"
    r"\.(service|socket|target|mount|path|timer|device|slice|scope|automount|swap)"
)
ENTRY_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
DIRECTIVE_PATTERN = r"[A-Z][A-Za-z0-9]*"
CAPABILITY_PATTERN = r"CAP_[A-Z_]+"
ADDRESS_FAMILY_PATTERN = r"AF_[A-Z0-9_]+"

# etcd client URLs as etcdctl --endpoints takes them; the launcher's client speaks HTTP/1.1 to etcd's
# JSON gateway on the same port (unitgen.launcher.fleet).
ETCD_ENDPOINT_PATTERN = r"https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)(:[0-9]{1,5})?/?"
# The lock's key prefix, `etcdctl lock NAME`'s NAME: the holders' keys are NAME/LEASE_ID.
ETCD_KEY_PATTERN = r"(/[A-Za-z0-9._@:-]+)+"
LOCK_TTL_MIN = 5  # below this, one etcd leader election (~1 s of failed renewals) can cost the lock

_READY_ALLOWED = "'immediate', 'notify', 'tcp:PORT', 'tcp:HOST:PORT' or 'path:/absolute/file'"


def parse_ready(value: Any) -> Ready:
    s = text(value)
    if s in ("immediate", "notify"):
        return Ready(ReadyKind(s))
    if s.startswith("path:"):
        return Ready(ReadyKind.PATH, path=absolute_path(s.removeprefix("path:")))
    if s.startswith("tcp:"):
        host, _, port = s.removeprefix("tcp:").rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        if port.isdigit() and 1 <= int(port) <= 65535 and re.fullmatch(r"[A-Za-z0-9.:-]+", host):
            return Ready(ReadyKind.TCP, host=host, port=int(port))
    raise FieldError(f"{shown(s)} is not a readiness condition", hint=f"allowed: {_READY_ALLOWED}")


def directory_name(value: Any) -> str | bool:
    """`true` means "a directory named after the service"; a string names it."""
    if isinstance(value, bool):
        return value
    return relative_dir(value)


def unit_value(value: Any) -> str:
    return single_line(value)


argv = array(lambda v: text(v, allow_empty=True), min_items=1)
# The package's synopsis (the description, unless package.summary is set): Debian Policy 3.4.1
# keeps it under 80 characters, and lintian's description-too-long is an error. systemd shows
# Description= in one status line too.
SYNOPSIS_MAX = 80
SYNOPSIS_MAX_BYTES = SYNOPSIS_MAX * 4
unit_names = array(matching(UNIT_NAME_PATTERN, "unit name (e.g. 'network-online.target')"))
package_relations = array(
    matching(r"[a-z0-9][a-z0-9+.-]+( ?\((<<|<=|=|>=|>>|<|>) ?[A-Za-z0-9.+~:-]+\))?( ?\| ?.+)?", "dependency")
)

TOP_KEYS: tuple[Key[Any], ...] = (
    Key(
        "description",
        lambda v: single_line(v, max_bytes=SYNOPSIS_MAX_BYTES, max_chars=SYNOPSIS_MAX),
        f"One line saying what the service is (Description=; at most {SYNOPSIS_MAX} characters).",
        required=True,
    ),
    Key(
        "exec",
        argv,
        "Exec mode: the command the launcher runs (execs) once it holds the lock. The first item is an absolute path.",
        allowed="array of strings",
    ),
    Key(
        "entry",
        matching(ENTRY_PATTERN, "entry point 'package.module:callable'"),
        "Python mode: the callable the launcher imports and calls once it holds the lock. Exclusive with `exec`.",
        allowed="'package.module:callable'",
    ),
    Key(
        "python",
        absolute_path,
        "The interpreter that runs the launcher (and, in python mode, the app). Default: /usr/bin/python3, "
        "or the venv's python with an [app].",
    ),
    Key(
        "user",
        matching(USER_PATTERN, "user name"),
        "Run as this static system user, created through sysusers.d. Absent: DynamicUser=yes.",
    ),
    Key("group", matching(USER_PATTERN, "group name"), "Group for `user` (default: same as user)."),
    Key("network", boolean, "false: no network at all (PrivateNetwork=yes, only AF_UNIX sockets).", default=True),
    Key(
        "ready",
        parse_ready,
        "When READY=1 is sent. 'immediate': as soon as the lock is held; 'notify': "
        "the app sends it; 'tcp:PORT': once the port accepts connections; 'path:FILE': once FILE exists.",
        default=Ready(ReadyKind.IMMEDIATE),
        allowed=_READY_ALLOWED,
    ),
    Key(
        "ready_timeout",
        seconds(0.1, 3600),
        "How long tcp:/path: readiness may take before the launcher gives up (seconds).",
        default=60.0,
    ),
    Key(
        "lock_file",
        absolute_path,
        "The single-instance lock. Must be in the service's own directory under /run (see below); its "
        "directory becomes RuntimeDirectory=. Default: /run/NAME/NAME.pid.",
    ),
    Key(
        "on_contention",
        choice(OnContention),
        "When another instance holds the lock: 'exit' (log it, exit with code 17) or 'wait' for the lock.",
        default=OnContention.EXIT,
    ),
    Key(
        "wait_timeout",
        seconds(0.1, 86400),
        "With on_contention = 'wait': give up after this many seconds (default: wait for ever).",
    ),
    Key("working_directory", absolute_path, "WorkingDirectory= of the service."),
    Key("state_directory", directory_name, "StateDirectory= (under /var/lib): true for NAME, or an own name (below)."),
    Key(
        "cache_directory", directory_name, "CacheDirectory= (under /var/cache): true for NAME, or an own name (below)."
    ),
    Key("logs_directory", directory_name, "LogsDirectory= (under /var/log): true for NAME, or an own name (below)."),
    Key(
        "configuration_directory",
        directory_name,
        "ConfigurationDirectory= (under /etc, read-only): true for NAME, or an own name (below).",
    ),
    Key("reload", argv, "ExecReload= command (exec mode). Exclusive with reload_signal.", allowed="array of strings"),
    Key("reload_signal", choice(ReloadSignal), "Reload by sending this signal to the main process."),
    Key("start_timeout", seconds(0.1, 86400), "TimeoutStartSec= in seconds.", default=90.0),
    Key("stop_timeout", seconds(0.1, 86400), "TimeoutStopSec= in seconds.", default=30.0),
    Key("restart", choice(Restart), "Restart= policy.", default=Restart.ON_FAILURE),
    Key("restart_sec", seconds(0, 3600), "RestartSec= in seconds.", default=5.0),
    Key("start_limit_burst", integer(1, 1000), "StartLimitBurst=: starts allowed per interval.", default=5),
    Key("start_limit_interval", seconds(1, 86400), "StartLimitIntervalSec= in seconds.", default=60.0),
    Key(
        "watchdog",
        seconds(1, 86400),
        "WatchdogSec=: the service is restarted when no WATCHDOG=1 comes for this many seconds. The launcher "
        "pings every half period while the app is healthy: in python mode, and for tcp:/path: readiness while the "
        "probe passes; with ready = 'notify' the app pings itself (exec mode with 'immediate' has no pinger).",
    ),
    Key("after", unit_names, "Extra After= units.", default=()),
    Key("wants", unit_names, "Extra Wants= units.", default=()),
    Key("requires", unit_names, "Extra Requires= units.", default=()),
    Key(
        "documentation",
        array(matching(r"(https?|file|info|man):\S+", "documentation URI")),
        "Documentation= URIs (default: the service's man page and README)",
        default=(),
    ),
    Key(
        "environment",
        string_table(matching(ENV_NAME_PATTERN, "variable name"), lambda v: text(v, allow_empty=True)),
        'Environment variables, a table of NAME = "value".',
        default=(),
        allowed="table",
    ),
    Key("environment_file", absolute_path, "An optional EnvironmentFile= (a missing file is not an error)."),
    Key("start_on_install", boolean, "Packages start (and enable) the service when installed.", default=True),
    Key(
        "instances",
        parse_instances,
        "A template service, NAME@.service: the instances the package enables and starts, "
        '["a", "b"] or a table [instances.a] with its own environment = { NAME = "value" }. Each has '
        "its own lock (/run/NAME/{instance}.pid) and gets $UNITGEN_INSTANCE; `{instance}` in `exec` "
        "arguments is its name. " + INSTANCE_ALLOWED + ".",
        default=(),
        allowed="array of names or table",
    ),
    Key(
        "listen",
        parse_listen,
        "Socket activation: systemd listens (NAME.socket, NAME@.socket with instances) and hands the "
        "sockets to the app ($LISTEN_FDS); the package enables the socket. " + LISTEN_ALLOWED + "; "
        "unix: paths in the service's own /run directory, `{instance}` in the file name (required with instances).",
        default=(),
        allowed="array of sockets",
    ),
    Key(
        "config",
        config_table,
        "Default configuration: a table of '/etc/NAME/FILE' = 'source' (a file of the project, relative to "
        "the spec). Shipped as conffiles (deb) and %config(noreplace) (rpm): an admin's edit survives "
        "upgrades. Sets ConfigurationDirectory=NAME; read-only to the service.",
        default=(),
        allowed="table",
    ),
    Key(
        "credentials",
        credential_table,
        "Secrets, a table of ID = '/absolute/file' (LoadCredential=): the app reads $CREDENTIALS_DIRECTORY/ID "
        "(python mode: unitgen_credentials.read('ID')). The package never ships the file; a missing file "
        "fails the start. IDs: " + CREDENTIAL_ALLOWED + ".",
        default=(),
        allowed="table",
    ),
    Key(
        "encrypted_credentials",
        credential_table,
        "Like `credentials`, for files made with `systemd-creds encrypt` (LoadCredentialEncrypted=, "
        "systemd 250 or later): decrypted by systemd into $CREDENTIALS_DIRECTORY/ID.",
        default=(),
        allowed="table",
    ),
)

LIMITS_KEYS: tuple[Key[Any], ...] = (
    Key("nofile", integer(1, 1 << 30), "LimitNOFILE=: open files."),
    Key("nproc", integer(1, 1 << 22), "LimitNPROC=: processes of the user."),
    Key(
        "memory_max",
        matching(r"[0-9]+[KMGT]?|[0-9]{1,2}%|100%|infinity", "memory size like 512M or 50%"),
        "MemoryMax=: hard memory limit, e.g. '512M'.",
    ),
    Key("cpu_quota", matching(r"[0-9]{1,5}%", "percentage like 50%"), "CPUQuota=, e.g. '50%'."),
    Key("tasks_max", integer(1, 1 << 22), "TasksMax=: threads and processes of the service."),
)

HARDENING_KEYS: tuple[Key[Any], ...] = (
    Key(
        "memory_deny_write_execute",
        boolean,
        "MemoryDenyWriteExecute=; set false for JITs and cffi callbacks.",
        default=True,
    ),
    Key("private_devices", boolean, "PrivateDevices= (and DevicePolicy=closed).", default=True),
    Key("private_users", boolean, "PrivateUsers=: the service sees only its own user.", default=True),
    Key("private_tmp", boolean, "PrivateTmp=.", default=True),
    Key("protect_home", boolean, "ProtectHome=: /home, /root and /run/user are invisible.", default=True),
    Key("protect_proc", boolean, "ProtectProc=invisible and ProcSubset=pid.", default=True),
    Key("protect_system", choice(ProtectSystem), "ProtectSystem=.", default=ProtectSystem.STRICT),
    Key("system_call_filter", boolean, "SystemCallFilter=@system-service minus @privileged @resources.", default=True),
    Key("restrict_namespaces", boolean, "RestrictNamespaces=yes.", default=True),
    Key(
        "capabilities",
        array(matching(CAPABILITY_PATTERN, "capability like CAP_NET_BIND_SERVICE")),
        "Capabilities granted (AmbientCapabilities= and CapabilityBoundingSet=), e.g. "
        "['CAP_NET_BIND_SERVICE'] to bind ports below 1024.",
        default=(),
    ),
    Key(
        "address_families",
        array(matching(ADDRESS_FAMILY_PATTERN, "address family like AF_NETLINK")),
        "Extra RestrictAddressFamilies= beyond AF_UNIX (and AF_INET/AF_INET6 with network).",
        default=(),
    ),
    Key(
        "read_write_paths",
        array(absolute_path),
        "ReadWritePaths= under ProtectSystem=strict: the service's own directories only (below), e.g. /srv/NAME.",
        default=(),
    ),
    Key(
        "ip_address_allow",
        array(matching(r"[0-9a-fA-F:./]+|localhost|link-local|multicast|any", "address or prefix")),
        "With this set: IPAddressDeny=any plus IPAddressAllow= these, on the service and, with 'listen', "
        "on its socket unit (whose list alone guards the sockets passed to the service).",
    ),
)

TIMER_KEYS: tuple[Key[Any], ...] = (
    Key("on_calendar", one_or_many(single_line), "OnCalendar= expression(s), e.g. '*:0/5' or 'daily'.", default=()),
    Key("on_boot_sec", seconds(0, 1e9), "OnBootSec= in seconds."),
    Key("on_unit_active_sec", seconds(1, 1e9), "OnUnitActiveSec= in seconds."),
    Key("persistent", boolean, "Persistent=: catch up on runs missed while the machine was off.", default=True),
    Key("randomized_delay_sec", seconds(0, 1e9), "RandomizedDelaySec=.", default=0.0),
    Key("accuracy_sec", seconds(0.000001, 1e9), "AccuracySec=.", default=60.0),
    Key(
        "run_timeout",
        seconds(1, 1e9),
        "A run that takes longer is killed (TimeoutStartSec= of the oneshot service; default: no limit).",
    ),
)

LOCK_KEYS: tuple[Key[Any], ...] = (
    Key(
        "scope",
        choice(LockScope),
        "'host': one instance per host (the fcntl lock). 'fleet': also one across every host sharing the etcd "
        "cluster: the launcher then holds an etcd lock too, and stops the app before that lock can expire.",
        default=LockScope.HOST,
    ),
    Key(
        "etcd",
        array(matching(ETCD_ENDPOINT_PATTERN, "etcd client URL like 'https://10.0.0.1:2379'"), min_items=1),
        "scope = 'fleet': the etcd members' client URLs (http:// or https://HOST:PORT).",
        default=(),
        allowed="array of URLs",
    ),
    Key(
        "ttl",
        integer(LOCK_TTL_MIN, 3600),
        "scope = 'fleet': the lease's time to live in seconds; the launcher renews it every ttl/3, stops the "
        "app when it could expire, and another host takes over at most ttl + 1 s after a holder dies.",
        default=10,
    ),
    Key(
        "key",
        matching(ETCD_KEY_PATTERN, "etcd key like '/unitgen/locks/NAME'"),
        "scope = 'fleet': the lock's name in etcd, as `etcdctl lock` names it. Default: /unitgen/locks/NAME.",
    ),
    Key(
        "ca_file",
        absolute_path,
        "https endpoints: the CA that signed the etcd servers' certificates (passed with LoadCredential=).",
    ),
    Key("cert_file", absolute_path, "https endpoints: the client certificate (LoadCredential=), with key_file."),
    Key("key_file", absolute_path, "https endpoints: the client certificate's key (LoadCredential=), with cert_file."),
)

_KEPT = " What unitgen itself requires (the python3 the launcher and the venv run on) is always kept."
OVERRIDE_KEYS: tuple[Key[Any], ...] = (
    Key("depends", package_relations, "Replaces the common `depends` for this format." + _KEPT),
    Key("recommends", package_relations, "Replaces the common `recommends` for this format." + _KEPT),
    Key("conflicts", package_relations, "Replaces the common `conflicts` for this format."),
)

PACKAGE_KEYS: tuple[Key[Any], ...] = (
    Key("version", matching(r"[0-9][A-Za-z0-9.+~]*", "version like 1.0.0"), "Upstream version.", required=True),
    Key("release", matching(r"[0-9][A-Za-z0-9.+~]*", "release like 1"), "Package release.", default="1"),
    Key(
        "maintainer",
        matching(r"[^<>]+ <[^<>@\s]+@[^<>@\s]+>", "maintainer 'Name <email@example.org>'"),
        "Maintainer, 'Name <email>'.",
        required=True,
    ),
    Key(
        "summary",
        lambda v: single_line(v, max_bytes=SYNOPSIS_MAX_BYTES, max_chars=SYNOPSIS_MAX),
        f"One-line summary (default: description; at most {SYNOPSIS_MAX} characters).",
    ),
    Key("description", paragraphs, "Long description (may be several paragraphs; TOML multi-line strings are fine)."),
    Key("license", single_line, "License name (SPDX), e.g. 'MIT'.", default="MIT"),
    Key("homepage", matching(r"https?://\S+", "URL"), "Project homepage URL."),
    Key("depends", package_relations, "Extra package dependencies (both formats).", default=()),
    Key("recommends", package_relations, "Recommended packages.", default=()),
    Key("conflicts", package_relations, "Conflicting packages.", default=()),
    Key(
        "architecture",
        matching(r"all|noarch|amd64|arm64|x86_64|aarch64", "architecture"),
        "'all' (noarch) when nothing is compiled.",
        default="all",
    ),
)

EXTRA_SECTIONS = ("Unit", "Service", "Install", "Timer")


def venv_path(value: Any) -> str:
    path = absolute_path(value)
    if not path.startswith("/usr/lib/"):
        raise FieldError(
            f"{shown(path)} is not under /usr/lib",
            hint="packages own /usr/lib/NAME; /opt and /usr/local belong to the administrator",
        )
    return path


APP_KEYS: tuple[Key[Any], ...] = (
    Key("project", text, "A directory with a pyproject.toml (relative to the spec file): the app, built as a wheel."),
    Key(
        "wheels",
        array(text),
        "Wheel files of the app (relative to the spec file), instead of or with `project`.",
        default=(),
    ),
    Key("requirements", text, "A requirements or lock file (relative to the spec file) pinning the dependencies."),
    Key(
        "find_links", array(text), "Directories of wheels (relative to the spec file) pip may install from.", default=()
    ),
    Key(
        "no_index",
        boolean,
        "Build offline: dependencies only from `find_links`, never from a package index.",
        default=False,
    ),
    Key(
        "venv",
        venv_path,
        "Where the virtual environment lives on the target, in the service's own /usr/lib directory "
        "(default: /usr/lib/NAME/venv).",
    ),
)
