"""Read the service's credentials: `import unitgen_credentials` in a python-mode app.

systemd hands each `credentials` / `encrypted_credentials` entry of the spec (LoadCredential=,
LoadCredentialEncrypted=) to the service as a read-only file $CREDENTIALS_DIRECTORY/ID, on a
private mount only the service's user can read, never in the environment (systemd.exec(5),
"Credentials"). In python mode the launcher's directory is the first entry of sys.path, where this
module is deployed as `unitgen_credentials`:

    import unitgen_credentials
    password = unitgen_credentials.read_text("db_password").strip()

Standard library only, like the launcher; it never imports unitgen.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CredentialError", "directory", "path", "read", "read_text"]


class CredentialError(LookupError):
    """A credential that is not there: no $CREDENTIALS_DIRECTORY, or no such ID in it."""


def directory() -> Path:
    """$CREDENTIALS_DIRECTORY, which systemd sets when the unit has credentials."""
    value = os.environ.get("CREDENTIALS_DIRECTORY")
    if not value:
        raise CredentialError(
            "$CREDENTIALS_DIRECTORY is not set: credentials come from systemd (LoadCredential=); "
            "run the service under systemd, or set it to a directory of files for a test"
        )
    return Path(value)


def path(name: str) -> Path:
    """The file of credential `name` (an ID of the spec's `credentials`)."""
    if not name or "/" in name or name in (".", ".."):
        raise CredentialError(f"{name!r} is not a credential ID")
    file = directory() / name
    if not file.is_file():
        raise CredentialError(f"no credential {name!r} in {file.parent} (is it in the spec's credentials?)")
    return file


def read(name: str) -> bytes:
    """The credential's bytes, exactly as in its file."""
    return path(name).read_bytes()


def read_text(name: str, encoding: str = "utf-8") -> str:
    """The credential as text (a trailing newline is kept: strip it if the value has none)."""
    return path(name).read_text(encoding=encoding)
