"""Instances and sockets (issue 14): the `instances` and `listen` keys and the checks spanning keys.

`instances = ["a", "b"]` (or `[instances.a] environment = {...}`) makes the service a template,
NAME@.service, one unit and one lock per instance. `listen = ["tcp:80", "unix:/run/NAME/x.sock"]`
makes systemd hold the sockets (NAME.socket, or NAME@.socket) and hand them to the service.

An instance name reaches unit files only through systemd's `%i` and file names, so it is held to
what is safe in all of them: letters, digits, `_`, `.` and `-`, starting with a letter or digit
(no `%`, no `/`, no `\\`, never `.` or `..`), at most INSTANCE_NAME_MAX characters. Admin-added
instances (`systemctl start NAME@other`) are checked again by the launcher at run time.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import PurePosixPath
from typing import Any

from unitgen import escape
from unitgen.spec.fields import (
    LINE_MAX,
    FieldError,
    SpecError,
    absolute_path,
    each_item,
    longer_than,
    shown,
    shown_key,
    string_table,
    text,
    utf8_length,
)
from unitgen.spec.model import Instance, Listen, ListenKind, ReadyKind
from unitgen.spec.ownership import own_directory

PLACEHOLDER = "{instance}"
INSTANCE_NAME_MAX = 64
INSTANCE_PATTERN = rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{INSTANCE_NAME_MAX - 1}}}"
INSTANCES_MAX = 1000
LISTEN_MAX = 16
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INSTANCE = re.compile(INSTANCE_PATTERN)
INSTANCE_ALLOWED = f"1 to {INSTANCE_NAME_MAX} letters, digits, '_', '.' and '-', starting with a letter or digit"
LISTEN_ALLOWED = "'tcp:PORT', 'tcp:HOST:PORT', 'tcp:[IPV6]:PORT' or 'unix:/run/NAME/FILE.sock'"


def instance_name(value: Any) -> str:
    s = text(value)
    if not _INSTANCE.fullmatch(s):
        raise FieldError(f"{shown(s)} is not a valid instance name", hint=f"allowed: {INSTANCE_ALLOWED}")
    return s


_instance_environment = string_table(
    lambda k: k if _ENV_NAME.fullmatch(k) else _bad_env_name(k), lambda v: text(v, allow_empty=True)
)


def _bad_env_name(name: str) -> str:
    raise FieldError(f"{shown(name)} is not a valid variable name")


def parse_instances(value: Any) -> tuple[Instance, ...]:
    """An array of names, or a table of names to {environment = {NAME = "value"}}."""
    if isinstance(value, list):
        instances = tuple(Instance(n) for n in each_item(instance_name, value))
    elif isinstance(value, dict):
        out = []
        for raw_name, body in value.items():
            try:
                name = instance_name(raw_name)
                if not isinstance(body, dict) or set(body) - {"environment"}:
                    raise FieldError(
                        "must be a table with only 'environment'",
                        hint=f'write [instances.{raw_name}] environment = {{ NAME = "value" }}',
                    )
                out.append(Instance(name, _instance_environment(body.get("environment", {}))))
            except FieldError as exc:
                raise FieldError(f"{shown_key(str(raw_name))}: {exc.problem}", exc.hint) from None
        instances = tuple(out)
    else:
        raise FieldError(
            "expected an array of instance names or a table of instances",
            hint='instances = ["a", "b"], or [instances.a] with environment = { NAME = "value" }',
        )
    if not instances:
        raise FieldError("needs at least 1 instance", hint="remove 'instances' for a plain service")
    if len(instances) > INSTANCES_MAX:
        raise FieldError(f"lists {len(instances)} instances, at most {INSTANCES_MAX} allowed")
    seen: set[str] = set()
    for instance in instances:
        if instance.name in seen:
            raise FieldError(f"{shown(instance.name)} is listed twice")
        seen.add(instance.name)
    return instances


def parse_listen_item(value: Any) -> Listen:
    s = text(value)
    kind, _, rest = s.partition(":")
    if kind == "unix":
        return Listen(ListenKind.UNIX, _socket_path(rest))
    if kind == "tcp":
        host, _, port = rest.rpartition(":")
        if port.isdigit() and 1 <= int(port) <= 65535 and str(int(port)) == port:
            if not host:
                return Listen(ListenKind.TCP, port, int(port))
            if host.startswith("[") and host.endswith("]"):
                address = _ip(host[1:-1], 6)
                if address is not None:
                    return Listen(ListenKind.TCP, f"[{address}]:{port}", int(port))
            elif _ip(host, 4) is not None:
                return Listen(ListenKind.TCP, f"{host}:{port}", int(port))
            raise FieldError(
                f"{shown(s)}: the host must be an IP address (systemd binds before any name service runs)",
                hint=f"allowed: {LISTEN_ALLOWED}",
            )
    raise FieldError(f"{shown(s)} is not a socket to listen on", hint=f"allowed: {LISTEN_ALLOWED}")


# sun_path holds 108 bytes with the terminating NUL (unix(7)); an instance name may be this long.
SUN_PATH_MAX = 107


def _socket_path(path: str) -> str:
    absolute_path(path.replace(PLACEHOLDER, "i"))
    if not re.fullmatch(r"[A-Za-z0-9._/-]+", path.replace(PLACEHOLDER, "")):
        raise FieldError(f"{shown(path)}: a socket path may only contain letters, digits, '.', '_', '-' and '/'")
    longest = len(path.replace(PLACEHOLDER, "x" * INSTANCE_NAME_MAX))
    if longest > SUN_PATH_MAX:
        raise FieldError(
            f"{shown(path)} is too long for a unix socket: {longest} bytes (with the longest instance name), "
            f"at most {SUN_PATH_MAX}"
        )
    return path


def _ip(host: str, version: int) -> str | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return str(address) if address.version == version else None


def parse_listen(value: Any) -> tuple[Listen, ...]:
    if not isinstance(value, list):
        raise FieldError("expected an array of sockets", hint=f"each one of {LISTEN_ALLOWED}")
    if not 1 <= len(value) <= LISTEN_MAX:
        raise FieldError(f"needs 1 to {LISTEN_MAX} sockets, got {len(value)}")
    out = each_item(parse_listen_item, value)
    addresses = [x.address for x in out]
    for i, address in enumerate(addresses):
        if address in addresses[:i]:
            raise FieldError(f"item {i}: {shown(address)} is listed twice")
    return out


def default_lock_file(name: str, instances: tuple[Instance, ...]) -> str:
    return f"/run/{name}/{PLACEHOLDER}.pid" if instances else f"/run/{name}/{name}.pid"


def check(top: dict[str, Any], name: str, where: str, *, timer: bool) -> None:
    """What instances and listen need of the other keys (called by `parse_spec`)."""
    instances: tuple[Instance, ...] = top["instances"]
    listen: tuple[Listen, ...] = top["listen"]
    placeholder_hint = f"{PLACEHOLDER} is replaced by the instance name; it needs 'instances'"
    if instances:
        lock_name = PurePosixPath(top["lock_file"]).name
        if PLACEHOLDER not in lock_name or PLACEHOLDER in str(PurePosixPath(top["lock_file"]).parent):
            raise SpecError(
                where,
                "lock_file",
                f"{shown(top['lock_file'])} must name {PLACEHOLDER} in its file name: each instance has its own lock",
                hint=f"e.g. '/run/{name}/{PLACEHOLDER}.pid' (the default)",
            )
    elif PLACEHOLDER in top["lock_file"]:
        raise SpecError(where, "lock_file", f"uses {PLACEHOLDER} without 'instances'", hint=placeholder_hint)
    for i, arg in enumerate(top["exec"] or ()):
        if PLACEHOLDER in arg and not instances:
            raise SpecError(where, f"exec[{i}]", f"uses {PLACEHOLDER} without 'instances'", hint=placeholder_hint)
        if i == 0 and PLACEHOLDER in arg:
            raise SpecError(where, "exec[0]", f"the program cannot depend on the instance ({PLACEHOLDER})")
    for i, sock in enumerate(listen):
        key = f"listen[{i}]"
        if sock.kind is ListenKind.UNIX:
            if PLACEHOLDER in sock.address and not instances:
                raise SpecError(where, key, f"uses {PLACEHOLDER} without 'instances'", hint=placeholder_hint)
            parent = PurePosixPath(sock.address).parent
            if PLACEHOLDER in str(parent) or not parent.is_relative_to("/run") or parent == PurePosixPath("/run"):
                raise SpecError(
                    where,
                    key,
                    f"{shown(sock.address)} must be a file in the service's own directory under /run",
                    hint=f"e.g. 'unix:/run/{name}/{name}.sock' ({PLACEHOLDER} only in the file name)",
                )
            own_directory(where, key, str(parent.relative_to("/run")), name, "/run", sock.address)
            if instances and PLACEHOLDER not in sock.address:
                # Each instance has its own socket unit: one path for all would be bound twice.
                raise SpecError(
                    where,
                    key,
                    f"{shown(sock.address)} must name {PLACEHOLDER}: each instance listens on its own unix socket",
                    hint=f"e.g. 'unix:/run/{name}/{PLACEHOLDER}.sock'",
                )
        elif not top["network"]:
            raise SpecError(
                where,
                key,
                "a tcp: socket needs the network, and network = false",
                hint="use a unix: socket, or remove network = false",
            )
    for instance in instances:
        for env_name, value in instance.environment:
            line = "Environment=" + escape.environment(env_name, value)
            if longer_than(line, LINE_MAX - 1):
                raise SpecError(
                    where,
                    f"instances.{instance.name}.environment.{env_name}",
                    f"is too long: its unit line would be {utf8_length(line)} bytes, at most {LINE_MAX - 1} allowed",
                )
    if listen and timer:
        raise SpecError(
            where,
            "listen",
            "a timer job is started by its timer, not by connections",
            hint="remove 'listen' or the [timer] table",
        )
    if listen and top["ready"].kind is ReadyKind.TCP:
        raise SpecError(
            where,
            "ready",
            "with 'listen' systemd holds the port from boot on, so a tcp: probe would pass at once",
            hint="remove 'ready' (READY=1 once the lock is held: connections wait in the socket's backlog "
            "until the app accepts them) or use 'notify'",
        )
