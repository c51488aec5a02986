"""The .rpm writer (in progress)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def build(*args: Any, **kwargs: Any) -> Path:
    raise NotImplementedError("rpm writer not written yet")
