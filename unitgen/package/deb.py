"""The .deb writer: an ar archive of debian-binary, control.tar.* and data.tar.* (deb(5)).

Written here rather than by dpkg-deb so one machine builds both formats. The layout follows what
dpkg-deb produces: GNU tar members named "./path" (directories with a trailing slash), owner
root:root with names, every parent directory, md5sums for the non-conffiles (as dh_md5sums does).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import tempfile
import textwrap
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import BinaryIO, Literal

from unitgen.package.files import Entry, Kind, collect, installed_size_kib
from unitgen.package.model import Compression, Format, PackageInfo
from unitgen.package.progress import Progress
from unitgen.package.stream import Writable, compressed, copy, package_file
from unitgen.reproducible import source_date_epoch

_TAR_FORMAT: Literal[1] = 1  # tarfile.GNU_FORMAT, what dpkg-deb writes
_RECORD = 10240  # tar's record size; GNU tar and tarfile pad archives to it
# dpkg-deb compresses control.tar as data.tar (--uniform-compression, its default): control.tar.zst too.
_SUFFIX = {Compression.GZIP: ".gz", Compression.XZ: ".xz", Compression.ZSTD: ".zst"}

# SPDX identifier -> /usr/share/common-licenses file and the DEP-5 short name (copyright-format 1.0).
_COMMON_LICENSES = {
    "Apache-2.0": ("Apache-2.0", "Apache-2.0"),
    "GPL-2.0-only": ("GPL-2", "GPL-2"),
    "GPL-2.0-or-later": ("GPL-2", "GPL-2+"),
    "GPL-3.0-only": ("GPL-3", "GPL-3"),
    "GPL-3.0-or-later": ("GPL-3", "GPL-3+"),
    "LGPL-2.1-only": ("LGPL-2.1", "LGPL-2.1"),
    "LGPL-2.1-or-later": ("LGPL-2.1", "LGPL-2.1+"),
    "LGPL-3.0-only": ("LGPL-3", "LGPL-3"),
    "LGPL-3.0-or-later": ("LGPL-3", "LGPL-3+"),
    "MPL-2.0": ("MPL-2.0", "MPL-2.0"),
    "CC0-1.0": ("CC0-1.0", "CC0-1.0"),
}


def deb_filename(info: PackageInfo) -> str:
    return f"{info.name}_{info.deb_version}_{info.deb_architecture}.deb"


def build(
    staging: Path,
    info: PackageInfo,
    out_dir: Path,
    scripts: Mapping[str, str],
    *,
    compression: Compression = Compression.GZIP,
    level: int | None = None,
    progress: Progress | None = None,
) -> Path:
    """Write the .deb for `staging` into `out_dir` and return its path.

    `scripts` maps maintainer script names (preinst, postinst, prerm, postrm) to their text.
    """
    epoch = source_date_epoch()
    mtime = epoch if epoch is not None else int(staging.stat().st_mtime)
    doc = f"usr/share/doc/{info.name}"
    extra = {
        f"{doc}/copyright": (copyright_file(info, mtime).encode(), 0o644),
        f"{doc}/changelog.Debian.gz": (_gzip(changelog(info, mtime).encode()), 0o644),
    }
    overrides = lintian_overrides(info)
    if overrides:
        extra[f"usr/share/lintian/overrides/{info.name}"] = (overrides.encode(), 0o644)
    # /run is a tmpfs: dpkg would create entries there that vanish at boot; tmpfiles.d owns them.
    entries = [e for e in collect(staging, epoch=epoch, extra=extra) if not e.ghost]
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / deb_filename(info)
    suffix = _SUFFIX[compression]
    with tempfile.TemporaryFile(dir=out_dir) as data:
        with compressed(data, compression, level) as stream:
            md5sums = write_tar(stream, entries, mtime, progress)
        control_files = {
            "control": (control(info, installed_size_kib(entries)), 0o644),
            "md5sums": (md5sums, 0o644),
        }
        conffiles = "".join(f"{e.abspath}\n" for e in entries if e.config and e.kind is Kind.FILE)
        if conffiles:
            control_files["conffiles"] = (conffiles, 0o644)
        for name in ("preinst", "postinst", "prerm", "postrm"):
            if scripts.get(name):
                control_files[name] = (scripts[name], 0o755)
        control_tar = _control_tar(control_files, mtime, compression, level)
        with package_file(target) as out:
            out.write(b"!<arch>\n")
            _ar_member(out, "debian-binary", b"2.0\n", mtime)
            _ar_member(out, f"control.tar{suffix}", control_tar, mtime)
            data.seek(0, os.SEEK_END)
            size = data.tell()
            data.seek(0)
            _ar_header(out, f"data.tar{suffix}", size, mtime)
            copy(data, out, size)
            if size % 2:
                out.write(b"\n")
    return target


# --- control data -------------------------------------------------------------------------


def control(info: PackageInfo, installed_size: int) -> str:
    rel = info.relations(Format.DEB)
    depends = list(rel.depends or ())
    if info.sysusers:
        # What dh_installsysusers adds to ${misc:Depends}: the postinst runs systemd-sysusers.
        depends.append("systemd | systemd-standalone-sysusers | systemd-sysusers")
    fields: list[tuple[str, str | None]] = [
        ("Package", info.name),
        ("Version", info.deb_version),
        ("Architecture", info.deb_architecture),
        ("Maintainer", info.maintainer),
        ("Installed-Size", str(installed_size)),
        ("Depends", ", ".join(depends)),
        ("Recommends", ", ".join(rel.recommends or ())),
        ("Conflicts", ", ".join(rel.conflicts or ())),
        ("Section", info.section),
        ("Priority", "optional"),
        ("Homepage", info.homepage),
        ("Description", info.summary + "\n" + _long_description(info.wrapped_description)),
    ]
    return "".join(f"{k}: {v}\n" for k, v in fields if v)


def lintian_overrides(info: PackageInfo) -> str:
    """The overrides file (lintian(1), OVERRIDES): each override preceded by its justification."""
    lines = []
    if info.deb_version.endswith("-1"):
        # lintian wants the first Debian upload to close its ITP bug; a package built for
        # direct distribution has none.
        lines += [
            "# Built by unitgen for direct distribution, not uploaded to Debian: no ITP bug to close.",
            f"initial-upload-closes-no-bugs [usr/share/doc/{info.name}/changelog.Debian.gz:1]",
        ]
    for entry in info.lintian_overrides:
        tag, _, why = entry.partition(" # ")
        lines += [f"# {why.strip()}"] if why.strip() else []
        lines.append(tag.strip())
    return "".join(line + "\n" for line in lines)


def _long_description(text: str) -> str:
    """deb-control(5): continuation lines start with a space, an empty line is " ."."""
    lines: list[str] = []
    for para in textwrap.dedent(text).strip().split("\n\n"):
        if lines:
            lines.append(" .")
        for line in para.splitlines():
            line = line.rstrip()
            lines.append(" " + line if line.strip() else " .")
    return "\n".join(lines)


def copyright_file(info: PackageInfo, when: int) -> str:
    """A machine-readable debian/copyright (copyright-format 1.0)."""
    year = time.gmtime(when).tm_year
    holder = info.copyright or f"{year} {info.maintainer.partition(' <')[0]}"
    common = _COMMON_LICENSES.get(info.license)
    short = common[1] if common else info.license
    head = [
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/",
        f"Upstream-Name: {info.name}",
    ]
    if info.homepage:
        head.append(f"Source: {info.homepage}")
    files = ["Files: *", f"Copyright: {holder}", f"License: {short}"]
    if common:
        # lintian wants the common licenses referenced, not copied (copyright-*-full-*-license).
        body = [
            " On Debian systems, the complete text of this license can be found in",
            f" /usr/share/common-licenses/{common[0]}.",
        ]
    elif info.license_text:
        body = [_long_description(info.license_text)]
    else:
        body = [f" The full text of the {info.license} license is distributed with the upstream sources."]
    return "\n".join(head) + "\n\n" + "\n".join(files + body) + "\n"


def changelog(info: PackageInfo, when: int) -> str:
    """A one-entry Debian changelog (deb-changelog(5)) for this version."""
    entry = textwrap.fill(info.changelog.strip(), width=76, initial_indent="  * ", subsequent_indent="    ")
    date = _rfc2822(when)
    return f"{info.name} ({info.deb_version}) unstable; urgency=medium\n\n{entry}\n\n -- {info.maintainer}  {date}\n"


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _rfc2822(when: int) -> str:
    """What email.utils.formatdate(when) prints (English names, whatever the locale; -0000: UTC),
    without importing the email package for one line."""
    t = time.gmtime(when)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} -0000"
    )


def _gzip(data: bytes) -> bytes:
    # gzip -9n: no name, no timestamp, so the result only depends on `data`.
    return gzip.compress(data, compresslevel=9, mtime=0)


# --- tar ----------------------------------------------------------------------------------


def _tarinfo(name: str, kind: Kind, mode: int, mtime: int, size: int = 0, target: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = {Kind.FILE: tarfile.REGTYPE, Kind.DIR: tarfile.DIRTYPE, Kind.SYMLINK: tarfile.SYMTYPE}[kind]
    ti.mode = mode
    ti.mtime = mtime
    ti.size = size if kind is Kind.FILE else 0
    ti.linkname = target
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    return ti


def write_tar(out: Writable, entries: Sequence[Entry], root_mtime: int, progress: Progress | None = None) -> str:
    """Write `entries` as a tar stream to `out`; return the md5sums file for the non-conffiles."""
    written = 0
    total = sum(e.size for e in entries if e.kind is Kind.FILE)
    done = 0

    def put(data: bytes) -> None:
        nonlocal written
        out.write(data)
        written += len(data)

    put(_tarinfo("./", Kind.DIR, 0o755, root_mtime).tobuf(_TAR_FORMAT, "utf-8", "surrogateescape"))
    sums = []
    for e in entries:
        name = "./" + e.path + ("/" if e.kind is Kind.DIR else "")
        put(_tarinfo(name, e.kind, e.mode, e.mtime, e.size, e.target).tobuf(_TAR_FORMAT, "utf-8", "surrogateescape"))
        if e.kind is Kind.FILE:
            md5 = hashlib.md5(usedforsecurity=False)
            with e.open() as src:
                copy(src, out, e.size, md5.update)
            written += e.size
            if e.size % 512:
                put(b"\0" * (512 - e.size % 512))
            if not e.config:
                sums.append(f"{md5.hexdigest()}  {e.path}\n")
            done += e.size
            if progress is not None:
                progress(done, total)
    put(b"\0" * 1024)
    if written % _RECORD:
        put(b"\0" * (_RECORD - written % _RECORD))
    return "".join(sums)


def _control_tar(files: Mapping[str, tuple[str, int]], mtime: int, comp: Compression, level: int | None) -> bytes:
    raw = io.BytesIO()
    entries = [
        Entry(name, Kind.FILE, mode, mtime, size=len(text.encode()), data=text.encode())
        for name, (text, mode) in sorted(files.items())
    ]
    with compressed(raw, comp, level) as stream:
        write_tar(stream, entries, mtime)
    return raw.getvalue()


# --- ar -----------------------------------------------------------------------------------


def _ar_header(out: BinaryIO, name: str, size: int, mtime: int) -> None:
    # ar(5) common format, as dpkg-deb writes it: name padded to 16, uid/gid 0, mode 100644.
    header = f"{name:<16}{mtime:<12}{0:<6}{0:<6}{0o100644:<8o}{size:<10}`\n".encode()
    assert len(header) == 60, header
    out.write(header)


def _ar_member(out: BinaryIO, name: str, data: bytes, mtime: int) -> None:
    _ar_header(out, name, len(data), mtime)
    out.write(data)
    if len(data) % 2:
        out.write(b"\n")
