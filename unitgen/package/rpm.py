"""The .rpm writer: lead, signature header, header, compressed cpio payload (RPM v4, as rpm 4.x reads).

Layout (rpm.org docs/manual/format.md): a 96-byte lead, then the signature header padded to 8
bytes, then the main header, then the payload. Both headers are an "immutable region"
(docs/manual/hregions.md): the region tag first in the index and a 16-byte trailer ending the data
that points back over the whole index, which rpm checks before it trusts a header. The signature
header carries the digests `rpm -K` verifies: SHA1 and SHA256 of the main header, MD5 of header
plus payload, and the sizes. `add_signature` adds OpenPGP signatures to a built package, as
`rpmsign --addsign --rpmv3` does: one over the header (which names the payload's digest) and one
over header plus payload.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from unitgen.errors import UnitgenError
from unitgen.package.files import Entry, Kind, collect
from unitgen.package.model import Compression, Format, PackageInfo
from unitgen.package.progress import Progress
from unitgen.package.stream import CHUNK, Counting, compressed, copy, package_file
from unitgen.reproducible import build_time, source_date_epoch

# Header data types (rpmtag.h rpmTagType).
INT16, INT32, INT64, STRING, BIN, STRING_ARRAY, I18NSTRING = 3, 4, 5, 6, 7, 8, 9
_ALIGN = {INT16: 2, INT32: 4, INT64: 8}
HEADER_SIGNATURES, HEADER_IMMUTABLE = 62, 63

# Signature tags (rpmtag.h RPMSIGTAG_*).
SIG_SHA1, SIG_SHA256, SIG_SIZE, SIG_MD5, SIG_PAYLOADSIZE = 269, 273, 1000, 1004, 1007
# OpenPGP signatures: over the header only, and over header + payload; RSA keys use the first of
# each pair, DSA, ECDSA and EdDSA keys the second (sign/rpmgensig.c, makeSigTag).
SIG_DSAHEADER, SIG_RSAHEADER, SIG_PGP, SIG_GPG = 267, 268, 1002, 1005
_OPENPGP_TAGS = {SIG_DSAHEADER, SIG_RSAHEADER, SIG_PGP, SIG_GPG}
PGP_RSA, PGP_DSA, PGP_ECDSA, PGP_EDDSA = 1, 17, 19, 22


class Tag:
    """Main header tags (rpmtag.h RPMTAG_*); only the ones this writer sets."""

    HEADERI18NTABLE = 100
    NAME, VERSION, RELEASE, SUMMARY, DESCRIPTION, BUILDTIME, BUILDHOST = 1000, 1001, 1002, 1004, 1005, 1006, 1007
    SIZE, VENDOR, LICENSE, PACKAGER, GROUP, URL, OS, ARCH = 1009, 1011, 1014, 1015, 1016, 1020, 1021, 1022
    PREIN, POSTIN, PREUN, POSTUN = 1023, 1024, 1025, 1026
    POSTTRANS, POSTTRANSPROG = 1152, 1154
    FILESIZES, FILEMODES, FILERDEVS, FILEMTIMES, FILEDIGESTS, FILELINKTOS, FILEFLAGS = (
        1028, 1030, 1033, 1034, 1035, 1036, 1037,
    )  # fmt: skip
    FILEUSERNAME, FILEGROUPNAME, SOURCERPM, FILEVERIFYFLAGS = 1039, 1040, 1044, 1045
    PROVIDENAME, REQUIREFLAGS, REQUIRENAME, REQUIREVERSION = 1047, 1048, 1049, 1050
    CONFLICTFLAGS, CONFLICTNAME, CONFLICTVERSION = 1053, 1054, 1055
    RPMVERSION = 1064
    CHANGELOGTIME, CHANGELOGNAME, CHANGELOGTEXT = 1080, 1081, 1082
    PREINPROG, POSTINPROG, PREUNPROG, POSTUNPROG = 1085, 1086, 1087, 1088
    FILEDEVICES, FILEINODES, FILELANGS = 1095, 1096, 1097
    PROVIDEFLAGS, PROVIDEVERSION = 1112, 1113
    DIRINDEXES, BASENAMES, DIRNAMES = 1116, 1117, 1118
    PAYLOADFORMAT, PAYLOADCOMPRESSOR, PAYLOADFLAGS = 1124, 1125, 1126
    PLATFORM = 1132
    FILEDIGESTALGO = 5011
    ENCODING = 5062
    RECOMMENDNAME, RECOMMENDVERSION, RECOMMENDFLAGS = 5046, 5047, 5048
    PAYLOADDIGEST, PAYLOADDIGESTALGO = 5092, 5093


# rpmds.h rpmsenseFlags_e
SENSE_LESS, SENSE_GREATER, SENSE_EQUAL = 0x2, 0x4, 0x8
SENSE_INTERP, SENSE_PRE, SENSE_POST, SENSE_PREUN, SENSE_POSTUN = 0x100, 0x200, 0x400, 0x800, 0x1000
SENSE_POSTTRANS, SENSE_FIND_REQUIRES, SENSE_RPMLIB = 0x20, 0x4000, 0x1000000
_SENSE = {"<": SENSE_LESS, "<=": SENSE_LESS | SENSE_EQUAL, "=": SENSE_EQUAL,
          ">=": SENSE_GREATER | SENSE_EQUAL, ">": SENSE_GREATER}  # fmt: skip

# rpmfiles.h rpmfileAttrs_e
FILE_CONFIG, FILE_DOC, FILE_NOREPLACE, FILE_GHOST, FILE_LICENSE = 0x1, 0x2, 0x10, 0x40, 0x80
PGPHASHALGO_SHA256 = 8

_SCRIPTLETS = {
    "pre": (Tag.PREIN, Tag.PREINPROG, SENSE_PRE),
    "post": (Tag.POSTIN, Tag.POSTINPROG, SENSE_POST),
    "preun": (Tag.PREUN, Tag.PREUNPROG, SENSE_PREUN),
    "postun": (Tag.POSTUN, Tag.POSTUNPROG, SENSE_POSTUN),
    "posttrans": (Tag.POSTTRANS, Tag.POSTTRANSPROG, SENSE_POSTTRANS),
}
_PAYLOAD: dict[Compression, tuple[str, tuple[str, str] | None]] = {
    Compression.GZIP: ("gzip", None),
    Compression.XZ: ("xz", ("rpmlib(PayloadIsXz)", "5.2-1")),
    Compression.ZSTD: ("zstd", ("rpmlib(PayloadIsZstd)", "5.4.18-1")),  # what rpmbuild requires for it
}
_U32 = 0xFFFFFFFF


# --- the header structure --------------------------------------------------------------------


@dataclass
class Header:
    """An rpm header being built: tag -> (type, count, encoded data)."""

    region: int
    entries: dict[int, tuple[int, int, bytes]] = field(default_factory=dict)

    def add(self, tag: int, type_: int, value: str | bytes | int | Sequence[int] | Sequence[str]) -> None:
        if tag in self.entries:
            raise ValueError(f"rpm header tag {tag} set twice")
        self.entries[tag] = _encode(type_, value)

    def to_bytes(self) -> bytes:
        index = []
        data = bytearray()
        tags = sorted(self.entries)
        for tag in tags:
            type_, count, blob = self.entries[tag]
            pad = -len(data) % _ALIGN.get(type_, 1)
            data += b"\0" * pad
            index.append(struct.pack(">IIiI", tag, type_, len(data), count))
            data += blob
        # The region: first index entry, its data a trailer at the end of the data that holds
        # the negative size of the index it covers (header.c, headerVerifyRegion).
        count = len(tags) + 1
        index.insert(0, struct.pack(">IIiI", self.region, BIN, len(data), 16))
        data += struct.pack(">IIiI", self.region, BIN, -count * 16, 16)
        intro = b"\x8e\xad\xe8\x01\0\0\0\0" + struct.pack(">II", count, len(data))
        return intro + b"".join(index) + bytes(data)


def _encode(type_: int, value: str | bytes | int | Sequence[int] | Sequence[str]) -> tuple[int, int, bytes]:
    if type_ in (STRING, I18NSTRING):
        assert isinstance(value, str)
        return type_, 1, value.encode() + b"\0"
    if type_ == BIN:
        assert isinstance(value, bytes)
        return type_, len(value), value
    if type_ == STRING_ARRAY:
        assert isinstance(value, list | tuple)
        return type_, len(value), b"".join(str(s).encode() + b"\0" for s in value)
    ints = [value] if isinstance(value, int) else [int(i) for i in value]
    fmt = {INT16: "H", INT32: "I", INT64: "Q"}[type_]
    mask = (1 << (8 * struct.calcsize(fmt))) - 1
    return type_, len(ints), struct.pack(f">{len(ints)}{fmt}", *(i & mask for i in ints))


# --- cpio (newc, the "070701" format rpm's payload uses) ---------------------------------------


def _cpio_header(name: str, ino: int, mode: int, nlink: int, mtime: int, size: int) -> bytes:
    encoded = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, nlink, mtime, size, 0, 0, 0, 0, len(encoded), 0)
    head = b"070701" + b"".join(b"%08X" % f for f in fields) + encoded
    return head + b"\0" * (-len(head) % 4)


_TYPE_BITS = {Kind.FILE: 0o100000, Kind.DIR: 0o040000, Kind.SYMLINK: 0o120000}


@dataclass
class _Payload:
    digests: list[str]
    raw_size: int
    compressed_sha256: str


def _write_payload(
    out: BinaryIO, files: Sequence[Entry], comp: Compression, level: int | None, progress: Progress | None
) -> _Payload:
    digests = []
    total = sum(e.size for e in files if e.kind is Kind.FILE and not e.ghost)
    done = 0
    sha = hashlib.sha256()  # of the compressed bytes, as they are written
    with compressed(Counting(out, sha), comp, level) as stream:
        sink = Counting(stream)
        for ino, e in enumerate(files, start=1):
            if e.ghost:
                digests.append("")
                continue
            mode = _TYPE_BITS[e.kind] | e.mode
            if e.kind is Kind.FILE:
                sink.write(_cpio_header("./" + e.path, ino, mode, 1, e.mtime, e.size))
                file_sha = hashlib.sha256()
                with e.open() as src:
                    copy(src, sink, e.size, file_sha.update)
                sink.write(b"\0" * (-e.size % 4))
                digests.append(file_sha.hexdigest())
                done += e.size
                if progress is not None:
                    progress(done, total)
            elif e.kind is Kind.SYMLINK:
                target = e.target.encode()
                sink.write(_cpio_header("./" + e.path, ino, mode, 1, e.mtime, len(target)))
                sink.write(target + b"\0" * (-len(target) % 4))
                digests.append("")
            else:
                sink.write(_cpio_header("./" + e.path, ino, mode, 2, e.mtime, 0))
                digests.append("")
        sink.write(_cpio_header("TRAILER!!!", 0, 0, 1, 0, 0))
        raw_size = sink.count
    return _Payload(digests, raw_size, sha.hexdigest())


# --- the package -----------------------------------------------------------------------------


def rpm_filename(info: PackageInfo) -> str:
    return f"{info.name}-{info.version}-{info.release}.{info.rpm_architecture}.rpm"


def _rpm_files(entries: Iterable[Entry]) -> list[Entry]:
    """What the rpm owns: every file and symlink, and only the directories that are the package's."""
    return [e for e in entries if e.kind is not Kind.DIR or not e.system]


def _file_flags(e: Entry) -> int:
    if e.ghost:
        return FILE_GHOST
    if e.config:
        return FILE_CONFIG | FILE_NOREPLACE
    if e.path.startswith("usr/share/licenses/"):
        return FILE_LICENSE
    if e.path.startswith(("usr/share/doc/", "usr/share/man/")):
        return FILE_DOC
    return 0


def _parse_relation(text: str) -> tuple[str, int, str]:
    """`name`, `name >= 1.0`, or a rich dependency `(a or b)` -> (name, sense flags, version)."""
    text = text.strip()
    if text.startswith("("):
        return text, 0, ""
    parts = text.split()
    if len(parts) == 1:
        return parts[0], 0, ""
    if len(parts) == 3 and parts[1] in _SENSE:
        return parts[0], _SENSE[parts[1]], parts[2]
    raise UnitgenError(f"cannot parse rpm dependency {text!r}", hint="use 'name', 'name >= 1.0' or '(a or b)'")


def _interpreters(files: Iterable[Entry]) -> list[str]:
    """Shebang interpreters of executable files, which rpmbuild's script.req would require."""
    found = set()
    for e in files:
        if e.kind is Kind.FILE and e.mode & 0o111 and not e.ghost and e.size > 2:
            with e.open() as f:
                head = f.read(256)
            if head.startswith(b"#!"):
                words = head[2:].split(b"\n", 1)[0].split()
                if words and words[0].startswith(b"/"):
                    found.add(words[0].decode(errors="replace"))
    return sorted(found)


def header(
    info: PackageInfo,
    files: Sequence[Entry],
    payload: _Payload,
    scriptlets: Mapping[str, str],
    comp: Compression,
    level: int | None,
    built: int,
) -> Header:
    h = Header(HEADER_IMMUTABLE)
    h.add(Tag.HEADERI18NTABLE, STRING_ARRAY, ["C"])
    h.add(Tag.NAME, STRING, info.name)
    h.add(Tag.VERSION, STRING, info.version)
    h.add(Tag.RELEASE, STRING, info.release)
    h.add(Tag.SUMMARY, I18NSTRING, info.summary)
    h.add(Tag.DESCRIPTION, I18NSTRING, info.wrapped_description)
    h.add(Tag.BUILDTIME, INT32, built)
    h.add(Tag.BUILDHOST, STRING, "unitgen")  # not the host name: reproducible builds
    h.add(Tag.SIZE, INT32, sum(e.size for e in files if e.kind is Kind.FILE and not e.ghost))
    h.add(Tag.VENDOR, STRING, info.maintainer)
    h.add(Tag.LICENSE, STRING, info.license)
    h.add(Tag.PACKAGER, STRING, info.maintainer)
    h.add(Tag.GROUP, I18NSTRING, info.group)
    if info.homepage:
        h.add(Tag.URL, STRING, info.homepage)
    h.add(Tag.OS, STRING, "linux")
    h.add(Tag.ARCH, STRING, info.rpm_architecture)
    for name, body in scriptlets.items():
        script_tag, prog_tag, _ = _SCRIPTLETS[name]
        h.add(script_tag, STRING, body)
        h.add(prog_tag, STRING, "/bin/sh")

    # Files: parallel arrays in path order, names split into directory + base name.
    dirnames: dict[str, int] = {}
    dirindexes, basenames = [], []
    for e in files:
        d, _, b = e.abspath.rpartition("/")
        dirindexes.append(dirnames.setdefault(d + "/", len(dirnames)))
        basenames.append(b)
    if any(e.size > _U32 for e in files):
        raise UnitgenError("files over 4 GiB are not supported in rpm packages")
    h.add(Tag.FILESIZES, INT32, [0 if e.ghost or e.kind is Kind.DIR else e.size if e.kind is Kind.FILE
                                 else len(e.target.encode()) for e in files])  # fmt: skip
    h.add(Tag.FILEMODES, INT16, [_TYPE_BITS[e.kind] | e.mode for e in files])
    h.add(Tag.FILERDEVS, INT16, [0] * len(files))
    h.add(Tag.FILEMTIMES, INT32, [e.mtime for e in files])
    h.add(Tag.FILEDIGESTS, STRING_ARRAY, payload.digests)
    h.add(Tag.FILELINKTOS, STRING_ARRAY, [e.target for e in files])
    h.add(Tag.FILEFLAGS, INT32, [_file_flags(e) for e in files])
    h.add(Tag.FILEUSERNAME, STRING_ARRAY, ["root"] * len(files))
    h.add(Tag.FILEGROUPNAME, STRING_ARRAY, ["root"] * len(files))
    h.add(Tag.SOURCERPM, STRING, f"{info.name}-{info.version}-{info.release}.src.rpm")
    # A ghost's content is not ours to verify (rpmbuild clears digest, size and mtime checks).
    h.add(Tag.FILEVERIFYFLAGS, INT32, [(_U32 & ~0x0B) if e.ghost else _U32 for e in files])

    # Dependencies.
    rel = info.relations(Format.RPM)
    provides = [(info.name, SENSE_EQUAL, f"{info.version}-{info.release}")]
    if any(e.config for e in files):
        provides.insert(0, (f"config({info.name})", SENSE_EQUAL, f"{info.version}-{info.release}"))
    requires = [_parse_relation(r) for r in rel.depends or ()]
    requires += [(i, SENSE_FIND_REQUIRES, "") for i in _interpreters(files)]
    requires += [("/bin/sh", SENSE_INTERP | _SCRIPTLETS[name][2], "") for name in scriptlets]
    rpmlib = [
        ("rpmlib(CompressedFileNames)", "3.0.4-1"),
        ("rpmlib(FileDigests)", "4.6.0-1"),
        ("rpmlib(PayloadFilesHavePrefix)", "4.0-1"),
    ]
    if any(n.startswith("(") for n, _, _ in requires):
        rpmlib.append(("rpmlib(RichDependencies)", "4.12.0-1"))
    payload_feature = _PAYLOAD[comp][1]
    if payload_feature:
        rpmlib.append(payload_feature)
    requires += [(n, SENSE_RPMLIB | SENSE_LESS | SENSE_EQUAL, v) for n, v in rpmlib]
    requires.sort(key=lambda r: (r[0], r[2], r[1]))
    _add_deps(h, provides, Tag.PROVIDENAME, Tag.PROVIDEFLAGS, Tag.PROVIDEVERSION)
    _add_deps(h, requires, Tag.REQUIRENAME, Tag.REQUIREFLAGS, Tag.REQUIREVERSION)
    if rel.conflicts:
        conflicts = [_parse_relation(r) for r in rel.conflicts]
        _add_deps(h, conflicts, Tag.CONFLICTNAME, Tag.CONFLICTFLAGS, Tag.CONFLICTVERSION)
    if rel.recommends:
        recommends = [_parse_relation(r) for r in rel.recommends]
        _add_deps(h, recommends, Tag.RECOMMENDNAME, Tag.RECOMMENDFLAGS, Tag.RECOMMENDVERSION)

    h.add(Tag.RPMVERSION, STRING, "4.18.0")
    # %changelog: one entry, dated the start of the build day as rpm's changelog dates are.
    h.add(Tag.CHANGELOGTIME, INT32, built - built % 86400)
    h.add(Tag.CHANGELOGNAME, STRING_ARRAY, [f"{info.maintainer} - {info.version}-{info.release}"])
    h.add(Tag.CHANGELOGTEXT, STRING_ARRAY, ["- " + " ".join(info.changelog.split())])

    h.add(Tag.FILEDEVICES, INT32, [1] * len(files))
    h.add(Tag.FILEINODES, INT32, list(range(1, len(files) + 1)))
    h.add(Tag.FILELANGS, STRING_ARRAY, [""] * len(files))
    h.add(Tag.DIRINDEXES, INT32, dirindexes)
    h.add(Tag.BASENAMES, STRING_ARRAY, basenames)
    h.add(Tag.DIRNAMES, STRING_ARRAY, list(dirnames))
    h.add(Tag.PAYLOADFORMAT, STRING, "cpio")
    h.add(Tag.PAYLOADCOMPRESSOR, STRING, _PAYLOAD[comp][0])
    h.add(Tag.PAYLOADFLAGS, STRING, str(comp.default_level() if level is None else level))
    h.add(Tag.PLATFORM, STRING, f"{info.rpm_architecture}-unknown-linux")
    h.add(Tag.FILEDIGESTALGO, INT32, PGPHASHALGO_SHA256)
    h.add(Tag.ENCODING, STRING, "utf-8")
    h.add(Tag.PAYLOADDIGEST, STRING_ARRAY, [payload.compressed_sha256])
    h.add(Tag.PAYLOADDIGESTALGO, INT32, PGPHASHALGO_SHA256)
    return h


def _add_deps(h: Header, deps: Sequence[tuple[str, int, str]], name: int, flags: int, version: int) -> None:
    h.add(name, STRING_ARRAY, [d[0] for d in deps])
    h.add(flags, INT32, [d[1] for d in deps])
    h.add(version, STRING_ARRAY, [d[2] for d in deps])


def _signature(header_blob: bytes, md5: bytes, total: int, payload_size: int) -> bytes:
    s = Header(HEADER_SIGNATURES)
    s.add(SIG_SHA1, STRING, hashlib.sha1(header_blob, usedforsecurity=False).hexdigest())
    s.add(SIG_SHA256, STRING, hashlib.sha256(header_blob).hexdigest())
    s.add(SIG_SIZE, INT32, total)
    s.add(SIG_MD5, BIN, md5)
    s.add(SIG_PAYLOADSIZE, INT32, payload_size)
    blob = s.to_bytes()
    return blob + b"\0" * (-len(blob) % 8)


def _lead(info: PackageInfo) -> bytes:
    # lib/rpmlead.c: magic, format 3.0, binary, arch 1, name, os 1 (Linux), signature type 5.
    name = f"{info.name}-{info.version}-{info.release}".encode()[:65]
    return b"\xed\xab\xee\xdb\x03\x00" + struct.pack(">HH66sHH16x", 0, 1, name, 1, 5)


def build(
    staging: Path,
    info: PackageInfo,
    out_dir: Path,
    scriptlets: Mapping[str, str],
    *,
    compression: Compression = Compression.GZIP,
    level: int | None = None,
    progress: Progress | None = None,
) -> Path:
    """Write NAME-VERSION-RELEASE.ARCH.rpm for `staging` into `out_dir` and return its path."""
    epoch = source_date_epoch()
    built = build_time(epoch)
    extra = {}
    if info.license_text:
        extra[f"usr/share/licenses/{info.name}/LICENSE"] = (info.license_text.strip().encode() + b"\n", 0o644)
    files = _rpm_files(collect(staging, epoch=epoch, extra=extra))
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / rpm_filename(info)
    with tempfile.TemporaryFile(dir=out_dir) as data:
        payload = _write_payload(data, files, compression, level, progress)
        blob = header(info, files, payload, scriptlets, compression, level, built).to_bytes()
        size = data.seek(0, 2)
        if len(blob) + size > _U32:
            raise UnitgenError("rpm packages over 4 GiB are not supported")
        md5 = hashlib.md5(blob, usedforsecurity=False)
        data.seek(0)
        while chunk := data.read(CHUNK):
            md5.update(chunk)
        sig = _signature(blob, md5.digest(), len(blob) + size, payload.raw_size)
        with package_file(target) as out:
            out.write(_lead(info) + sig + blob)
            data.seek(0)
            copy(data, out, size)
    return target


# --- signing ---------------------------------------------------------------------------------


class DetachedSigner(Protocol):
    """What `add_signature` needs: one binary OpenPGP v4 signature packet over a file's bytes
    (`unitgen.publish.signing.Signer` is one, through gpg)."""

    def detach_binary(self, data: Path) -> bytes: ...


def _header_size(intro: bytes, where: Path) -> int:
    if len(intro) != 16 or intro[:8] != b"\x8e\xad\xe8\x01\0\0\0\0":
        raise UnitgenError(f"{where}: not an rpm package (bad header)", hint="sign .rpm files")
    count, size = struct.unpack(">II", intro[8:])
    return 16 + 16 * int(count) + int(size)


def _entries(blob: bytes) -> dict[int, tuple[int, int, bytes]]:
    """The (type, count, data) of each tag of a header blob, its region tag left out."""
    count = struct.unpack(">I", blob[8:12])[0]
    data = blob[16 + 16 * count :]
    out = {}
    for i in range(count):
        tag, type_, offset, n = struct.unpack(">IIiI", blob[16 + 16 * i : 32 + 16 * i])
        if tag in (HEADER_SIGNATURES, HEADER_IMMUTABLE):
            continue
        if type_ in (STRING, STRING_ARRAY, I18NSTRING):
            end = offset
            for _ in range(1 if type_ == STRING else n):
                end = data.index(b"\0", end) + 1
            out[tag] = (type_, n, data[offset:end])
        else:
            width = {INT16: 2, INT32: 4, INT64: 8}.get(type_, 1)
            out[tag] = (type_, n, data[offset : offset + width * n])
    return out


def _public_key_algorithm(signature: bytes) -> int:
    """The public-key algorithm of one OpenPGP v4 signature packet (RFC 4880 4.2, 5.2.3)."""
    first = signature[0]
    # New packet format: the tag octet, then a 1, 2 or 5 octet length; the old format has the
    # length's size in the tag octet's low two bits.
    new_length = 1 if signature[1] < 192 else 2 if signature[1] < 224 else 5
    body = 1 + (new_length if first & 0x40 else (1, 2, 4)[first & 3])
    if signature[body] != 4:
        raise UnitgenError(f"gpg made a version {signature[body]} signature; rpm needs version 4")
    return signature[body + 2]


def add_signature(path: Path, signer: DetachedSigner) -> None:
    """Sign the rpm at `path` in place, replacing any OpenPGP signatures it had: one signature of
    the header, one of header + payload (what `rpm -K` shows as "Header V4 ... Signature" and
    "V4 ... Signature"). The file is replaced atomically; on failure it is left as it was."""
    with path.open("rb") as f:
        lead = f.read(96)
        if len(lead) != 96 or lead[:4] != b"\xed\xab\xee\xdb":
            raise UnitgenError(f"{path}: not an rpm package (bad lead)", hint="sign .rpm files")
        intro = f.read(16)
        size = _header_size(intro, path)
        sig_blob = intro + f.read(size - 16)
        f.seek(-size % 8, 1)
        start = f.tell()  # the main header, then the payload, to the end
        header_blob = f.read(16)
        header_blob += f.read(_header_size(header_blob, path) - 16)
        with tempfile.TemporaryDirectory(prefix="unitgen-rpmsign-") as tmp:
            signed_header = Path(tmp) / "header"
            signed_header.write_bytes(header_blob)
            signed_all = Path(tmp) / "header+payload"
            with signed_all.open("wb") as out:
                f.seek(start)
                shutil.copyfileobj(f, out, CHUNK)
            over_header = signer.detach_binary(signed_header)
            over_all = signer.detach_binary(signed_all)
        rsa = _public_key_algorithm(over_header) == PGP_RSA
        sig = Header(HEADER_SIGNATURES)
        sig.entries = {t: e for t, e in _entries(sig_blob).items() if t not in _OPENPGP_TAGS}
        sig.add(SIG_RSAHEADER if rsa else SIG_DSAHEADER, BIN, over_header)
        sig.add(SIG_PGP if rsa else SIG_GPG, BIN, over_all)
        blob = sig.to_bytes()
        with package_file(path) as out:
            out.write(lead + blob + b"\0" * (-len(blob) % 8))
            f.seek(start)
            shutil.copyfileobj(f, out, CHUNK)
