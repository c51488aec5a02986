"""The one subprocess wrapper: argv lists, never a shell, stdin closed, stderr shown once on failure."""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
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
        # Its own process group, so that on a timeout or an interrupt (SIGINT/TERM/HUP reach unitgen
        # as KeyboardInterrupt) the whole tree goes, not only the child: pip's build backend, a
        # compressor, anything the command started would otherwise outlive us.
        proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=None if env is None else dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise UnitgenError(f"{args[0]}: command not found", hint="install it, see README.md") from exc
    with proc:
        try:
            stdout, stderr = proc.communicate(input, timeout=timeout)
        except BaseException:
            _kill_tree(proc)
            raise
    result = subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)
    if check and result.returncode != 0:
        # All of it, for --debug; the error callers raise shows only what matters.
        log.debug("%s exited with code %d:\n%s", args[0], result.returncode, (result.stdout + result.stderr).rstrip())
        raise CommandError(args, result.returncode, result.stdout, result.stderr)
    return result


def _kill_tree(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the command's process group. The child is not reaped yet, so its PID, which is the
    group's ID, cannot have been reused by anyone else."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
