"""Progress of a long package build, shown on a terminal only.

The writers call a `Progress` callback with (bytes of file content written, total bytes) after
each file; `terminal_progress()` returns one that redraws a single status line on stderr, or None
when stderr is not a terminal (CI logs, pipes), so nothing is printed there.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

Progress = Callable[[int, int], None]

_MIN_TOTAL = 8 << 20  # below 8 MiB a build takes well under a second: no progress line
_INTERVAL = 0.1


class TerminalProgress:
    """Redraws "label: 42% (17/40 MiB)" at most every 0.1 s, and clears the line when done."""

    def __init__(self, label: str, stream: TextIO) -> None:
        self.label = label
        self.stream = stream
        self.last = 0.0
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        if total < _MIN_TOTAL:
            return
        now = time.monotonic()
        if done < total and now - self.last < _INTERVAL:
            return
        self.last = now
        if done >= total:
            if self.shown:
                self.stream.write("\r\033[K")
                self.stream.flush()
            return
        mib = 1 << 20
        self.stream.write(f"\r{self.label}: {100 * done // total:3d}% ({done // mib}/{total // mib} MiB)")
        self.stream.flush()
        self.shown = True


def terminal_progress(label: str, stream: TextIO | None = None) -> Progress | None:
    stream = sys.stderr if stream is None else stream
    return TerminalProgress(label, stream) if stream.isatty() else None
