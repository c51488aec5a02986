"""The Python floor for building a .deb: what any Python program that builds one has to do. Not a test.

    python3 bench/deb_floor.py TREE OUT.deb

The same job as `dpkg-deb --root-owner-group -Zgzip -z6 --build TREE OUT.deb`, on the same prepared
tree (the files, plus DEBIAN/ with control and the maintainer scripts), written as plainly as the
standard library allows and with nothing else (it never imports unitgen): argparse for its argv, a
walk of the tree, md5sums of its files (which dpkg-deb does not write: debhelper's dh_md5sums does,
and unitgen does), control.tar.gz and data.tar.gz by tarfile + gzip at level 6 (GNU format, ./
names, root:root, sorted by path), then the ar archive: debian-binary, control.tar.gz,
data.tar.gz. Times are the files' own, clamped to SOURCE_DATE_EPOCH when it is set, as dpkg-deb
does. bench_cli.py times it as a whole process next to dpkg-deb and unitgen; the stdlib imports
alone (argparse, hashlib, tarfile, gzip) are a sizeable part of it.
"""

# os and open(), not pathlib: a floor imports no more than the job needs.
# ruff: noqa: PTH115, PTH118, PTH123, PTH208
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import stat
import tarfile
import time
from collections.abc import Callable

CONTROL_DIR = "DEBIAN"


def tar_entry(name: str, st: os.stat_result, mtime: int) -> tarfile.TarInfo:
    """A member owned by root:root, as `--root-owner-group` makes it; no passwd lookups."""
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = min(int(st.st_mtime), mtime)
    info.uname = info.gname = "root"
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
    elif stat.S_ISREG(st.st_mode):
        info.size = st.st_size
    else:
        raise SystemExit(f"deb_floor: {name}: not a file, directory or symbolic link")
    return info


def add_tree(tar: tarfile.TarFile, path: str, name: str, mtime: int, sums: list[str] | None) -> None:
    """`path` and everything below it, sorted by path; each regular file's MD5 into `sums`."""
    st = os.lstat(path)
    info = tar_entry(name, st, mtime)
    if info.type == tarfile.SYMTYPE:
        info.linkname = os.readlink(path)
        tar.addfile(info)
    elif info.type == tarfile.REGTYPE:
        with open(path, "rb") as f:
            data = f.read()
        if sums is not None:
            sums.append(f"{hashlib.md5(data).hexdigest()}  {name[2:]}\n")  # noqa: S324 - the format's digest
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)
        for child in sorted(os.listdir(path)):
            if name == "." and child == CONTROL_DIR:
                continue
            add_tree(tar, os.path.join(path, child), f"{name}/{child}", mtime, sums)


def gzipped_tar(fill: Callable[[tarfile.TarFile], None]) -> bytes:
    """A GNU tar, gzip level 6 (dpkg-deb's -z6); `fill` adds the members."""
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=6, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        fill(tar)
    return buffer.getvalue()


def control_tar(tree: str, md5sums: bytes, mtime: int) -> bytes:
    def fill(tar: tarfile.TarFile) -> None:
        control = os.path.join(tree, CONTROL_DIR)
        tar.addfile(tar_entry(".", os.lstat(control), mtime))
        members = sorted({*os.listdir(control), "md5sums"})
        for member in members:
            if member == "md5sums":  # ours, computed from the tree
                info = tarfile.TarInfo("./md5sums")
                info.mode, info.mtime, info.size = 0o644, mtime, len(md5sums)
                info.uname = info.gname = "root"
                tar.addfile(info, io.BytesIO(md5sums))
            else:
                add_tree(tar, os.path.join(control, member), f"./{member}", mtime, None)

    return gzipped_tar(fill)


def ar_member(name: str, data: bytes, mtime: int) -> bytes:
    """One ar(5) member as dpkg-deb writes it: a 60-byte header, the data, padded to even length."""
    header = f"{name:<16}{mtime:<12}{0:<6}{0:<6}{0o100644:<8o}{len(data):<10}`\n".encode()
    return header + data + (b"\n" if len(data) % 2 else b"")


def main() -> None:
    parser = argparse.ArgumentParser(description="Build a .deb from TREE (with TREE/DEBIAN/control).")
    parser.add_argument("tree")
    parser.add_argument("out")
    args = parser.parse_args()
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    mtime = int(epoch) if epoch else int(time.time())
    sums: list[str] = []
    data = gzipped_tar(lambda tar: add_tree(tar, args.tree, ".", mtime, sums))
    control = control_tar(args.tree, "".join(sums).encode(), mtime)
    with open(args.out, "wb") as out:
        out.write(b"!<arch>\n")
        out.write(ar_member("debian-binary", b"2.0\n", mtime))
        out.write(ar_member("control.tar.gz", control, mtime))
        out.write(ar_member("data.tar.gz", data, mtime))


if __name__ == "__main__":
    main()
