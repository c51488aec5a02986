"""Write a rendered staging tree to disk atomically: all of it, or nothing, and only where it may.

The files go into a fresh temporary directory next to the target first; only when every file
is written does it replace the target, by rename. An error leaves the previous tree (or no
tree) in place, never a mix.

An output directory is replaced only when unitgen made it: every tree it writes carries the
marker file `.unitgen-output`, and a directory is replaced only when it is a real directory
(not a symbolic link) that carries the marker, or is empty. `/`, homes, the current directory,
the inputs (spec, templates, app sources) and every directory containing one of them are
refused whatever they hold. The checks are repeated where it matters: the old tree is swapped
out with `renameat2(RENAME_EXCHANGE)` and removed only if what was swapped out carries the
marker; anything else is swapped back.

Temporary trees are named `.OUT.unitgen-XXXXXXXX` next to OUT and held with an `flock` while
they are built: a run killed with SIGKILL leaves one behind, and the next run into the same
OUT removes it (marker or empty, and no live run holds the lock).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import os
import pwd
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from unitgen.errors import UnitgenError
from unitgen.render.units import RenderedFile

MARKER = ".unitgen-output"
"""The marker file in every output directory unitgen writes; never packaged, never copied by `try`."""

MARKER_TEXT = (
    b"This directory was written by unitgen; the next 'unitgen render/package/try' into it replaces it whole.\n"
    b"Anything else put here is lost then. Delete this file to keep unitgen from replacing the directory.\n"
)

_TMP_INFIX = ".unitgen-"

# renameat2(2) flags (linux/fs.h); through ctypes because the os module has no renameat2.
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2


def protected_paths(inputs: Iterable[Path] = ()) -> list[Path]:
    """Paths an output directory may never be or contain: `/`, every home (passwd and $HOME),
    the current directory, and `inputs` (the spec, templates, app sources)."""
    paths = [Path("/"), Path.cwd(), *inputs, *_homes()]
    if os.environ.get("HOME"):
        paths.append(Path(os.environ["HOME"]))
    return paths


@functools.cache
def _homes() -> tuple[Path, ...]:
    # Read and resolved once per process: a batch checks every service's --out against all of them.
    return tuple(dict.fromkeys(Path(p.pw_dir).resolve() for p in pwd.getpwall() if p.pw_dir))


@functools.cache
def _resolved_homes() -> frozenset[str]:
    return frozenset(map(str, _homes()))


def _contains(outer: str, inner: str) -> bool:
    """`outer` is `inner` or one of its parents (both resolved); by string, as this runs for every
    protected path of every service in a batch."""
    return outer == inner or inner.startswith(outer if outer.endswith("/") else outer + "/")


def _has_marker(directory: Path) -> bool:
    try:
        return stat.S_ISREG((directory / MARKER).lstat().st_mode)
    except OSError:
        return False


def _is_empty(directory: Path) -> bool:
    with os.scandir(directory) as it:
        return next(it, None) is None


def _replaceable(directory: Path) -> bool:
    """A real directory unitgen wrote (marker) or an empty one; never a symlink."""
    try:
        st = directory.lstat()
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(st.st_mode) and (_has_marker(directory) or _is_empty(directory))


def check_out_dir(out_dir: Path, protected: Iterable[Path]) -> None:
    """Raise UnitgenError unless `out_dir` may be (re)written: absent, empty, or unitgen's own."""
    hint = "name a new directory (or one unitgen wrote before) with --out DIR"
    if out_dir.is_symlink():
        raise UnitgenError(f"--out {out_dir}: refusing a symbolic link as the output directory", hint=hint)
    real = str(out_dir.resolve())
    for path in protected:
        resolved = str(path)
        if resolved not in _resolved_homes():  # those are resolved already
            resolved = str(path.resolve())
        if _contains(real, resolved):
            what = "is" if real == resolved else "contains"
            raise UnitgenError(f"--out {out_dir}: refusing to replace a directory that {what} {path}", hint=hint)
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise UnitgenError(f"--out {out_dir}: exists and is not a directory", hint=hint)
    if not _replaceable(out_dir):
        raise UnitgenError(
            f"--out {out_dir}: refusing to replace a non-empty directory unitgen did not write (no {MARKER})",
            hint=hint,
        )


def remove_tree(tree: Path) -> None:
    """Remove an output tree, the marker last: a removal cut short by SIGKILL still leaves a
    marked (so recognisable) directory behind."""
    for child in tree.iterdir():
        if child.name == MARKER:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    (tree / MARKER).unlink(missing_ok=True)
    tree.rmdir()


def _tmp_prefix(out_dir: Path) -> str:
    return f".{out_dir.name}{_TMP_INFIX}"


def clean_leftovers(out_dir: Path) -> list[Path]:
    """Remove the temporary trees of runs into `out_dir` that were killed (SIGKILL, power loss).

    Only names of our pattern, real directories, marked or empty, and not locked by a live run."""
    removed: list[Path] = []
    parent = out_dir.parent
    if not parent.is_dir():
        return removed
    prefix = _tmp_prefix(out_dir)
    with os.scandir(parent) as entries:  # a plain prefix test: glob() compiles a pattern per call
        names = sorted(entry.name for entry in entries if entry.name.startswith(prefix))
    for candidate in (parent / name for name in names):
        if candidate.is_symlink() or not _replaceable(candidate):
            continue
        with contextlib.suppress(OSError), _locked(candidate, blocking=False):
            remove_tree(candidate)
            removed.append(candidate)
    return removed


@contextlib.contextmanager
def _locked(directory: Path, *, blocking: bool) -> Iterator[None]:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        yield
    finally:
        os.close(fd)  # drops the lock


def _renameat2(src: Path, dst: Path, flags: int) -> bool:
    """renameat2(2); False when the kernel, libc or file system cannot do it (caller falls back)."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except AttributeError:
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(dst))


def _swap_in(new: Path, out_dir: Path) -> None:
    """Put `new` at `out_dir`; afterwards `new` names the replaced tree (or nothing).

    Raises UnitgenError, with everything as it was, when what was swapped out is not ours."""
    if not out_dir.exists() and not out_dir.is_symlink():
        if not _renameat2(new, out_dir, _RENAME_NOREPLACE):
            new.rename(out_dir)  # rename(2) onto a path: fails on files and non-empty directories
        return
    if _renameat2(new, out_dir, _RENAME_EXCHANGE):
        if not _replaceable(new) or new.is_symlink():
            _renameat2(new, out_dir, _RENAME_EXCHANGE)  # changed since the check: put it back
            raise UnitgenError(f"--out {out_dir}: changed while unitgen was writing; left as it is")
        return
    # No RENAME_EXCHANGE here: move the old tree aside under a name of our pattern (so a kill
    # in between leaves it findable), then the new one into place.
    aside = Path(tempfile.mkdtemp(prefix=_tmp_prefix(out_dir), dir=out_dir.parent))
    out_dir.rename(aside)  # onto the empty directory just made
    try:
        new.rename(out_dir)
    except BaseException:
        aside.rename(out_dir)
        raise
    if not _replaceable(aside):
        raise UnitgenError(f"--out {out_dir}: changed while unitgen was writing; what was there is now {aside}")
    remove_tree(aside)


def write_tree(
    files: Iterable[RenderedFile],
    out_dir: Path,
    *,
    fill: Callable[[Path], object] | None = None,
    inputs: Iterable[Path] = (),
) -> list[Path]:
    """Replace `out_dir` with exactly `files` (plus the marker); returns the written paths.

    `fill`, if given, adds more to the new tree (the app's venv) before it replaces the old
    one, so it is atomic too. `inputs` (spec, templates, ...) must not be inside `out_dir`."""
    out_dir = out_dir.absolute()
    protected = protected_paths(inputs)
    check_out_dir(out_dir, protected)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UnitgenError(f"cannot write the staging tree {out_dir}: {exc.strerror}", hint="use --out DIR") from exc
    clean_leftovers(out_dir)
    tmp: Path | None = None
    written = []
    try:
        tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(out_dir), dir=out_dir.parent))
        with _locked(tmp, blocking=True):
            (tmp / MARKER).write_bytes(MARKER_TEXT)  # first, so even a half-built tree is recognisable
            tmp.chmod(0o755)  # a staging tree is world-readable like the target /usr
            for f in files:
                target = tmp / f.path
                target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
                target.write_bytes(f.content)
                target.chmod(f.mode)
                written.append(out_dir / f.path)
            if fill is not None:
                fill(tmp)
            check_out_dir(out_dir, protected)  # again: the build may have taken minutes
            _swap_in(tmp, out_dir)
        _discard(tmp)  # the replaced tree, now under the temporary name
    except BaseException:
        _discard(tmp)  # the new tree, or the rest of the old one when interrupted while removing it
        # A signal between mkdtemp's mkdir and the assignment to `tmp` leaves a directory that
        # only its name pattern finds (live runs' trees are locked, so they stay).
        clean_leftovers(out_dir)
        raise
    return written


def _discard(tmp: Path | None) -> None:
    if tmp is not None and _replaceable(tmp):
        remove_tree(tmp)
