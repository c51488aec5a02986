"""The one error type for problems a user can fix.

Library code raises `UnitgenError`; only the CLI turns it into a message and an exit code
(the pypa/build pattern), so every module stays usable as a library and testable without
capturing stderr.
"""

from __future__ import annotations


class UnitgenError(Exception):
    """Something the user can fix: bad spec, missing tool, not root, ..."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message}\n  hint: {self.hint}"
