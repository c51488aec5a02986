"""One package build from a prepared staging tree, as a whole process: what bench_package.py times
against `dpkg-deb --build` and `rpmbuild -bb`, which are whole processes too. Not a test.

    /usr/bin/python3 bench/package_one.py JOB.pickle RUN

In unitgen's installed form (bench/installed.py): it puts this checkout on sys.path and writes no
bytecode, as packaging/unitgen.in does with /usr/share/unitgen, so the interpreter needs no
PYTHONPATH and the checkout's bytecode, compiled beforehand, is what it loads. JOB.pickle holds
(format, staging, PackageInfo, out_dir, compression, level), written by bench_package.py; the
interpreter's start and the imports of unitgen.package are part of the time.
"""

import os
import sys

# os.path, not pathlib: this runs before anything is imported, and pathlib is unitgen's to import.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # noqa: PTH100, PTH120
sys.dont_write_bytecode = True


def main() -> None:
    import pickle
    from pathlib import Path

    from unitgen.package import build

    job, run = Path(sys.argv[1]), sys.argv[2]
    fmt, staging, info, out_dir, compression, level = pickle.loads(job.read_bytes())  # noqa: S301 - our own file
    build(fmt, staging, info, Path(out_dir) / run, compression=compression, level=level)


if __name__ == "__main__":
    main()
