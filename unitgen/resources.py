"""Where unitgen's Jinja templates are: inside the installed package, or the checkout's templates/.

The templates live in the top-level `templates/` folder of the source tree; the wheel maps that
folder to the `unitgen.templates` package (pyproject.toml, `package-dir`), so an installed unitgen
reads them with importlib.resources and a checkout (or an editable install) reads them in place.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path


@functools.cache
def template_root() -> Path:
    """The directory holding the built-in templates (`units/`, `system/`, `launcher/` ...)."""
    # unitgen.templates has no __init__.py (it is only data), so ask the regular package for it.
    packaged = Path(str(resources.files("unitgen").joinpath("templates")))
    if (packaged / "units").is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "templates"
