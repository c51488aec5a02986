"""Run the unitgen command as a user does, and read its --json document against the schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema

ROOT = Path(__file__).parent.parent
SCHEMA = json.loads((ROOT / "schemas/unitgen-output.schema.json").read_text())


def unitgen(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m unitgen ARGS` in `cwd`, this checkout's unitgen first on the path."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "unitgen", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def document(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The whole of stdout is one JSON document, and the schema accepts it."""
    doc = json.loads(result.stdout)
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    return doc  # type: ignore[no-any-return]


def try_example(name: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`unitgen try NAME` on examples/NAME/NAME.toml, its staging tree in tmp_path; it must succeed."""
    spec = ROOT / "examples" / name / f"{name}.toml"
    result = unitgen("try", name, "--spec", str(spec), "--out", str(tmp_path / "stage"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    return result
