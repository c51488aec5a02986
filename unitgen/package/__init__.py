"""Build .deb and .rpm packages from a staging tree, in pure Python.

    from unitgen.package import PackageInfo, build_deb, build_rpm
    deb = build_deb(Path("build/staging"), info, Path("dist"))

One model (`PackageInfo`), one file pipeline (`files.collect`), one small writer per format
(`deb`, `rpm`), the maintainer scripts rendered from templates (`scripts`). With
SOURCE_DATE_EPOCH set, the output is byte-for-byte reproducible.
"""

from __future__ import annotations

from pathlib import Path

from unitgen.package import deb, rpm, scripts
from unitgen.package.model import Compression, Format, PackageInfo, Relations

__all__ = ["Compression", "Format", "PackageInfo", "Relations", "build", "build_deb", "build_rpm"]


def build_deb(
    staging: Path,
    info: PackageInfo,
    out_dir: Path,
    *,
    compression: Compression = Compression.XZ,
    level: int | None = None,
) -> Path:
    """Write NAME_VERSION-RELEASE_ARCH.deb into `out_dir`; return its path."""
    return deb.build(staging, info, out_dir, scripts.deb_scripts(staging, info), compression=compression, level=level)


def build_rpm(
    staging: Path,
    info: PackageInfo,
    out_dir: Path,
    *,
    compression: Compression = Compression.XZ,
    level: int | None = None,
) -> Path:
    """Write NAME-VERSION-RELEASE.ARCH.rpm into `out_dir`; return its path."""
    return rpm.build(
        staging, info, out_dir, scripts.rpm_scriptlets(staging, info), compression=compression, level=level
    )


def build(
    fmt: Format,
    staging: Path,
    info: PackageInfo,
    out_dir: Path,
    *,
    compression: Compression = Compression.XZ,
    level: int | None = None,
) -> Path:
    """Dispatch on `fmt` (what the CLI's --format wants)."""
    builder = build_deb if fmt is Format.DEB else build_rpm
    return builder(staging, info, out_dir, compression=compression, level=level)
