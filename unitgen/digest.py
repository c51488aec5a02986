"""What unitgen's caches are keyed by and how they read their own files back: the staging tree's
stamp (unitgen.staging.stamp) and the rendered maintainer scripts (unitgen.package.script_cache).

Light on purpose (hashlib, os, importlib.machinery): both exist to spare a command its imports.
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
import sys
from importlib.machinery import PathFinder

# ruff: noqa: PTH120 -- strings, not Path objects: these run for every file of a batch's trees


class Digest:
    """A sha256 of a sequence of parts, each length-prefixed, so that no two different sequences
    (("ab", "c") and ("a", "bc")) hash the same bytes."""

    def __init__(self, *parts: str | bytes) -> None:
        self._sha256 = hashlib.sha256()
        self.add(*parts)

    def add(self, *parts: str | bytes) -> Digest:
        for part in parts:
            data = part.encode("utf-8", "surrogateescape") if isinstance(part, str) else part
            self._sha256.update(len(data).to_bytes(8, "big") + data)
        return self

    def hexdigest(self) -> str:
        return self._sha256.hexdigest()


def read_file(path: str, limit: int, *, private: bool = False) -> bytes | None:
    """The bytes of a regular file of at most `limit` bytes, not followed and never blocking;
    `private`: only a file of this user that nobody else can write (a cache entry, read back as
    code's output). None for anything else or what cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        if private and (st.st_uid != os.geteuid() or st.st_mode & 0o022):
            return None
        # One read of the size fstat gave (read(n) allocates n bytes first; thousands of small
        # files in a batch), then on to the end, bounded, should the file have grown since.
        chunks = [os.read(fd, st.st_size + 1)]
        size = len(chunks[0])
        while size > st.st_size and (chunk := os.read(fd, 1 << 20)):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                return None
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def tree_stats(root: str) -> str:
    """Every file below `root` by relative path, size and mtime (what decides a .pyc is current),
    __pycache__ left out."""
    lines = []
    pending = [root]
    while pending:
        directory = pending.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name != "__pycache__":
                        pending.append(entry.path)
                    continue
                st = entry.stat(follow_symlinks=False)
                lines.append(f"{entry.path[len(root) :]} {st.st_size} {st.st_mtime_ns}")
    return "\n".join(sorted(lines))


def jinja2_identity() -> str:
    """The jinja2 that `import jinja2` would load, without importing it (that import is what the
    caches spare): its directory and every file's size and mtime, so an upgrade or another
    environment changes it."""
    return _jinja2_identity(tuple(sys.path))


@functools.cache  # per sys.path: a batch asks once per service
def _jinja2_identity(path: tuple[str, ...]) -> str:
    spec = PathFinder.find_spec("jinja2", list(path))
    if spec is None or spec.origin is None:
        return "no jinja2"  # rendering then fails on the import; nothing is cached
    directory = os.path.dirname(spec.origin)
    return f"{directory}\n{tree_stats(directory)}"
