"""Write a rendered staging tree to disk atomically: all of it, or nothing.

The files go into a fresh temporary directory next to the target first; only when every file
is written does it replace the target, by rename. An error leaves the previous tree (or no
tree) in place, never a mix.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from unitgen.errors import UnitgenError
from unitgen.render import RenderedFile


def write_tree(
    files: Iterable[RenderedFile], out_dir: Path, *, fill: Callable[[Path], object] | None = None
) -> list[Path]:
    """Replace `out_dir` with exactly `files`; returns the written paths. `fill`, if given, adds
    more to the new tree (the app's venv) before it replaces the old one, so it is atomic too."""
    out_dir = out_dir.absolute()
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    except OSError as exc:
        raise UnitgenError(f"cannot write the staging tree {out_dir}: {exc.strerror}", hint="use --out DIR") from exc
    written = []
    try:
        tmp.chmod(0o755)  # a staging tree is world-readable like the target /usr
        for f in files:
            target = tmp / f.path
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            target.write_bytes(f.content)
            target.chmod(f.mode)
            written.append(out_dir / f.path)
        if fill is not None:
            fill(tmp)
        old = None
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old.{os.getpid()}")
            out_dir.rename(old)
        tmp.rename(out_dir)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return written
