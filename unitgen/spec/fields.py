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
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Generic, TypeVar

from unitgen.errors import UnitgenError

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)


# How much of a user's value an error message echoes: enough to recognise it, never a
# megabyte of it (issue 11.8).
ECHO_LIMIT = 80


def shown(value: object, limit: int = ECHO_LIMIT) -> str:
    """A value as an error message may echo it: quoted, with control characters, escape
    sequences and other non-printable characters escaped (repr-style, so `"A\\x1b[2J"` cannot
    clear the terminal), and cut after `limit` characters with an ellipsis and the real length."""
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        return f"{value[:limit]!r}... ({len(value)} characters)"
    if isinstance(value, bool | float):
        return repr(value)
    if isinstance(value, int):
        return number(value)
    return _type_name(value)


def shown_key(key: str) -> str:
    """A key path (or file name) in a message: as written when it is short and printable (the
    usual case), quoted and escaped like `shown` otherwise."""
    if len(key) <= ECHO_LIMIT and key.isprintable():
        return key
    return shown(key)


def number(value: int) -> str:
    """An integer for a message. TOML integers are unbounded in Python, and str() of one with
    more than 4300 digits raises ValueError; a 10 kB number is not worth echoing anyway."""
    if abs(value) < 10**18:
        return str(value)
    return f"a number of {int(value.bit_length() * 0.30103) + 1} digits"


class SpecError(UnitgenError):
    """A spec value is wrong; the message names the file, the key path and what is allowed.

    `where` and `key` are kept as given; the message shows them through `shown_key`, so a
    hostile key cannot put escape sequences or newlines on the user's terminal."""

    def __init__(self, where: str, key: str, problem: str, *, hint: str | None = None) -> None:
        shown_where = shown_key(where)
        super().__init__(
            f"{shown_where}: {shown_key(key)}: {problem}" if key else f"{shown_where}: {problem}", hint=hint
        )
        self.where = where
        self.key = key
        self.problem = problem


class FieldError(Exception):
    """Raised by a parser; `unitgen.spec` adds the file name and key path to make a `SpecError`."""

    def __init__(self, problem: str, hint: str | None = None, *, subkey: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.hint = hint
        self.subkey = subkey  # the free key of a `string_table` the problem is about, raw


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
# Unicode's categories Cc (C0, DEL, C1) and Cs (surrogates), and _FORBIDDEN_EXTRA: one regex search
# instead of a unicodedata lookup per character (a third of loading a spec, 500 specs in a batch).
_REFUSED = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029]")


# Length limits, in UTF-8 bytes. systemd reads unit lines of up to 1 MB (systemd.syntax(7))
# but recommends against long ones, and a unit is also read by line-oriented tools: every
# rendered line stays within POSIX LINE_MAX (4096 bytes, newline included), which
# `unitgen.spec` checks per setting. A single string is held to the same bound, so nothing
# in a spec can reach a megabyte; prose for the package (not the unit) gets more room.
LINE_MAX = 4096
TEXT_MAX = LINE_MAX - 1
PARAGRAPHS_MAX = 64 * 1024
# Linux: a path of at most PATH_MAX bytes (terminating NUL included), each name at most NAME_MAX.
PATH_MAX = 4096
NAME_MAX = 255


def utf8_length(value: str) -> int:
    return len(value.encode("utf-8", "surrogatepass"))


def longer_than(value: str, limit: int) -> bool:
    """utf8_length(value) > limit, without encoding a value too short for it: a character is at most
    4 bytes in UTF-8 (a surrogate 3), and nearly every value is short (this runs for each of a spec's)."""
    return len(value) * 4 > limit and utf8_length(value) > limit


def too_long(length: int, limit: int, what: str = "") -> FieldError:
    return FieldError(
        f"is too long: {length} bytes{what}, at most {limit} allowed",
        hint="systemd and the packaging tools read values line by line; keep them short "
        "(long settings belong in an EnvironmentFile= or a file the service reads)",
    )


def text(value: Any, *, allow_empty: bool = False, max_bytes: int = TEXT_MAX) -> str:
    """A string without control characters, at most `max_bytes` long in UTF-8."""
    if not isinstance(value, str):
        raise FieldError(f"expected a string, got {_type_name(value)}")
    if not value and not allow_empty:
        raise FieldError("must not be empty")
    # Length first: a megabyte value gets one short message, not a scan and an echo.
    if len(value) > max_bytes or longer_than(value, max_bytes):
        raise too_long(utf8_length(value), max_bytes)
    refused = _REFUSED.search(value)
    if refused is not None:
        raise FieldError(
            f"contains the control character U+{ord(refused.group()):04X}",
            hint="newlines, tabs and other control characters are not allowed in spec values",
        )
    return value


def paragraphs(value: Any) -> str:
    """Multi-line prose (a package's long description): newlines allowed, other control
    characters not; surrounding blank lines dropped."""
    if not isinstance(value, str):
        raise FieldError(f"expected a string, got {_type_name(value)}")
    if len(value) > PARAGRAPHS_MAX or utf8_length(value) > PARAGRAPHS_MAX:
        raise too_long(utf8_length(value), PARAGRAPHS_MAX)
    return "\n".join(text(line, allow_empty=True).rstrip() for line in value.strip().split("\n"))


def single_line(value: Any, *, max_bytes: int = TEXT_MAX, max_chars: int | None = None) -> str:
    """Free text placed verbatim in a unit: no control characters, no surrounding blanks,
    and no trailing backslash (systemd would join the next line onto it)."""
    s = text(value, max_bytes=max_bytes)
    if max_chars is not None and len(s) > max_chars:
        raise FieldError(
            f"is too long: {len(s)} characters, at most {max_chars} allowed", hint="keep it to one short line"
        )
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
            raise FieldError(f"{number(value)} is out of range: allowed {lo} to {hi}")
        return value

    return parse


def seconds(lo: float, hi: float) -> Parser[float]:
    """A duration in seconds (integer or decimal), rendered to systemd as a plain number."""

    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FieldError(f"expected a number of seconds from {lo:g} to {hi:g}, got {_type_name(value)}")
        if not lo <= value <= hi:
            raise FieldError(f"{shown(value)} is out of range: allowed {lo:g} to {hi:g} seconds")
        return float(value)

    return parse


def choice(enum_type: type[E]) -> Parser[E]:
    allowed = [str(m.value) for m in enum_type]

    def parse(value: Any) -> E:
        if isinstance(value, str):
            for member in enum_type:
                if member.value == value:
                    return member
        what = shown(value) if isinstance(value, str) else _type_name(value)
        raise FieldError(f"{what} is not allowed", hint="allowed: " + ", ".join(repr(a) for a in allowed))

    return parse


def _check_names(s: str) -> None:
    if longer_than(s, PATH_MAX - 1):
        raise too_long(utf8_length(s), PATH_MAX - 1, " for a path")
    for part in s.split("/"):
        if longer_than(part, NAME_MAX):
            raise FieldError(
                f"is too long: a file name of {utf8_length(part)} bytes, at most {NAME_MAX} allowed (NAME_MAX)"
            )


def absolute_path(value: Any) -> str:
    s = text(value)
    _check_names(s)
    p = PurePosixPath(s)
    if not p.is_absolute():
        raise FieldError(f"{shown(s)} is not an absolute path")
    if any(part in (".", "..") for part in s.split("/")) or "//" in s or (s != "/" and s.endswith("/")):
        raise FieldError(f"{shown(s)} is not a normalized path", hint=f"write it as {shown(str(p))}")
    return s


def relative_dir(value: Any) -> str:
    """A directory name relative to /var/lib, /var/cache, ... as StateDirectory= wants it."""
    s = text(value)
    _check_names(s)
    if s.startswith("/") or any(part in ("", ".", "..") for part in s.split("/")):
        raise FieldError(
            f"{shown(s)} must be a relative path like 'myservice' or 'myservice/data'",
            hint="'..', '.', empty and absolute names are refused: the directory is the service's own",
        )
    if not re.fullmatch(r"[A-Za-z0-9._/-]+", s):
        raise FieldError(f"{shown(s)} may only contain letters, digits, '.', '_', '-' and '/'")
    return s


def matching(pattern: str, what: str) -> Parser[str]:
    regex = re.compile(pattern)

    def parse(value: Any) -> str:
        s = text(value)
        if not regex.fullmatch(s):
            raise FieldError(f"{shown(s)} is not a valid {what}")
        return s

    return parse


def each_item(item: Parser[T], values: list[Any]) -> tuple[T, ...]:
    """Every value of an array through `item`; a bad one is named by its index ('item 2: ...')."""
    out = []
    for i, v in enumerate(values):
        try:
            out.append(item(v))
        except FieldError as exc:
            raise FieldError(f"item {i}: {exc.problem}", exc.hint) from None
    return tuple(out)


def array(item: Parser[T], *, min_items: int = 0) -> Parser[tuple[T, ...]]:
    def parse(value: Any) -> tuple[T, ...]:
        if not isinstance(value, list):
            raise FieldError(f"expected an array, got {_type_name(value)}")
        if len(value) < min_items:
            raise FieldError(f"needs at least {min_items} item{'s' if min_items > 1 else ''}")
        return each_item(item, value)

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
                raise FieldError(f"{shown_key(str(k))}: {exc.problem}", exc.hint, subkey=str(k)) from None
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

    @functools.cached_property  # read for every key of every table of every spec in a batch
    def attr(self) -> str:
        return self.name.replace("-", "_")


# keys -> {name: key}: the tables are module constants, so a batch of specs builds each map once.
# Keyed by id() with the sequence kept alive in the value, so an id is never reused for another.
_KNOWN: dict[int, tuple[Sequence[Key[Any]], dict[str, Key[Any]]]] = {}


def _known(keys: Sequence[Key[Any]]) -> dict[str, Key[Any]]:
    cached = _KNOWN.get(id(keys))
    if cached is None or cached[0] is not keys or len(cached[1]) != len(keys):
        cached = (keys, {k.name: k for k in keys})
        _KNOWN[id(keys)] = cached
    return cached[1]


def parse_table(raw: Mapping[str, Any], keys: Sequence[Key[Any]], *, where: str, prefix: str = "") -> dict[str, Any]:
    """Check `raw` against `keys`: unknown keys (with a suggestion), missing required keys and
    bad values all raise `SpecError`. Returns {attribute name: parsed value or default}."""
    known = _known(keys)
    for name in raw:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "known keys: " + ", ".join(known)
            raise SpecError(where, prefix + name, "unknown key", hint=hint)
    out: dict[str, Any] = {}
    for key in keys:
        name = key.name
        if name not in raw:
            if key.required:
                raise SpecError(where, prefix + name, "is required", hint=key.doc)
            out[key.attr] = key.default
            continue
        try:
            out[key.attr] = key.parse(raw[name])
        except FieldError as exc:
            raise SpecError(where, prefix + name, exc.problem, hint=exc.hint) from None
    return out
