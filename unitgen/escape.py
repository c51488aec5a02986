"""Quoting for systemd unit files, so that a value comes back from systemd exactly as written.

The rules follow systemd.service(5) "Command lines", systemd.exec(5) "Environment=" and
systemd.unit(5) "Specifiers": `%` starts a specifier (escape `%%`), `$` starts a variable
in command lines (escape `$$`), and inside double quotes C-style escapes apply (`\\\\`, `\\"`).
Values never contain control characters: `unitgen.spec.fields.text` refuses them earlier.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Characters that never need quoting in a command-line word. Anything else (blanks,
# quotes, backslashes, ';' which separates commands) is put in double quotes.
_PLAIN_WORD = re.compile(r"[A-Za-z0-9_@%+=:,./$-]+")


def specifiers(value: str) -> str:
    """Escape `%` for settings that expand specifiers but are not quoted (Description=, paths)."""
    return value.replace("%", "%%")


def _c_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def exec_word(word: str) -> str:
    """One argument of ExecStart= and friends: no specifier, no variable, no word splitting."""
    escaped = specifiers(word).replace("$", "$$")
    if _PLAIN_WORD.fullmatch(escaped):
        return escaped
    return _c_quote(escaped)


def exec_line(argv: Iterable[str]) -> str:
    return " ".join(exec_word(w) for w in argv)


def environment(name: str, value: str) -> str:
    """One Environment= assignment, quoted as a whole: `"NAME=value"`."""
    return _c_quote(specifiers(f"{name}={value}"))


def word_list(words: Iterable[str]) -> str:
    """A space-separated list setting (ReadWritePaths=, ...), each word quoted when needed."""
    out = []
    for word in words:
        escaped = specifiers(word)
        out.append(escaped if _PLAIN_WORD.fullmatch(escaped) else _c_quote(escaped))
    return " ".join(out)


def seconds(value: float) -> str:
    """A time span in a form systemd parses exactly: whole seconds, or milliseconds."""
    if value == int(value):
        return str(int(value))
    return f"{round(value * 1000)}ms"
