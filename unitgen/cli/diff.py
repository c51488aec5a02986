"""`render --diff` and `package --diff`: what would change, as a unified diff, writing nothing.

The baseline is the staging tree (--out) when it exists, since that is what `render` would
replace; otherwise the files installed under --root (default /), since that is what a package
or an install would replace. Files only in the new rendering are shown as added (from
/dev/null), files only in the baseline as removed. The output is git's extended diff format
(`diff --git`, `new file mode`, `old mode`/`new mode`), which `git apply` and `patch -p1` read.
Exit status like diff(1): 0 when nothing would change, 1 when something would.
"""

from __future__ import annotations

import argparse
import difflib
import os
import stat
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from unitgen.render.units import UNIT_DIR, RenderedFile, render
from unitgen.spec import Spec, load_spec
from unitgen.staging.tree import NOT_CONTENT

Result = tuple[int, dict[str, Any] | None]


@dataclass(frozen=True)
class Old:
    """A file of the baseline, read without following a symbolic link."""

    content: bytes | None  # None: not a regular file (a symbolic link, a directory, ...)
    mode: int
    kind: str = "file"


@dataclass(frozen=True)
class Change:
    path: PurePosixPath
    status: str  # "added", "removed", "modified", "mode" (only the permissions differ)
    old_mode: int | None
    new_mode: int | None
    diff: str


def _read(path: Path) -> Old | None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    except NotADirectoryError:  # a parent is a file: nothing is at this path
        return None
    if not stat.S_ISREG(st.st_mode):
        kind = "symbolic link" if stat.S_ISLNK(st.st_mode) else "directory" if stat.S_ISDIR(st.st_mode) else "special"
        return Old(None, stat.S_IMODE(st.st_mode), kind)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        return Old(f.read(), stat.S_IMODE(st.st_mode))


def _lines(content: bytes) -> list[str] | None:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n\\ No newline at end of file\n"
    return lines


def _git_mode(mode: int) -> str:
    return f"100{mode:03o}" if mode <= 0o777 else f"10{mode:04o}"


def _file_diff(rel: PurePosixPath, old: Old | None, new: RenderedFile | None) -> Change | None:
    a, b = f"a/{rel}", f"b/{rel}"
    head = [f"diff --git {a} {b}\n"]
    old_content = old.content if old is not None and old.content is not None else b""
    new_content = new.content if new is not None else b""
    if old is None and new is None:
        return None  # a file an earlier version might have had, absent on both sides
    if old is None:
        assert new is not None  # for mypy
        status, head = "added", [*head, f"new file mode {_git_mode(new.mode)}\n"]
        a = "/dev/null"
    elif new is None:
        status, head = "removed", [*head, f"deleted file mode {_git_mode(old.mode)}\n"]
        b = "/dev/null"
    elif old.content is None:
        status = "modified"
        head.append(f"# {a} is a {old.kind}; it would be replaced by a regular file\n")
    elif old.content == new.content and old.mode == new.mode:
        return None
    else:
        status = "modified" if old.content != new.content else "mode"
        if old.mode != new.mode:
            head += [f"old mode {_git_mode(old.mode)}\n", f"new mode {_git_mode(new.mode)}\n"]
    body: list[str] = []
    if old_content != new_content:
        old_lines, new_lines = _lines(old_content), _lines(new_content)
        if old_lines is None or new_lines is None:
            body = [f"Binary files {a} and {b} differ\n"]
        else:
            body = list(difflib.unified_diff(old_lines, new_lines, fromfile=a, tofile=b))
    return Change(
        rel,
        status,
        None if old is None else old.mode,
        None if new is None else new.mode,
        "".join(head + body),
    )


def _installed_extras(spec: Spec, root: Path) -> Iterable[PurePosixPath]:
    """Files an earlier version may have installed that this rendering lacks: a timer since
    dropped, a sysusers file of a user since removed, an older launcher's other files. Not
    directories: the launcher's __pycache__ is compiled on the target by the package's scripts."""
    yield UNIT_DIR / f"{spec.name}.timer"
    yield PurePosixPath("usr/lib/sysusers.d", f"{spec.name}.conf")
    libexec = root / "usr/libexec" / spec.name
    if libexec.is_dir() and not libexec.is_symlink():
        for entry in sorted(libexec.iterdir()):
            if entry.is_symlink() or not entry.is_dir():
                yield PurePosixPath("usr/libexec", spec.name, entry.name)


def _staged(base: Path, skip: PurePosixPath | None) -> Iterable[PurePosixPath]:
    for dirpath, dirnames, filenames in os.walk(base):
        rel_dir = PurePosixPath(Path(dirpath).relative_to(base).as_posix())
        if skip is not None and (rel_dir == skip or skip in rel_dir.parents):
            dirnames[:] = []
            continue
        for name in [*filenames, *(d for d in dirnames if (Path(dirpath) / d).is_symlink())]:
            rel = rel_dir / name
            if rel.as_posix() not in NOT_CONTENT:
                yield rel


def compare(
    spec: Spec, files: Sequence[RenderedFile], base: Path, *, staging: bool, skip: PurePosixPath | None = None
) -> list[Change]:
    """The changes from `base` (a staging tree, or an installed root) to `files`."""
    new = {f.path: f for f in files}
    candidates = set(new)
    candidates |= set(_staged(base, skip)) if staging else set(_installed_extras(spec, base))
    changes = []
    for rel in sorted(candidates):
        change = _file_diff(rel, _read(base / rel), new.get(rel))
        if change is not None:
            changes.append(change)
    return changes


def diff_services(
    args: argparse.Namespace,
    each: Sequence[argparse.Namespace],
    spec_path: Callable[[argparse.Namespace], Path],
    out_dir: Callable[[argparse.Namespace], Path],
) -> Result:
    jobs = []
    for one in each:  # every spec first: one bad spec among many shows nothing
        spec = load_spec(spec_path(one), one.name)
        if args.command == "package":
            from unitgen.package.from_spec import package_info

            package_info(spec, None)  # what `package` refuses, --diff refuses too
        jobs.append((one, spec))
    services = []
    for one, spec in jobs:
        files = render(spec, template_dirs=[Path(t) for t in one.templates])
        out = out_dir(one)
        staging = out.is_dir()
        base = out if staging else Path(one.root or "/")
        # `package` rebuilds the venv; comparing it file by file says nothing useful.
        skip = PurePosixPath(spec.app.venv.lstrip("/")) if spec.app is not None and args.command == "package" else None
        changes = compare(spec, files, base, staging=staging, skip=skip)
        text = "".join(c.diff for c in changes)
        if not args.json:
            sys.stdout.write(text)
        kind = "staging tree" if staging else "installed files under"
        print(f"{spec.name}: {len(changes)} file(s) would change, compared with the {kind} {base}", file=sys.stderr)
        services.append(
            {
                "name": spec.name,
                "against": {"kind": "staging" if staging else "installed", "path": str(base.absolute())},
                "changed": bool(changes),
                "changes": [
                    {
                        "path": str(c.path),
                        "status": c.status,
                        "old_mode": None if c.old_mode is None else f"{c.old_mode:04o}",
                        "new_mode": None if c.new_mode is None else f"{c.new_mode:04o}",
                    }
                    for c in changes
                ],
                "diff": text,
            }
        )
    changed = any(s["changed"] for s in services)
    return (1 if changed else 0), {"command": args.command, "diff": True, "changed": changed, "services": services}
