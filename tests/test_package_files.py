"""The package model and the shared file pipeline (no packaging tools needed)."""

from __future__ import annotations

import gzip
import io
import lzma
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_package_helpers import NAME, make_info, make_staging
from unitgen.errors import UnitgenError
from unitgen.package import Compression, Format, Relations, build_deb, build_rpm, terminal_progress
from unitgen.package.files import Kind, collect, installed_size_kib, link_target
from unitgen.package.model import to_rpm
from unitgen.package.stream import compressed
from unitgen.reproducible import source_date_epoch


@pytest.mark.parametrize(
    ("deb", "rpm"),
    [
        pytest.param("python3", "python3", id="plain"),
        pytest.param("python3 (>= 3.11)", "python3 >= 3.11", id="ge"),
        pytest.param("libfoo (<< 2)", "libfoo < 2", id="strictly-less"),
        pytest.param("a (= 1.0-1)", "a = 1.0-1", id="equal"),
        pytest.param("systemd | systemd-sysusers", "(systemd or systemd-sysusers)", id="alternatives"),
    ],
)
def test_relations_translate_to_rpm(deb: str, rpm: str) -> None:
    assert to_rpm(deb) == rpm


def test_per_format_override_replaces_the_common_list() -> None:
    info = make_info(depends=("python3",), rpm=Relations(depends=("python3.11",)))
    assert info.relations(Format.DEB).depends == ("python3",)
    assert info.relations(Format.RPM).depends == ("python3.11",)
    assert info.relations(Format.RPM).recommends == ()


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"name": "Bad_Name"}, id="name"),
        pytest.param({"version": "1.0-2"}, id="dash-in-version"),
        pytest.param({"release": ""}, id="empty-release"),
        pytest.param({"summary": "two\nlines"}, id="summary"),
        pytest.param({"units": ("foo@.service",)}, id="template-unit"),
        pytest.param({"purge": ("/var/lib",)}, id="purge-system-dir"),
        pytest.param({"purge": ("var/lib/x",)}, id="purge-relative"),
        pytest.param({"sysusers": ("/usr/lib/sysusers.d/x.conf",)}, id="sysusers-path"),
        pytest.param({"depends": ("python3 >= 3",)}, id="rpm-syntax-in-common"),
    ],
)
def test_invalid_package_info_is_a_user_error(change: dict[str, Any]) -> None:
    with pytest.raises(UnitgenError):
        make_info(**change)


def test_timer_packages_enable_only_the_timer() -> None:
    info = make_info(units=(f"{NAME}.service", f"{NAME}.timer"), timer=True)
    assert info.enable_units == (f"{NAME}.timer",)
    assert info.rpm_architecture == "noarch"


def test_pipeline_sorts_normalises_and_adds_parents(tmp_path: Path) -> None:
    staging = make_staging(tmp_path / "st")
    (staging / "etc/default" / NAME).chmod(0o664)
    secret = staging / f"etc/{NAME}/token"
    secret.parent.mkdir()
    secret.write_text("s3cret\n")
    secret.chmod(0o640)
    (staging / "run" / NAME).mkdir(parents=True)
    (staging / "usr/bin").mkdir()
    (staging / "usr/bin" / NAME).symlink_to(f"../libexec/{NAME}/{NAME}-launcher")
    os.utime(staging / "etc/default" / NAME, (2_000_000_000, 2_000_000_000))

    entries = collect(staging, epoch=1_700_000_000)
    paths = [e.path for e in entries]
    assert paths == sorted(paths, key=str.encode)
    by = {e.path: e for e in entries}
    for path in paths:  # every parent directory is present and comes first
        parent = path.rpartition("/")[0]
        assert not parent or paths.index(parent) < paths.index(path)
    assert by[f"etc/default/{NAME}"].mode == 0o644 and by[f"etc/default/{NAME}"].config
    assert by[f"etc/{NAME}/token"].mode == 0o600
    assert by[f"usr/libexec/{NAME}/{NAME}-launcher"].mode == 0o755
    assert by[f"run/{NAME}"].ghost and by[f"run/{NAME}"].kind is Kind.DIR
    assert by[f"usr/bin/{NAME}"].kind is Kind.SYMLINK
    assert by[f"usr/bin/{NAME}"].target == f"../libexec/{NAME}/{NAME}-launcher"
    assert max(e.mtime for e in entries) <= 1_700_000_000  # clamped
    assert by["usr/lib"].system and not by[f"usr/libexec/{NAME}"].system
    assert installed_size_kib(entries) == sum(1 for e in entries if e.kind is not Kind.FILE) + sum(
        (e.size + 1023) // 1024 for e in entries if e.kind is Kind.FILE
    )


def test_pipeline_refuses_what_it_cannot_package(tmp_path: Path) -> None:
    staging = make_staging(tmp_path / "st")
    os.mkfifo(staging / "usr/lib/fifo")
    with pytest.raises(UnitgenError, match="not a file"):
        collect(staging, epoch=None)
    (staging / "usr/lib/fifo").unlink()
    with pytest.raises(UnitgenError, match="already has"):
        collect(staging, epoch=None, extra={f"etc/default/{NAME}": (b"x", 0o644)})
    (staging / "run").mkdir()
    (staging / "run/pidfile").write_text("1\n")
    with pytest.raises(UnitgenError, match="tmpfs"):
        collect(staging, epoch=None)
    with pytest.raises(UnitgenError, match="does not exist"):
        collect(tmp_path / "missing", epoch=None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [pytest.param(None, None, id="unset"), pytest.param("", None, id="empty"), pytest.param("42", 42, id="set")],
)
def test_source_date_epoch(value: str | None, expected: int | None) -> None:
    assert source_date_epoch({} if value is None else {"SOURCE_DATE_EPOCH": value}) == expected


def test_source_date_epoch_must_be_an_integer() -> None:
    with pytest.raises(UnitgenError):
        source_date_epoch({"SOURCE_DATE_EPOCH": "yesterday"})


_SEGMENT = st.text(alphabet="ab-._/", min_size=1, max_size=4).filter(lambda s: "/" not in s and s not in (".", ".."))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(_SEGMENT, min_size=1, max_size=4), min_size=1, max_size=12))
def test_parents_always_precede_children(tmp_path_factory: pytest.TempPathFactory, trees: list[list[str]]) -> None:
    root = tmp_path_factory.mktemp("tree")
    for parts in trees:
        path = root.joinpath(*parts)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x")
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            continue
    paths = [e.path for e in collect(root, epoch=0)]
    seen: set[str] = set()
    for rel in paths:
        parent = rel.rpartition("/")[0]
        assert not parent or parent in seen
        seen.add(rel)
    assert len(paths) == len(set(paths))


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_only_on_a_terminal_and_only_for_big_builds() -> None:
    assert terminal_progress("x", io.StringIO()) is None
    out = _Tty()
    progress = terminal_progress("unitgen deb", out)
    assert progress is not None
    progress(1, 100)  # a small build: silent
    assert out.getvalue() == ""
    big = 64 << 20
    progress(big // 4, big)
    assert "unitgen deb:  25% (16/64 MiB)" in out.getvalue()
    progress(big, big)
    assert out.getvalue().endswith("\r\033[K")  # the line is cleared when done


@pytest.mark.parametrize("build", [pytest.param(build_deb, id="deb"), pytest.param(build_rpm, id="rpm")])
def test_writers_report_progress(tmp_path: Path, build: Callable[..., Path]) -> None:
    calls: list[tuple[int, int]] = []
    build(make_staging(tmp_path / "st"), make_info(), tmp_path / "dist", progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1][0] == calls[-1][1] > 0
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_timer_without_a_timer_unit_is_refused() -> None:
    with pytest.raises(UnitgenError, match="timer"):
        make_info(timer=True)


class _Full:
    def write(self, data: bytes, /) -> int:
        raise OSError(28, "No space left on device")


def unzstd(data: bytes) -> bytes:
    """The real zstd(1), not our own reader."""
    return subprocess.run(["zstd", "-d", "-c", "-q"], input=data, capture_output=True, check=True).stdout


@pytest.mark.parametrize("compression", [pytest.param(c, id=c.value) for c in Compression])
def test_compression_pipeline_round_trips_and_reports_write_errors(compression: Compression) -> None:
    data = bytes(range(256)) * 20_000  # 5 MiB: several chunks through the worker
    out = io.BytesIO()
    with compressed(out, compression) as stream:
        stream.write(data[:100])
        stream.write(data[100:])
    decompress = {Compression.GZIP: gzip.decompress, Compression.XZ: lzma.decompress, Compression.ZSTD: unzstd}
    assert decompress[compression](out.getvalue()) == data
    with pytest.raises(OSError, match="No space"), compressed(_Full(), compression) as stream:
        for _ in range(10):
            stream.write(data)


@pytest.mark.parametrize("compression", [pytest.param(c, id=c.value) for c in Compression])
def test_a_stream_below_one_chunk_is_compressed_without_a_thread(compression: Compression) -> None:
    """A small tree's data (and every control.tar): no worker thread to start and join."""
    data = b"unit file text\n" * 1000
    out = io.BytesIO()
    with compressed(out, compression) as stream:
        stream.write(data)
        assert stream.worker is None  # type: ignore[attr-defined]
    decompress = {Compression.GZIP: gzip.decompress, Compression.XZ: lzma.decompress, Compression.ZSTD: unzstd}
    assert decompress[compression](out.getvalue()) == data
    with pytest.raises(OSError, match="No space"), compressed(_Full(), compression) as stream:
        stream.write(data)  # the error comes from the end of the stream, in the caller


def test_compression_pipeline_stops_when_the_producer_fails() -> None:
    with pytest.raises(KeyError), compressed(io.BytesIO(), Compression.GZIP) as stream:
        stream.write(b"x" * (3 << 20))
        raise KeyError("producer failed")


@pytest.mark.parametrize(
    ("path", "target", "expected"),
    [
        pytest.param("usr/lib/app/venv/bin/python3", "/usr/bin/python3", "../../../../bin/python3", id="same-top"),
        pytest.param("usr/sbin/app", "/usr/libexec/app/app-launcher", "../libexec/app/app-launcher", id="sibling"),
        pytest.param("usr/lib/app/config", "/etc/app", "/etc/app", id="other-top-stays-absolute"),
        pytest.param("usr/bin/app", "../lib/app/run", "../lib/app/run", id="relative-untouched"),
        pytest.param("usr/bin/x", "/usr//bin/./y", "y", id="normalised"),
    ],
)
def test_symlinks_follow_debian_policy(path: str, target: str, expected: str) -> None:
    assert link_target(path, target) == expected


def test_description_is_wrapped_for_lintian_and_rpmlint() -> None:
    long = "word " * 40
    info = make_info(description=f"{long}\n\n  verbatim    line\n  kept\n\nshort")
    paragraphs = info.wrapped_description.split("\n\n")
    assert all(len(line) <= 79 for line in paragraphs[0].splitlines())
    assert len(paragraphs[0].splitlines()) > 1
    assert paragraphs[1] == "  verbatim    line\n  kept"
    assert paragraphs[2] == "short"


PACKAGER_ONLY = """
import pickle, sys
from pathlib import Path
from unitgen.package import build
fmt, staging, info, out = pickle.loads(Path(sys.argv[1]).read_bytes())
build(fmt, staging, info, out)
print(" ".join(sorted(sys.modules)))
"""


@pytest.mark.parametrize(
    ("fmt", "other"),
    [
        pytest.param(Format.DEB, "unitgen.package.rpm", id="deb"),
        pytest.param(Format.RPM, "unitgen.package.deb", id="rpm"),
    ],
)
def test_a_package_build_loads_only_the_packager(tmp_path: Path, fmt: Format, other: str) -> None:
    """Packaging a staging tree is most of a small `unitgen package`'s time in imports: it loads
    neither the spec, the renderer nor the launcher, no other format's writer, no ctypes (zstd
    only) and no importlib.resources (templates are found by path)."""
    import pickle
    import sys

    job = tmp_path / "job.pickle"
    job.write_bytes(pickle.dumps((fmt, make_staging(tmp_path / "st"), make_info(), tmp_path / "dist")))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    result = subprocess.run(
        [sys.executable, "-c", PACKAGER_ONLY, job], env=env, capture_output=True, text=True, check=True
    )
    loaded = set(result.stdout.split())
    assert "unitgen.package.scripts" in loaded  # the build ran
    unwanted = {"unitgen.spec", "unitgen.render", "unitgen.launcher", other, "unitgen.package.zstd", "ctypes"}
    assert loaded & (unwanted | {"importlib.resources"}) == set()
