"""Value parsers for spec keys: each checks one TOML value and returns it typed, or raises `SpecError`.

A parser is called with the raw TOML value and the dotted key path (for messages), so
the descriptor tables in `unitgen.spec` can say what a key accepts in one place, and the
same parser produces both the typed value and the "what is allowed" text of its error.

Every string that reaches a unit or a script goes through `text()`, which refuses control
characters (newlines above all): a newline is the only way to start a new directive in a
unit file, so refusing it here means no value can inject one, whatever a template does.
"""

from __future__ import annotations

import difflib
import enum
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Generic, TypeVar

from unitgen.errors import UnitgenError

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)


class SpecError(UnitgenError):
    """A spec value is wrong; the message names the file, the key path and what is allowed."""

    def __init__(self, where: str, key: str, problem: str, *, hint: str | None = None) -> None:
        super().__init__(f"{where}: {key}: {problem}" if key else f"{where}: {problem}", hint=hint)
        self.where = where
        self.key = key
        self.problem = problem


class FieldError(Exception):
    """Raised by a parser; `unitgen.spec` adds the file name and key path to make a `SpecError`."""

    def __init__(self, problem: str, hint: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.hint = hint


Parser = Callable[[Any], T]


def _type_name(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


# Line and paragraph separators are not control characters to Python but some tools treat
# them as line ends; refuse them with the rest.
_FORBIDDEN_EXTRA = {"\u2028", "\u2029"}


def text(value: Any, *, allow_empty: bool = False) -> str:
    """A string without control characters."""
    if not isinstance(value, str):
        raise FieldError(f"expected a string, got {_type_name(value)}")
    if not value and not allow_empty:
        raise FieldError("must not be empty")
    for ch in value:
        if unicodedata.category(ch) == "Cc" or ch in _FORBIDDEN_EXTRA:
            raise FieldError(
                f"contains the control character U+{ord(ch):04X}",
                hint="newlines, tabs and other control characters are not allowed in spec values",
            )
    return value


def paragraphs(value: Any) -> str:
    """Multi-line prose (a package's long description): newlines allowed, other control
    characters not; surrounding blank lines dropped."""
    if not isinstance(value, str):
        raise FieldError(f"expected a string, got {_type_name(value)}")
    return "\n".join(text(line, allow_empty=True).rstrip() for line in value.strip().split("\n"))


def single_line(value: Any) -> str:
    """Free text placed verbatim in a unit: no control characters, no surrounding blanks,
    and no trailing backslash (systemd would join the next line onto it)."""
    s = text(value)
    if s != s.strip():
        raise FieldError("must not start or end with whitespace")
    if s.endswith("\\"):
        raise FieldError("must not end with a backslash (systemd would continue the line)")
    return s


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise FieldError(f"expected true or false, got {_type_name(value)}")
    return value


def integer(lo: int, hi: int) -> Parser[int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise FieldError(f"expected an integer from {lo} to {hi}, got {_type_name(value)}")
        if not lo <= value <= hi:
            raise FieldError(f"{value} is out of range: allowed {lo} to {hi}")
        return value

    return parse


def seconds(lo: float, hi: float) -> Parser[float]:
    """A duration in seconds (integer or decimal), rendered to systemd as a plain number."""

    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FieldError(f"expected a number of seconds from {lo:g} to {hi:g}, got {_type_name(value)}")
        if not lo <= value <= hi:
            raise FieldError(f"{value} is out of range: allowed {lo:g} to {hi:g} seconds")
        return float(value)

    return parse


def choice(enum_type: type[E]) -> Parser[E]:
    allowed = [str(m.value) for m in enum_type]

    def parse(value: Any) -> E:
        if isinstance(value, str):
            for member in enum_type:
                if member.value == value:
                    return member
        shown = repr(value) if isinstance(value, str) else _type_name(value)
        raise FieldError(f"{shown} is not allowed", hint="allowed: " + ", ".join(repr(a) for a in allowed))

    return parse


def absolute_path(value: Any) -> str:
    s = text(value)
    p = PurePosixPath(s)
    if not p.is_absolute():
        raise FieldError(f"{s!r} is not an absolute path")
    if any(part in (".", "..") for part in s.split("/")) or "//" in s or (s != "/" and s.endswith("/")):
        raise FieldError(f"{s!r} is not a normalized path", hint=f"write it as {str(p)!r}")
    return s


def relative_dir(value: Any) -> str:
    """A directory name relative to /var/lib, /var/cache, ... as StateDirectory= wants it."""
    s = text(value)
    if s.startswith("/") or any(part in ("", ".", "..") for part in s.split("/")):
        raise FieldError(f"{s!r} must be a relative path like 'myservice' or 'myservice/data'")
    if not re.fullmatch(r"[A-Za-z0-9._/-]+", s):
        raise FieldError(f"{s!r} may only contain letters, digits, '.', '_', '-' and '/'")
    return s


def matching(pattern: str, what: str) -> Parser[str]:
    regex = re.compile(pattern)

    def parse(value: Any) -> str:
        s = text(value)
        if not regex.fullmatch(s):
            raise FieldError(f"{s!r} is not a valid {what}")
        return s

    return parse


def array(item: Parser[T], *, min_items: int = 0) -> Parser[tuple[T, ...]]:
    def parse(value: Any) -> tuple[T, ...]:
        if not isinstance(value, list):
            raise FieldError(f"expected an array, got {_type_name(value)}")
        if len(value) < min_items:
            raise FieldError(f"needs at least {min_items} item{'s' if min_items > 1 else ''}")
        out = []
        for i, v in enumerate(value):
            try:
                out.append(item(v))
            except FieldError as exc:
                raise FieldError(f"item {i}: {exc.problem}", exc.hint) from None
        return tuple(out)

    return parse


def one_or_many(item: Parser[T]) -> Parser[tuple[T, ...]]:
    """A single value or an array of them (e.g. several OnCalendar= lines)."""
    many = array(item, min_items=1)

    def parse(value: Any) -> tuple[T, ...]:
        return many(value) if isinstance(value, list) else (item(value),)

    return parse


def string_table(key: Parser[str], value: Parser[T]) -> Parser[tuple[tuple[str, T], ...]]:
    """A TOML table of free keys, kept in the order written (sorted would hide intent)."""

    def parse(raw: Any) -> tuple[tuple[str, T], ...]:
        if not isinstance(raw, dict):
            raise FieldError(f"expected a table, got {_type_name(raw)}")
        out = []
        for k, v in raw.items():
            try:
                out.append((key(k), value(v)))
            except FieldError as exc:
                raise FieldError(f"{k}: {exc.problem}", exc.hint) from None
        return tuple(out)

    return parse


@dataclass(frozen=True)
class Key(Generic[T]):
    """One spec key: its TOML name, parser, default (None = optional, absent) and documentation."""

    name: str
    parse: Parser[T]
    doc: str
    default: T | None = None
    required: bool = False
    allowed: str = ""  # what the README shows as the accepted values

    @property
    def attr(self) -> str:
        return self.name.replace("-", "_")


def parse_table(raw: Mapping[str, Any], keys: Sequence[Key[Any]], *, where: str, prefix: str = "") -> dict[str, Any]:
    """Check `raw` against `keys`: unknown keys (with a suggestion), missing required keys and
    bad values all raise `SpecError`. Returns {attribute name: parsed value or default}."""
    known = {k.name: k for k in keys}
    for name in raw:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "known keys: " + ", ".join(known)
            raise SpecError(where, prefix + name, "unknown key", hint=hint)
    out: dict[str, Any] = {}
    for key in keys:
        path = prefix + key.name
        if key.name not in raw:
            if key.required:
                raise SpecError(where, path, "is required", hint=key.doc)
            out[key.attr] = key.default
            continue
        try:
            out[key.attr] = key.parse(raw[key.name])
        except FieldError as exc:
            raise SpecError(where, path, exc.problem, hint=exc.hint) from None
    return out
