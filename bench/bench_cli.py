"""Whole-process benchmarks of unitgen's own commands against their baselines (issue 12). Not a test.

    .venv/bin/python bench/bench_cli.py [--runs 5] [--specs 500] [--units 100]

unitgen is a command line tool, so every contender is timed as a whole process (interpreter start,
imports, work, exit), interleaved run by run so that machine load hits every contender alike; the
printed numbers are medians, and ratios are against a baseline measured in the same run:
  package  `unitgen package hello --format deb` (spec in, .deb out: render, stage, build)
           vs `dpkg-deb --build` of the same tree with its control file prepared outside the
           timing, at the same compression (gzip -6); unitgen does more (it renders the tree,
           writes md5sums). Issue 12 target: at most 3x. The breakdown: `python -c pass` (the
           interpreter with the venv's site; and without site), a process importing what the
           command imports; the rest is the command's work.
  render   `unitgen render` of SPECS services in one process (the batch form): trees unchanged
           (a re-render: kept as they are), every tree changed (each spec edited between runs:
           all replaced), no trees yet; vs SPECS `unitgen render NAME` processes, and the file
           system's floor (the same trees copied by one `cp -r`, removed by one `rm -rf`).
           Issue 12 target: the batch under 0.5 s.
  check    `unitgen check` of UNITS services (one unit each), batch form
           vs one `systemd-analyze verify` over the same units plus one `systemd-analyze security
           --offline=true` per unit, on the scratch copies check itself verifies (prepared outside
           the timing). Issue 12 target: at most 1.5x.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNITGEN = [sys.executable, "-m", "unitgen"]
# This checkout's unitgen, its bytecode cached (as an installed unitgen has it compiled at install).
ENV = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}, "PYTHONPATH": str(ROOT)}


def timed(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    """Seconds for one whole process."""
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env or ENV, check=True, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    return time.perf_counter() - start


def interleave(contenders: dict[str, Callable[[], float]], runs: int) -> dict[str, float]:
    for run in contenders.values():  # warm the page cache and the bytecode caches
        run()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(runs):
        for name, run in contenders.items():
            times[name].append(run())
    return {name: statistics.median(values) for name, values in times.items()}


def write_specs(work: Path, count: int) -> list[str]:
    """`count` copies of the hello example under distinct names (a service per spec)."""
    text = (ROOT / "examples/hello/hello.toml").read_text()
    names = [f"svc{i:04d}" for i in range(count)]
    for name in names:
        (work / f"{name}.toml").write_text(text)
    return names


def bench_package(work: Path, runs: int) -> None:
    shutil.copy(ROOT / "examples/hello/hello.toml", work / "hello.toml")
    subprocess.run([*UNITGEN, "package", "hello", "--format", "deb"], cwd=work, env=ENV, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    [deb] = (work / "dist").glob("*.deb")
    tree = work / "dpkg-tree"
    shutil.copytree(work / "build/hello", tree, symlinks=True)
    (tree / ".unitgen-output").unlink(missing_ok=True)
    (tree / "DEBIAN").mkdir()
    subprocess.run(["dpkg-deb", "--control", str(deb), str(tree / "DEBIAN")], check=True)
    med = interleave(
        {
            "unitgen package": lambda: timed([*UNITGEN, "package", "hello", "--format", "deb"], work),
            "dpkg-deb --build": lambda: timed(
                ["dpkg-deb", "--root-owner-group", "-Zgzip", "-z6", "--build", str(tree), str(work / "x.deb")], work
            ),
            # The breakdown: the interpreter alone (the venv's, with its site), and with the modules
            # the command imports; the rest is the command's own work.
            "python -c pass": lambda: timed([sys.executable, "-c", "pass"], work),
            "python -S -c pass": lambda: timed([sys.executable, "-S", "-c", "pass"], work),
            "imports": lambda: timed([sys.executable, "-c", PACKAGE_IMPORTS], work),
        },
        runs,
    )
    ours, floor = med["unitgen package"], med["dpkg-deb --build"]
    print(f"package hello (deb)   unitgen {ours * 1000:7.1f} ms   dpkg-deb {floor * 1000:6.1f} ms   "
          f"ratio {ours / floor:5.2f} (target <= 3)")  # fmt: skip
    python, imports = med["python -c pass"], med["imports"]
    print(f"  of unitgen's: interpreter with the venv's site {python * 1000:.1f} ms (without site "
          f"{med['python -S -c pass'] * 1000:.1f} ms), imports {(imports - python) * 1000:.1f} ms, "
          f"the work {(ours - imports) * 1000:.1f} ms; the interpreter alone is "
          f"{python / floor:.2f}x dpkg-deb")  # fmt: skip


# What `unitgen package NAME --format deb` imports (a process that imports them and exits).
PACKAGE_IMPORTS = (
    "import unitgen.cli, unitgen.spec, unitgen.package, unitgen.package.from_spec, unitgen.staging.build, "
    "unitgen.package.deb, unitgen.package.scripts"
)


def _respec(work: Path, names: list[str], variant: int) -> None:
    """Every spec's description changed: each rendered tree then differs from the one on disk."""
    text = (ROOT / "examples/hello/hello.toml").read_text()
    assert 'description = "' in text
    text = text.replace('description = "', f'description = "v{variant} ', 1)
    for name in names:
        (work / f"{name}.toml").write_text(text)


def bench_render(work: Path, runs: int, count: int) -> None:
    names = write_specs(work, count)
    batch = [*UNITGEN, "render", *names]
    variant = iter(range(10**6))

    def fresh() -> float:
        shutil.rmtree(work / "build", ignore_errors=True)
        return timed(batch, work)

    def changed() -> float:
        _respec(work, names, next(variant))
        return timed(batch, work)

    def unchanged() -> float:
        timed(batch, work)  # whatever the previous contender left: this spec's trees
        return timed(batch, work)

    med = interleave({"fresh": fresh, "changed": changed, "unchanged": unchanged}, runs)
    singles = [sum(timed([*UNITGEN, "render", n], work) for n in names) for _ in range(max(1, runs // 2))]
    one_by_one = statistics.median(singles)
    floor = _tree_floor(work, count, runs)
    print(f"render {count} specs      batch: unchanged {med['unchanged']:6.3f} s, every tree changed "
          f"{med['changed']:6.3f} s, no trees yet {med['fresh']:6.3f} s (target: < 0.5 s); "
          f"{count} processes {one_by_one:7.3f} s")  # fmt: skip
    print(f"  floor: {count} trees of the same files written by `cp -r` {floor['write']:.3f} s, "
          f"removed by `rm -rf` {floor['remove']:.3f} s")  # fmt: skip
    print(f"  breakdown of the unchanged batch (in one process, medians): {_render_breakdown(work, names, runs)}")


# The unchanged batch's stages, timed inside one process (a breakdown, not the measurement): the
# interpreter and imports before, then what `cmd_render` does for every spec, stage by stage.
RENDER_BREAKDOWN = """
import sys, time
t0 = time.perf_counter()
import tomllib
from pathlib import Path
import unitgen.cli
from unitgen.render.units import render
from unitgen.spec import load_spec
from unitgen.staging.tree import check_out_dir, protected_paths, write_tree
t1 = time.perf_counter()
names = sys.argv[1:]
texts = [Path(f"{n}.toml").read_text() for n in names]
t2 = time.perf_counter()
for text in texts:
    tomllib.loads(text)
t3 = time.perf_counter()
specs = [load_spec(Path(f"{n}.toml"), n) for n in names]
t4 = time.perf_counter()
outs = [(Path("build") / n).absolute() for n in names]
for n, out in zip(names, outs):
    check_out_dir(out, protected_paths([Path(f"{n}.toml")]))
t5 = time.perf_counter()
files = [render(spec) for spec in specs]
t6 = time.perf_counter()
for n, f, out in zip(names, files, outs):
    write_tree(f, out, inputs=[Path(f"{n}.toml")])
t7 = time.perf_counter()
print(t1 - t0, (t3 - t2), (t4 - t3) - (t3 - t2), t5 - t4, t6 - t5, t7 - t6)
"""


def _render_breakdown(work: Path, names: list[str], runs: int) -> str:
    stages = ("imports", "TOML parsing", "spec checks (load_spec less TOML)", "--out checks", "rendering",
              "keeping the trees (write_tree)")  # fmt: skip
    samples = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", RENDER_BREAKDOWN, *names], cwd=work, env=ENV, check=True,
                             capture_output=True, text=True).stdout  # fmt: skip
        samples.append([float(x) for x in out.split()])
    medians = [statistics.median(column) for column in zip(*samples, strict=True)]
    return ", ".join(f"{stage} {seconds:.3f} s" for stage, seconds in zip(stages, medians, strict=True))


def _tree_floor(work: Path, count: int, runs: int) -> dict[str, float]:
    """The file system's share: copying the rendered trees (the same directories, files and
    bytes) with one `cp -r`, and removing them with one `rm -rf`."""
    source = work / "build"
    copies = work / "floor"

    def write() -> float:
        shutil.rmtree(copies, ignore_errors=True)
        return timed(["cp", "-r", str(source), str(copies)], work)

    def remove() -> float:
        if not copies.exists():
            subprocess.run(["cp", "-r", str(source), str(copies)], check=True)
        return timed(["rm", "-rf", str(copies)], work)

    return interleave({"write": write, "remove": remove}, runs)


def bench_check(work: Path, runs: int, count: int) -> None:
    names = write_specs(work, count)
    subprocess.run([*UNITGEN, "render", *names], cwd=work, env=ENV, check=True, stdout=subprocess.DEVNULL)
    scratch = work / "scratch"  # the copies check makes: launcher paths pointing into the staging tree
    scratch.mkdir()
    units = []
    for name in names:
        staging = work / "build" / name
        text = (staging / f"usr/lib/systemd/system/{name}.service").read_text()
        unit = scratch / f"{name}.service"
        unit.write_text(text.replace(f"/usr/libexec/{name}/", f"{staging}/usr/libexec/{name}/"))
        units.append(str(unit))
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{scratch}:"}

    def floor() -> float:
        start = time.perf_counter()
        subprocess.run(["systemd-analyze", "verify", *units], env=env, check=True, capture_output=True)
        for unit in units:
            subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", unit], env=env,
                           check=True, capture_output=True)  # fmt: skip
        return time.perf_counter() - start

    med = interleave(
        {"unitgen check": lambda: timed([*UNITGEN, "check", *names, "--threshold", "9.9"], work), "floor": floor},
        runs,
    )
    ratio = med["unitgen check"] / med["floor"]
    print(f"check {count} units       unitgen {med['unitgen check']:7.3f} s   "
          f"verify + {count} security {med['floor']:7.3f} s   ratio {ratio:5.2f} (target <= 1.5)")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--specs", type=int, default=500)
    parser.add_argument("--units", type=int, default=100)
    parser.add_argument("--only", choices=["package", "render", "check"], action="append")
    args = parser.parse_args()
    only = set(args.only or ["package", "render", "check"])
    print(f"interpreter {sys.executable}, {args.runs} runs, medians")
    with tempfile.TemporaryDirectory(prefix="unitgen-bench-cli.") as tmp:
        work = Path(tmp)
        benches: dict[str, Callable[[Path], None]] = {
            "package": lambda w: bench_package(w, args.runs),
            "render": lambda w: bench_render(w, args.runs, args.specs),
            "check": lambda w: bench_check(w, args.runs, args.units),
        }
        for name, bench in benches.items():
            if name in only:
                (work / name).mkdir()
                bench(work / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
