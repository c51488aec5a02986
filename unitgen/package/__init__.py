"""Build .deb and .rpm packages from a staging tree, in pure Python.

    from unitgen.package import PackageInfo, build_deb, build_rpm
    deb = build_deb(Path("build/staging"), info, Path("dist"))

One model (`PackageInfo`), one file pipeline (`files.collect`), one small writer per format
(`deb`, `rpm`), the maintainer scripts rendered from templates (`scripts`). With
SOURCE_DATE_EPOCH set, the output is byte-for-byte reproducible. Problems a user can fix (a bad
staging tree, a unit named in `PackageInfo.units` that the tree lacks) raise `UnitgenError`.
"""

from __future__ import annotations

import functools
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


# Each format: its writer and its maintainer scripts. Everything else is shared.
_FORMATS = {
    Format.DEB: (deb.build, scripts.deb_scripts),
    Format.RPM: (rpm.build, scripts.rpm_scriptlets),
}


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
    """Write the `fmt` package of `staging` into `out_dir` and return its path:
    NAME_VERSION-RELEASE_ARCH.deb or NAME-VERSION-RELEASE.ARCH.rpm.

    `compression` defaults to gzip, `level` to 6 (see `Compression` for why); `progress` is called
    as files are written (see `terminal_progress`).
    """
    writer, maintainer_scripts = _FORMATS[fmt]
    return writer(
        staging, info, out_dir, maintainer_scripts(staging, info),
        compression=compression, level=level, progress=progress,
    )  # fmt: skip


build_deb = functools.partial(build, Format.DEB)
build_rpm = functools.partial(build, Format.RPM)
