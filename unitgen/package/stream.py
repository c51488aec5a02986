"""Compressed output streams and content copying shared by the writers."""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import BinaryIO, Protocol

from unitgen.package.model import Compression

CHUNK = 1 << 20


class Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


@contextmanager
def compressed(raw: BinaryIO, compression: Compression, level: int | None = None) -> Iterator[BinaryIO]:
    """A write stream that compresses into `raw`, reproducibly (no name, no timestamp in gzip)."""
    level = compression.default_level() if level is None else level
    inner: gzip.GzipFile | lzma.LZMAFile
    if compression is Compression.GZIP:
        inner = gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=level, mtime=0)
    else:
        # CRC64 is xz(1)'s and dpkg's default integrity check.
        inner = lzma.LZMAFile(  # noqa: SIM115 -- closed by `buffered` below
            raw, "wb", format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=level
        )
    # Tar and cpio write many small headers; batching them keeps the compressor calls large.
    buffered = io.BufferedWriter(inner, buffer_size=CHUNK)
    try:
        yield buffered
    finally:
        buffered.close()  # flushes and closes `inner`, which finishes the compressed stream


class Counting(io.RawIOBase):
    """A sink that counts (and optionally hashes) what passes through to `out`."""

    def __init__(self, out: Writable, *hashers: hashlib._Hash) -> None:
        self.out = out
        self.hashers = hashers
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.out.write(data)
        for h in self.hashers:
            h.update(data)
        self.count += len(data)
        return len(data)


def copy(src: BinaryIO, dst: Writable, size: int, digest: Callable[[bytes], object] | None = None) -> None:
    """Copy exactly `size` bytes, feeding each chunk to `digest`; a file that changed size is an error."""
    left = size
    while left:
        chunk = src.read(min(CHUNK, left))
        if not chunk:
            raise OSError(f"file shrank while packaging ({left} bytes missing)")
        dst.write(chunk)
        if digest is not None:
            digest(chunk)
        left -= len(chunk)
