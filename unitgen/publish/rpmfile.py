"""Read what a yum repository needs from an .rpm, and order rpm versions, in pure Python.

An rpm is a 96-byte lead, the signature header (padded to 8 bytes), the main header and the
payload (rpm.org docs/manual/format.md). The signature header's SHA256 tag is the digest of the
main header, which itself holds the payload's digest: it names the package's contents whatever
signatures are added, so it is what "the same package" means here. Versions compare as rpm's
rpmvercmp() (lib/rpmvercmp.c) does.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from unitgen.errors import UnitgenError

_LEAD = b"\xed\xab\xee\xdb"
_HEADER = b"\x8e\xad\xe8\x01\0\0\0\0"
STRING, INT32, STRING_ARRAY, I18NSTRING = 6, 4, 8, 9
NAME, VERSION, RELEASE, EPOCH, ARCH, SOURCERPM = 1000, 1001, 1002, 1003, 1022, 1044
SIG_SHA256 = 273


@dataclass(frozen=True)
class Rpm:
    name: str
    epoch: int
    version: str
    release: str
    arch: str
    header_sha256: str  # of the main header: the package's contents, signatures aside

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.release}.{self.arch}.rpm"

    def key(self) -> tuple[str, int, str, str, str]:
        return self.name, self.epoch, self.version, self.release, self.arch


def _read_header(f: BinaryIO, where: Path) -> dict[int, str | int]:
    """The string and first-integer tags of the header at the file's position (which it passes)."""
    intro = f.read(16)
    if len(intro) != 16 or intro[:8] != _HEADER:
        raise UnitgenError(f"{where}: not an rpm package (bad header)", hint="publish .deb and .rpm files only")
    count, size = struct.unpack(">II", intro[8:])
    index, data = f.read(16 * count), f.read(size)
    out: dict[int, str | int] = {}
    for i in range(count):
        tag, type_, offset, _ = struct.unpack(">IIiI", index[16 * i : 16 * i + 16])
        if type_ in (STRING, I18NSTRING, STRING_ARRAY):
            out[tag] = data[offset : data.index(b"\0", offset)].decode(errors="replace")
        elif type_ == INT32:
            out[tag] = struct.unpack(">I", data[offset : offset + 4])[0]
    return out


def read_rpm(path: Path) -> Rpm:
    """Parse `path`; raise `UnitgenError` when it is not a binary rpm."""
    with path.open("rb") as f:
        lead = f.read(96)
        if len(lead) != 96 or lead[:4] != _LEAD:
            raise UnitgenError(f"{path}: not an rpm package (bad lead)", hint="publish .deb and .rpm files only")
        start = f.tell()
        signature = _read_header(f, path)
        f.seek(-(f.tell() - start) % 8, 1)
        header = _read_header(f, path)
    if SOURCERPM not in header:
        raise UnitgenError(f"{path}: a source rpm", hint="publish binary packages")
    if SIG_SHA256 not in signature or not all(t in header for t in (NAME, VERSION, RELEASE, ARCH)):
        raise UnitgenError(f"{path}: an rpm without a name, version, release, arch or SHA256 digest")
    return Rpm(str(header[NAME]), int(header.get(EPOCH, 0)), str(header[VERSION]), str(header[RELEASE]),
               str(header[ARCH]), str(signature[SIG_SHA256]))  # fmt: skip


def _alnum(c: str) -> bool:
    return c.isascii() and c.isalnum()


def _skip_separators(s: str) -> str:
    n = 0
    while n < len(s) and not _alnum(s[n]) and s[n] not in "~^":
        n += 1
    return s[n:]


def _take(s: str, digits: bool) -> str:
    n = 0
    while n < len(s) and _alnum(s[n]) and s[n].isdigit() == digits:
        n += 1
    return s[:n]


def rpmvercmp(a: str, b: str) -> int:
    """-1, 0 or 1, as rpm's rpmvercmp(): numeric and alphabetic segments, "~" before anything
    (even the end), "^" after the end but before anything else."""
    while a or b:
        a, b = _skip_separators(a), _skip_separators(b)
        if a.startswith("~") or b.startswith("~"):
            if not a.startswith("~"):
                return 1
            if not b.startswith("~"):
                return -1
            a, b = a[1:], b[1:]
            continue
        if a.startswith("^") or b.startswith("^"):
            if not a:
                return -1
            if not b:
                return 1
            if not a.startswith("^"):
                return 1
            if not b.startswith("^"):
                return -1
            a, b = a[1:], b[1:]
            continue
        if not (a and b):
            break
        numeric = a[0].isdigit()
        seg_a, seg_b = _take(a, numeric), _take(b, numeric)
        if not seg_b:  # different kinds of segment: a number is newer than letters
            return 1 if numeric else -1
        if numeric and int(seg_a) != int(seg_b):
            return -1 if int(seg_a) < int(seg_b) else 1
        if not numeric and seg_a != seg_b:
            return -1 if seg_a < seg_b else 1
        a, b = a[len(seg_a) :], b[len(seg_b) :]
    if not a and not b:
        return 0
    return -1 if not a else 1


def compare_evr(a: Rpm, b: Rpm) -> int:
    if a.epoch != b.epoch:
        return -1 if a.epoch < b.epoch else 1
    return rpmvercmp(a.version, b.version) or rpmvercmp(a.release, b.release)


evr_key = functools.cmp_to_key(compare_evr)
