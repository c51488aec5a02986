"""A content-addressed cache of rendered maintainer scripts, so a package build need not load Jinja.

Rendering the scripts means importing jinja2 and loading its templates: ~50 ms of a package
build of a small tree (issue 12; the hello example's, /usr/bin/python3, warm caches: .rpm 215 ->
164 ms, .deb 212 -> 157 ms, medians of 25 alternating runs; rpmbuild -bb takes ~240-320 ms).
The scripts are a pure function of the template files, the renderer's code, the Jinja
installation, the Python version (the `sh` filter is `shlex.quote`) and the render context, so
`key()` hashes exactly those, without importing jinja2, and an entry `<key>.scripts` in
`private_cache_dir("scripts")` holds the rendered texts.

An entry is `sha256(key + body) + body`, body the `marshal`led {name: text} dict (marshal is
built in: nothing to import). The digest is checked before anything is unmarshalled: a truncated,
corrupted or misnamed entry is a miss, never a crash or wrong scripts. Only files of our own that
nobody else can write are read; any OSError is a miss, and a failed write is only a lost speed-up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import marshal
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from unitgen.digest import Digest, jinja2_identity, read_file
from unitgen.resources import private_cache_dir

# Part of every key: a change of the entry layout or of what the key covers bumps it.
CACHE_FORMAT = b"unitgen-scripts-2\0"
MAX_ENTRIES = 256
# Rendered scripts are a few KiB; anything larger is not an entry of ours.
MAX_ENTRY_SIZE = 1 << 20
ENTRY_NAME = re.compile(r"[0-9a-f]{64}\.scripts")
_DIGEST_SIZE = 32
# Types whose repr() is deterministic and shows the whole value (exact types: a subclass may
# override repr).
_PLAIN = frozenset({str, int, bool, type(None)})


def key(fmt: str, sources: Sequence[Path], context: Mapping[str, object]) -> str:
    """The hex sha256 naming the scripts that `sources` (templates, the renderer's own code)
    render from `context` for format `fmt`. Raises TypeError for a context value without a
    deterministic serialization (a set, an arbitrary object): a programming error."""
    digest = Digest(CACHE_FORMAT, fmt, sys.version, jinja2_identity())
    for source in sources:
        digest.add(os.fsencode(source.name), source.read_bytes())
    return digest.add(_serialized(dict(context))).hexdigest()


def _serialized(value: object) -> str:
    """A deterministic text that differs whenever `value` does: repr() of plain values, each
    dataclass field by name (whatever the class's own repr shows). Anything else raises: a set's
    order depends on string hashing (PYTHONHASHSEED), an arbitrary object's repr on its address."""
    kind = type(value)
    if kind in _PLAIN:
        return repr(value)
    if kind is tuple or kind is list:
        return f"{kind.__name__}({','.join(map(_serialized, value))})"  # type: ignore[call-overload]
    if kind is dict:
        items = value.items()  # type: ignore[attr-defined]
        return f"dict({','.join(f'{_serialized(k)}:{_serialized(v)}' for k, v in items)})"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = ",".join(f"{f.name}={_serialized(getattr(value, f.name))}" for f in dataclasses.fields(value))
        return f"{kind.__module__}.{kind.__qualname__}({fields})"
    raise TypeError(f"{kind.__name__} has no deterministic serialization: unfit for a cache key")


def load(name: str) -> dict[str, str] | None:
    """The scripts cached under key `name`, or None (no cache, no entry, or an entry not to trust)."""
    directory = private_cache_dir("scripts")
    if directory is None:
        return None
    path = directory / f"{name}.scripts"
    data = read_file(os.fspath(path), MAX_ENTRY_SIZE, private=True)
    if data is None:
        return None
    with contextlib.suppress(OSError):
        # Most recently used is newest: pruning removes what has not been used longest.
        os.utime(path, follow_symlinks=False)
    return _decode(name, data)


def _decode(name: str, data: bytes) -> dict[str, str] | None:
    head, body = data[:_DIGEST_SIZE], data[_DIGEST_SIZE:]
    if len(data) > MAX_ENTRY_SIZE or head != hashlib.sha256(name.encode() + body).digest():
        return None
    try:
        scripts = marshal.loads(body)  # noqa: S302 -- our own file, its digest checked above
    except (EOFError, ValueError, TypeError):
        return None
    if type(scripts) is not dict or not all(type(k) is str and type(v) is str for k, v in scripts.items()):
        return None
    return scripts


def store(name: str, scripts: Mapping[str, str]) -> None:
    """Write the entry for key `name` atomically, then prune; silently nothing if that fails."""
    directory = private_cache_dir("scripts")
    if directory is None:
        return
    body = marshal.dumps(dict(scripts))
    # A name ENTRY_NAME never matches: a write in progress is neither read nor pruned.
    tmp = directory / f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as entry:
            entry.write(hashlib.sha256(name.encode() + body).digest() + body)
        tmp.replace(directory / f"{name}.scripts")
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        return
    prune(directory)


def prune(directory: Path, keep: int = MAX_ENTRIES) -> None:
    """Remove the oldest entries (by mtime) beyond `keep`: only regular files named like an
    entry, never anything else someone put in the directory."""
    try:
        with os.scandir(directory) as listing:
            entries = [e for e in listing if ENTRY_NAME.fullmatch(e.name) and e.is_file(follow_symlinks=False)]
        if len(entries) <= keep:
            return
        aged = sorted(entries, key=lambda e: e.stat(follow_symlinks=False).st_mtime_ns)
    except OSError:
        return
    for entry in aged[: len(entries) - keep]:
        # Gone already if a concurrent build pruned it: that is the same outcome.
        with contextlib.suppress(OSError):
            Path(entry.path).unlink()
