"""A staging tree's stamp: what the tree was rendered from, so that `render` and `package` of an
unchanged spec use the tree on disk without loading the spec or rendering it again (issue 12).

`render` and `package` write `.unitgen-stamp` (tree.STAMP) into the output directory after writing
the tree, for services without an [app] (their venv is built afresh every time). It holds:
- the key: a sha256 of everything the rendered files and the package's metadata are a function
  of: unitgen's code and templates (size and mtime of every file, as Python's own bytecode cache
  trusts them), the interpreter's version, the jinja2 installation, the current directory, the
  spec's path, the service name and the spec's bytes and the --templates directories' files (all
  read before the spec is loaded: `inputs`), and the files the spec reads ([config] sources, by
  the content that was rendered);
- the sha256 and mode of every file of the tree;
- what the caller attached (`package`: the package metadata; `render`: nothing), as plain data.

A stamp is used only when its key is the key of the inputs now, and the tree holds exactly the
stamped files (content, modes, nothing else, all of this user): then the tree is what rendering
would write. Anything else (no stamp, a stamp of another unitgen, a file edited in the tree, an
unreadable input) is a miss, and the caller renders as before; a stamp never decides an error.
The stamp is unitgen's own file in unitgen's own directory, read only when it is a regular file
of this user that nobody else can write, and carries a digest of its body, so a damaged one is
a miss; it is marshal data (builtin: no import) of plain values only.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import marshal
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from unitgen.digest import Digest, jinja2_identity, read_file, tree_stats
from unitgen.resources import template_root
from unitgen.staging.tree import STAMP, Expected, holds_exactly

if TYPE_CHECKING:
    from unitgen.render.units import RenderedFile

# os and strings rather than pathlib: this runs at the start of every `package` (its point is to
# be quick), over a few hundred files of unitgen's own.
# ruff: noqa: PTH100, PTH105, PTH108, PTH109, PTH116

_HEADER = b"unitgen-stamp 1\n"
# An input larger than this is never stamped (a spec is a few hundred bytes, a [config] source
# at most 1 MiB): the key would cost more than rendering.
_INPUT_MAX = 16 * 1024 * 1024


class Source(NamedTuple):
    """What a tree is rendered from, as the command line names it."""

    spec: Path
    name: str
    template_dirs: tuple[Path, ...] = ()


def digests(files: Sequence[RenderedFile]) -> tuple[tuple[str, int, str], ...]:
    """What a stamp records of each rendered file: its path, mode and sha256, in rendering order."""
    return tuple((f.path.as_posix(), f.mode, hashlib.sha256(f.content).hexdigest()) for f in files)


def write(
    out_dir: Path,
    before: Inputs,
    files: tuple[tuple[str, int, str], ...],
    reads: Sequence[tuple[str, bytes]],
    attached: Any,
) -> None:
    """Stamp the tree just written at `out_dir`: `before` taken before the spec was loaded, `files`
    the tree's `digests`, `reads` the other files the spec read (absolute path, the content that
    was rendered), `attached` plain data (marshal-able) or None, handed back by `current`. A stamp
    that cannot be written is no error: the next run renders again."""
    key = _key(before, [(path, hashlib.sha256(content).hexdigest()) for path, content in reads])
    if key is None:
        _remove(out_dir)
        return
    try:
        body = marshal.dumps((key, tuple(path for path, _ in reads), files, attached))
    except ValueError:  # something attached that is not plain data: no stamp, the next run renders
        _remove(out_dir)
        return
    data = _HEADER + hashlib.sha256(body).hexdigest().encode() + b"\n" + body
    tmp = f"{os.fspath(out_dir)}/{STAMP}.{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, f"{os.fspath(out_dir)}/{STAMP}")
    except OSError:
        _remove(out_dir, tmp)


class Stamped(NamedTuple):
    """A current stamp: the tree's files as rendered (path, mode, sha256, in rendering order) and
    what was attached to it."""

    files: tuple[tuple[str, int, str], ...]
    attached: Any


def current(out_dir: Path, before: Inputs) -> Stamped | None:
    """The stamp of the tree at `out_dir` if that tree is what rendering would write now."""
    stamped = _read(out_dir)
    if stamped is None or before.digest is None:
        return None
    try:
        key, reads, files, attached = stamped
        if key != _key(before, [(path, _file_sha256(path)) for path in reads]):
            return None
        expected = {path: Expected(-1, mode, _sha256_is(digest)) for path, mode, digest in files}  # size: the digest's
    except (TypeError, ValueError):  # a stamp of another shape
        return None
    if not holds_exactly(out_dir, expected):
        return None
    return Stamped(files, attached)


def _read(out_dir: Path) -> tuple[Any, ...] | None:
    data = read_file(f"{os.fspath(out_dir)}/{STAMP}", _INPUT_MAX, private=True)
    if data is None or not data.startswith(_HEADER):
        return None
    digest, _, body = data[len(_HEADER) :].partition(b"\n")
    if hashlib.sha256(body).hexdigest().encode() != digest:
        return None
    try:
        stamped = marshal.loads(body)  # noqa: S302 -- our own file, checked (owner, mode, digest)
    except (EOFError, ValueError, TypeError):
        return None
    return stamped if isinstance(stamped, tuple) and len(stamped) == 4 else None


def _sha256_is(digest: str) -> Any:
    return lambda path: _file_sha256(path) == digest


def _file_sha256(path: str) -> str | None:
    data = read_file(path, _INPUT_MAX)
    return None if data is None else hashlib.sha256(data).hexdigest()


def _remove(out_dir: Path, *extra: str) -> None:
    for path in (f"{os.fspath(out_dir)}/{STAMP}", *extra):
        with contextlib.suppress(OSError):
            os.unlink(path)


class Inputs(NamedTuple):
    """The inputs of a rendering read before it: taken first, so an input edited while the tree is
    rendered gives a stamp that no longer matches (the next run renders again), never one that
    vouches for a tree of older inputs."""

    source: Source
    digest: str | None  # None: an input could not be read (no stamp then)


def inputs(source: Source) -> Inputs:
    """Everything a rendering of `source` reads but the files the spec names ([config] sources)."""
    # The interpreter by its version (the standard library's behaviour), unitgen by the files this
    # process loaded, jinja2 by the files `import jinja2` finds: `python -m unitgen`, the venv's
    # script and an installed stub running the same code share their stamps.
    digest = Digest(_HEADER, sys.version, _code_signature(), jinja2_identity())
    digest.add(os.getcwd(), os.path.abspath(source.spec), source.name)
    spec_digest = _file_sha256(os.fspath(source.spec))
    if spec_digest is None:
        return Inputs(source, None)
    digest.add(spec_digest)
    for directory in source.template_dirs:
        signature = _tree_contents(os.path.abspath(directory))
        if signature is None:
            return Inputs(source, None)
        digest.add(os.path.abspath(directory), signature)
    return Inputs(source, digest.hexdigest())


def _key(before: Inputs, reads: Sequence[tuple[str, str | None]]) -> str | None:
    """The sha256 of every input of the rendering: `before`, and each file the spec read by (path,
    sha256); None when one could not be read."""
    if before.digest is None or any(digest is None for _, digest in reads):
        return None
    key = Digest(before.digest)
    for path, digest in reads:
        key.add(path, digest or "")
    return key.hexdigest()


@functools.cache
def _code_signature() -> str:
    """unitgen's modules and templates, by path, size and mtime (what decides a .pyc is current)."""
    package = Path(__file__).resolve().parent.parent
    roots = dict.fromkeys([os.fspath(package), os.fspath(template_root())])
    return "\n".join(f"{root}\n{tree_stats(root)}" for root in roots)


def _tree_contents(root: str) -> str | None:
    """A --templates directory: every file by path and content (a user edits these by hand)."""
    lines = []
    pending = [root]
    seen: set[tuple[int, int]] = set()  # Jinja follows symbolic links; a loop of them ends here
    try:
        while pending:
            directory = pending.pop()
            st = os.stat(directory)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.is_dir():
                        pending.append(entry.path)
                    elif (digest := _file_sha256(entry.path)) is not None:
                        lines.append(f"{entry.path[len(root) :]} {digest}")
                    else:
                        return None
    except OSError:
        return None
    return "\n".join(sorted(lines))
