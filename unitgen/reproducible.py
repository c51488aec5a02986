"""Build timestamps from SOURCE_DATE_EPOCH (reproducible-builds.org), shared by the app payload and
the packagers."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

from unitgen.errors import UnitgenError


def source_date_epoch(environ: Mapping[str, str] | None = None) -> int | None:
    """SOURCE_DATE_EPOCH (reproducible-builds.org/specs/source-date-epoch), or None when unset."""
    value = (os.environ if environ is None else environ).get("SOURCE_DATE_EPOCH")
    if value is None or value == "":
        return None
    try:
        epoch = int(value)
    except ValueError:
        raise UnitgenError(f"SOURCE_DATE_EPOCH is not an integer: {value!r}") from None
    if epoch < 0:
        raise UnitgenError(f"SOURCE_DATE_EPOCH is negative: {value!r}")
    return epoch


def build_time(epoch: int | None) -> int:
    return int(time.time()) if epoch is None else epoch
