"""OpenPGP signatures made by gpg: a clearsigned and a detached Release for apt, a binary detached
signature for rpm headers, the armored public key for clients.

`GpgKey("KEYID")` signs with a secret key in gpg's home (`homedir`, else `$GNUPGHOME` or
`~/.gnupg`); `GpgKey("path/to/secret.asc")` imports that key file into a private, throw-away home
first (see `GpgKey.opened`), so the caller's keyring is never changed. Every signature uses SHA-512:
apt refuses SHA-1 signatures and rpm prefers a strong digest.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from unitgen.errors import UnitgenError
from unitgen.run import CommandError, run

DIGEST = "SHA512"


@dataclass(frozen=True)
class GpgKey:
    """A signing key: a key id, fingerprint or user id in `homedir`, or a path to a secret key file."""

    key: str
    homedir: Path | None = None

    def _is_file(self) -> bool:
        # A key id never has a slash or a file suffix, so neither is ever read as a file by chance.
        return "/" in self.key or self.key.endswith((".asc", ".gpg", ".key", ".pgp"))

    @contextlib.contextmanager
    def opened(self) -> Iterator[Signer]:
        """A `Signer` for this key, checked: raises `UnitgenError` when gpg has no secret key for it.

        A key file is imported into a fresh home in the temporary directory, removed (and its
        gpg-agent stopped) on exit."""
        if not self._is_file():
            signer = Signer(self.key, self.homedir)
            signer.check()
            yield signer
            return
        path = Path(self.key)
        if not path.is_file():
            raise UnitgenError(f"signing key file {path}: not found", hint="pass a key id or an exported secret key")
        home = Path(tempfile.mkdtemp(prefix="unitgen-gpg-"))  # short: gpg-agent's socket lives in it
        try:
            try:
                run(["gpg", "--batch", "--no-tty", "--homedir", home, "--import", path])
            except CommandError as exc:
                why = exc.stderr.strip().splitlines()[-1] if exc.stderr.strip() else None
                raise UnitgenError(f"signing key file {path}: gpg cannot import it", hint=why) from exc
            listing = run(["gpg", "--batch", "--homedir", home, "--with-colons", "--list-secret-keys"]).stdout
            fingerprints = [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")]
            if not fingerprints:
                raise UnitgenError(f"signing key file {path}: holds no secret key",
                                   hint="export it with gpg --export-secret-keys --armor KEYID")  # fmt: skip
            signer = Signer(fingerprints[0], home)
            signer.check()  # expired, revoked or certify-only keys are refused here too
            yield signer
        finally:
            stop_agent(home)
            shutil.rmtree(home, ignore_errors=True)


def stop_agent(homedir: Path) -> None:
    """Stop the gpg-agent that gpg started for `homedir` (it would outlive us otherwise)."""
    with contextlib.suppress(UnitgenError):
        run(["gpgconf", "--homedir", homedir, "--kill", "gpg-agent"], check=False)


class Signer:
    """Signs with one secret key through gpg; made by `GpgKey.opened`."""

    def __init__(self, key: str, homedir: Path | None) -> None:
        self.key = key
        self.homedir = homedir

    def _gpg(self, *args: str | os.PathLike[str]) -> list[str | os.PathLike[str]]:
        home: Sequence[str | os.PathLike[str]] = ("--homedir", self.homedir) if self.homedir else ()
        return ["gpg", "--batch", "--no-tty", "--yes", *home, *args]

    def _where(self) -> str:
        return str(self.homedir or os.environ.get("GNUPGHOME") or "~/.gnupg")

    def check(self) -> None:
        """Raise `UnitgenError` unless gpg holds exactly one usable secret key for `key`."""
        try:
            listing = run(self._gpg("--with-colons", "--list-secret-keys", "--", self.key)).stdout
        except CommandError as exc:
            raise UnitgenError(
                f"signing key {self.key!r}: no secret key in {self._where()}",
                hint="gpg --list-secret-keys shows the keys; pass --homedir, or a key file",
            ) from exc
        keys = [line for line in listing.splitlines() if line.startswith("sec:")]
        if len(keys) != 1:
            raise UnitgenError(f"signing key {self.key!r}: matches {len(keys)} secret keys in {self._where()}",
                               hint="name one key by its fingerprint")  # fmt: skip
        fields = keys[0].split(":")
        # Field 2 is the validity: revoked or expired keys make signatures clients refuse.
        if fields[1] in ("r", "e"):
            raise UnitgenError(f"signing key {self.key!r} is revoked or expired", hint="sign with a valid key")
        # Field 12, the whole key's capabilities: an upper-case S when it (or a subkey) can sign.
        if "S" not in fields[11]:
            raise UnitgenError(f"signing key {self.key!r} cannot sign (capabilities {fields[11]!r})",
                               hint="add a signing subkey: gpg --quick-add-key FINGERPRINT ed25519 sign")  # fmt: skip

    def clearsign(self, text: str) -> str:
        """`text` clearsigned (apt's InRelease)."""
        return run(self._gpg("--local-user", self.key, "--digest-algo", DIGEST, "--clearsign"), input=text).stdout

    def detach_armored(self, text: str) -> str:
        """An armored detached signature of `text` (apt's Release.gpg)."""
        argv = self._gpg("--local-user", self.key, "--digest-algo", DIGEST, "--armor", "--detach-sign")
        return run(argv, input=text).stdout

    def detach_binary(self, data: Path) -> bytes:
        """A binary detached signature of the file `data` (one OpenPGP signature packet; rpm's)."""
        with tempfile.TemporaryDirectory(prefix="unitgen-sig-") as tmp:
            out = Path(tmp) / "sig"
            run(self._gpg("--local-user", self.key, "--digest-algo", DIGEST, "--no-armor",
                          "--output", out, "--detach-sign", data))  # fmt: skip
            return out.read_bytes()

    def public_key(self) -> str:
        """The armored public key, for clients (apt's Signed-By:, rpm --import, dnf's gpgkey=)."""
        return run(self._gpg("--armor", "--export", "--", self.key)).stdout
