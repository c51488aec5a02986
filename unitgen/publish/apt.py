"""A signed apt repository as a tree of static files, written by unitgen itself.

    REPO/pool/COMPONENT/h/hello/hello_1.0.0-1_all.deb
    REPO/dists/SUITE -> .SUITE.g7                  (a symbolic link, swapped atomically)
    REPO/dists/.SUITE.g7/Release, InRelease, Release.gpg
    REPO/dists/.SUITE.g7/COMPONENT/binary-ARCH/Packages, Packages.gz, Packages.xz, by-hash/SHA256/...
    REPO/key.asc                                    (the public key, for Signed-By:)

Why write the index here rather than run a tool: it is ~200 lines of Python over files unitgen
already knows how to read, and it runs wherever unitgen runs (a Fedora build host too), needing only
gpg. `apt-ftparchive` (apt-utils) exists on Debian and Ubuntu only and leaves the Release layout,
signing and atomic swap to the caller; reprepro (Debian only, ~2 MB with its Berkeley DB) and aptly
(a 30 MB Go binary, its own database outside the tree) each keep state beside the repository that
must be backed up with it. Here the published `Packages` files are the only state.

Each publish writes a complete new generation of `dists/SUITE` beside the old one, signs it, and
only then replaces the `dists/SUITE` link with rename(2): a client sees the old index or the new
one, never a mix. The Release says `Acquire-By-Hash: yes` and each generation also carries the
previous generation's indices under `by-hash/`, so a client that read the old InRelease just before
the swap still finds the Packages it names. Pool files are added before the swap and removed only
after it.

Retention: per component, package name and architecture, the newest `keep` versions (deb-version
order) stay. An older one leaves the index at the publish that pushes it out, and the pool at the
publish after that (the previous index, still served by hash, names it until then).
"""

from __future__ import annotations

import contextlib
import email.utils
import fcntl
import functools
import gzip
import hashlib
import lzma
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from unitgen.errors import UnitgenError
from unitgen.publish.debfile import Deb, parse_stanza, parse_stanzas, read_deb, version_key
from unitgen.publish.pool import pool_file
from unitgen.publish.signing import Signer

# Debian's release architectures (and the ports still built); "all" packages go into each.
ARCHITECTURES = ("amd64", "arm64", "armel", "armhf", "i386", "mips64el", "ppc64el", "riscv64", "s390x")
KEEP = 3
_NAME = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")  # suites, components, package names (Debian policy 5.6.1)
_VERSION = re.compile(r"^[A-Za-z0-9.+~:-]+$")  # deb-version(7) characters: nothing that makes a path
_INDEX_FIELDS = ("Filename", "Size", "MD5sum", "SHA1", "SHA256")
_INDEX_FILES = ("Packages", "Packages.gz", "Packages.xz")


@dataclass(frozen=True)
class Entry:
    """A package in the repository: its .deb's facts and where it lies in the pool."""

    component: str
    deb: Deb
    pool_path: str  # relative to the repository root

    def stanza(self) -> str:
        d = self.deb
        return (f"{d.control}\nFilename: {self.pool_path}\nSize: {d.size}\nMD5sum: {d.md5}\n"
                f"SHA1: {d.sha1}\nSHA256: {d.sha256}\n")  # fmt: skip


@dataclass
class AptResult:
    """What a publish did to the apt side, as pool paths."""

    added: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)  # older than the `keep` newest: not added
    generation: int = 0


def pool_path(component: str, deb: Deb) -> str:
    prefix = deb.name[:4] if deb.name.startswith("lib") else deb.name[0]
    return f"pool/{component}/{prefix}/{deb.name}/{deb.filename}"


def check_name(what: str, value: str) -> None:
    if not _NAME.match(value):
        raise UnitgenError(f"{what} {value!r} is not allowed",
                           hint="lower-case letters, digits and . + -, starting with a letter or digit")  # fmt: skip


# --- reading the published state ------------------------------------------------------------


def _current(repo: Path, suite: str) -> tuple[int, Path | None]:
    """The current generation number of `dists/SUITE` and its directory (0, None: none yet)."""
    link = repo / "dists" / suite
    if not link.exists() and not link.is_symlink():
        return 0, None
    target = str(link.readlink()) if link.is_symlink() else ""
    m = re.fullmatch(rf"\.{re.escape(suite)}\.g(\d+)", target)
    if m is None or not (repo / "dists" / target).is_dir():
        raise UnitgenError(f"{link} was not written by unitgen publish",
                           hint="publish into a new directory, or one unitgen made")  # fmt: skip
    return int(m.group(1)), repo / "dists" / target


def _read_entries(generation: Path) -> tuple[list[Entry], list[str], list[str]]:
    """The entries, components and architectures of one published generation."""
    release = parse_stanza((generation / "Release").read_text())
    components = release.get("Components", "").split()
    architectures = release.get("Architectures", "").split()
    seen: dict[str, Entry] = {}
    for component in components:
        for arch in architectures:
            index = generation / component / f"binary-{arch}" / "Packages"
            for stanza in parse_stanzas(index.read_text()) if index.exists() else ():
                fields = parse_stanza(stanza)
                if fields["Filename"] in seen:
                    continue  # an "all" package, listed under every architecture
                control = "\n".join(line for line in stanza.splitlines()
                                    if line.split(":", 1)[0] not in _INDEX_FIELDS)  # fmt: skip
                deb = Deb(fields["Package"], fields["Version"], fields["Architecture"], control,
                          int(fields["Size"]), fields["MD5sum"], fields["SHA1"], fields["SHA256"])  # fmt: skip
                seen[fields["Filename"]] = Entry(component, deb, fields["Filename"])
    return list(seen.values()), components, architectures


# --- planning: what goes in, what stays, what goes ------------------------------------------


@dataclass
class _Plan:
    current: list[Entry]  # what the published index lists now
    keep: list[Entry]
    copy: list[tuple[Path, Entry]]  # new files for the pool
    removed: list[Entry]
    unchanged: list[str]
    superseded: list[str]


def _plan(debs: Sequence[Path], current: list[Entry], component: str, architectures: Sequence[str], keep: int) -> _Plan:
    by_key = {e.deb.key(): e for e in current}
    incoming: dict[tuple[str, str, str], tuple[Path, Deb]] = {}
    unchanged = []
    for path in debs:
        deb = read_deb(path)
        check_name(f"{path}: package name", deb.name)
        if not _VERSION.match(deb.version):
            raise UnitgenError(f"{path}: version {deb.version!r} is not a Debian version")
        if deb.architecture != "all" and deb.architecture not in architectures:
            raise UnitgenError(
                f"{path}: architecture {deb.architecture!r} is not one this repository publishes "
                f"({' '.join(architectures)})",
                hint="add it to the repository's architectures, or build for 'all'",
            )
        key = deb.key()
        clash = incoming.get(key, (None, None))[1] or (by_key[key].deb if key in by_key else None)
        if clash is not None and clash.sha256 != deb.sha256:
            raise UnitgenError(
                f"{path}: {deb.name} {deb.version} ({deb.architecture}) is already published with other contents",
                hint="a published version never changes: raise the version or the package release",
            )
        if key in by_key:
            if by_key[key].pool_path not in unchanged:
                unchanged.append(by_key[key].pool_path)
        else:
            incoming[key] = (path, deb)
    new = {key: Entry(component, deb, pool_path(component, deb)) for key, (_, deb) in incoming.items()}
    groups: dict[tuple[str, str, str], list[Entry]] = {}
    for e in [*current, *new.values()]:
        groups.setdefault((e.component, e.deb.name, e.deb.architecture), []).append(e)
    kept, removed = [], []
    for group in groups.values():
        group.sort(key=lambda e: version_key(e.deb.version), reverse=True)
        kept += group[:keep]
        removed += group[keep:]
    kept_paths = {e.pool_path for e in kept}
    copy = [(incoming[k][0], e) for k, e in new.items() if e.pool_path in kept_paths]
    superseded = [e.pool_path for e in removed if e.deb.key() in new]
    return _Plan(current, kept, copy, [e for e in removed if e.deb.key() in by_key], unchanged, superseded)


# --- writing ----------------------------------------------------------------------------------


@contextlib.contextmanager
def locked(repo: Path) -> Iterator[None]:
    """One publisher at a time per repository (a second one waits). The lock is on the directory
    itself, so a refused publish leaves not even a lock file behind."""
    fd = os.open(repo, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _copy_into_pool(repo: Path, src: Path, entry: Entry) -> Path | None:
    """Copy `src` to its pool path; return it when this publish created it."""
    dest = repo / entry.pool_path
    if dest.is_file() and hashlib.sha256(dest.read_bytes()).hexdigest() == entry.deb.sha256:
        return None  # left by a publish that was interrupted before its swap: the same bytes
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    try:
        shutil.copyfile(src, tmp)
        tmp.chmod(0o644)
        tmp.replace(dest)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no partial copy behind
        raise
    return dest


def _index_files(entries: Iterable[Entry]) -> dict[str, bytes]:
    ordered = sorted(entries, key=lambda e: (e.deb.name, version_key(e.deb.version), e.deb.architecture))
    return _compressed("\n".join(e.stanza() for e in ordered).encode())


@functools.lru_cache(maxsize=4)
def _compressed(text: bytes) -> dict[str, bytes]:
    """Cached: with only "all" packages every architecture's index is the same text."""
    # mtime=0: the same index gives the same Packages.gz (and so the same Release) every time.
    return {"Packages": text, "Packages.gz": gzip.compress(text, mtime=0), "Packages.xz": lzma.compress(text)}


def _by_hash(directory: Path, sources: Iterable[Path]) -> None:
    store = directory / "by-hash" / "SHA256"
    store.mkdir(parents=True, exist_ok=True)
    for src in sources:
        dest = store / hashlib.sha256(src.read_bytes()).hexdigest()
        if not dest.exists():
            os.link(src, dest)


def _release(suite: str, components: Sequence[str], architectures: Sequence[str], files: dict[str, bytes]) -> str:
    lines = [
        "Origin: unitgen", "Label: unitgen", f"Suite: {suite}", f"Codename: {suite}",
        f"Date: {email.utils.formatdate(usegmt=True)}",
        f"Architectures: {' '.join(architectures)}", f"Components: {' '.join(components)}",
        "Acquire-By-Hash: yes",
    ]  # fmt: skip
    width = max(len(str(len(b))) for b in files.values())
    for title, algo in (("MD5Sum", "md5"), ("SHA256", "sha256")):
        lines.append(f"{title}:")
        lines += [f" {hashlib.new(algo, data).hexdigest()} {len(data):>{width}} {name}" for name, data in files.items()]
    return "\n".join(lines) + "\n"


def _write_generation(
    target: Path, previous: Path | None, entries: list[Entry], suite: str,
    components: Sequence[str], architectures: Sequence[str], signer: Signer,
) -> None:  # fmt: skip
    files: dict[str, bytes] = {}
    for component in components:
        for arch in architectures:
            rel = f"{component}/binary-{arch}"
            chosen = [e for e in entries if e.component == component and e.deb.architecture in (arch, "all")]
            (target / rel).mkdir(parents=True)
            for name, data in _index_files(chosen).items():
                (target / rel / name).write_bytes(data)
                files[f"{rel}/{name}"] = data
            old = previous / rel if previous else None
            _by_hash(target / rel, [target / rel / n for n in _INDEX_FILES] +
                     ([old / n for n in _INDEX_FILES if (old / n).is_file()] if old else []))  # fmt: skip
    release = _release(suite, components, architectures, files)
    (target / "Release").write_text(release)
    (target / "InRelease").write_text(signer.clearsign(release))
    (target / "Release.gpg").write_text(signer.detach_armored(release))


def check_architectures(architectures: Sequence[str]) -> None:
    unknown = [a for a in architectures if a not in ARCHITECTURES]
    if unknown or not architectures:
        raise UnitgenError(f"architecture {' '.join(unknown) or '(none)'} is not supported",
                           hint=f"choose among {' '.join(ARCHITECTURES)}")  # fmt: skip


def prepare_debs(
    debs: Sequence[Path],
    repo: Path,
    *,
    suite: str = "stable",
    component: str = "main",
    architectures: Sequence[str] = ("amd64", "arm64"),
    keep: int = KEEP,
) -> Callable[[Signer], AptResult]:
    """Read and check `debs` against the apt repository at `repo`; return what adds them and
    re-signs it (see the module doc). The caller holds `locked(repo)` from here to the commit.

    Raises `UnitgenError`, having changed nothing, for a package that is not a .deb, one for an
    architecture not in `architectures`, or one whose name, version and architecture are already
    published with other contents.
    """
    check_name("suite", suite)
    check_name("component", component)
    check_architectures(architectures)
    number, generation = _current(repo, suite)
    current, components, old_archs = _read_entries(generation) if generation else ([], [], [])
    dropped = sorted({e.deb.architecture for e in current} - {"all", *architectures})
    if dropped:
        raise UnitgenError(f"{repo}: the repository has {' '.join(dropped)} packages",
                           hint=f"keep {' '.join(dropped)} in its architectures")  # fmt: skip
    plan = _plan(debs, current, component, architectures, keep)

    def commit(signer: Signer) -> AptResult:
        result = AptResult(unchanged=plan.unchanged, superseded=plan.superseded, generation=number)
        if not plan.copy and not plan.removed and generation and list(architectures) == old_archs:
            return result  # nothing new: the signed index stays as it is
        result.generation = number + 1
        everything = sorted({*components, component})
        _swap_in(repo, suite, generation, result.generation, plan, everything, architectures, signer)
        result.added = [e.pool_path for _, e in plan.copy]
        result.removed = [e.pool_path for e in plan.removed]
        return result

    return commit


def _swap_in(
    repo: Path, suite: str, previous: Path | None, number: int, plan: _Plan,
    components: Sequence[str], architectures: Sequence[str], signer: Signer,
) -> None:  # fmt: skip
    dists = repo / "dists"
    dists.mkdir(exist_ok=True)
    name = f".{suite}.g{number}"
    target = dists / name
    shutil.rmtree(target, ignore_errors=True)  # a killed publish's half-written generation
    created: list[Path] = []
    try:
        for src, entry in plan.copy:
            if (made := _copy_into_pool(repo, src, entry)) is not None:
                created.append(made)
        _write_generation(target, previous, plan.keep, suite, components, architectures, signer)
        link = dists / f".{suite}.link"
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to(name)
        link.replace(dists / suite)  # the one atomic step clients can observe
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        for path in created:
            path.unlink(missing_ok=True)
        raise
    # After the swap, generations older than the previous one go, and with them the pool files that
    # neither the new nor the previous generation names: a client that read the previous index just
    # before the swap still finds every file it names.
    named = {e.pool_path for e in [*plan.keep, *plan.current]}
    for old in dists.glob(f".{suite}.g*"):
        if old.name in (name, previous.name if previous else ""):
            continue
        with contextlib.suppress(OSError, KeyError, ValueError):  # a half-written one names nothing
            for entry in _read_entries(old)[0]:
                if entry.pool_path not in named:
                    _remove_from_pool(repo, entry.pool_path)
        shutil.rmtree(old, ignore_errors=True)


def _remove_from_pool(repo: Path, path: str) -> None:
    own = pool_file(repo, path, "pool")
    if own is None:
        return
    own.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        own.parent.rmdir()  # only when empty
