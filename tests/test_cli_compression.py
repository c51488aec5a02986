"""`unitgen package --compression/--compression-level`, read back with the real dpkg-deb and rpm."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def package(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    shutil.copy(ROOT / "examples/hello/hello.toml", tmp_path / "hello.toml")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "unitgen", "package", "hello", *extra]
    return subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True)


@pytest.mark.parametrize(
    ("extra", "member", "compressor", "level"),
    [
        pytest.param([], "data.tar.gz", "gzip", "6", id="default-gzip-6"),
        pytest.param(["--compression", "xz"], "data.tar.xz", "xz", "6", id="xz"),
        pytest.param(["--compression", "gzip", "--compression-level", "1"], "data.tar.gz", "gzip", "1", id="gzip-1"),
    ],
)
def test_compression_reaches_both_formats(
    tmp_path: Path, extra: list[str], member: str, compressor: str, level: str
) -> None:
    result = package(tmp_path, *extra)
    assert result.returncode == 0, result.stderr
    [deb] = (tmp_path / "dist").glob("*.deb")
    [rpm] = (tmp_path / "dist").glob("*.rpm")
    members = subprocess.run(["ar", "t", deb], capture_output=True, text=True, check=True).stdout.split()
    assert member in members
    subprocess.run(["dpkg-deb", "--fsys-tarfile", deb], capture_output=True, check=True)  # dpkg reads it
    query = "%{PAYLOADCOMPRESSOR} %{PAYLOADFLAGS}"
    got = subprocess.run(["rpm", "-qp", "--qf", query, rpm], capture_output=True, text=True, check=True).stdout
    assert got == f"{compressor} {level}"
    subprocess.run(["rpm2cpio", rpm], capture_output=True, check=True)  # rpm reads it


@pytest.mark.parametrize("bad", ["0", "10", "x", "-1"])
def test_a_level_outside_1_to_9_is_a_usage_error(tmp_path: Path, bad: str) -> None:
    result = package(tmp_path, "--compression-level", bad)
    assert result.returncode == 2
    assert "level from 1 to 9" in result.stderr
    assert not (tmp_path / "dist").exists()
