"""The service spec: one validated, frozen model read from NAME.toml.

Every key is declared once, in the `*_KEYS` tables below (name, parser, default, doc), and
the same tables drive parsing, error messages and the spec reference in README.md
(`python -m unitgen.spec.docs`), so they cannot drift apart.
"""

from __future__ import annotations

import difflib
import enum
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unitgen import escape
from unitgen.spec.fields import (
    LINE_MAX,
    FieldError,
    Key,
    SpecError,
    absolute_path,
    array,
    boolean,
    choice,
    integer,
    matching,
    one_or_many,
    paragraphs,
    parse_table,
    relative_dir,
    seconds,
    shown,
    shown_key,
    single_line,
    string_table,
    text,
    utf8_length,
)

# A service name is used as unit name, package name, user name, directory name and
# SYSLOG_IDENTIFIER, so it must be valid as all of them: the intersection of systemd's unit
# name characters, Debian's package name rules and sysusers' user name rules.
NAME_PATTERN = r"[a-z][a-z0-9-]{0,30}[a-z0-9]"
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


# --- Directories the service may own (issue 9.2) -------------------------------------------
#
# systemd creates RuntimeDirectory=, StateDirectory=, CacheDirectory=, LogsDirectory= and
# ConfigurationDirectory= if missing, and chowns and chmods them (and, with DynamicUser=,
# moves them under private/) when they exist; the package purges state, cache and logs.
# Given a directory that is not the service's, that takes over /run/lock (1777 -> 0755),
# /run/systemd, /var/cache/apt or /var/lib/dpkg, as root, on a production machine. So the
# first component of each of them must be named after the service: NAME itself or NAME
# followed by '-', '.' or '_' and more (the same rule Debian applies to a package's paths).
# That alone keeps out every other package whose name does not start with the service's;
# the list below also keeps out what the base system, systemd and common packages ship
# when the service's name happens to be (or prefix) one of them: a service named "user"
# must not get /run/user, nor "ca" /etc/ca-certificates.


def _words(*groups: str) -> frozenset[str]:
    return frozenset(word for group in groups for word in group.split())


SYSTEM_NAMES = _words(
    # /run on Debian 12 and Fedora with systemd: systemd's own, the base system's, and
    # the world-writable lock and shm directories.
    "adduser agetty.reload blkid console-setup credentials cryptsetup dbus dhclient dmeventd "
    "faillock host initctl initramfs lock log lvm mdadm motd.d mount netns network nologin "
    "plymouth private resolvconf rpcbind screen sendsigs.omit.d setrans shm sshd sudo sysconfig "
    "systemd tmpfiles.d udev user utmp uuidd wpa_supplicant NetworkManager avahi-daemon chrony "
    "cups containerd docker nscd samba postgresql mysqld php apache2 nginx auditd crond atd "
    "rsyslogd polkit gdm3 lightdm sddm snapd netplan firewalld "
    # /var/lib: package managers, systemd (private/ holds DynamicUser= directories), base.
    "apt aptitude dpkg private pam polkit-1 ucf sgml-base xml-core python man-db logrotate misc "
    "ntp ntpdate update-rc.d vim emacsen-common dictionaries-common ispell aspell os-prober "
    "initramfs-tools ca-certificates shells.state git rpm rpm-state dnf yum PackageKit "
    "AccountsService usbutils pci locales tpm mysql colord upower flatpak alternatives "
    "portables machines lastlog sss selinux rsyslog cloud authselect nfs bluetooth fwupd "
    "command-not-found unattended-upgrades ubuntu-advantage landscape swcatalog app-info "
    "libxml-sax-perl tex-common texmf doc-base binfmts iptables dhcp debconf sudo-ldap "
    # /var/cache
    "man ldconfig fontconfig cracklib pollinate motd-news realmd "
    # /var/log
    "journal installer sysstat audit README alternatives.log dpkg.log btmp wtmp faillog "
    "fontconfig.log syslog messages auth.log kern.log daemon.log user.log debug secure cron "
    "maillog boot.log anaconda sssd tuned letsencrypt exim4 fsck runit Xorg.0.log "
    # /etc on a Debian 12 base system (and Fedora's common ones)
    "X11 adduser.conf alternatives apparmor apparmor.d bash.bashrc bash_completion.d "
    "bindresvport.blacklist binfmt.d ca-certificates.conf cron.d cron.daily cron.hourly "
    "cron.monthly cron.weekly cron.yearly crontab dbus-1 dconf debconf.conf debian_version "
    "default deluser.conf dhcp dpkg e2scrub.conf environment environment.d ethertypes fonts "
    "fstab gai.conf group group- gshadow gshadow- gss host.conf hostname hosts init.d inputrc "
    "iproute2 issue issue.net kernel ld.so.cache ld.so.conf ld.so.conf.d ldap libaudit.conf "
    "locale.alias locale.conf locale.gen localtime login.defs logrotate.conf logrotate.d "
    "machine-id magic magic.mime mailcap manpath.config mime.types mke2fs.conf modprobe.d "
    "modules modules-load.d motd mtab netconfig networks nsswitch.conf opt os-release pam.conf "
    "pam.d passwd passwd- perl pki profile profile.d protocols python3 rc.local rc0.d rc1.d "
    "rc2.d rc3.d rc4.d rc5.d rc6.d rcS.d resolv.conf rmt rpc security selinux services shadow "
    "shadow- shells skel ssh ssl subgid subuid sudoers sudoers.d sysctl.conf sysctl.d "
    "sysusers.d terminfo timezone ucf.conf update-motd.d vconsole.conf xattr.conf xdg xml "
    "sysconfig yum.repos.d "
    # /usr/lib (app.venv): the interpreter's, systemd's, the multiarch triplets.
    "python3.11 python3.12 python3.13 x86_64-linux-gnu aarch64-linux-gnu i386-linux-gnu "
    "arm-linux-gnueabihf locale firmware init lsb mime sasl2 gnupg openssh policykit-1 jvm gcc "
    "cpp git-core file groff pkgconfig dbus-1.0 girepository-1.0 software-properties "
    "node_modules tmpfiles.d "
    # Generic directory names of the file system hierarchy itself.
    "backups cache lib local mail run spool tmp www crash games",
)
_OWN_SUFFIX = re.compile(r"[-._][A-Za-z0-9._-]+")


def is_own_name(component: str, name: str) -> bool:
    """Whether a directory name (the first component under /run, /var/lib, ...) is the service's."""
    if component in SYSTEM_NAMES or component.lower() in SYSTEM_NAMES:
        return False
    return component == name or (
        component.startswith(name) and _OWN_SUFFIX.fullmatch(component[len(name) :]) is not None
    )


def _own_hint(name: str, base: str) -> str:
    return (
        f"use a directory named after the service: {base}/{name}, {base}/{name}/SUB or "
        f"{base}/{name}-SOMETHING; directories of the system, systemd and other packages are refused"
    )


def own_directory(where: str, key: str, relative: str, name: str, base: str, value: str | None = None) -> str:
    """`relative` (a directory under `base`, as RuntimeDirectory= and friends take it) must be
    the service's own; returns it, or raises `SpecError` naming the key and the value (`value`,
    when the spec wrote something else than `relative`, e.g. the lock file)."""
    first = relative.split("/")[0]
    if not is_own_name(first, name):
        where_it_is = (
            f"{base}/{relative}" if first == relative else f"{base}/{relative} is inside {base}/{first}, which"
        )
        raise SpecError(
            where,
            key,
            f"{shown(relative if value is None else value)}: {where_it_is} is not the service's own directory"
            + (": it belongs to the system, systemd or another package" if first in SYSTEM_NAMES else ""),
            hint=_own_hint(name, base),
        )
    return relative


# ReadWritePaths=: the service may write there although ProtectSystem=strict makes the rest of
# the file system read-only. Under these trees, only a directory named after the service
# (/run/NAME, /etc/NAME, /var/lib/NAME, /var/spool/NAME ...).
_SERVICE_TREES = ("/run", "/etc", "/var/lib", "/var/cache", "/var/log", "/var/spool", "/var/opt", "/var/www")
# Never writable for a service: the operating system itself, kernel interfaces, and the
# world-writable directories (anyone can plant a symlink there).
_SYSTEM_TREES = _words(
    "/usr /boot /efi /proc /sys /dev /bin /sbin /lib /lib32 /lib64 /libx32 /root /run/user",
    # World-writable (or symlinks into /run): anyone can plant a symlink there.
    "/tmp /var/tmp /run/lock /run/shm /var/lock /var/run /var/crash",  # noqa: S108 - refused, not used
    "/var/mail /var/backups /var/local",
)


def own_read_write_path(where: str, key: str, path: str, name: str) -> str:
    p = Path(path)
    refused = None
    if len(p.parts) <= 2:
        # "/", "/var", "/srv", "/home", ...: a whole top-level tree, never one service's.
        refused = "is a whole top-level directory"
    elif any(p == Path(t) or p.is_relative_to(t) for t in _SYSTEM_TREES):
        refused = "belongs to the operating system or is world-writable"
    else:
        for tree in _SERVICE_TREES:
            if p.is_relative_to(tree):
                rest = p.relative_to(tree).parts
                if not rest or not is_own_name(rest[0], name):
                    refused = f"is under {tree} but not named after the service"
                break
        else:
            if path.startswith("/var/"):
                refused = "is a system directory under /var"
    if refused:
        raise SpecError(
            where,
            key,
            f"{shown(path)} {refused}",
            hint=f"grant the service only its own directories, e.g. /var/lib/{name} (better: "
            "state_directory = true) or /srv/" + name,
        )
    return path


class ReadyKind(enum.Enum):
    IMMEDIATE = "immediate"
    NOTIFY = "notify"
    TCP = "tcp"
    PATH = "path"


@dataclass(frozen=True)
class Ready:
    """When the launcher sends READY=1 (see README: "Readiness")."""

    kind: ReadyKind
    host: str = "127.0.0.1"
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.kind is ReadyKind.TCP:
            return f"tcp:{self.host}:{self.port}"
        if self.kind is ReadyKind.PATH:
            return f"path:{self.path}"
        return str(self.kind.value)


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


class OnContention(enum.Enum):
    EXIT = "exit"
    WAIT = "wait"


class Restart(enum.Enum):
    NO = "no"
    ON_SUCCESS = "on-success"
    ON_FAILURE = "on-failure"
    ON_ABNORMAL = "on-abnormal"
    ON_WATCHDOG = "on-watchdog"
    ON_ABORT = "on-abort"
    ALWAYS = "always"


class ProtectSystem(enum.Enum):
    STRICT = "strict"
    FULL = "full"
    YES = "yes"
    NO = "no"


class ReloadSignal(enum.Enum):
    SIGHUP = "SIGHUP"
    SIGUSR1 = "SIGUSR1"
    SIGUSR2 = "SIGUSR2"


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
)


@dataclass(frozen=True)
class Limits:
    nofile: int | None
    nproc: int | None
    memory_max: str | None
    cpu_quota: str | None
    tasks_max: int | None


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


@dataclass(frozen=True)
class Hardening:
    memory_deny_write_execute: bool
    private_devices: bool
    private_users: bool
    private_tmp: bool
    protect_home: bool
    protect_proc: bool
    protect_system: ProtectSystem
    system_call_filter: bool
    restrict_namespaces: bool
    capabilities: tuple[str, ...]
    address_families: tuple[str, ...]
    read_write_paths: tuple[str, ...]
    ip_address_allow: tuple[str, ...] | None


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
        "With this set: IPAddressDeny=any plus IPAddressAllow= these.",
    ),
)


@dataclass(frozen=True)
class Timer:
    on_calendar: tuple[str, ...]
    on_boot_sec: float | None
    on_unit_active_sec: float | None
    persistent: bool
    randomized_delay_sec: float
    accuracy_sec: float
    run_timeout: float | None


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


@dataclass(frozen=True)
class FormatOverrides:
    depends: tuple[str, ...] | None
    recommends: tuple[str, ...] | None
    conflicts: tuple[str, ...] | None


_KEPT = " What unitgen itself requires (the python3 the launcher and the venv run on) is always kept."
OVERRIDE_KEYS: tuple[Key[Any], ...] = (
    Key("depends", package_relations, "Replaces the common `depends` for this format." + _KEPT),
    Key("recommends", package_relations, "Replaces the common `recommends` for this format." + _KEPT),
    Key("conflicts", package_relations, "Replaces the common `conflicts` for this format."),
)


@dataclass(frozen=True)
class Package:
    version: str
    release: str
    maintainer: str
    summary: str | None
    description: str | None
    license: str
    homepage: str | None
    depends: tuple[str, ...]
    recommends: tuple[str, ...]
    conflicts: tuple[str, ...]
    architecture: str
    deb: FormatOverrides
    rpm: FormatOverrides


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


@dataclass(frozen=True)
class App:
    """The Python app the package carries, installed into a virtual environment at `venv`.
    File paths are absolute here (the spec writes them relative to the spec file)."""

    project: str | None
    wheels: tuple[str, ...]
    requirements: str | None
    find_links: tuple[str, ...]
    no_index: bool
    venv: str


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


@dataclass(frozen=True)
class Spec:
    """A validated service spec. Build it with `load_spec` or `parse_spec`."""

    name: str
    source: str
    description: str
    exec: tuple[str, ...] | None
    entry: str | None
    python: str
    user: str | None
    group: str | None
    network: bool
    ready: Ready
    ready_timeout: float
    lock_file: str
    on_contention: OnContention
    wait_timeout: float | None
    working_directory: str | None
    state_directory: str | None
    cache_directory: str | None
    logs_directory: str | None
    configuration_directory: str | None
    reload: tuple[str, ...] | None
    reload_signal: ReloadSignal | None
    start_timeout: float
    stop_timeout: float
    restart: Restart
    restart_sec: float
    start_limit_burst: int
    start_limit_interval: float
    watchdog: float | None
    after: tuple[str, ...]
    wants: tuple[str, ...]
    requires: tuple[str, ...]
    documentation: tuple[str, ...]
    environment: tuple[tuple[str, str], ...]
    environment_file: str | None
    start_on_install: bool
    limits: Limits
    hardening: Hardening
    timer: Timer | None
    package: Package | None
    app: App | None
    extra: tuple[tuple[str, tuple[tuple[str, tuple[str, ...]], ...]], ...]

    @property
    def runtime_directory(self) -> str:
        """RuntimeDirectory= relative to /run: the lock file's directory."""
        return str(Path(self.lock_file).parent.relative_to("/run"))

    @property
    def is_python_mode(self) -> bool:
        return self.entry is not None

    @property
    def service_group(self) -> str | None:
        return self.group or self.user


def validate_name(name: str) -> str:
    if not re.fullmatch(NAME_PATTERN, name):
        raise SpecError(
            "service name",
            "",
            f"{shown(name)} is not a valid service name",
            hint="use 2 to 32 lower-case letters, digits and '-', starting with a letter "
            "(it names the unit, the package, the user and the directories)",
        )
    if name in SYSTEM_NAMES:
        # The name becomes /run/NAME, the package NAME and the user NAME: all taken.
        raise SpecError(
            "service name",
            "",
            f"{shown(name)} belongs to the system, systemd or another package",
            hint="the name is used for the package, the user and /run/NAME; pick one of your own",
        )
    return name


# A spec is a few hundred bytes; this bounds what is read (`--spec /dev/zero` must not hang),
# with room for a file holding a megabyte value, so that its error names the key.
SPEC_FILE_MAX = 16 * 1024 * 1024


def _read_spec(path: Path, where: str) -> str:
    try:
        with path.open("rb") as f:
            data = f.read(SPEC_FILE_MAX + 1)
    except FileNotFoundError:
        raise SpecError(where, "", "no such file", hint="create one with 'unitgen init NAME'") from None
    except OSError as exc:
        raise SpecError(where, "", f"cannot be read: {exc.strerror or exc}") from None
    if len(data) > SPEC_FILE_MAX:
        raise SpecError(where, "", f"is larger than {SPEC_FILE_MAX} bytes: not a spec")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(where, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def load_spec(path: Path, name: str | None = None) -> Spec:
    """Read and validate a spec file; the service name defaults to the file's stem."""
    where = str(path)
    content = _read_spec(path, where)
    try:
        raw = tomllib.loads(content)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's messages name a position, never echo the content.
        raise SpecError(where, "", f"not valid TOML: {exc}") from None
    except RecursionError:
        raise SpecError(
            where, "", "not a usable spec: arrays or tables nested too deeply", hint="a spec needs 3 levels at most"
        ) from None
    except Exception as exc:  # any other parser blow-up (e.g. a 5000-digit integer) is bad input too
        raise SpecError(where, "", f"not valid TOML ({type(exc).__name__})") from None
    return parse_spec(raw, name=name or path.stem, where=where, base_dir=path.parent)


def _sub_table(raw: dict[str, Any], key: str, where: str) -> dict[str, Any] | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SpecError(where, key, "must be a table", hint=f"write it as [{key}]")
    return value


_DIRECTORY_BASES = (
    ("state_directory", "/var/lib"),
    ("cache_directory", "/var/cache"),
    ("logs_directory", "/var/log"),
    ("configuration_directory", "/etc"),
)


def _directory(value: str | bool | None, name: str) -> str | None:
    if value is True:
        return name
    return value or None


def _parse_app(raw: dict[str, Any] | None, name: str, where: str, base_dir: Path) -> App | None:
    if raw is None:
        return None
    fields = parse_table(raw, APP_KEYS, where=where, prefix="app.")
    if fields["project"] is None and not fields["wheels"]:
        raise SpecError(where, "app", "needs 'project' or 'wheels': the Python app to install")
    if fields["no_index"] and not fields["find_links"]:
        raise SpecError(where, "app.no_index", "needs 'find_links': where else would the dependencies come from?")

    def resolve(path: str) -> str:
        return str((base_dir / path).absolute())

    venv = fields["venv"] or f"/usr/lib/{name}/venv"
    # The package owns the venv and its scripts remove its bytecode: /usr/lib/python3 or
    # /usr/lib/systemd would be another package's tree.
    own_directory(where, "app.venv", str(Path(venv).relative_to("/usr/lib")), name, "/usr/lib", venv)
    app = App(
        project=resolve(fields["project"]) if fields["project"] else None,
        wheels=tuple(resolve(w) for w in fields["wheels"]),
        requirements=resolve(fields["requirements"]) if fields["requirements"] else None,
        find_links=tuple(resolve(d) for d in fields["find_links"]),
        no_index=fields["no_index"],
        venv=venv,
    )
    _check_app_inputs(app, where)
    return app


def _check_app_inputs(app: App, where: str) -> None:
    """What `package` needs of the [app] paths, checked at load so that `render` and `check`
    report a wrong path too, not only a build minutes later (issue 11.9)."""
    if app.project is not None:
        project = Path(app.project)
        if not project.is_dir():
            raise SpecError(
                where,
                "app.project",
                f"{shown(app.project)} is not a directory",
                hint="'project' is the directory of the app's pyproject.toml, relative to the spec file",
            )
        if not (project / "pyproject.toml").is_file():
            raise SpecError(
                where,
                "app.project",
                f"{shown(app.project)} has no pyproject.toml",
                hint="point 'project' at the directory of the app's pyproject.toml, or list built 'wheels' instead",
            )
    for i, wheel in enumerate(app.wheels):
        if not wheel.endswith(".whl"):
            raise SpecError(where, f"app.wheels[{i}]", f"{shown(wheel)} is not a wheel (*.whl)")
        if not Path(wheel).is_file():
            raise SpecError(
                where,
                f"app.wheels[{i}]",
                f"{shown(wheel)} does not exist",
                hint="paths are relative to the spec file; build the wheel first, e.g. pip wheel --no-deps",
            )
    if app.requirements is not None and not Path(app.requirements).is_file():
        raise SpecError(
            where,
            "app.requirements",
            f"{shown(app.requirements)} is not a file",
            hint="paths are relative to the spec file",
        )
    for i, directory in enumerate(app.find_links):
        if not Path(directory).is_dir():
            raise SpecError(
                where,
                f"app.find_links[{i}]",
                f"{shown(directory)} is not a directory",
                hint="paths are relative to the spec file",
            )


def parse_spec(raw: dict[str, Any], *, name: str, where: str = "<spec>", base_dir: Path | None = None) -> Spec:
    validate_name(name)
    tables = {"limits", "hardening", "timer", "package", "extra", "app"}
    top = parse_table({k: v for k, v in raw.items() if k not in tables}, TOP_KEYS + _table_placeholders(), where=where)
    for t in tables:
        top.pop(t, None)

    if (top["exec"] is None) == (top["entry"] is None):
        raise SpecError(
            where, "exec", "exactly one of 'exec' (run a command) and 'entry' (call a Python callable) is required"
        )
    if top["exec"] is not None:
        try:
            absolute_path(top["exec"][0])
        except FieldError as exc:
            raise SpecError(
                where, "exec[0]", exc.problem, hint="the program must be an absolute path, e.g. '/usr/bin/python3'"
            ) from None
    if top["reload"] is not None and top["reload_signal"] is not None:
        raise SpecError(where, "reload", "use either 'reload' or 'reload_signal', not both")
    if top["reload"] is not None:
        try:
            absolute_path(top["reload"][0])
        except FieldError as exc:
            raise SpecError(where, "reload[0]", exc.problem, hint="the program must be an absolute path") from None
        if any("$MAINPID" in arg or "${MAINPID}" in arg for arg in top["reload"]):
            # Spec values reach the service exactly as written ("$" is escaped), so systemd's
            # $MAINPID would arrive as the literal text.
            raise SpecError(
                where,
                "reload",
                "arguments are passed as written, so '$MAINPID' would not be expanded",
                hint="to signal the main process use reload_signal = 'SIGHUP' (or SIGUSR1, SIGUSR2)",
            )
    if top["wait_timeout"] is not None and top["on_contention"] is not OnContention.WAIT:
        raise SpecError(where, "wait_timeout", "only applies with on_contention = 'wait'")
    if top["watchdog"] is not None and top["exec"] is not None and top["ready"].kind is ReadyKind.IMMEDIATE:
        raise SpecError(
            where,
            "watchdog",
            "nothing would ping the watchdog: in exec mode with ready = 'immediate' the launcher is gone after exec",
            hint="use ready = 'notify' (the app sends WATCHDOG=1) or 'tcp:PORT'/'path:FILE' (the launcher probes)",
        )
    if top["group"] is not None and top["user"] is None:
        raise SpecError(where, "group", "needs 'user' (with DynamicUser=yes systemd picks the group)")

    lock_file = top["lock_file"] or f"/run/{name}/{name}.pid"
    parent = Path(lock_file).parent
    if parent == Path("/run") or not parent.is_relative_to("/run"):
        raise SpecError(
            where,
            "lock_file",
            f"{shown(lock_file)} must be inside a directory under /run",
            hint=f"e.g. '/run/{name}/{name}.pid' (that directory becomes RuntimeDirectory=)",
        )
    try:
        relative_dir(str(parent.relative_to("/run")))
    except FieldError as exc:
        raise SpecError(where, "lock_file", f"its directory {exc.problem}") from None
    # The lock's directory becomes RuntimeDirectory= (and a tmpfiles.d line): systemd and
    # tmpfiles chown and chmod it, so it must be the service's, never /run/lock or /run/user.
    own_directory(where, "lock_file", str(parent.relative_to("/run")), name, "/run", lock_file)
    top["lock_file"] = lock_file
    for key, base in _DIRECTORY_BASES:
        top[key] = _directory(top[key], name)
        if top[key] is not None:
            own_directory(where, key, top[key], name, base)

    timer = None
    timer_raw = _sub_table(raw, "timer", where)
    if timer_raw is not None:
        timer = Timer(**parse_table(timer_raw, TIMER_KEYS, where=where, prefix="timer."))
        if not (timer.on_calendar or timer.on_boot_sec is not None or timer.on_unit_active_sec is not None):
            raise SpecError(where, "timer", "needs at least one of on_calendar, on_boot_sec, on_unit_active_sec")
        if top["ready"].kind is not ReadyKind.IMMEDIATE:
            raise SpecError(
                where,
                "ready",
                "a timer job runs to completion (Type=oneshot); readiness does not apply",
                hint="remove 'ready' or the [timer] table",
            )
        if top["watchdog"] is not None:
            raise SpecError(
                where, "watchdog", "does not apply to a timer job", hint="use timer.run_timeout to bound a run"
            )

    package = None
    package_raw = _sub_table(raw, "package", where)
    if package_raw is not None:
        fmt_tables = {f: _sub_table(package_raw, f, where + " [package]") for f in ("deb", "rpm")}
        fields = parse_table(
            {k: v for k, v in package_raw.items() if k not in fmt_tables}, PACKAGE_KEYS, where=where, prefix="package."
        )
        for fmt, sub in fmt_tables.items():
            fields[fmt] = FormatOverrides(
                **parse_table(sub or {}, OVERRIDE_KEYS, where=where, prefix=f"package.{fmt}.")
            )
        package = Package(**fields)

    app = _parse_app(_sub_table(raw, "app", where), name, where, base_dir or Path.cwd())
    if top["python"] is None:
        # With an app, the launcher runs on the app's venv interpreter so python mode can import it.
        top["python"] = f"{app.venv}/bin/python" if app else "/usr/bin/python3"

    hardening = Hardening(
        **parse_table(_sub_table(raw, "hardening", where) or {}, HARDENING_KEYS, where=where, prefix="hardening.")
    )
    for i, path in enumerate(hardening.read_write_paths):
        own_read_write_path(where, f"hardening.read_write_paths[{i}]", path, name)

    spec = Spec(
        name=name,
        source=where,
        app=app,
        limits=Limits(
            **parse_table(_sub_table(raw, "limits", where) or {}, LIMITS_KEYS, where=where, prefix="limits.")
        ),
        hardening=hardening,
        timer=timer,
        package=package,
        extra=_parse_extra(_sub_table(raw, "extra", where) or {}, where),
        **top,
    )
    for key, line in _unit_lines(spec):
        if utf8_length(line) >= LINE_MAX:
            raise SpecError(
                where,
                key,
                f"is too long: its unit line would be {utf8_length(line)} bytes, at most {LINE_MAX - 1} allowed",
                hint="systemd recommends against long unit lines (systemd.syntax(7)); pass long data in an "
                "EnvironmentFile= or a file the service reads",
            )
    return spec


def _unit_lines(spec: Spec) -> Iterator[tuple[str, str]]:
    """The unit lines a spec's values become, escaped as `unitgen.render.units` writes them, each
    with the key it comes from; `parse_spec` holds every one to LINE_MAX."""
    # render's ExecStart= is the launcher, "--" and the command.
    launcher = f"/usr/libexec/{spec.name}/{spec.name}-launcher"
    if spec.exec is not None:
        yield "exec", "ExecStart=" + escape.exec_line([launcher, "--", *spec.exec])
    if spec.reload is not None:
        yield "reload", "ExecReload=" + escape.exec_line(spec.reload)
    yield "description", "Description=" + escape.specifiers(spec.description)
    for key, directive in (("after", "After"), ("wants", "Wants"), ("requires", "Requires")):
        yield key, f"{directive}=" + " ".join(getattr(spec, key))
    for i, doc in enumerate(spec.documentation):
        yield f"documentation[{i}]", "Documentation=" + escape.specifiers(doc)
    for env_name, value in spec.environment:
        yield f"environment.{env_name}", "Environment=" + escape.environment(env_name, value)
    for key, directive in (("working_directory", "WorkingDirectory="), ("environment_file", "EnvironmentFile=-")):
        if getattr(spec, key) is not None:
            yield key, directive + escape.specifiers(getattr(spec, key))
    h = spec.hardening
    yield "hardening.read_write_paths", "ReadWritePaths=" + escape.word_list(h.read_write_paths)
    yield "hardening.capabilities", "CapabilityBoundingSet=" + " ".join(h.capabilities)
    yield (
        "hardening.address_families",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 " + " ".join(h.address_families),
    )
    yield "hardening.ip_address_allow", "IPAddressAllow=" + " ".join(h.ip_address_allow or ())
    if spec.timer is not None:
        for i, calendar in enumerate(spec.timer.on_calendar):
            yield f"timer.on_calendar[{i}]", "OnCalendar=" + calendar
    for section, directives in spec.extra:
        for directive, values in directives:
            for value in values:
                yield f"extra.{section}.{directive}", f"{directive}={value}"


def _table_placeholders() -> tuple[Key[Any], ...]:
    # The sub-tables are parsed separately; listing them keeps "did you mean" aware of them.
    return tuple(Key(t, lambda v: v, "") for t in ("limits", "hardening", "timer", "package", "extra", "app"))


def _parse_extra(raw: dict[str, Any], where: str) -> tuple[tuple[str, tuple[tuple[str, tuple[str, ...]], ...]], ...]:
    """[extra.Service] Directive = "value" or ["v1", "v2"]: the escape hatch for directives
    unitgen has no key for. Values go into the unit verbatim (specifiers work), but each is one
    line, so they cannot add other directives or sections."""
    parse_section = string_table(
        matching(DIRECTIVE_PATTERN, "directive name like 'LimitCORE'"), one_or_many(single_line)
    )
    out = []
    for section, body in raw.items():
        if section not in EXTRA_SECTIONS:
            close = difflib.get_close_matches(section, EXTRA_SECTIONS, n=1)
            raise SpecError(
                where,
                f"extra.{section}",
                "unknown unit section",
                hint=f"did you mean {close[0]!r}?" if close else "allowed: " + ", ".join(EXTRA_SECTIONS),
            )
        try:
            out.append((section, parse_section(body)))
        except FieldError as exc:
            if exc.subkey is None:
                raise SpecError(where, f"extra.{section}", exc.problem, hint=exc.hint) from None
            raise SpecError(
                where,
                f"extra.{section}.{exc.subkey}",
                exc.problem.removeprefix(f"{shown_key(exc.subkey)}: "),
                hint=exc.hint,
            ) from None
    return tuple(out)
