"""The system calls the sandbox needs that Python 3.11 does not wrap, made through `ctypes`.

mount(2), unshare(2), prctl(2), pivot_root(2) and umount2(2), each raising `OSError` with the
errno on failure, and the kernel's flag values for them. Standard library only: the helper
process (`unitgen.sandbox.stage2`) runs on it.
"""

from __future__ import annotations

import ctypes
import os
import platform

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SHARED = 1 << 20
MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24

# pivot_root(2) has no glibc wrapper.
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}

_libc: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(result: int, what: str) -> None:
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def mount(what: str | None, where: str, fstype: str | None, flags: int, options: str | None) -> None:
    def b(s: str | None) -> bytes | None:
        return None if s is None else os.fsencode(s)

    result = _c().mount(b(what), b(where), b(fstype), ctypes.c_ulong(flags), b(options))
    _check(result, f"mount {where}")


def unshare(flags: int) -> None:
    _check(_c().unshare(ctypes.c_int(flags)), "unshare")


def prctl(option: int, arg: int) -> None:
    _check(_c().prctl(ctypes.c_int(option), ctypes.c_ulong(arg), 0, 0, 0), f"prctl {option}")


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2), through syscall(2)."""
    number = _SYS_PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise OSError(0, f"pivot_root: unknown system call number on {platform.machine()}")
    _check(_c().syscall(ctypes.c_long(number), os.fsencode(new_root), os.fsencode(put_old)), "pivot_root")


def umount2(where: str, flags: int, what: str | None = None) -> None:
    """umount2(2); `what` names the step in the error (default: "umount WHERE")."""
    _check(_c().umount2(os.fsencode(where), ctypes.c_int(flags)), what or f"umount {where}")
