"""The service spec: one validated, frozen model read from NAME.toml.

The package's modules, one job each:

- `fields`: the value parsers every key uses, and `SpecError`;
- `model`: the enums and the frozen dataclasses (`Spec`, `App`, `Package`, ...);
- `keys`: every key declared once in the `*_KEYS` tables (name, parser, default, doc), which
  drive parsing, error messages and the spec reference in README.md (`python -m unitgen.spec.docs`),
  so they cannot drift apart;
- `ownership`: the service name and the directories it may own (issue 9.2);
- `load`: `load_spec` and `parse_spec`, the checks that span keys;
- `docs` and `starter`: the generated reference and `unitgen init`'s starter spec.

This module only re-exports the public names, so `from unitgen.spec import X` is the one import
the rest of unitgen needs.
"""

from __future__ import annotations

from unitgen.spec.keys import (
    ADDRESS_FAMILY_PATTERN,
    APP_KEYS,
    CAPABILITY_PATTERN,
    DIRECTIVE_PATTERN,
    ENTRY_PATTERN,
    ENV_NAME_PATTERN,
    EXTRA_SECTIONS,
    HARDENING_KEYS,
    LIMITS_KEYS,
    LOCK_KEYS,
    LOCK_TTL_MIN,
    OVERRIDE_KEYS,
    PACKAGE_KEYS,
    SYNOPSIS_MAX,
    SYNOPSIS_MAX_BYTES,
    TIMER_KEYS,
    TOP_KEYS,
    UNIT_NAME_PATTERN,
    USER_PATTERN,
    argv,
    directory_name,
    package_relations,
    parse_ready,
    unit_names,
    unit_value,
    venv_path,
)
from unitgen.spec.load import SPEC_FILE_MAX, load_spec, parse_spec
from unitgen.spec.model import (
    App,
    ConfigFile,
    FormatOverrides,
    Hardening,
    Limits,
    Lock,
    LockScope,
    OnContention,
    Package,
    ProtectSystem,
    Ready,
    ReadyKind,
    ReloadSignal,
    Restart,
    Spec,
    Timer,
)
from unitgen.spec.ownership import (
    NAME_PATTERN,
    SYSTEM_NAMES,
    is_own_name,
    own_directory,
    own_read_write_path,
    validate_name,
)

__all__ = [
    "ADDRESS_FAMILY_PATTERN",
    "APP_KEYS",
    "CAPABILITY_PATTERN",
    "DIRECTIVE_PATTERN",
    "ENTRY_PATTERN",
    "ENV_NAME_PATTERN",
    "EXTRA_SECTIONS",
    "HARDENING_KEYS",
    "LIMITS_KEYS",
    "LOCK_KEYS",
    "LOCK_TTL_MIN",
    "NAME_PATTERN",
    "OVERRIDE_KEYS",
    "PACKAGE_KEYS",
    "SPEC_FILE_MAX",
    "SYNOPSIS_MAX",
    "SYNOPSIS_MAX_BYTES",
    "SYSTEM_NAMES",
    "TIMER_KEYS",
    "TOP_KEYS",
    "UNIT_NAME_PATTERN",
    "USER_PATTERN",
    "App",
    "ConfigFile",
    "FormatOverrides",
    "Hardening",
    "Limits",
    "Lock",
    "LockScope",
    "OnContention",
    "Package",
    "ProtectSystem",
    "Ready",
    "ReadyKind",
    "ReloadSignal",
    "Restart",
    "Spec",
    "Timer",
    "argv",
    "directory_name",
    "is_own_name",
    "load_spec",
    "own_directory",
    "own_read_write_path",
    "package_relations",
    "parse_ready",
    "parse_spec",
    "unit_names",
    "unit_value",
    "validate_name",
    "venv_path",
]
