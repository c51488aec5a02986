"""Benchmark: unitgen's pure-Python packagers against dpkg-deb and rpmbuild, on the same tree.

    .venv/bin/python bench/bench_package.py [--files 3000] [--mib 40] [--runs 5] [--compression gzip xz]

One run builds a staging tree (a unit, launcher, sysusers file, conffile and README plus a generated
payload of a few thousand files, tens of MiB, part text and part incompressible) and then, for
each compression, alternates the builders `--runs` times and prints medians and ratios.

Fairness, stated:
- Same compression and level on both sides: unitgen's default, gzip -6, or xz -6
  single-threaded. Python's lzma has no threads, so dpkg-deb gets `--threads-max=1` and
  rpmbuild `w6.xzdio` (no T: one thread); dpkg-deb's default would use every core.
- dpkg-deb packs a prepared tree (staging + DEBIAN/control), prepared outside the timing; it
  writes no md5sums (debhelper's dh_md5sums does), unitgen writes them, so unitgen does more.
- rpmbuild runs `rpmbuild -bb` of a spec whose %install hard-links the staging tree into the
  buildroot (`cp -al`, near free) and whose brp post-install scripts are off (they would change
  the content, so the packages would not be equivalent); its per-file classification and
  dependency generators are part of what rpmbuild is, and are measured.
Goals from the issue: deb within 1.5x of dpkg-deb, rpm at least 2x faster than rpmbuild.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from unitgen.package import Compression, PackageInfo, build_deb, build_rpm, terminal_progress
from unitgen.run import run

NAME = "benchsvc"
SERVICE_FILES = {
    f"usr/lib/systemd/system/{NAME}.service": (
        f"[Unit]\nDescription=benchmark service\n\n[Service]\nType=notify\n"
        f"ExecStart=/usr/libexec/{NAME}/{NAME}-launcher\nUser={NAME}\n\n[Install]\nWantedBy=multi-user.target\n",
        0o644,
    ),
    f"usr/lib/sysusers.d/{NAME}.conf": (f'u {NAME} - "benchmark service" /var/lib/{NAME}\n', 0o644),
    f"usr/libexec/{NAME}/{NAME}-launcher": ("#!/usr/bin/python3\nimport time\ntime.sleep(1e9)\n", 0o755),
    f"etc/default/{NAME}": ("# options\n", 0o644),
    f"usr/share/doc/{NAME}/README": ("A service to benchmark packaging with.\n", 0o644),
}


def make_staging(root: Path) -> Path:
    for rel, (text, mode) in SERVICE_FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
    return root


def make_info() -> PackageInfo:
    return PackageInfo(
        name=NAME,
        version="1.0",
        maintainer="Jane Doe <jane@example.org>",
        summary="Service used to benchmark the packagers",
        description="A service with a large payload, to time package builds.",
        license="MIT",
        license_text="Permission is hereby granted, free of charge, to any person ...",
        depends=("python3",),
        units=(f"{NAME}.service",),
        sysusers=(f"{NAME}.conf",),
    )


WORDS = [
    "service", "unit", "launcher", "systemd", "socket", "notify", "journal", "ready", "status",
    "watchdog", "restart", "package", "version", "release", "config", "state", "runtime",
    "directory", "user", "group", "timer", "install",
]  # fmt: skip


def make_payload(root: Path, files: int, mib: int, seed: int = 5) -> int:
    """Write `files` files totalling about `mib` MiB under usr/share/NAME; return the byte count.

    Three quarters text (compressible, like sources and data), one quarter random (like images
    or wheels), in directories of 100 files.
    """
    rng = random.Random(seed)  # noqa: S311 -- reproducible test data, not secrets
    base = root / "usr/share" / NAME / "payload"
    avg = (mib << 20) // files
    pool = [" ".join(rng.choices(WORDS, k=rng.randint(4, 14))).encode() + b"\n" for _ in range(4000)]
    total = 0
    for i in range(files):
        d = base / f"d{i // 100:03d}"
        if i % 100 == 0:
            d.mkdir(parents=True, exist_ok=True)
        size = max(1, int(rng.expovariate(1 / avg)))
        text = i % 4 != 3
        data = b"".join(rng.choices(pool, k=size // 60 + 1))[:size] if text else rng.randbytes(size)
        (d / f"f{i:05d}.dat").write_bytes(data)
        total += size
    return total


def dpkg_deb_tree(staging: Path, dest: Path, tmp: Path) -> Path:
    """The same tree plus DEBIAN/, as dpkg-deb --build wants it (prepared outside the timing)."""
    probe = build_deb(staging, make_info(), tmp / "probe")
    shutil.copytree(staging, dest, symlinks=True)
    run(["dpkg-deb", "-e", str(probe), str(dest / "DEBIAN")])
    (dest / "DEBIAN/md5sums").unlink()  # dpkg-deb writes none; dh_md5sums would
    run(["dpkg-deb", "-x", str(probe), str(tmp / "probe-root")])
    for extra in (f"usr/share/doc/{NAME}/copyright", f"usr/share/doc/{NAME}/changelog.Debian.gz"):
        (dest / extra).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(tmp / "probe-root" / extra, dest / extra)
    return dest


SPEC = """\
Name: {name}
Version: 1.0
Release: 1
Summary: Service used to benchmark the packagers
License: MIT
BuildArch: noarch
%define _binary_payload {payload}
%define _binary_filedigest_algorithm 8
%define __os_install_post %{{nil}}
%define _build_id_links none
%define debug_package %{{nil}}

%description
A service with a large payload, to time package builds.

%install
mkdir -p %{{buildroot}}
cp -al {staging}/. %{{buildroot}}/

%files
%config(noreplace) /etc/default/{name}
/usr/lib/systemd/system/{name}.service
/usr/lib/sysusers.d/{name}.conf
/usr/libexec/{name}
%doc /usr/share/doc/{name}
/usr/share/{name}
"""


def rpmbuild(staging: Path, topdir: Path, compression: Compression) -> None:
    level = compression.default_level()  # the same level on both sides
    payload = f"w{level}.gzdio" if compression is Compression.GZIP else f"w{level}.xzdio"
    spec = topdir / f"{NAME}.spec"
    topdir.mkdir(parents=True, exist_ok=True)
    spec.write_text(SPEC.format(name=NAME, payload=payload, staging=staging))
    run(["rpmbuild", "--quiet", "-bb", "--define", f"_topdir {topdir}", str(spec)])


def timed(fn: Callable[[int], object], i: int) -> float:
    start = time.perf_counter()
    fn(i)
    return time.perf_counter() - start


def _builders(
    comp: Compression, staging: Path, deb_tree: Path, info: PackageInfo, tmp: Path
) -> dict[str, Callable[[int], object]]:
    """The four contenders for one compression; each takes the run number (for its output name)."""
    level = comp.default_level()
    dpkg_flags = ["-Zgzip", f"-z{level}"] if comp is Compression.GZIP else ["-Zxz", f"-z{level}", "--threads-max=1"]

    def unitgen_deb(i: int) -> object:
        progress = terminal_progress(f"unitgen deb ({comp.value})")
        return build_deb(staging, info, tmp / f"u{i}", compression=comp, level=level, progress=progress)

    def dpkg_deb(i: int) -> object:
        return run(["dpkg-deb", "--root-owner-group", *dpkg_flags, "--build", str(deb_tree), str(tmp / f"dpkg{i}.deb")])

    def unitgen_rpm(i: int) -> object:
        progress = terminal_progress(f"unitgen rpm ({comp.value})")
        return build_rpm(staging, info, tmp / f"r{i}", compression=comp, level=level, progress=progress)

    def rpmbuild_bb(i: int) -> object:
        rpmbuild(staging, tmp / f"top{i}", comp)
        return None

    return {
        "unitgen deb": unitgen_deb,
        "dpkg-deb --build": dpkg_deb,
        "unitgen rpm": unitgen_rpm,
        "rpmbuild -bb": rpmbuild_bb,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--mib", type=int, default=40)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--compression", nargs="+", choices=[c.value for c in Compression], default=["gzip", "xz"])
    args = parser.parse_args(argv)
    for tool in ("dpkg-deb", "rpmbuild"):
        if shutil.which(tool) is None:
            print(f"bench: {tool} not found", file=sys.stderr)
            return 1
    os.environ["SOURCE_DATE_EPOCH"] = "1700000000"
    info = make_info()
    with tempfile.TemporaryDirectory(prefix="bench-package-") as t:
        tmp = Path(t)
        staging = make_staging(tmp / "staging")
        size = make_payload(staging, args.files, args.mib)
        deb_tree = dpkg_deb_tree(staging, tmp / "dpkg-tree", tmp)
        print(f"tree: {args.files} payload files + service files, {size / (1 << 20):.1f} MiB; "
              f"{args.runs} runs each, median; {os.cpu_count()} CPUs")  # fmt: skip
        results = []
        for comp in (Compression(c) for c in args.compression):
            builders = _builders(comp, staging, deb_tree, info, tmp)
            times: dict[str, list[float]] = {k: [] for k in builders}
            for i in range(args.runs):
                for key, fn in builders.items():
                    if sys.stderr.isatty():
                        print(f"\r\033[K{comp.value}: run {i + 1}/{args.runs}: {key}", end="", file=sys.stderr)
                    times[key].append(timed(fn, i))
                for d in tmp.glob("top*"):
                    if d.name != "top0":  # kept for its package size
                        shutil.rmtree(d)
            if sys.stderr.isatty():
                print("\r\033[K", end="", file=sys.stderr)
            med = {k: statistics.median(v) for k, v in times.items()}
            sizes = {
                "unitgen deb": (tmp / "u0" / f"{NAME}_1.0-1_all.deb").stat().st_size,
                "dpkg-deb --build": (tmp / "dpkg0.deb").stat().st_size,
                "unitgen rpm": (tmp / "r0" / f"{NAME}-1.0-1.noarch.rpm").stat().st_size,
                "rpmbuild -bb": next((tmp / "top0/RPMS/noarch").glob("*.rpm")).stat().st_size,
            }
            shutil.rmtree(tmp / "top0")
            level = comp.default_level()
            label = f"gzip -{level}" if comp is Compression.GZIP else f"xz -{level}, one thread"
            print(f"\n{label}")
            for key in builders:
                extra = f"  {sizes[key] / (1 << 20):6.1f} MiB" if key in sizes else ""
                print(f"  {key:<18} {med[key]:7.3f} s{extra}")
            deb_ratio = med["unitgen deb"] / med["dpkg-deb --build"]
            rpm_speedup = med["rpmbuild -bb"] / med["unitgen rpm"]
            print(f"  deb: unitgen/dpkg-deb = {deb_ratio:.2f}x (goal <= 1.5x)  "
                  f"{'ok' if deb_ratio <= 1.5 else 'MISSED'}")  # fmt: skip
            print(f"  rpm: rpmbuild/unitgen = {rpm_speedup:.2f}x faster (goal >= 2x)  "
                  f"{'ok' if rpm_speedup >= 2 else 'MISSED'}")  # fmt: skip
            results.append(deb_ratio <= 1.5 and rpm_speedup >= 2)
    return 0 if all(results) else 2


if __name__ == "__main__":
    sys.exit(main())
