"""Benchmark: publishing 200 small packages into a signed repository, and re-publishing after one
of them changed, against the tools distributions use, on the same packages in the same run.

    .venv/bin/python bench/bench_publish.py [--packages 200] [--runs 3]

apt side: `unitgen.publish` of the .debs against `reprepro includedeb` (SignWith: the same key,
so it writes and signs InRelease/Release.gpg too), each into a fresh repository, then each given
one new version of one package. yum side: `unitgen.publish` of the .rpms, which signs every
package on its way into the pool, against `rpmsign --addsign --rpmv3` (the same two signatures:
header, and header+payload) of the same files followed by
`createrepo_c` (first) / `createrepo_c --update` (again), plus `gpg --detach-sign` of repomd.xml;
and against `createrepo_c` alone (no signing at all), for scale. gpg uses a throw-away Ed25519
key in a temporary GNUPGHOME. Medians of `--runs` runs, interleaved, are printed as seconds and
as the ratio to the baseline.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.test_publish_helpers import TestKey, make_key
from unitgen.package import PackageInfo, build_deb, build_rpm
from unitgen.publish import publish
from unitgen.publish.signing import stop_agent


def small_packages(root: Path, count: int) -> tuple[list[Path], list[Path], Path, Path]:
    """`count` packages bench-NNN 1.0 (.deb and .rpm), and bench-000 at 1.1 (one of each)."""
    debs, rpms = [], []
    for i in range(count + 1):
        name, version = (f"bench-{i:03d}", "1.0") if i < count else ("bench-000", "1.1")
        staging = root / "staging" / f"{name}-{version}"
        doc = staging / f"usr/share/doc/{name}/README"
        doc.parent.mkdir(parents=True)
        doc.write_text(f"{name} {version}: a small package for the publish benchmark.\n" * 20)
        info = PackageInfo(name=name, version=version, maintainer="Bench <bench@example.org>",
                           summary="publish benchmark package", description="A small package.",
                           license="MIT")  # fmt: skip
        debs.append(build_deb(staging, info, root / "debs"))
        rpms.append(build_rpm(staging, info, root / "rpms"))
    return debs[:-1], rpms[:-1], debs[-1], rpms[-1]


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def sh(*argv: str | os.PathLike[str], env: dict[str, str] | None = None) -> None:
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        sys.exit(f"{argv[0]} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")


def reprepro_repo(root: Path, key: TestKey) -> Path:
    (root / "conf").mkdir(parents=True)
    (root / "conf/distributions").write_text(
        f"Codename: stable\nSuite: stable\nComponents: main\nArchitectures: amd64 arm64\nSignWith: {key.fingerprint}\n"
    )
    return root


def one_run(
    work: Path, key: TestKey, debs: list[Path], rpms: list[Path], new_deb: Path, new_rpm: Path
) -> dict[str, float]:
    env = {**os.environ, "GNUPGHOME": str(key.home)}
    out = {}
    repo = work / "unitgen"
    out["apt first: unitgen"] = timed(lambda: publish(debs, repo, key=key.key))
    out["apt again: unitgen"] = timed(lambda: publish([new_deb], repo, key=key.key))
    rr = reprepro_repo(work / "reprepro", key)
    out["apt first: reprepro"] = timed(lambda: sh("reprepro", "-b", rr, "includedeb", "stable", *debs, env=env))
    out["apt again: reprepro"] = timed(lambda: sh("reprepro", "-b", rr, "includedeb", "stable", new_deb, env=env))

    yum = work / "unitgen-yum"  # publish signs each package on its way into the pool
    out["yum first: unitgen"] = timed(lambda: publish(rpms, yum, key=key.key))
    out["yum again: unitgen"] = timed(lambda: publish([new_rpm], yum, key=key.key))
    cr = work / "createrepo"
    (cr / "Packages").mkdir(parents=True)
    # Debian's rpm macros name a gpg that does not exist (%__gpg): set it, as a user must.
    sign = ["rpmsign", "--define", "__gpg /usr/bin/gpg", "--define", f"_gpg_name {key.fingerprint}",
            "--define", f"_gpg_path {key.home}", "--addsign", "--rpmv3"]  # fmt: skip
    gpg = [
        "gpg",
        "--batch",
        "--yes",
        "--homedir",
        str(key.home),
        "--armor",
        "--detach-sign",
        str(cr / "repodata/repomd.xml"),
    ]

    def first() -> None:
        copies = [shutil.copy(p, cr / "Packages") for p in rpms]
        sh(*sign, *copies, env=env)
        sh("createrepo_c", "--quiet", "--no-database", cr)
        sh(*gpg)

    def again() -> None:
        sh(*sign, shutil.copy(new_rpm, cr / "Packages"), env=env)
        sh("createrepo_c", "--quiet", "--no-database", "--update", cr)
        sh(*gpg)

    out["yum first: rpmsign+createrepo_c"] = timed(first)
    out["yum again: rpmsign+createrepo_c"] = timed(again)
    bare = work / "bare"
    (bare / "Packages").mkdir(parents=True)
    for p in rpms:
        shutil.copy(p, bare / "Packages")
    out["yum first: createrepo_c alone"] = timed(lambda: sh("createrepo_c", "--quiet", "--no-database", bare))
    shutil.copy(new_rpm, bare / "Packages")
    out["yum again: createrepo_c alone"] = timed(
        lambda: sh("createrepo_c", "--quiet", "--no-database", "--update", bare)
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for tool in ("reprepro", "createrepo_c", "rpmsign", "gpg"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (scripts/bootstrap installs it)")

    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-publish-") as tmp:
        root = Path(tmp)
        key = make_key(root / "gnupg")
        try:
            debs, rpms, new_deb, new_rpm = small_packages(root, args.packages)
            for run in range(args.runs):
                for label, seconds in one_run(root / f"run{run}", key, debs, rpms, new_deb, new_rpm).items():
                    times.setdefault(label, []).append(seconds)
                shutil.rmtree(root / f"run{run}")
        finally:
            stop_agent(key.home)

    median = {label: statistics.median(values) for label, values in times.items()}
    print(f"{args.packages} packages, median of {args.runs} runs")
    pairs = [
        ("apt first", "reprepro"), ("apt again", "reprepro"),
        ("yum first", "rpmsign+createrepo_c"), ("yum again", "rpmsign+createrepo_c"),
        ("yum first", "createrepo_c alone"), ("yum again", "createrepo_c alone"),
    ]  # fmt: skip
    for what, baseline in pairs:
        ours, theirs = median[f"{what}: unitgen"], median[f"{what}: {baseline}"]
        print(f"  {what:9}  unitgen {ours:6.2f} s   {baseline:22} {theirs:6.2f} s   ratio {ours / theirs:5.2f}x")


if __name__ == "__main__":
    main()
