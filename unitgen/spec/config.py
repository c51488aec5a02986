"""Configuration files and credentials (issue 15): the `config`, `credentials` and
`encrypted_credentials` keys and the checks spanning keys.

`config = { "/etc/NAME/NAME.conf" = "NAME.conf" }` ships a file of the project (relative to the spec)
as the package's default configuration: a conffile (deb), `%config(noreplace)` (rpm), under
`ConfigurationDirectory=` (root's, read-only to the service). Destinations are inside /etc/NAME:
the package owns that directory and nothing else under /etc.

`credentials = { db_password = "/etc/NAME/db_password" }` becomes `LoadCredential=db_password:PATH`:
systemd (PID 1, as root) copies the file into a private, read-only $CREDENTIALS_DIRECTORY of the
service, whatever the file's mode, and never into the environment (systemd.exec(5), "Credentials").
`encrypted_credentials` is the same for files made with `systemd-creds encrypt`
(`LoadCredentialEncrypted=`, systemd 250 and later). A package never ships a secret: a credential's
file cannot also be a `config` destination.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path, PurePosixPath
from typing import Any

from unitgen.spec.fields import FieldError, SpecError, absolute_path, shown, shown_key, string_table, text
from unitgen.spec.model import ConfigFile

# systemd's credential_name_valid(): a valid file name and fd name (printable ASCII, no '/' or
# ':', not '.' or '..', at most 255 bytes). Narrower here, so an ID is also safe in a unit line
# (no '%' specifier, no space or quote) and as a TOML bare key.
CREDENTIAL_ID_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.@+-]{0,254}"
CREDENTIAL_ALLOWED = "1 to 255 letters, digits, '_', '.', '@', '+' and '-', not starting with '.', '@', '+' or '-'"
# A configuration file is text an admin edits; this bounds what `render` reads into memory.
CONFIG_FILE_MAX = 1024 * 1024
CONFIG_MODE = 0o644  # root's, readable by the service (DynamicUser= too); secrets go in credentials


def credential_id(value: Any) -> str:
    s = text(value)
    if not re.fullmatch(CREDENTIAL_ID_PATTERN, s):
        raise FieldError(f"{shown(s)} is not a valid credential ID", hint=f"allowed: {CREDENTIAL_ALLOWED}")
    return s


credential_table = string_table(credential_id, absolute_path)
config_table = string_table(absolute_path, text)


def _config_key(dest: str) -> str:
    """The key path of one config file in a message, quoted as TOML quotes such a key."""
    return f'config."{dest}"' if shown_key(dest) == dest and '"' not in dest else f"config.{shown(dest)}"


def resolve(top: dict[str, Any], name: str, where: str, base_dir: Path, reserved_ids: tuple[str, ...]) -> None:
    """Check `config` and the credentials against each other and the service, and read the config
    files (so rendering stays pure). Replaces top["config"] with `ConfigFile`s; sets
    ConfigurationDirectory= to NAME when there are config files and none is set."""
    top["config"] = tuple(_config_file(dest, source, name, where, base_dir) for dest, source in top["config"])
    if top["config"] and top["configuration_directory"] is None:
        top["configuration_directory"] = name
    shipped = {f.dest for f in top["config"]}
    seen: dict[str, str] = {cid: "lock" for cid in reserved_ids}
    for key in ("credentials", "encrypted_credentials"):
        for cid, path in top[key]:
            if cid in seen:
                raise SpecError(
                    where,
                    f"{key}.{cid}",
                    f"the credential ID {shown(cid)} is already used by {seen[cid]}",
                    hint="each credential needs its own ID: it is the file name in $CREDENTIALS_DIRECTORY"
                    + ("; etcd-ca, etcd-cert and etcd-key are the fleet lock's TLS files" if reserved_ids else ""),
                )
            seen[cid] = key
            if path in shipped:
                raise SpecError(
                    where,
                    f"{key}.{cid}",
                    f"{shown(path)} is also a config file: the package would ship the secret",
                    hint="a package never ships a secret: leave the file out of [config] and create it on "
                    "each machine (mode 0600, root's); systemd hands it to the service",
                )


def _config_file(dest: str, source: str, name: str, where: str, base_dir: Path) -> ConfigFile:
    key = _config_key(dest)
    own = PurePosixPath("/etc", name)
    if not PurePosixPath(dest).is_relative_to(own) or PurePosixPath(dest) == own:
        raise SpecError(
            where,
            key,
            f"{shown(dest)} is outside /etc/{name}",
            hint=f"configuration files go into the service's own directory, e.g. '/etc/{name}/{name}.conf'; "
            "the rest of /etc belongs to the system and other packages",
        )
    path = base_dir / source
    try:
        st = path.stat()
    except OSError as exc:
        raise SpecError(
            where,
            key,
            f"the source {shown(source)} cannot be read: {exc.strerror or exc}",
            hint="sources are files of the project, relative to the spec file",
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise SpecError(where, key, f"the source {shown(source)} is not a regular file")
    if st.st_size > CONFIG_FILE_MAX:
        raise SpecError(
            where,
            key,
            f"the source {shown(source)} is {st.st_size} bytes, at most {CONFIG_FILE_MAX} allowed",
            hint="a configuration file is text an admin edits; ship data in the package's /usr/lib/NAME",
        )
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise SpecError(where, key, f"the source {shown(source)} cannot be read: {exc.strerror or exc}") from None
    return ConfigFile(dest=dest, source=str(path.absolute()), content=content, mode=CONFIG_MODE)
