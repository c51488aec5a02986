"""Benchmark: build time and size of the example app's venv and of its packages; reproducibility.

    .venv/bin/python bench/bench_payload.py [--runs 3] [--spec examples/webapp/webapp.toml]

Each run stages the example as `unitgen package` would (render, then `build_app`), with
SOURCE_DATE_EPOCH set, and builds the .deb and .rpm from that tree with unitgen's packagers
(plus the `python3 (>= X.Y), python3 (<< X.Y+1)` dependency from the payload). It prints the
median times, the venv's size (files, apparent bytes), the package sizes, and whether every run
gave byte-identical packages; when they differ it names the first differing file in the trees.

The first run may include downloads into pip's cache (bottle, the flit_core build backend); the
median of several runs is the warm-cache build time, which is what a developer sees.

Floors, measured interleaved in the same run (issue 12 item 3), each doing what build_app must at
least do, with the same pip, interpreter and lock:
  build + one install   venv, `pip wheel --no-deps` of the project, one `pip install` of the lock and
                        that wheel (hash-pinned): compared with build_app of the spec (target 1.3x);
  install only          venv and one `pip install` of the lock and a prebuilt app wheel: compared with
                        build_app given that wheel instead of the project (target 2x).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from unitgen.app.payload import AppPayload, build_app
from unitgen.package import Format, build
from unitgen.package.from_spec import package_info
from unitgen.render.units import render
from unitgen.spec import App, load_spec
from unitgen.staging.tree import write_tree

EPOCH = "1700000000"


@dataclasses.dataclass
class Run:
    stage_s: float
    venv_s: float
    package_s: dict[str, float]
    packages: dict[str, Path]
    staging: Path
    payload: AppPayload


def one_run(spec_file: Path, root: Path) -> Run:
    spec = load_spec(spec_file)
    assert spec.app is not None
    staging = root / "staging"
    start = time.perf_counter()
    write_tree(render(spec), staging)
    rendered = time.perf_counter()
    payload = build_app(spec.app, staging)
    built = time.perf_counter()
    info = package_info(spec, payload)
    times, packages = {}, {}
    for fmt in (Format.DEB, Format.RPM):
        t0 = time.perf_counter()
        packages[fmt.value] = build(fmt, staging, info, root / "dist")
        times[fmt.value] = time.perf_counter() - t0
    return Run(rendered - start, built - rendered, times, packages, staging, payload)


def pip_floor(app: App, work: Path, prebuilt: Path | None) -> float:
    """Seconds for the least a venv build does: venv, (wheel of the project), one pip install."""
    start = time.perf_counter()
    venv = work / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", venv], check=True)
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin/python"), "--disable-pip-version-check", "-q"]
    wheel = prebuilt
    if wheel is None:
        assert app.project is not None
        subprocess.run([*pip, "wheel", "--no-deps", "--only-binary=:all:", "-w", work / "w", app.project], check=True)
        [wheel] = (work / "w").glob("*.whl")
    lock = work / "lock.txt"
    assert app.requirements is not None
    lock.write_text(f"-r {app.requirements}\n{wheel} --hash=sha256:{sha256(wheel)}\n")
    subprocess.run([*pip, "install", "--no-compile", "--only-binary=:all:", "-r", lock], check=True)
    elapsed = time.perf_counter() - start
    shutil.rmtree(work)
    return elapsed


def timed_build(app: App, staging: Path) -> float:
    start = time.perf_counter()
    build_app(app, staging)
    elapsed = time.perf_counter() - start
    shutil.rmtree(staging)
    return elapsed


def floors(spec_file: Path, root: Path, runs: int) -> None:
    spec = load_spec(spec_file)
    app = spec.app
    assert app is not None and app.project is not None and app.requirements is not None
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", root / "prebuilt", app.project],
                   check=True)  # fmt: skip
    [prebuilt] = (root / "prebuilt").glob("*.whl")
    given = dataclasses.replace(app, project=None, wheels=(str(prebuilt),))
    times: dict[str, list[float]] = {"project": [], "build+install": [], "wheel given": [], "install only": []}
    for i in range(runs):
        times["project"].append(timed_build(app, root / f"p{i}"))
        times["build+install"].append(pip_floor(app, root / f"f{i}", None))
        times["wheel given"].append(timed_build(given, root / f"g{i}"))
        times["install only"].append(pip_floor(app, root / f"i{i}", prebuilt))
    med = {k: statistics.median(v) for k, v in times.items()}
    for ours, floor, target in (("project", "build+install", 1.3), ("wheel given", "install only", 2.0)):
        print(f"venv, {ours:<12} build_app {med[ours]:5.2f} s   floor {floor} {med[floor]:5.2f} s   "
              f"ratio {med[ours] / med[floor]:.2f} (target {target})")  # fmt: skip


def tree_size(root: Path) -> tuple[int, int]:
    files = size = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                files += 1
                size += path.stat().st_size
    return files, size


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def first_difference(a: Path, b: Path) -> str | None:
    for dirpath, dirnames, filenames in os.walk(a):
        dirnames.sort()
        for name in sorted(filenames):
            left = Path(dirpath) / name
            right = b / left.relative_to(a)
            if left.is_symlink() or right.is_symlink():
                if not (left.is_symlink() and right.is_symlink() and left.readlink() == right.readlink()):
                    return str(left.relative_to(a))
            elif not right.is_file() or left.read_bytes() != right.read_bytes():
                return str(left.relative_to(a))
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--spec", type=Path, default=Path(__file__).parent.parent / "examples/webapp/webapp.toml")
    args = parser.parse_args()
    os.environ["SOURCE_DATE_EPOCH"] = EPOCH
    with tempfile.TemporaryDirectory(prefix="bench-payload-") as tmp:
        runs = [one_run(args.spec, Path(tmp) / f"run{i}") for i in range(args.runs)]
        first = runs[0]
        venv = first.staging / first.payload.venv.lstrip("/")
        files, size = tree_size(venv)
        print(f"app: {', '.join(f'{n} {v}' for n, v in first.payload.distributions)}")
        print(f"python: {first.payload.python} {'.'.join(map(str, first.payload.python_version))}")
        print(f"runs: {args.runs} (first: venv {first.venv_s:.2f} s, may include downloads into pip's cache)")
        print(f"render:        median {statistics.median(r.stage_s for r in runs) * 1000:7.1f} ms")
        print(f"venv build:    median {statistics.median(r.venv_s for r in runs):7.2f} s")
        for fmt in ("deb", "rpm"):
            median = statistics.median(r.package_s[fmt] for r in runs)
            print(f"{fmt} build:     median {median * 1000:7.1f} ms, {first.packages[fmt].stat().st_size:,} bytes")
        print(f"venv size:     {files} files, {size:,} bytes (apparent)")
        for fmt in ("deb", "rpm"):
            digests = {sha256(r.packages[fmt]) for r in runs}
            verdict = "identical" if len(digests) == 1 else f"{len(digests)} different"
            print(f"{fmt} bytes over {args.runs} runs: {verdict} ({sorted(digests)[0][:16]}...)")
        for other in runs[1:]:
            diff = first_difference(first.staging, other.staging)
            if diff is not None:
                print(f"staging trees differ, first at {diff}")
        floors(args.spec, Path(tmp) / "floors", args.runs)


if __name__ == "__main__":
    main()
