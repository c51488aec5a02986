"""Which files a publish may remove: only its own, in the pool it writes."""

from __future__ import annotations

from pathlib import Path


def pool_file(root: Path, relative: str, top: str) -> Path | None:
    """`root/relative` when `relative` is a plain path below `top` (the pool directory unitgen
    writes), else None. Removals follow names read back from published indices: whatever such an
    index says (`../../etc/x`, an absolute path), it can only make unitgen remove what it put in
    its own pool."""
    parts = relative.split("/")
    if parts[0] != top or len(parts) < 2 or any(p in ("", ".", "..") for p in parts):
        return None
    return root / relative
