"""The spec's model: the closed sets as enums and the frozen dataclasses a validated spec is made of.

Only shapes live here; the keys that fill them (parsers, defaults, docs) are in `unitgen.spec.keys`,
and `unitgen.spec.load` builds a `Spec` from a file.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from pathlib import Path


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


class OnContention(enum.Enum):
    EXIT = "exit"
    WAIT = "wait"


class LockScope(enum.Enum):
    HOST = "host"
    FLEET = "fleet"


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


@dataclass(frozen=True)
class Limits:
    nofile: int | None
    nproc: int | None
    memory_max: str | None
    cpu_quota: str | None
    tasks_max: int | None


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


@dataclass(frozen=True)
class Lock:
    """[lock]: how far "one instance" reaches. host: the fcntl lock alone; fleet: also an etcd lock
    shared by every host of the cluster (README: "The fleet lock")."""

    scope: LockScope
    etcd: tuple[str, ...]
    ttl: int
    key: str
    ca_file: str | None
    cert_file: str | None
    key_file: str | None

    @property
    def is_fleet(self) -> bool:
        return self.scope is LockScope.FLEET

    def credentials(self) -> tuple[tuple[str, str], ...]:
        """LoadCredential= pairs (credential ID, path on the host) for the TLS files that are set."""
        files = (("etcd-ca", self.ca_file), ("etcd-cert", self.cert_file), ("etcd-key", self.key_file))
        return tuple((name, path) for name, path in files if path is not None)


@dataclass(frozen=True)
class Timer:
    on_calendar: tuple[str, ...]
    on_boot_sec: float | None
    on_unit_active_sec: float | None
    persistent: bool
    randomized_delay_sec: float
    accuracy_sec: float
    run_timeout: float | None


@dataclass(frozen=True)
class FormatOverrides:
    depends: tuple[str, ...] | None
    recommends: tuple[str, ...] | None
    conflicts: tuple[str, ...] | None


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


@dataclass(frozen=True)
class Instance:
    """One listed instance of a template service (NAME@INSTANCE.service) and its own environment."""

    name: str
    environment: tuple[tuple[str, str], ...] = ()


class ListenKind(enum.Enum):
    TCP = "tcp"
    UNIX = "unix"


@dataclass(frozen=True)
class Listen:
    """One socket systemd listens on for the service (ListenStream=); `address` is as ListenStream=
    takes it ("80", "127.0.0.1:80", "[::1]:80" or an absolute path, `{instance}` not yet replaced)."""

    kind: ListenKind
    address: str
    port: int = 0


@dataclass(frozen=True)
class ConfigFile:
    """One [config] file: shipped at `dest` (under /etc/NAME) as a conffile / %config(noreplace),
    with the content of `source` (a file of the project) as read when the spec was loaded."""

    dest: str
    source: str
    content: bytes
    mode: int = 0o644


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
    lock: Lock
    # Issue 14, added last with defaults so that code building a Spec without them keeps working.
    instances: tuple[Instance, ...] = ()
    listen: tuple[Listen, ...] = ()
    # Issue 15 (unitgen.spec.config): default configuration under /etc/NAME and credentials.
    config: tuple[ConfigFile, ...] = ()
    credentials: tuple[tuple[str, str], ...] = ()  # (ID, path): LoadCredential=
    encrypted_credentials: tuple[tuple[str, str], ...] = ()  # (ID, path): LoadCredentialEncrypted=

    @property
    def is_template(self) -> bool:
        """Rendered as NAME@.service (and NAME@.timer, NAME@.socket): one unit per instance."""
        return bool(self.instances)

    @property
    def unit_stem(self) -> str:
        """The unit files' stem: NAME, or NAME@ for a template."""
        return f"{self.name}@" if self.instances else self.name

    @functools.cached_property  # read four times per render by the templates; a Path each time
    def runtime_directory(self) -> str:
        """RuntimeDirectory= relative to /run: the lock file's directory."""
        return str(Path(self.lock_file).parent.relative_to("/run"))

    @property
    def is_python_mode(self) -> bool:
        return self.entry is not None

    @property
    def service_group(self) -> str | None:
        return self.group or self.user
