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


def test_zstd_is_what_dpkg_deb_and_zstd_write(tmp_path: Path) -> None:
    """The same files through dpkg-deb -Zzstd and unitgen: members named alike, the data read back
    by the real dpkg-deb and rpm2cpio, and our frames byte-identical to zstd(1) at that level."""
    result = package(tmp_path, "--compression", "zstd", "--compression-level", "5")
    assert result.returncode == 0, result.stderr
    [deb] = (tmp_path / "dist").glob("*.deb")
    [rpm] = (tmp_path / "dist").glob("*.rpm")
    members = subprocess.run(["ar", "t", deb], capture_output=True, text=True, check=True).stdout.split()
    assert members == ["debian-binary", "control.tar.zst", "data.tar.zst"]  # as dpkg-deb -Zzstd names them
    unpacked = tmp_path / "unpacked"
    subprocess.run(["dpkg-deb", "-x", deb, unpacked], check=True)
    unit = "usr/lib/systemd/system/hello.service"
    assert (unpacked / unit).read_bytes() == (tmp_path / "build/hello" / unit).read_bytes()
    requires = subprocess.run(["rpm", "-qp", "--requires", rpm], capture_output=True, text=True, check=True).stdout
    assert "rpmlib(PayloadIsZstd) <= 5.4.18-1" in requires  # what rpmbuild adds, so older rpm refuses cleanly
    cpio = subprocess.run(["rpm2cpio", rpm], capture_output=True, check=True).stdout
    assert f"./{unit}".encode() in cpio

    data = subprocess.run(["ar", "p", deb, "data.tar.zst"], capture_output=True, check=True).stdout
    tar = subprocess.run(["zstd", "-d", "-c", "-q"], input=data, capture_output=True, check=True).stdout
    again = subprocess.run(["zstd", "-5", "-c", "-q"], input=tar, capture_output=True, check=True).stdout
    assert data == again


def test_publish_reads_a_zstd_deb(tmp_path: Path) -> None:
    from unitgen.publish.debfile import read_deb

    assert package(tmp_path, "--compression", "zstd", "--format", "deb").returncode == 0
    [deb] = (tmp_path / "dist").glob("*.deb")
    assert read_deb(deb).name == "hello"


def test_zstd_without_libzstd_is_one_error_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A host without libzstd cannot be made here (dpkg and rpm link it): its loading fails instead.
    import ctypes

    from unitgen.cli import main
    from unitgen.package import zstd

    def no_library(name: str, *args: object, **kwargs: object) -> ctypes.CDLL:
        raise OSError(f"{name}: cannot open shared object file: No such file or directory")

    zstd._lib.cache_clear()
    monkeypatch.setattr(ctypes, "CDLL", no_library)
    shutil.copy(ROOT / "examples/hello/hello.toml", tmp_path / "hello.toml")
    monkeypatch.chdir(tmp_path)
    try:
        assert main(["package", "hello", "--compression", "zstd"]) == 1
    finally:
        zstd._lib.cache_clear()
    err = capsys.readouterr().err
    assert "ERROR --compression zstd needs the zstd library, libzstd" in err
    assert "apt install libzstd1" in err
    assert not (tmp_path / "dist").exists() and not (tmp_path / "build").exists()  # checked before any work
