"""A signed yum/dnf repository as a tree of static files, indexed by createrepo_c.

    REPO/rpm/Packages/hello-1.0.0-1.noarch.rpm      (signed with the repository key on the way in)
    REPO/rpm/repodata -> .repodata.g7                (a symbolic link, swapped atomically)
    REPO/rpm/.repodata.g7/repomd.xml, repomd.xml.asc, HASH-primary.xml.gz, ...filelists, ...other

Why createrepo_c rather than our own writer: the metadata (primary, filelists, other, with every
file, dependency and changelog) is several times the apt index's size and its exact XML is what
dnf's libsolv parses; createrepo_c is the tool Fedora and RHEL build their own repositories with,
packaged for both (`createrepo_c`) and for Debian (`createrepo-c`, about 1 MB with its library).
It runs with `--update` against the current metadata, so a publish reads only the new packages.

Each publish writes the metadata into a new generation directory, signs repomd.xml
(`repomd.xml.asc`, which dnf checks with `repo_gpgcheck=1`), links in the previous generation's
metadata files (their names carry their hashes, so a client holding the old repomd.xml still finds
them), and only then replaces the `repodata` link with rename(2). Packages are signed as they are
copied into the pool, so `gpgcheck=1` holds with the same key. Retention is the apt side's: the
newest `keep` versions (rpm version order) per name and architecture; an older one leaves the
metadata at the publish that pushes it out and the pool at the next.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import shutil
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from unitgen.errors import UnitgenError
from unitgen.package.rpm import add_signature
from unitgen.publish.pool import pool_file
from unitgen.publish.rpmfile import Rpm, evr_key, read_rpm
from unitgen.publish.signing import Signer
from unitgen.run import CommandError, run

YUM_DIR = "rpm"
POOL = "Packages"
# Debian architecture names (the repository's) -> rpm's.
RPM_ARCH = {"amd64": "x86_64", "arm64": "aarch64", "i386": "i686", "armhf": "armv7hl",
            "ppc64el": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}  # fmt: skip
_REPO = "{http://linux.duke.edu/metadata/repo}"
_COMMON = "{http://linux.duke.edu/metadata/common}"


@dataclass
class YumResult:
    """What a publish did to the yum side, as paths relative to REPO/rpm."""

    added: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)
    generation: int = 0


def _current(base: Path) -> tuple[int, Path | None]:
    link = base / "repodata"
    if not link.exists() and not link.is_symlink():
        return 0, None
    target = str(link.readlink()) if link.is_symlink() else ""
    m = re.fullmatch(r"\.repodata\.g(\d+)", target)
    if m is None or not (base / target).is_dir():
        raise UnitgenError(f"{link} was not written by unitgen publish",
                           hint="publish into a new directory, or one unitgen made")  # fmt: skip
    return int(m.group(1)), base / target


def _metadata(generation: Path) -> dict[str, str]:
    """type -> href (relative to the repository base) of each file repomd.xml names."""
    # Our own repository's files, written by createrepo_c, not input from elsewhere.
    root = ET.parse(generation / "repomd.xml").getroot()  # noqa: S314
    out = {}
    for data in root.iter(f"{_REPO}data"):
        location = data.find(f"{_REPO}location")
        if location is not None:
            out[data.get("type", "")] = location.get("href", "")
    return out


def _listed(generation: Path) -> dict[str, Rpm]:
    """href (relative to the repository base) -> package, as the generation's primary.xml lists
    them; `header_sha256` is left empty (read from the pool file only when needed)."""
    primary = generation / Path(_metadata(generation)["primary"]).name
    root = ET.fromstring(gzip.decompress(primary.read_bytes()))  # noqa: S314 (as above)
    out = {}
    for package in root.iter(f"{_COMMON}package"):
        version, location = package.find(f"{_COMMON}version"), package.find(f"{_COMMON}location")
        if version is None or location is None:
            raise UnitgenError(f"{primary}: a package without version or location")
        out[location.get("href", "")] = Rpm(
            package.findtext(f"{_COMMON}name", ""), int(version.get("epoch", "0")), version.get("ver", ""),
            version.get("rel", ""), package.findtext(f"{_COMMON}arch", ""), "",
        )  # fmt: skip
    return out


def _hrefs(base: Path, generation: Path) -> list[str]:
    """The package paths (relative to `base`) the generation's primary.xml lists."""
    return list(_listed(generation))


def _plan(
    base: Path, rpms: Sequence[Path], current: dict[str, Rpm], arches: set[str], keep: int
) -> tuple[list[str], dict[str, Path], list[str], list[str], list[str]]:
    """(kept hrefs, new href -> source, unchanged, removed, superseded)."""
    by_key = {r.key(): (href, r) for href, r in current.items()}
    incoming: dict[tuple[str, int, str, str, str], tuple[Path, Rpm]] = {}
    unchanged: list[str] = []
    for path in rpms:
        rpm = read_rpm(path)
        if rpm.arch not in arches:
            raise UnitgenError(
                f"{path}: architecture {rpm.arch!r} is not one this repository publishes ({' '.join(sorted(arches))})",
                hint="add it to the repository's architectures, or build for 'all' (noarch)",
            )
        if "/" in rpm.filename or rpm.filename.startswith("."):
            raise UnitgenError(f"{path}: its name, version or release makes no file name: {rpm.filename!r}")
        key = rpm.key()
        seen = incoming[key][1] if key in incoming else read_rpm(base / by_key[key][0]) if key in by_key else None
        if seen is not None and seen.header_sha256 != rpm.header_sha256:
            raise UnitgenError(
                f"{path}: {rpm.name} {rpm.version}-{rpm.release} ({rpm.arch}) is already published with other contents",
                hint="a published version never changes: raise the version or the package release",
            )
        if key in by_key:
            if by_key[key][0] not in unchanged:
                unchanged.append(by_key[key][0])
        else:
            incoming[key] = (path, rpm)
    everything = {**current, **{f"{POOL}/{r.filename}": r for _, r in incoming.values()}}
    groups: dict[tuple[str, str], list[str]] = {}
    for href, r in everything.items():
        groups.setdefault((r.name, r.arch), []).append(href)
    kept, dropped = [], []
    for hrefs in groups.values():
        hrefs.sort(key=lambda h: evr_key(everything[h]), reverse=True)
        kept += hrefs[:keep]
        dropped += hrefs[keep:]
    new = {f"{POOL}/{r.filename}": p for p, r in incoming.values() if f"{POOL}/{r.filename}" in kept}
    removed = [h for h in dropped if h in current]
    superseded = [h for h in dropped if h not in current]
    return sorted(kept), new, unchanged, removed, superseded


def prepare_rpms(
    rpms: Sequence[Path], repo: Path, *, architectures: Sequence[str], keep: int
) -> Callable[[Signer], YumResult]:
    """Read and check `rpms` against the yum repository at REPO/rpm; return what adds them and
    re-signs it (see the module doc). The caller holds the repository's lock to the commit."""
    base = repo / YUM_DIR
    number, generation = _current(base)
    current = _listed(generation) if generation else {}
    arches = {"noarch", *(RPM_ARCH[a] for a in architectures if a in RPM_ARCH)}
    kept, new, unchanged, removed, superseded = _plan(base, rpms, current, arches, keep)

    def commit(signer: Signer) -> YumResult:
        result = YumResult(unchanged=unchanged, superseded=superseded, generation=number)
        if not new and not removed and generation:
            return result
        result.generation = number + 1
        _swap_in(base, generation, result.generation, kept, new, signer, set(current))
        result.added, result.removed = sorted(new), removed
        return result

    return commit


def _into_pool(base: Path, href: str, src: Path, signer: Signer) -> Path:
    dest = base / href
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    try:
        shutil.copyfile(src, tmp)
        tmp.chmod(0o644)
        add_signature(tmp, signer)  # gpgcheck=1: dnf checks every package against the repository key
        tmp.replace(dest)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no partial copy behind
        raise
    return dest


def _createrepo(base: Path, out: Path, kept: Sequence[str], previous: Path | None) -> None:
    listing = out / "pkglist"
    listing.write_text("".join(f"{href}\n" for href in kept))
    update: list[str | os.PathLike[str]] = ["--update", "--update-md-path", previous] if previous else []
    try:
        run(["createrepo_c", "--quiet", "--no-database", "--general-compress-type=gz", "--pkglist", listing,
             *update, "--outputdir", out, base])  # fmt: skip
    except CommandError as exc:
        raise UnitgenError(f"createrepo_c failed: {exc.stderr.strip() or exc.stdout.strip()}") from exc
    listing.unlink()


def _swap_in(
    base: Path,
    previous: Path | None,
    number: int,
    kept: Sequence[str],
    new: dict[str, Path],
    signer: Signer,
    listed_now: set[str],
) -> None:
    base.mkdir(parents=True, exist_ok=True)
    name = f".repodata.g{number}"
    target = base / name
    shutil.rmtree(target, ignore_errors=True)  # a killed publish's half-written generation
    created: list[Path] = []
    scratch = Path(tempfile.mkdtemp(prefix=".publish-", dir=base))
    try:
        # Signing is two gpg runs per package, most of a first publish's time: run them on every
        # core (gpg-agent serves concurrent signers). Each result is recorded as it completes, so
        # a failure removes exactly what was made.
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            futures = [pool.submit(_into_pool, base, href, src, signer) for href, src in new.items()]
            for future in as_completed(futures):
                with contextlib.suppress(Exception):
                    created.append(future.result())
        for future in futures:
            future.result()  # the first error, if any, after every copy has finished
        _createrepo(base, scratch, kept, previous)
        (scratch / "repodata").rename(target)
        repomd = (target / "repomd.xml").read_text()
        (target / "repomd.xml.asc").write_text(signer.detach_armored(repomd))
        if previous is not None:
            for href in _metadata(previous).values():
                old, dest = previous / Path(href).name, target / Path(href).name
                if old.is_file() and not dest.exists():
                    os.link(old, dest)
        link = base / ".repodata.link"
        link.unlink(missing_ok=True)
        link.symlink_to(name)
        link.replace(base / "repodata")  # the one atomic step clients can observe
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        for path in created:
            path.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    named = set(kept) | listed_now
    for old in base.glob(".repodata.g*"):
        if old.name in (name, previous.name if previous else ""):
            continue
        with contextlib.suppress(OSError, KeyError, ET.ParseError):  # a half-written one names nothing
            for href in _hrefs(base, old):
                if href not in named and (own := pool_file(base, href, POOL)) is not None:
                    own.unlink(missing_ok=True)
        shutil.rmtree(old, ignore_errors=True)
