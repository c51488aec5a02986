"""What issue 15 adds to a rendering: the [config] files, the credential lines and check, the
python-mode credentials module, and the journal catalog. Pure, like `unitgen.render.units`.

The catalog explains the launcher's MESSAGE_IDs under `journalctl -x`. Every unitgen-made package
ships the same entries, each in a file of its own (/usr/lib/systemd/catalog/NAME.catalog), so two
packages never own the same path. `journalctl --update-catalog` accepts the same ID in several
files and merges them: it keeps one body but concatenates the header lines (measured with systemd
252: two files with `Subject:` showed it twice under `journalctl -x`). So the entries have no header
lines at all, and the body's first line says what a Subject: would. The text is one template,
templates/catalog/unitgen.catalog.j2, rendered with the IDs alone: the same bytes for every service.
"""

from __future__ import annotations

import functools
from pathlib import PurePosixPath

import jinja2

from unitgen import escape
from unitgen.launcher import fleet_guard
from unitgen.launcher.runtime import MESSAGE_ID_ALREADY_RUNNING, MESSAGE_ID_LOCK_ERROR
from unitgen.resources import launcher_file, template_root
from unitgen.spec import Spec

CATALOG_DIR = PurePosixPath("usr/lib/systemd/catalog")
# The python-mode helper, next to the launcher (sys.path[0] of the launcher's process).
CREDENTIALS_MODULE = "unitgen_credentials"
# The MESSAGE_IDs the catalog explains, by the name templates/catalog/unitgen.catalog.j2 uses.
CATALOG_IDS = {
    "already_running": MESSAGE_ID_ALREADY_RUNNING,
    "lock_error": MESSAGE_ID_LOCK_ERROR,
    "fleet_acquired": fleet_guard.MESSAGE_ID_FLEET_ACQUIRED,
    "fleet_unreachable": fleet_guard.MESSAGE_ID_FLEET_UNREACHABLE,
    "fleet_lost": fleet_guard.MESSAGE_ID_FLEET_LOST,
}

# ExecCondition= runs before anything loads the credentials (systemd 252's service_enter_condition()
# spawns it without EXEC_WRITE_CREDENTIALS), so it can say which file is missing: systemd itself
# only logs "Failed to set up credentials: Protocol error" and exit status 243/CREDENTIALS. Exit
# 255 fails the start (1 to 254 would only skip it); "<3>" makes the line PRIORITY=3.
_CHECK_SCRIPT = (
    'while [ "$#" -gt 1 ]; do '
    'if [ ! -e "$2" ]; then '
    'echo "<3>credential $1: $2 does not exist; create it (mode 0600, root) or remove the credential" >&2; '
    "exit 255; fi; shift 2; done"
)


def credential_pairs(spec: Spec) -> list[tuple[str, str]]:
    """Every credential the unit loads, plain and encrypted, with the file it comes from."""
    fleet = list(spec.lock.credentials()) if spec.lock.is_fleet else []
    return [*fleet, *spec.credentials, *spec.encrypted_credentials]


def credential_check_argv(spec: Spec) -> list[str] | None:
    """The ExecCondition= command (run with '+': as root, outside the sandbox) that fails the start
    with a journal entry naming a missing credential file; None without credentials."""
    pairs = credential_pairs(spec)
    if not pairs:
        return None
    return ["/bin/sh", "-c", _CHECK_SCRIPT, f"{spec.name}-credentials", *(w for pair in pairs for w in pair)]


def credential_check_line(spec: Spec) -> str | None:
    argv = credential_check_argv(spec)
    return None if argv is None else "+" + escape.exec_line(argv)


def config_files(spec: Spec) -> list[tuple[PurePosixPath, bytes, int]]:
    """The [config] files as staging-tree entries (path relative to the root, content, mode)."""
    return [(PurePosixPath(f.dest).relative_to("/"), f.content, f.mode) for f in spec.config]


@functools.cache
def _credentials_source() -> bytes:
    return launcher_file("credentials.py")


def credentials_module(spec: Spec, install_dir: PurePosixPath) -> list[tuple[PurePosixPath, bytes, int]]:
    """Python mode with credentials: `import unitgen_credentials` next to the launcher module."""
    if not spec.is_python_mode or not (spec.credentials or spec.encrypted_credentials):
        return []
    return [((install_dir / f"{CREDENTIALS_MODULE}.py").relative_to("/"), _credentials_source(), 0o644)]


@functools.cache
def catalog_text() -> bytes:
    """The catalog file, the same for every service (see the module docstring)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_root() / "catalog")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - a journal catalog, not HTML
    )
    return env.get_template("unitgen.catalog.j2").render(ids=CATALOG_IDS).encode("utf-8")


def catalog_file(spec: Spec) -> tuple[PurePosixPath, bytes, int]:
    return (CATALOG_DIR / f"{spec.name}.catalog", catalog_text(), 0o644)
