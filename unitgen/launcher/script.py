"""Render the launcher for one service: a small executable stub and the launcher module.

The module, `unitgen_launcher.py`, is `unitgen.launcher.runtime` verbatim (up to its own
`__main__` block); it is the same file for every service and is installed next to the stub, in
the service's private directory `/usr/libexec/NAME/`. The stub, `NAME-launcher`, holds the
service's settings as a Python literal and calls the module's `main()`. The settings are written
with `repr()` of plain str/int/float/bool/None values and lists of str only, so no value can become
code, and in a fixed key order, so the same settings give the same bytes.

Why two files: Python compiles a script run as `__main__` from source at every start and never
caches it, while an imported module's bytecode is read from `__pycache__`. The package compiles
that bytecode after install (`compile_argv`, as it does the app's venv) and removes it before
removal (`cleanup_argv`), so the package ships none and purge leaves nothing; without it (a staging
tree run by hand) the launcher works the same, only slower to start.

The stub runs the interpreter with `-IS` (one shebang argument: Linux passes `-I -S` as one
word). `-I` (isolated mode): no PYTHONPATH/PYTHONHOME/PYTHON* variables, no user site-packages,
no script directory on sys.path, so a root-started process never imports whatever the
environment points at. `-S`: no `site` at start-up (a millisecond and more that exec mode never
needs); python mode runs `site.main()` itself before importing the app, so a virtual
environment's interpreter (`python=/opt/app/venv/bin/python`) still sees what is installed in the
venv: a python-mode app must be installed into the interpreter's environment, not found via
PYTHONPATH or the current directory. The stub finds the module through the real path of its own
file, so a symbolic link to the stub works too.
"""

from __future__ import annotations

import functools
import math

import jinja2

from unitgen.errors import UnitgenError
from unitgen.launcher.runtime import (
    FLEET_SETTINGS,
    OPTIONAL_SETTINGS,
    SETTINGS_KEYS,
    LauncherSettings,
    check_settings,
    parse_ready,
)
from unitgen.resources import bytecode_cache, launcher_file, template_root

TEMPLATE = "launcher/launcher.py.j2"
MODULE = "unitgen_launcher"
"""The launcher module's name; the stub imports it from its own directory."""
CUT_MARKER = "# unitgen: the renderer cuts the file here"


def notify_access(settings: LauncherSettings) -> str:
    """`NotifyAccess=` the unit needs: "all" when a watcher process (not the main PID) sends READY=1."""
    kind = parse_ready(settings["ready"])[0]
    watcher = settings["mode"] == "exec" and kind in ("tcp", "path") and not settings["oneshot"]
    return "all" if watcher else "main"


@functools.cache
def launcher_source() -> str:
    """The launcher module's source without its direct-run `__main__` block."""
    source = launcher_file("runtime.py").decode("utf-8")
    head, marker, _ = source.partition(CUT_MARKER)
    if not marker:
        raise AssertionError(f"unitgen/launcher/runtime.py lost its marker line {CUT_MARKER!r}")
    return head.rstrip() + "\n"


@functools.cache
def _template() -> jinja2.Template:
    # Compiled once per process: a batch render of many services shares it.
    env = jinja2.Environment(
        bytecode_cache=bytecode_cache(),
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
    unknown = sorted(set(values) - set(SETTINGS_KEYS) - set(FLEET_SETTINGS))
    missing = sorted(set(SETTINGS_KEYS) - set(values))
    if unknown or missing:
        raise UnitgenError(f"launcher settings: missing {missing}, unknown {unknown}")
    # The fleet lock's settings only when there is one: a host-scope stub stays as it was.
    fleet = [key for key, absent in FLEET_SETTINGS.items() if values.get(key, absent) != absent]
    lines = [f"    {key!r}: {_literal(key, values[key])},\n" for key in (*SETTINGS_KEYS, *fleet)]
    return "{\n" + "".join(lines) + "}"


def _check_python(python: str) -> None:
    if not python.startswith("/") or any(c.isspace() or not c.isprintable() for c in python):
        raise UnitgenError(
            f"launcher interpreter {python!r} must be an absolute path without spaces",
            hint="use e.g. /usr/bin/python3 or /opt/NAME/venv/bin/python",
        )


def render_launcher(settings: LauncherSettings, *, python: str = "/usr/bin/python3") -> str:
    """The source of the launcher stub (the executable) for one service."""
    _check_python(python)
    literal = settings_literal(settings)  # type checks first: check_settings assumes plain values
    problem = check_settings(settings)
    if problem is not None:
        raise UnitgenError(f"launcher settings for {settings['name']!r}: {problem}")
    return stub_source(python, literal)


def stub_source(python: str, literal: str) -> str:
    """The stub around a settings literal (render_launcher checks both first)."""
    return _template().render(python=python, module=MODULE, settings_literal=literal)


def install_dir(name: str) -> str:
    """The service's private launcher directory (FHS 3.0 /usr/libexec): the stub and the module."""
    return f"/usr/libexec/{name}"


def module_file(directory: str) -> str:
    """Where the launcher module lives for a stub installed in `directory`."""
    return f"{directory.rstrip('/')}/{MODULE}.py"


def compile_argv(python: str, directory: str) -> tuple[str, ...]:
    """Compile the bytecode of the launcher's modules (every *.py in `directory`, not below it:
    modules deployed next to unitgen_launcher.py are covered too) into `directory`/__pycache__,
    with the interpreter that runs them (the cache tag names its version). Checked-hash pycs
    (PEP 552), like the app's: packages built with one SOURCE_DATE_EPOCH give every file the same
    mtime, so a timestamp pyc could pass for a changed file of the same size; an admin's edit of
    a module is noticed."""
    return (python, "-I", "-m", "compileall", "-q", "-f", "-l", "--invalidation-mode", "checked-hash", directory)


def cleanup_argv(directory: str) -> tuple[str, ...]:
    """Remove the compiled bytecode (before removal, an upgrade, and recompiling): the package
    does not own `__pycache__`, which would otherwise keep `directory` from being removed.
    `find -exec rm`, like the app venv's clean-up: rpmlint takes a bare `rm` in a scriptlet for a
    dangerous command."""
    return ("find", directory, "-maxdepth", "1", "-type", "d", "-name", "__pycache__", "-exec", "rm", "-rf", "{}", "+")


# Where lintian expects maintainer scripts to name commands without their path (Debian policy 6.1).
_PATH_DIRECTORIES = ("/usr/bin", "/bin", "/usr/sbin", "/sbin")


def lintian_overrides(python: str) -> tuple[str, ...]:
    """The deb's lintian overrides for `compile_argv`, each `TAG CONTEXT # why`."""
    if python.rpartition("/")[0] not in _PATH_DIRECTORIES:
        return ()
    return (
        f"command-with-path-in-maintainer-script {python} (plain script) [postinst:*]"
        " # the launcher's bytecode must be compiled by the interpreter that runs it (its cache tag"
        " names the version), not by whichever python comes first in PATH (/usr/local/bin)",
    )
