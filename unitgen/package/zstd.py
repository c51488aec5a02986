"""Zstandard (RFC 8878) streams through the system's libzstd, for `--compression zstd`.

The standard library has no zstd, and a binding from PyPI would be a new compiled dependency;
libzstd itself is on every host that builds packages with unitgen (Debian's dpkg and
RPM-based systems' rpm link it). It is loaded with ctypes when zstd is asked for, never before;
without it, `--compression zstd` is one error that says what to install.

The frames are what zstd(1) and dpkg-deb -Zzstd write: single-threaded (so the bytes depend on
the data and level alone: reproducible), with the content checksum zstd(1) adds by default.
ctypes releases the GIL during each call, so compression overlaps the tar or cpio writer as
zlib and liblzma do (unitgen.package.stream).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

from unitgen.errors import UnitgenError

# zstd.h (stable API since libzstd 1.4.0): ZSTD_cParameter, ZSTD_EndDirective.
_C_COMPRESSION_LEVEL = 100
_C_CHECKSUM_FLAG = 201
_E_CONTINUE = 0
_E_END = 2
_MIN_VERSION = 10400  # ZSTD_compressStream2 and ZSTD_CCtx_setParameter became stable in 1.4.0


class _InBuffer(ctypes.Structure):
    _fields_ = [("src", ctypes.c_void_p), ("size", ctypes.c_size_t), ("pos", ctypes.c_size_t)]


class _OutBuffer(ctypes.Structure):
    _fields_ = [("dst", ctypes.c_void_p), ("size", ctypes.c_size_t), ("pos", ctypes.c_size_t)]


INSTALL_HINT = "install libzstd (Debian: apt install libzstd1; RHEL/Fedora: dnf install libzstd), or use gzip or xz"


@functools.cache
def _lib() -> ctypes.CDLL:
    name = ctypes.util.find_library("zstd") or "libzstd.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        message = "--compression zstd needs the zstd library, libzstd, which is not here"
        raise UnitgenError(message, hint=INSTALL_HINT) from None
    lib.ZSTD_versionNumber.restype = ctypes.c_uint
    version = lib.ZSTD_versionNumber()
    if version < _MIN_VERSION:
        raise UnitgenError(
            f"--compression zstd needs libzstd 1.4.0 or later; this one is {version // 10000}.{version // 100 % 100}"
            f".{version % 100}",
            hint=INSTALL_HINT,
        )
    size_t, ptr = ctypes.c_size_t, ctypes.c_void_p
    for fn, restype, argtypes in (
        ("ZSTD_createCCtx", ptr, []),
        ("ZSTD_freeCCtx", size_t, [ptr]),
        ("ZSTD_CCtx_setParameter", size_t, [ptr, ctypes.c_int, ctypes.c_int]),
        ("ZSTD_compressStream2", size_t, [ptr, ctypes.POINTER(_OutBuffer), ctypes.POINTER(_InBuffer), ctypes.c_int]),
        ("ZSTD_CStreamOutSize", size_t, []),
        ("ZSTD_createDCtx", ptr, []),
        ("ZSTD_freeDCtx", size_t, [ptr]),
        ("ZSTD_decompressStream", size_t, [ptr, ctypes.POINTER(_OutBuffer), ctypes.POINTER(_InBuffer)]),
        ("ZSTD_DStreamOutSize", size_t, []),
        ("ZSTD_isError", ctypes.c_uint, [size_t]),
        ("ZSTD_getErrorName", ctypes.c_char_p, [size_t]),
    ):
        getattr(lib, fn).restype = restype
        getattr(lib, fn).argtypes = argtypes
    return lib


def require() -> None:
    """Raise the UnitgenError the writers would, before any work is done."""
    _lib()


def _check(lib: ctypes.CDLL, code: int) -> int:
    if lib.ZSTD_isError(code):
        raise OSError(f"zstd: {lib.ZSTD_getErrorName(code).decode()}")
    return code


class ZstdCompressor:
    """`compress()` and `flush()`, as zlib's and lzma's compressors: one zstd frame."""

    def __init__(self, level: int) -> None:
        self._lib = lib = _lib()
        self._cctx = lib.ZSTD_createCCtx()
        if not self._cctx:
            raise MemoryError("zstd: cannot create a compression context")
        _check(lib, lib.ZSTD_CCtx_setParameter(self._cctx, _C_COMPRESSION_LEVEL, level))
        _check(lib, lib.ZSTD_CCtx_setParameter(self._cctx, _C_CHECKSUM_FLAG, 1))
        self._out = ctypes.create_string_buffer(lib.ZSTD_CStreamOutSize())

    def _run(self, data: bytes, directive: int) -> bytes:
        lib, out = self._lib, self._out
        src = _InBuffer(ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p), len(data), 0)
        chunks = []
        while True:
            dst = _OutBuffer(ctypes.cast(out, ctypes.c_void_p), len(out), 0)
            left = _check(lib, lib.ZSTD_compressStream2(self._cctx, ctypes.byref(dst), ctypes.byref(src), directive))
            chunks.append(ctypes.string_at(out, dst.pos))
            # continue: until the input is taken; end: until the frame is flushed (0 left).
            if (directive == _E_END and left == 0) or (directive == _E_CONTINUE and src.pos == src.size):
                return b"".join(chunks)

    def compress(self, data: bytes) -> bytes:
        return self._run(data, _E_CONTINUE)

    def flush(self) -> bytes:
        try:
            return self._run(b"", _E_END)
        finally:
            self.close()

    def close(self) -> None:
        if self._cctx:
            self._lib.ZSTD_freeCCtx(self._cctx)
            self._cctx = None

    def __del__(self) -> None:
        self.close()


def decompress(data: bytes) -> bytes:
    """The content of the zstd frames in `data` (a .deb's control.tar.zst: small)."""
    lib = _lib()
    dctx = lib.ZSTD_createDCtx()
    if not dctx:
        raise MemoryError("zstd: cannot create a decompression context")
    try:
        out = ctypes.create_string_buffer(lib.ZSTD_DStreamOutSize())
        src = _InBuffer(ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p), len(data), 0)
        chunks = []
        left = 1
        while src.pos < src.size or left:
            dst = _OutBuffer(ctypes.cast(out, ctypes.c_void_p), len(out), 0)
            before = src.pos
            left = _check(lib, lib.ZSTD_decompressStream(dctx, ctypes.byref(dst), ctypes.byref(src)))
            chunks.append(ctypes.string_at(out, dst.pos))
            if dst.pos == 0 and src.pos == before:  # no progress: the input ends inside a frame
                raise OSError("zstd: truncated data")
        return b"".join(chunks)
    finally:
        lib.ZSTD_freeDCtx(dctx)
