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
import importlib
from pathlib import Path
from typing import Any

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


# Each format: its writer and its maintainer scripts (module, function). Everything else is
# shared. Imported when a package of that format is built: `--format deb` never loads the rpm writer.
_FORMATS = {
    Format.DEB: (("unitgen.package.deb", "build"), ("unitgen.package.scripts", "deb_scripts")),
    Format.RPM: (("unitgen.package.rpm", "build"), ("unitgen.package.scripts", "rpm_scriptlets")),
}


def _load(where: tuple[str, str]) -> Any:
    module, name = where
    return getattr(importlib.import_module(module), name)


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
    writer, maintainer_scripts = (_load(where) for where in _FORMATS[fmt])
    package: Path = writer(
        staging, info, out_dir, maintainer_scripts(staging, info),
        compression=compression, level=level, progress=progress,
    )  # fmt: skip
    return package


build_deb = functools.partial(build, Format.DEB)
build_rpm = functools.partial(build, Format.RPM)
