"""Whole-process benchmarks of unitgen's own commands against their baselines (issue 12). Not a test.

    .venv/bin/python bench/bench_cli.py [--runs 5] [--specs 500] [--units 100] [--only package]

unitgen is a command line tool, so every contender is timed as a whole process (interpreter start,
imports, work, exit), interleaved run by run so that machine load hits every contender alike; the
printed numbers are medians, and ratios are against a baseline measured in the same run.

Every unitgen process runs in unitgen's installed form (bench/installed.py): `/usr/bin/python3 STUB`,
STUB being packaging/unitgen.in (what unitgen's .deb installs as /usr/bin/unitgen) with this
checkout in place of /usr/share/unitgen, its bytecode compiled beforehand, Debian's python3-jinja2;
not the dev venv, whose site costs every start 35-45 ms more here. One row, labelled, keeps
the dev venv's form (`.venv/bin/python -m unitgen`) for comparison. Each contender has its own
XDG_CACHE_HOME in the bench's temporary directory (never the user's ~/.cache).

  package  `unitgen package hello --format deb` (spec in, .deb out: render, stage, build):
             warm: the same work directory every run, so build/hello and the caches in
               XDG_CACHE_HOME (Jinja's bytecode, unitgen's) are there from the run before, as for
               a user who packages again;
             cold: a fresh work directory (no build/) and a fresh empty XDG_CACHE_HOME every run,
               made outside the timing, as a user's first run;
             dev venv: warm, in the dev venv's form.
           vs `dpkg-deb --root-owner-group -Zgzip -z6 --build` of the tree of unitgen's .deb
           (`dpkg-deb -R` of it: the files and DEBIAN/ with control, md5sums and the maintainer
           scripts), unpacked outside the timing, at the same compression. unitgen does more: it
           renders the tree and computes the md5sums (dpkg-deb copies the file it is given).
           Issue 12 target: warm at most 3x dpkg-deb.
           And the Python floor, bench/deb_floor.py: a standard-library program (no unitgen) doing
           dpkg-deb's job on the same tree plus the md5sums (argparse, a walk, tarfile + gzip -6,
           the ar archive), run by the same interpreter: what any Python program that builds this
           .deb costs. Checked once, outside the timing, with `dpkg-deb --info` and `dpkg-deb -c`.
           The breakdown: the interpreter alone (with site; without), plus the standard-library
           modules a Python packager cannot avoid (argparse, gzip, hashlib, tarfile), plus what the
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

from installed import ROOT, Installed, prepare, warn_if_changed

# The dev venv's form, for the one row that shows it: the editable install, this checkout's bytecode.
DEV_UNITGEN = [sys.executable, "-m", "unitgen"]
DEV_ENV = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}, "PYTHONPATH": str(ROOT)}
PACKAGE_HELLO = ["package", "hello", "--format", "deb"]


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Seconds for one whole process."""
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
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


def hello_dir(directory: Path) -> Path:
    """A work directory holding the hello example's spec, and an empty cache directory."""
    (directory / "cache").mkdir(parents=True)
    shutil.copy(ROOT / "examples/hello/hello.toml", directory / "hello.toml")
    return directory


def with_cache(env: dict[str, str], directory: Path) -> dict[str, str]:
    return env | {"XDG_CACHE_HOME": str(directory / "cache")}


def deb_members(deb: Path) -> list[str]:
    """The paths `dpkg-deb -c` lists (it fails on a .deb it cannot read)."""
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], check=True, capture_output=True, text=True).stdout
    return [line.split(maxsplit=5)[5] for line in listing.splitlines()]


def check_floor(floor: list[str], tree: Path, reference: Path, work: Path) -> None:
    """The floor's .deb is one dpkg-deb reads, with the members of unitgen's (checked once, untimed)."""
    out = work / "floor-check.deb"
    subprocess.run([*floor, str(tree), str(out)], check=True)
    subprocess.run(["dpkg-deb", "--info", str(out)], check=True, stdout=subprocess.DEVNULL)
    if deb_members(out) != deb_members(reference):
        raise SystemExit("bench: bench/deb_floor.py's .deb holds other files than unitgen's")


def bench_package(work: Path, runs: int, installed: Installed) -> None:
    warm, dev = hello_dir(work / "warm"), hello_dir(work / "dev")
    unitgen = [*installed.unitgen, *PACKAGE_HELLO]
    subprocess.run(unitgen, cwd=warm, env=with_cache(installed.env, warm), check=True, stdout=subprocess.DEVNULL)
    [deb] = (warm / "dist").glob("*.deb")
    tree = work / "dpkg-tree"  # the .deb's files and DEBIAN/, as dpkg-deb --build wants them
    subprocess.run(["dpkg-deb", "-R", str(deb), str(tree)], check=True)
    floor = [installed.python, str(ROOT / "bench/deb_floor.py")]
    check_floor(floor, tree, deb, work)
    # Twice, the second kept: when unitgen/ was edited since the build above (others work in this
    # checkout), the first run finds the stamp stale and renders; the second is a warm run again.
    modules = [imported_by(unitgen, warm, with_cache(installed.env, warm)) for _ in range(2)][-1]
    colds = iter(range(10**6))

    def cold() -> float:
        fresh = hello_dir(work / f"cold{next(colds)}")  # made before the clock starts
        seconds = timed(unitgen, fresh, with_cache(installed.env, fresh))
        shutil.rmtree(fresh)
        return seconds

    python = installed.python
    med = interleave(
        {
            "warm": lambda: timed(unitgen, warm, with_cache(installed.env, warm)),
            "cold": cold,
            "dev venv": lambda: timed([*DEV_UNITGEN, *PACKAGE_HELLO], dev, with_cache(DEV_ENV, dev)),
            "dpkg-deb": lambda: timed(
                ["dpkg-deb", "--root-owner-group", "-Zgzip", "-z6", "--build", str(tree), str(work / "x.deb")],
                work,
                installed.env,
            ),
            "floor": lambda: timed([*floor, str(tree), str(work / "floor.deb")], work, installed.env),
            # The breakdown: the interpreter alone (with site, and without), with the standard
            # modules a Python packager needs, with the modules the command imports.
            "site": lambda: timed([python, "-c", "pass"], work, installed.env),
            "no site": lambda: timed([python, "-S", "-c", "pass"], work, installed.env),
            "stdlib": lambda: timed([python, "-c", STDLIB_IMPORTS], work, installed.env),
            "imports": lambda: timed([*installed.code(IMPORT_ALL), *modules], work, installed.env),
        },
        runs,
    )
    _print_package(med, python, len(modules))


def _print_package(med: dict[str, float], python: str, modules: int) -> None:
    rows = {
        "warm": "unitgen package hello --format deb, warm (installed form)",
        "cold": "  the same, cold (fresh work dir, empty XDG_CACHE_HOME)",
        "dev venv": f"  the same, warm, dev venv ({Path(sys.executable).name} -m unitgen, editable)",
        "dpkg-deb": "dpkg-deb --build (gzip -6) of the .deb's tree",
        "floor": "Python floor: bench/deb_floor.py, same tree",
    }
    print("package hello (deb)")
    for key, label in rows.items():
        print(f"  {label:<62} {med[key] * 1000:7.1f} ms")
    warm, cold, dpkg, floor = med["warm"], med["cold"], med["dpkg-deb"], med["floor"]
    verdict = "ok" if warm / dpkg <= 3 else "MISSED"
    print(f"  unitgen warm / dpkg-deb     {warm / dpkg:5.2f}  (issue 12 target <= 3: {verdict})")
    print(f"  unitgen warm / Python floor {warm / floor:5.2f}")
    print(f"  unitgen cold / dpkg-deb     {cold / dpkg:5.2f}")
    print(f"  Python floor / dpkg-deb     {floor / dpkg:5.2f}")
    site, stdlib, imports = med["site"], med["stdlib"], med["imports"]
    print(f"  breakdown, whole processes of {python}:")
    print(f"    -c pass, with site {site * 1000:.1f} ms ({site / dpkg:.2f}x dpkg-deb); without site (-S) "
          f"{med['no site'] * 1000:.1f} ms")  # fmt: skip
    print(f"    importing {STDLIB_IMPORTS[7:]} {stdlib * 1000:.1f} ms ({stdlib / dpkg:.2f}x dpkg-deb): "
          f"what any Python packager starts with")  # fmt: skip
    print(f"    importing what the warm run imports ({modules} modules) {imports * 1000:.1f} ms")
    print(f"    the work: the warm run's {(warm - imports) * 1000:.1f} ms (warm - its imports), "
          f"the floor's {(floor - stdlib) * 1000:.1f} ms (floor - its imports)")  # fmt: skip


# What any Python program building a .deb imports (bench/deb_floor.py's imports).
STDLIB_IMPORTS = "import argparse, gzip, hashlib, tarfile"
# A process that imports the modules in its argv and exits; those the run only tried to import
# (another platform's: nt, _winapi) fail here as they did there.
IMPORT_ALL = """
for module in sys.argv[1:]:
    try:
        __import__(module)
    except ImportError:
        pass
"""


def imported_by(command: list[str], cwd: Path, env: dict[str, str]) -> list[str]:
    """The modules a run of COMMAND imports after the interpreter's start-up (after site), from
    `python -X importtime`: the breakdown's imports are exactly these, so it follows the command as
    it changes (the warm run of an unchanged spec need not render, so it imports less)."""
    python, *rest = command
    done = subprocess.run([python, "-X", "importtime", *rest], cwd=cwd, env=env, check=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    names = [line.rpartition("|")[2].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    return names[names.index("site") + 1 :]


def _respec(work: Path, names: list[str], variant: int) -> None:
    """Every spec's description changed: each rendered tree then differs from the one on disk."""
    text = (ROOT / "examples/hello/hello.toml").read_text()
    assert 'description = "' in text
    text = text.replace('description = "', f'description = "v{variant} ', 1)
    for name in names:
        (work / f"{name}.toml").write_text(text)


def bench_render(work: Path, runs: int, count: int, installed: Installed) -> None:
    names = write_specs(work, count)
    batch = [*installed.unitgen, "render", *names]
    env = with_cache(installed.env, work)
    (work / "cache").mkdir()
    variant = iter(range(10**6))

    def fresh() -> float:
        shutil.rmtree(work / "build", ignore_errors=True)
        return timed(batch, work, env)

    def changed() -> float:
        _respec(work, names, next(variant))
        return timed(batch, work, env)

    def unchanged() -> float:
        timed(batch, work, env)  # whatever the previous contender left: this spec's trees
        return timed(batch, work, env)

    med = interleave({"fresh": fresh, "changed": changed, "unchanged": unchanged}, runs)
    one = [*installed.unitgen, "render"]
    singles = [sum(timed([*one, n], work, env) for n in names) for _ in range(max(1, runs // 2))]
    one_by_one = statistics.median(singles)
    floor = _tree_floor(work, count, runs)
    print(f"render {count} specs      batch: unchanged {med['unchanged']:6.3f} s, every tree changed "
          f"{med['changed']:6.3f} s, no trees yet {med['fresh']:6.3f} s (target: < 0.5 s); "
          f"{count} processes {one_by_one:7.3f} s")  # fmt: skip
    print(f"  floor: {count} trees of the same files written by `cp -r` {floor['write']:.3f} s, "
          f"removed by `rm -rf` {floor['remove']:.3f} s")  # fmt: skip
    breakdown = _render_breakdown(work, names, runs, installed)
    print(f"  breakdown of the unchanged batch (in one process, medians): {breakdown}")


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


def _render_breakdown(work: Path, names: list[str], runs: int, installed: Installed) -> str:
    stages = ("imports", "TOML parsing", "spec checks (load_spec less TOML)", "--out checks", "rendering",
              "keeping the trees (write_tree)")  # fmt: skip
    samples = []
    for _ in range(runs):
        out = subprocess.run([*installed.code(RENDER_BREAKDOWN), *names], cwd=work,
                             env=with_cache(installed.env, work), check=True, capture_output=True,
                             text=True).stdout  # fmt: skip
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
        return timed(["cp", "-r", str(source), str(copies)], work, dict(os.environ))

    def remove() -> float:
        if not copies.exists():
            subprocess.run(["cp", "-r", str(source), str(copies)], check=True)
        return timed(["rm", "-rf", str(copies)], work, dict(os.environ))

    return interleave({"write": write, "remove": remove}, runs)


def bench_check(work: Path, runs: int, count: int, installed: Installed) -> None:
    names = write_specs(work, count)
    (work / "cache").mkdir()
    unitgen_env = with_cache(installed.env, work)
    subprocess.run([*installed.unitgen, "render", *names], cwd=work, env=unitgen_env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
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
        {
            "unitgen check": lambda: timed(
                [*installed.unitgen, "check", *names, "--threshold", "9.9"], work, unitgen_env
            ),
            "floor": floor,
        },
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
    with tempfile.TemporaryDirectory(prefix="unitgen-bench-cli.") as tmp:
        work = Path(tmp)
        installed = prepare(work)
        print(f"{installed.note}; {args.runs} runs, medians")
        benches: dict[str, Callable[[Path], None]] = {
            "package": lambda w: bench_package(w, args.runs, installed),
            "render": lambda w: bench_render(w, args.runs, args.specs, installed),
            "check": lambda w: bench_check(w, args.runs, args.units, installed),
        }
        for name, bench in benches.items():
            if name in only:
                (work / name).mkdir()
                started = installed.compile()
                bench(work / name)
                warn_if_changed(started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
