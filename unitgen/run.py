"""The one subprocess wrapper: argv lists, never a shell, stdin closed, stderr shown once on failure."""

from __future__ import annotations

import logging
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from os import PathLike

from unitgen.errors import UnitgenError

log = logging.getLogger(__name__)

Arg = str | PathLike[str]


class CommandError(UnitgenError):
    """A command exited non-zero; carries its output so callers can inspect it."""

    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        detail = (stderr or stdout).strip()
        message = f"command failed with exit code {returncode}: {shlex.join(argv)}"
        if detail:
            message += "\n" + detail
        super().__init__(message)
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


def run(
    argv: Sequence[Arg],
    *,
    check: bool = True,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Arg | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `argv`, capture its output as text and raise `CommandError` on failure when `check`."""
    args = [str(a) for a in argv]
    log.debug("+ %s", shlex.join(args))
    try:
        result = subprocess.run(
            args,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=None if env is None else dict(env),
            cwd=cwd,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise UnitgenError(f"{args[0]}: command not found", hint="install it, see README.md") from exc
    if check and result.returncode != 0:
        # All of it, for --debug; the error callers raise shows only what matters.
        log.debug("%s exited with code %d:\n%s", args[0], result.returncode, (result.stdout + result.stderr).rstrip())
        raise CommandError(args, result.returncode, result.stdout, result.stderr)
    return result
