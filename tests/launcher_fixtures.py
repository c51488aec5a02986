"""Fixtures shared by the launcher tests (registered in conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.launcher_helpers import Receiver, short_tmpdir


@pytest.fixture
def work() -> Iterator[Path]:
    """A short, world-searchable scratch directory (AF_UNIX paths must stay under 108 bytes;
    setpriv'd helpers must reach it)."""
    with short_tmpdir() as path:
        path.chmod(0o755)
        yield path


@pytest.fixture
def journal(work: Path) -> Iterator[Receiver]:
    """A native-protocol journal receiver; point the launcher at it with UNITGEN_JOURNAL_SOCKET."""
    receiver = Receiver(work / "journal")
    yield receiver
    receiver.close()
