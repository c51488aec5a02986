"""Build .deb and .rpm packages from a staging tree, in pure Python.

    from unitgen.package import PackageInfo, build_deb, build_rpm
    deb = build_deb(Path("build/staging"), info, Path("dist"))

One model (`PackageInfo`), one file pipeline (`files.collect`), one small writer per format
(`deb`, `rpm`), the maintainer scripts rendered from templates (`scripts`). With
SOURCE_DATE_EPOCH set, the output is byte-for-byte reproducible. Problems a user can fix (a bad
staging tree, a unit named in `PackageInfo.units` that the tree lacks) raise `UnitgenError`.
"""

from __future__ import annotations

from pathlib import Path

from unitgen.package import deb, rpm, scripts
from unitgen.package.model import Compression, Format, PackageInfo, Relations
from unitgen.package.progress import Progress, terminal_progress

__all__ = [
    "Compression",
    "Format",
    "PackageInfo",
    "Progress",
    "Relations",
    "build",
    "build_deb",
    "build_rpm",
    "terminal_progress",
]


def build_deb(
    staging: Path,
    info: PackageInfo,
    out_dir: Path,
    *,
    compression: Compression = Compression.GZIP,
    level: int | None = None,
    progress: Progress | None = None,
) -> Path:
    """Write NAME_VERSION-RELEASE_ARCH.deb into `out_dir`; return its path.

    `compression` defaults to gzip (see `Compression`), `level` to dpkg-deb's (gzip 9, xz 6);
    `progress` is called as files are written (see `terminal_progress`).
    """
    return deb.build(
        staging, info, out_dir, scripts.deb_scripts(staging, info),
        compression=compression, level=level, progress=progress,
    )  # fmt: skip


def build_rpm(
    staging: Path,
    info: PackageInfo,
    out_dir: Path,
    *,
    compression: Compression = Compression.GZIP,
    level: int | None = None,
    progress: Progress | None = None,
) -> Path:
    """Write NAME-VERSION-RELEASE.ARCH.rpm into `out_dir`; return its path."""
    return rpm.build(
        staging, info, out_dir, scripts.rpm_scriptlets(staging, info),
        compression=compression, level=level, progress=progress,
    )  # fmt: skip


def build(
    fmt: Format,
    staging: Path,
    info: PackageInfo,
    out_dir: Path,
    *,
    compression: Compression = Compression.GZIP,
    level: int | None = None,
    progress: Progress | None = None,
) -> Path:
    """Dispatch on `fmt` (what the CLI's --format wants)."""
    builder = build_deb if fmt is Format.DEB else build_rpm
    return builder(staging, info, out_dir, compression=compression, level=level, progress=progress)
