"""File operations under an install root that never follow a symbolic link on the way.

Every path is opened from a descriptor of the root, one component at a time, with
`O_NOFOLLOW|O_DIRECTORY`: a symbolic link planted in place of `/usr/libexec/NAME` (or any other
parent) is an error, never a way to make root write elsewhere. Files are written to a temporary
name in their final directory (`O_CREAT|O_EXCL|O_NOFOLLOW`), owned by root, given their mode,
synced, then renamed over the final name, so a reader sees the old file or the new one and a crash
leaves at most a temporary file whose name says whose it is (`.NAME.unitgen-XXXXXXXX`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

from unitgen.errors import UnitgenError

TMP_INFIX = ".unitgen-"
_TMP_NAME = re.compile(r"\.(.+)" + re.escape(TMP_INFIX) + r"[0-9a-f]{8}")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class SymlinkInPathError(UnitgenError):
    """A parent of a path under the root is a symbolic link (or not a directory)."""


def tmp_name(name: str) -> str:
    return f".{name}{TMP_INFIX}{secrets.token_hex(4)}"


def tmp_base(name: str) -> str | None:
    """FILE when `name` is exactly what `tmp_name(FILE)` makes (a killed write's leftover), else None:
    an admin's `.FILE.unitgen-backup` is not ours."""
    match = _TMP_NAME.fullmatch(name)
    return match[1] if match else None


def sha256_fd(fd: int) -> str:
    digest = hashlib.sha256()
    while block := os.read(fd, 1 << 20):
        digest.update(block)
    return digest.hexdigest()


class Root:
    """The install root (`/` or --root DIR), opened once; relative POSIX paths below it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise UnitgenError(f"--root {path}: {exc.strerror}", hint="name an existing directory") from exc

    def close(self) -> None:
        os.close(self.fd)  # drops the lock too

    def lock(self, say: Callable[[str], None]) -> None:
        """One install or uninstall at a time under this root: each reads every manifest to know
        what others own, so two at once could both claim a path. An flock on the root directory
        itself, so that taking it writes nothing (a refused install leaves the host as it was)."""
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another unitgen install or uninstall under {self.path} to finish")
            fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __enter__(self) -> Root:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def show(self, rel: PurePosixPath) -> str:
        """The path as the user knows it: /usr/lib/... (under --root, ROOT/usr/lib/...)."""
        return str(self.path / rel) if str(self.path) != "/" else f"/{rel}"

    @contextlib.contextmanager
    def directory(self, rel: PurePosixPath, *, create: list[PurePosixPath] | None = None) -> Iterator[int | None]:
        """A descriptor of directory `rel`, or None when a component is missing. With `create`,
        missing components are made (root's, 0755) and appended to it."""
        fd = os.dup(self.fd)
        try:
            done = PurePosixPath()
            for part in rel.parts:
                done = done / part
                try:
                    new = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if create is None:
                        os.close(fd)
                        fd = -1
                        yield None
                        return
                    os.mkdir(part, 0o755, dir_fd=fd)
                    create.append(done)
                    new = os.open(part, _DIR_FLAGS, dir_fd=fd)
                    os.fchown(new, 0, 0)
                    os.fchmod(new, 0o755)  # whatever the umask
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise SymlinkInPathError(
                            f"{self.show(done)} is a symbolic link or not a directory; unitgen install"
                            " follows no symbolic link under the root",
                            hint="remove or move it aside if it is not needed, or install with --root elsewhere",
                        ) from None
                    raise
                os.close(fd)
                fd = new
            yield fd
        finally:
            if fd >= 0:
                os.close(fd)

    def lstat(self, rel: PurePosixPath) -> os.stat_result | None:
        with self.directory(rel.parent) as fd:
            if fd is None:
                return None
            try:
                return os.stat(rel.name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                return None

    def sha256(self, rel: PurePosixPath) -> str | None:
        """The hash of a regular file's content, None when it is absent or not a regular file."""
        with self.directory(rel.parent) as dfd:
            if dfd is None:
                return None
            try:
                fd = os.open(rel.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dfd)
            except OSError:
                return None
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    return None
                return sha256_fd(fd)
            finally:
                os.close(fd)

    def readlink(self, rel: PurePosixPath) -> str | None:
        with self.directory(rel.parent) as fd:
            if fd is None:
                return None
            try:
                return os.readlink(rel.name, dir_fd=fd)
            except OSError:
                return None

    def listdir(self, rel: PurePosixPath) -> list[str]:
        with self.directory(rel) as fd:
            return [] if fd is None else sorted(os.listdir(fd))  # noqa: PTH208 -- a descriptor, opened without following links

    def write_file(self, rel: PurePosixPath, content: bytes | Path, mode: int, created: list[PurePosixPath]) -> None:
        """Put a regular file in place atomically (temp, fsync, rename); parents made as needed."""
        with self.directory(rel.parent, create=created) as dfd:
            assert dfd is not None
            tmp = tmp_name(rel.name)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
            try:
                with os.fdopen(fd, "wb", closefd=False) as out:
                    if isinstance(content, Path):
                        with content.open("rb") as src:
                            while block := src.read(1 << 20):
                                out.write(block)
                    else:
                        out.write(content)
                os.fchown(fd, 0, 0)
                os.fchmod(fd, mode)
                os.fsync(fd)
                os.rename(tmp, rel.name, src_dir_fd=dfd, dst_dir_fd=dfd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=dfd)
                raise
            finally:
                os.close(fd)
            os.fsync(dfd)  # the rename itself survives a crash

    def symlink(self, rel: PurePosixPath, target: str, created: list[PurePosixPath]) -> None:
        with self.directory(rel.parent, create=created) as dfd:
            assert dfd is not None
            tmp = tmp_name(rel.name)
            os.symlink(target, tmp, dir_fd=dfd)
            try:
                os.chown(tmp, 0, 0, dir_fd=dfd, follow_symlinks=False)
                os.rename(tmp, rel.name, src_dir_fd=dfd, dst_dir_fd=dfd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=dfd)
                raise

    def make_dirs(self, rel: PurePosixPath, created: list[PurePosixPath]) -> None:
        with self.directory(rel, create=created):
            pass

    def unlink(self, rel: PurePosixPath) -> bool:
        """Remove a file or symbolic link; False when it is absent."""
        return self._remove(rel, os.unlink, FileNotFoundError)

    def rmdir(self, rel: PurePosixPath) -> bool:
        """Remove an empty directory; False when it is absent, not empty or not a directory."""
        return self._remove(rel, os.rmdir, OSError)

    def _remove(self, rel: PurePosixPath, remove: Callable[..., None], expected: type[OSError]) -> bool:
        """`remove(name, dir_fd=...)` in rel's parent (opened by `directory`); False when
        the parent is missing or `remove` fails with `expected`."""
        with self.directory(rel.parent) as fd:
            if fd is None:
                return False
            try:
                remove(rel.name, dir_fd=fd)
            except expected:
                return False
            return True

    def rmtree(self, rel: PurePosixPath) -> bool:
        """Remove a directory tree (a state directory, on purge) without following symbolic links."""
        with self.directory(rel.parent) as fd:
            if fd is None:
                return False
            try:
                st = os.stat(rel.name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                return False
            if stat.S_ISDIR(st.st_mode):
                _rmtree_at(fd, rel.name)
            else:
                os.unlink(rel.name, dir_fd=fd)
            return True


def _rmtree_at(parent: int, name: str) -> None:
    fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    try:
        for entry in os.listdir(fd):  # noqa: PTH208 -- a descriptor, opened without following links
            st = os.stat(entry, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                _rmtree_at(fd, entry)
            else:
                os.unlink(entry, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent)
