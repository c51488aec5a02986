"""Render the launcher script for one service: the launcher module's source plus its settings.

The rendered file is the module `unitgen.launcher.runtime` verbatim (up to its own `__main__` block),
preceded by a shebang and followed by the settings as a Python literal and an entry point. The
settings are written with `repr()` of plain str/int/float/bool/None values and lists of str only,
so no value can become code, and in a fixed key order, so the same settings give the same bytes.

The shebang runs the interpreter with `-I` (isolated mode): no PYTHONPATH/PYTHONHOME/PYTHON*
variables, no user site-packages, no script directory on sys.path. That keeps start-up fast and
keeps a root-started process from importing whatever the environment points at. The interpreter's
own site-packages stay on sys.path, so a virtual environment's interpreter
(`python=/opt/app/venv/bin/python`) still sees what is installed in the venv: a python-mode app
must be installed into the interpreter's environment, not found via PYTHONPATH or the current
directory.
"""

from __future__ import annotations

import functools
import math
from importlib import resources

import jinja2

from unitgen.errors import UnitgenError
from unitgen.launcher.runtime import OPTIONAL_SETTINGS, SETTINGS_KEYS, LauncherSettings, check_settings, parse_ready
from unitgen.resources import template_root

TEMPLATE = "launcher/launcher.py.j2"
CUT_MARKER = "# unitgen: the renderer cuts the file here"


def notify_access(settings: LauncherSettings) -> str:
    """`NotifyAccess=` the unit needs: "all" when a watcher process (not the main PID) sends READY=1."""
    kind = parse_ready(settings["ready"])[0]
    watcher = settings["mode"] == "exec" and kind in ("tcp", "path") and not settings["oneshot"]
    return "all" if watcher else "main"


@functools.cache
def launcher_source() -> str:
    """The launcher module's source without its direct-run `__main__` block."""
    source = resources.files("unitgen.launcher").joinpath("runtime.py").read_text(encoding="utf-8")
    head, marker, _ = source.partition(CUT_MARKER)
    if not marker:
        raise AssertionError(f"unitgen/launcher/runtime.py lost its marker line {CUT_MARKER!r}")
    return head.rstrip() + "\n"


@functools.cache
def _template() -> jinja2.Template:
    # Compiled once per process: a batch render of many services shares it.
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_root())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - renders Python source, not HTML
    )
    return env.get_template(TEMPLATE)


def _literal(key: str, value: object) -> str:
    if value is None or type(value) in (str, int, bool):
        return repr(value)
    if type(value) is float:
        if not math.isfinite(value):
            raise UnitgenError(f"launcher setting {key} must be a finite number, not {value!r}")
        return repr(value)
    if type(value) is list and all(type(item) is str for item in value):
        return repr(value)
    raise UnitgenError(f"launcher setting {key} has unsupported type {type(value).__name__}")


def settings_literal(settings: LauncherSettings) -> str:
    """The settings as a Python dict literal, one key per line, in SETTINGS_KEYS order."""
    values: dict[str, object] = {**OPTIONAL_SETTINGS, **settings}
    unknown = sorted(set(values) - set(SETTINGS_KEYS))
    missing = sorted(set(SETTINGS_KEYS) - set(values))
    if unknown or missing:
        raise UnitgenError(f"launcher settings: missing {missing}, unknown {unknown}")
    lines = [f"    {key!r}: {_literal(key, values[key])},\n" for key in SETTINGS_KEYS]
    return "{\n" + "".join(lines) + "}"


def _check_python(python: str) -> None:
    if not python.startswith("/") or any(c.isspace() or not c.isprintable() for c in python):
        raise UnitgenError(
            f"launcher interpreter {python!r} must be an absolute path without spaces",
            hint="use e.g. /usr/bin/python3 or /opt/NAME/venv/bin/python",
        )


def render_launcher(settings: LauncherSettings, *, python: str = "/usr/bin/python3") -> str:
    """The complete source of the launcher script for one service."""
    _check_python(python)
    literal = settings_literal(settings)  # type checks first: check_settings assumes plain values
    problem = check_settings(settings)
    if problem is not None:
        raise UnitgenError(f"launcher settings for {settings['name']!r}: {problem}")
    return _template().render(python=python, module_source=launcher_source(), settings_literal=literal)
