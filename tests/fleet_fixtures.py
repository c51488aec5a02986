"""Fixtures shared by the fleet lock tests (registered in conftest.py)."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.etcd_cluster import EtcdCluster, running_cluster


@pytest.fixture
def etcd_cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    """A fresh, healthy 3-member etcd cluster on 127.0.0.1; every member killed at teardown."""
    yield from running_cluster(tmp_path)


@pytest.fixture
def launched() -> Iterator[list[subprocess.Popen[str]]]:
    """Append the processes a test starts; at teardown each still running is killed, by its PID
    (continued first, in case the test left it stopped), and reaped."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.send_signal(signal.SIGCONT)
            p.kill()
        p.communicate(timeout=20)
