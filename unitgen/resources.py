"""Where unitgen's Jinja templates are: inside the installed package, or the checkout's templates/.

The templates live in the top-level `templates/` folder of the source tree; the wheel maps that
folder to the `unitgen.templates` package (pyproject.toml, `package-dir`), so an installed unitgen
reads them next to its modules and a checkout (or an editable install) reads them in place.
"""

from __future__ import annotations

import functools
import os
import stat
from pathlib import Path
from typing import Any


@functools.cache
def template_root() -> Path:
    """The directory holding the built-in templates (`units/`, `system/`, `launcher/` ...)."""
    # unitgen.templates has no __init__.py (it is only data): it is the directory next to this
    # module, where the wheel puts it. By path rather than importlib.resources.files("unitgen"), the
    # same directory for a package on a file system (Jinja's loader needs one anyway), without the
    # ~3 ms importlib.resources costs every `package` process.
    here = Path(__file__).resolve().parent
    packaged = here / "templates"
    if (packaged / "units").is_dir():
        return packaged
    return here.parent / "templates"


def launcher_file(name: str) -> bytes:
    """A module of unitgen.launcher as it ships in a service's tree (runtime.py, fleet.py ...): read
    next to this module, like the templates, without importlib.resources (~3 ms of each run)."""
    return (Path(__file__).resolve().parent / "launcher" / name).read_bytes()


def private_cache_dir(name: str) -> Path | None:
    """`$XDG_CACHE_HOME/unitgen/NAME` (default `~/.cache`), created 0700, or None if unusable.

    What is cached there (compiled templates, rendered scripts) is read back as code or as code's
    output, so the directory is used only when it is a real directory (not a symbolic link) of
    this user that nobody else can write; otherwise the caller works without a cache, as before
    (a read-only or foreign home changes nothing but the speed).
    """
    try:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        directory = base / "unitgen" / name
        directory.mkdir(parents=True, mode=0o700, exist_ok=True)
        st = directory.lstat()
    except (OSError, RuntimeError):  # RuntimeError: Path.home() without HOME or passwd entry
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        return None
    return directory


@functools.cache
def bytecode_cache() -> Any:
    """A Jinja bytecode cache in `private_cache_dir("jinja")`, or None.

    Compiling the templates is most of a single `render` or `package` run (~60 ms of ~180);
    the cache keeps the compiled code per template source checksum, so an edited or overriding
    template is compiled anew. Without a private directory templates are compiled every time.
    """
    import jinja2  # the base of the package must stay light; callers already use Jinja

    directory = private_cache_dir("jinja")
    return None if directory is None else jinja2.FileSystemBytecodeCache(str(directory))
