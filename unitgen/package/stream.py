"""Compressed output streams and content copying shared by the writers."""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import queue
import signal
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Protocol

from unitgen.package.model import Compression

CHUNK = 1 << 20


class Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


class _Compressor(Protocol):
    def compress(self, data: bytes, /) -> bytes: ...
    def flush(self) -> bytes: ...


def _compressor(compression: Compression, level: int) -> _Compressor:
    if compression is Compression.GZIP:
        # wbits 31: a gzip member with no name and mtime 0, so the bytes depend on the data alone.
        return zlib.compressobj(level, zlib.DEFLATED, 31)
    if compression is Compression.ZSTD:
        from unitgen.package.zstd import ZstdCompressor  # ctypes and libzstd: only when asked for

        return ZstdCompressor(level)
    # CRC64 is xz(1)'s and dpkg's default integrity check.
    return lzma.LZMACompressor(format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=level)


class _Pipeline(io.RawIOBase):
    """Compress on a worker thread while the caller keeps producing: the `tar | gzip` of dpkg-deb.

    zlib, liblzma, libzstd and hashlib release the GIL on large buffers, so reading, hashing and
    framing files overlap with compressing them; output order is kept by the single worker. The
    worker starts with the first full chunk: a stream that ends below one (a small service's
    tree, every control.tar) is compressed in the caller, without a thread to start and join,
    which under load took longer than compressing.
    """

    def __init__(self, raw: Writable, compressor: _Compressor) -> None:
        self.raw = raw
        self.compressor = compressor
        self.buffer = bytearray()
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.worker: threading.Thread | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.buffer += data
        if len(self.buffer) >= CHUNK:
            self._hand_over()
        return len(data)

    def _hand_over(self) -> None:
        if self.error is not None:
            raise self.error
        if self.worker is None:
            self.worker = threading.Thread(target=self._work, name="unitgen-compress", daemon=True)
            self.worker.start()
        self.queue.put(bytes(self.buffer))
        self.buffer.clear()

    def _work(self) -> None:
        try:
            while (chunk := self.queue.get()) is not None:
                if out := self.compressor.compress(chunk):
                    self.raw.write(out)
            self.raw.write(self.compressor.flush())
        except BaseException as exc:  # handed to the producer, which re-raises it
            self.error = exc
            while self.queue.get() is not None:  # keep draining, so the producer never blocks
                pass

    def finish(self) -> None:
        """Compress what is left and end the stream; raise what the worker hit."""
        if self.worker is None:  # all of it below one chunk: here, in one go
            self.raw.write(self.compressor.compress(bytes(self.buffer)) + self.compressor.flush())
            self.buffer.clear()
            return
        if self.buffer:
            self._hand_over()
        self.queue.put(None)
        self.worker.join()
        if self.error is not None:
            raise self.error

    def abandon(self) -> None:
        self.buffer.clear()
        if self.worker is not None:
            self.queue.put(None)
            self.worker.join()


@contextmanager
def compressed(raw: Writable, compression: Compression, level: int | None = None) -> Iterator[Writable]:
    """A write stream that compresses into `raw`, reproducibly, on a second thread (from the first
    full chunk on)."""
    pipeline = _Pipeline(raw, _compressor(compression, compression.default_level() if level is None else level))
    try:
        yield pipeline
    except BaseException:
        pipeline.abandon()
        raise
    pipeline.finish()


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


@contextmanager
def package_file(target: Path) -> Iterator[BinaryIO]:
    """Write `target` (a package in --dist) atomically, through a temporary file of our own.

    The temporary name is random and created with O_EXCL (mkstemp), so a file or symlink someone
    else put in a shared --dist (say /tmp) is never opened, followed or removed; it is renamed
    over `target` only once complete, and removed on failure only because we created it.
    """
    tmp: Path | None = None
    try:
        # SIGINT/TERM/HUP become KeyboardInterrupt (the CLI): held back while the file is created
        # and named, so an interrupt never falls between the two and leaves a file nobody removes.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            tmp = Path(name)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # a package is a plain file for everyone to read, as dpkg-deb makes it
        with os.fdopen(fd, "wb") as out:
            yield out
        tmp.replace(target)
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
