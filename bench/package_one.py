"""One package build from a prepared staging tree, as a whole process: what bench_package.py times
against `dpkg-deb --build` and `rpmbuild -bb`, which are whole processes too. Not a test.

    python bench/package_one.py JOB.pickle RUN

JOB.pickle holds (format, staging, PackageInfo, out_dir, compression, level), written by
bench_package.py; the interpreter's start and the imports of unitgen.package are part of the time.
"""

import pickle
import sys
from pathlib import Path


def main() -> None:
    job, run = Path(sys.argv[1]), sys.argv[2]
    from unitgen.package import build

    fmt, staging, info, out_dir, compression, level = pickle.loads(job.read_bytes())  # noqa: S301 - our own file
    build(fmt, staging, info, Path(out_dir) / run, compression=compression, level=level)


if __name__ == "__main__":
    main()
