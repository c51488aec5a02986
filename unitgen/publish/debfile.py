"""Read what an apt index needs from a .deb, and order Debian versions, in pure Python.

A .deb is an ar archive whose `control.tar(.gz|.xz|.zst)` member holds `./control` (deb(5)); the
index entry is that stanza plus the file's name, size and digests. Versions compare as
deb-version(7) says (`dpkg --compare-versions`), so retention keeps the newest versions apt would.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import lzma
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from unitgen.errors import UnitgenError

_AR_MAGIC = b"!<arch>\n"


def _unzstd(data: bytes) -> bytes:
    from unitgen.package.zstd import decompress  # libzstd through ctypes, for zstd packages only

    return decompress(data)


_DECOMPRESS = {
    b"control.tar": lambda b: b,
    b"control.tar.gz": gzip.decompress,
    b"control.tar.xz": lzma.decompress,
    b"control.tar.zst": _unzstd,  # `package --compression zstd` and dpkg-deb -Zzstd
}
_FIELD = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*):(.*)$")


@dataclass(frozen=True)
class Deb:
    """One binary package as an apt index sees it."""

    name: str
    version: str
    architecture: str
    control: str  # the control stanza, without a trailing newline
    size: int
    md5: str
    sha1: str
    sha256: str

    @property
    def filename(self) -> str:
        """The pool file name, as Debian names it: NAME_VERSION_ARCH.deb, without the epoch."""
        return f"{self.name}_{self.version.split(':', 1)[-1]}_{self.architecture}.deb"

    def key(self) -> tuple[str, str, str]:
        return self.name, self.version, self.architecture


def read_deb(path: Path) -> Deb:
    """Parse `path`; raise `UnitgenError` when it is not a binary package apt can index."""
    control = _control(path)
    fields = parse_stanza(control)
    missing = [f for f in ("Package", "Version", "Architecture") if f not in fields]
    if missing:
        raise UnitgenError(f"{path}: its control file lacks {', '.join(missing)}", hint="build it with unitgen package")
    md5, sha1, sha256 = (hashlib.md5(usedforsecurity=False), hashlib.sha1(usedforsecurity=False), hashlib.sha256())
    size = 0
    with path.open("rb") as f:  # in chunks: a package may be large
        while chunk := f.read(1 << 20):
            size += len(chunk)
            for digest in (md5, sha1, sha256):
                digest.update(chunk)
    return Deb(
        name=fields["Package"], version=fields["Version"], architecture=fields["Architecture"],
        control=control.strip("\n"), size=size, md5=md5.hexdigest(), sha1=sha1.hexdigest(), sha256=sha256.hexdigest(),
    )  # fmt: skip


def _control(path: Path) -> str:
    """The control file, reading only the ar headers up to the control member (deb(5) puts it second)."""
    with path.open("rb") as f:
        if f.read(len(_AR_MAGIC)) != _AR_MAGIC:
            raise UnitgenError(f"{path}: not a .deb (no ar archive)", hint="publish .deb and .rpm files only")
        while len(head := f.read(60)) == 60:
            name, size = head[:16].rstrip(b" ").rstrip(b"/"), int(head[48:58])
            if name.startswith(b"control.tar"):
                return _control_file(path, name, f.read(size))
            f.seek(size + size % 2, 1)
    raise UnitgenError(f"{path}: not a .deb (no control archive)", hint="publish .deb and .rpm files only")


def _control_file(path: Path, name: bytes, body: bytes) -> str:
    if name not in _DECOMPRESS:
        raise UnitgenError(f"{path}: {name.decode(errors='replace')} is not supported",
                           hint="control archives compressed with gzip, xz, zstd or nothing are")  # fmt: skip
    try:
        with tarfile.open(fileobj=io.BytesIO(_DECOMPRESS[name](body))) as tar:
            member = next(m for m in tar.getmembers() if m.name in ("./control", "control"))
            extracted = tar.extractfile(member)
            assert extracted is not None
            return extracted.read().decode()
    except (OSError, EOFError, lzma.LZMAError, tarfile.TarError, StopIteration, UnicodeDecodeError) as exc:
        raise UnitgenError(f"{path}: its control archive is damaged ({exc or 'no control file'})") from exc


def parse_stanza(text: str) -> dict[str, str]:
    """The fields of one deb822 stanza; continuation lines are kept in the value."""
    fields: dict[str, str] = {}
    last = None
    for line in text.splitlines():
        if line[:1] in (" ", "\t") and last is not None:
            fields[last] += "\n" + line
        elif m := _FIELD.match(line):
            last = m.group(1)
            fields[last] = m.group(2).strip()
    return fields


def parse_stanzas(text: str) -> list[str]:
    """The stanzas of a deb822 file (an apt Packages index), each without its trailing newline."""
    return [s.strip("\n") for s in re.split(r"\n\s*\n", text) if s.strip()]


# --- deb-version(7) ordering ------------------------------------------------------------------


def _order(c: str) -> int:
    # "~" sorts before everything, even the end of the string; letters before non-letters.
    if c == "~":
        return -1
    if c.isdigit():
        return 0
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _compare_part(a: str, b: str) -> int:
    while a or b:
        lead_a, lead_b = re.match(r"\D*", a).group(), re.match(r"\D*", b).group()  # type: ignore[union-attr]
        for i in range(max(len(lead_a), len(lead_b))):
            ca = _order(lead_a[i]) if i < len(lead_a) else 0
            cb = _order(lead_b[i]) if i < len(lead_b) else 0
            if ca != cb:
                return -1 if ca < cb else 1
        a, b = a[len(lead_a) :], b[len(lead_b) :]
        num_a, num_b = re.match(r"\d*", a).group(), re.match(r"\d*", b).group()  # type: ignore[union-attr]
        if int(num_a or 0) != int(num_b or 0):
            return -1 if int(num_a or 0) < int(num_b or 0) else 1
        a, b = a[len(num_a) :], b[len(num_b) :]
    return 0


def _split(version: str) -> tuple[int, str, str]:
    epoch, _, rest = version.partition(":") if ":" in version else ("0", "", version)
    upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "0")
    return int(epoch or 0), upstream, revision


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as `dpkg --compare-versions a lt|eq|gt b` says."""
    ea, ua, ra = _split(a)
    eb, ub, rb = _split(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return _compare_part(ua, ub) or _compare_part(ra, rb)


version_key = functools.cmp_to_key(compare_versions)
