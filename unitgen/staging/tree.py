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
import errno
import fcntl
import functools
import os
import pwd
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from unitgen.errors import UnitgenError

if TYPE_CHECKING:
    # Only a type here: `package` of an unchanged tree (see stamp.py) must not import the renderer.
    from unitgen.render.units import RenderedFile

# os and strings rather than pathlib where a batch runs a function for every service (500 and
# more in one process): the Path objects were most of those functions' time.
# ruff: noqa: PTH109, PTH114, PTH116, PTH208

MARKER = ".unitgen-output"
"""The marker file in every output directory unitgen writes; never packaged, never copied by `try`."""

STAMP = ".unitgen-stamp"
"""What the tree was rendered from (unitgen.staging.stamp), when `package` wrote it; not content either."""

NOT_CONTENT = frozenset({MARKER, STAMP})
"""unitgen's own files in an output directory: never packaged, installed, compared or copied."""

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
        return stat.S_ISREG(os.lstat(f"{os.fspath(directory)}/{MARKER}").st_mode)
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
    # Up to three times per service, against every protected path: os.path on strings (above).
    text = os.fspath(out_dir)
    if os.path.islink(text):
        raise UnitgenError(f"--out {out_dir}: refusing a symbolic link as the output directory", hint=hint)
    real = os.path.realpath(text)
    homes = _resolved_homes()
    # getcwd(3) is the kernel's path of the directory: absolute, no '.', '..' or symbolic link, so
    # realpath() of it (a Python loop and an lstat per component, per service) gives it back.
    cwd = os.getcwd()
    for path in protected:
        resolved = os.fspath(path)
        if resolved not in homes and resolved != cwd:  # those are resolved already
            resolved = os.path.realpath(resolved)
        if _contains(real, resolved):
            what = "is" if real == resolved else "contains"
            raise UnitgenError(f"--out {out_dir}: refusing to replace a directory that {what} {path}", hint=hint)
    try:
        st = os.stat(text)
    except (FileNotFoundError, NotADirectoryError):  # what Path.exists() takes for "absent"
        return
    if not stat.S_ISDIR(st.st_mode):
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
    names = sorted(name for name in _temporary_names(parent) if name.startswith(prefix))
    for candidate in (parent / name for name in names):
        if candidate.is_symlink() or not _replaceable(candidate):
            continue
        with contextlib.suppress(OSError), _locked(candidate, blocking=False):
            remove_tree(candidate)
            removed.append(candidate)
    if removed:
        _listings.pop(os.fspath(parent), None)
    return removed


# parent directory -> (its version when listed, the names in it that look like temporary trees).
# A batch writes 500 trees into one build/: listing it (500 entries) for every one of them was
# 10% of the batch. Reused only while the directory's version is the one listed (or the one our
# own write left, see _note_own_changes); a stale entry can only miss a leftover, which a later
# run removes, never remove anything: every candidate is checked again before removal.
_listings: dict[str, tuple[tuple[int, int], list[str]]] = {}


def _version(directory: str) -> tuple[int, int]:
    # The mtime has the kernel's tick as resolution (ext4: 4 ms); the link count changes with
    # every subdirectory made or removed in the same tick, and leftovers are directories.
    st = os.stat(directory)
    return st.st_mtime_ns, st.st_nlink


def _temporary_names(parent: Path) -> list[str]:
    key = os.fspath(parent)
    version = _version(key)
    cached = _listings.get(key)
    if cached is not None and cached[0] == version:
        return cached[1]
    names = [name for name in os.listdir(key) if name.startswith(".") and _TMP_INFIX in name]
    _listings[key] = (version, names)
    return names


def _note_own_changes(parent: Path, before: tuple[int, int]) -> None:
    """After a write: the parent's new mtime is ours (our temporary tree came and went) when the
    listing was current before it; keep the listing for the next service of a batch."""
    key = os.fspath(parent)
    cached = _listings.get(key)
    if cached is not None and cached[0] == before:
        with contextlib.suppress(OSError):
            _listings[key] = (_version(key), cached[1])


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
    import ctypes  # here: a re-render that keeps its tree renames nothing and needs no ctypes

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
    listed = _listings.get(os.fspath(out_dir.parent), ((-1, -1), []))[0]
    files = list(files)
    if fill is None and _holds_exactly(out_dir, files):
        # Same bytes, modes and entries as a fresh tree would have (a re-render of an unchanged
        # spec): replacing it would only cost 12 mkdir and 12 rmdir per tree, ~100 us each on
        # ext4, for the same result.
        return [out_dir / f.path for f in files]
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
        _note_own_changes(out_dir.parent, listed)
    except BaseException:
        _discard(tmp)  # the new tree, or the rest of the old one when interrupted while removing it
        # A signal between mkdtemp's mkdir and the assignment to `tmp` leaves a directory that
        # only its name pattern finds (live runs' trees are locked, so they stay).
        clean_leftovers(out_dir)
        raise
    return written


@functools.cache
def _dir_mode() -> int:
    """The mode `mkdir(mode=0o755)` gives under this process's umask (read once: umask(2) can
    only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o755 & ~mask


def _holds_exactly(out_dir: Path, files: list[RenderedFile]) -> bool:
    """`out_dir` is a real directory of ours holding exactly `files` (content, mode, regular files
    of this user) and the marker, and nothing else: what a fresh write would leave, so it can stay."""
    expected = {f.path.as_posix(): Expected(len(f.content), f.mode, _same_bytes(f.content)) for f in files}
    return holds_exactly(out_dir, expected)


def _same_bytes(content: bytes) -> Callable[[str], bool]:
    return lambda path: _read(path, len(content) + 1) == content


class Expected(NamedTuple):
    """One regular file a tree must hold: its size (-1: any, `same` checks it), its mode, and a
    check of its content by path."""

    size: int
    mode: int
    same: Callable[[str], bool]


def holds_exactly(out_dir: Path, expected: Mapping[str, Expected]) -> bool:
    """`out_dir` is a real directory of this user (mode 0755) holding exactly the `expected`
    regular files (relative POSIX paths) of this user, their parent directories (with the mode
    `mkdir` gives them), the marker, optionally the stamp, and nothing else."""
    dirs = {"": 0o755}  # the tree itself is chmod-ed to 0755
    dir_mode = _dir_mode()
    for path in expected:
        # Each parent up to the first one already listed (whose parents are then listed too).
        end = path.rfind("/")
        while end > 0 and path[:end] not in dirs:
            dirs[path[:end]] = dir_mode
            end = path.rfind("/", 0, end)
    uid = os.geteuid()
    seen = 0
    marked = False
    base = os.fspath(out_dir)
    pending = [""]
    try:
        root = os.lstat(base)
        if not stat.S_ISDIR(root.st_mode) or root.st_uid != uid or stat.S_IMODE(root.st_mode) != dirs[""]:
            return False
        while pending:
            rel = pending.pop()
            with os.scandir(f"{base}/{rel}" if rel else base) as entries:
                for entry in entries:
                    path = f"{rel}/{entry.name}" if rel else entry.name
                    st = entry.stat(follow_symlinks=False)
                    if st.st_uid != uid:
                        return False
                    if stat.S_ISDIR(st.st_mode):
                        if dirs.get(path) != stat.S_IMODE(st.st_mode):
                            return False
                        pending.append(path)
                        continue
                    if not stat.S_ISREG(st.st_mode):
                        return False
                    if path == MARKER:  # written with the umask's mode, which no check relies on
                        if _read(entry.path, len(MARKER_TEXT) + 1) != MARKER_TEXT:
                            return False
                        marked = True
                        continue
                    if path == STAMP:  # optional; its readers check it (unitgen.staging.stamp)
                        continue
                    want = expected.get(path)
                    if want is None or want.size not in (-1, st.st_size) or stat.S_IMODE(st.st_mode) != want.mode:
                        return False
                    if not want.same(entry.path):
                        return False
                    seen += 1
    except OSError:
        return False
    # Every file there (so every directory holding one too), and the marker.
    return seen == len(expected) and marked


def _read(path: str, limit: int) -> bytes:
    # Not followed and never blocking: what was a regular file at the lstat may be a link or a
    # FIFO by now; either way it then does not compare equal.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        return os.read(fd, limit)
    finally:
        os.close(fd)


def _discard(tmp: Path | None) -> None:
    if tmp is not None and _replaceable(tmp):
        remove_tree(tmp)
