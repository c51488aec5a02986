"""Deliver to a fleet: signed apt and yum repositories as static trees.

    from unitgen.publish import GpgKey, publish
    done = publish([Path("dist/hello_1.0.0-1_all.deb")], Path("repo"), key=GpgKey("ABCD1234"))
    print(*done.client_lines(), sep="\\n")

`.deb` files go into the apt repository at the root of `repo_dir` (`unitgen.publish.apt`: layout,
atomic swap, retention), `.rpm` files into the yum repository under `repo_dir/rpm`
(`unitgen.publish.yum`), and the public key to `repo_dir/key.asc`. One publisher at a time per
repository (a second one waits). Every problem a user can fix raises `UnitgenError` before either
repository changes: a missing key, a file that is neither, an architecture the repository does not
publish, a version already published with other contents, a tree unitgen did not make.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from unitgen.errors import UnitgenError
from unitgen.publish.apt import (
    ARCHITECTURES,
    KEEP,
    AptResult,
    check_architectures,
    check_name,
    locked,
    prepare_debs,
)
from unitgen.publish.signing import GpgKey, Signer
from unitgen.publish.yum import YUM_DIR, YumResult, prepare_rpms

__all__ = ["ARCHITECTURES", "KEEP", "KEY_FILE", "AptResult", "GpgKey", "Publication", "Signer", "YumResult", "publish"]

KEY_FILE = "key.asc"
KEYRING = "/etc/apt/keyrings/unitgen-repo.asc"
APT_SOURCES = "/etc/apt/sources.list.d/unitgen-repo.list"


@dataclass
class Publication:
    """What `publish` did, and what a host needs to use the repository."""

    repo_dir: Path
    url: str
    suite: str
    component: str
    apt: AptResult | None
    yum: YumResult | None

    def client_lines(self) -> list[str]:
        """What an operator adds on a host; the key is fetched from the repository."""
        lines = []
        if self.apt is not None:
            lines += [
                f"# apt: save {self.url}/{KEY_FILE} as {KEYRING}, and this line as {APT_SOURCES}",
                f"deb [signed-by={KEYRING}] {self.url} {self.suite} {self.component}",
            ]
        if self.yum is not None:
            lines += ["# dnf: this as /etc/yum.repos.d/unitgen-repo.repo", *self.yum_repo_file().splitlines()]
        return lines

    def yum_repo_file(self) -> str:
        return (f"[unitgen-repo]\nname=unitgen-repo\nbaseurl={self.url}/{YUM_DIR}\nenabled=1\n"
                f"gpgcheck=1\nrepo_gpgcheck=1\ngpgkey={self.url}/{KEY_FILE}\n")  # fmt: skip


def publish(
    packages: Sequence[Path],
    repo_dir: Path,
    *,
    key: GpgKey,
    suite: str = "stable",
    component: str = "main",
    architectures: Sequence[str] = ("amd64", "arm64"),
    keep: int = KEEP,
    url: str | None = None,
) -> Publication:
    """Add `packages` to the repositories in `repo_dir`, signed with `key`; see the module doc.

    `architectures` are Debian's names (their rpm names, x86_64, aarch64, ..., for the yum side);
    `keep` is how many versions of each package stay; `url` is where hosts will reach `repo_dir`
    (default: its `file:` URL), for `Publication.client_lines`.
    """
    if not packages:
        raise UnitgenError("nothing to publish", hint="name the package files, e.g. dist/*.deb dist/*.rpm")
    check_name("suite", suite)
    check_name("component", component)
    check_architectures(architectures)
    if keep < 1:
        raise UnitgenError(f"keep = {keep}: a repository keeps at least 1 version of each package")
    for path in packages:
        if path.suffix not in (".deb", ".rpm"):
            raise UnitgenError(f"{path}: cannot publish a {path.suffix or 'suffix-less'} file",
                               hint="publish .deb and .rpm files")  # fmt: skip
        if not path.is_file():
            raise UnitgenError(f"{path}: no such package file")
    debs = [p for p in packages if p.suffix == ".deb"]
    rpms = [p for p in packages if p.suffix == ".rpm"]
    made = not repo_dir.exists()
    with key.opened() as signer:
        repo_dir.mkdir(parents=True, exist_ok=True)
        try:
            with locked(repo_dir):
                # Both sides checked before either changes.
                apt = prepare_debs(debs, repo_dir, suite=suite, component=component,
                                   architectures=architectures, keep=keep) if debs else None  # fmt: skip
                yum = prepare_rpms(rpms, repo_dir, architectures=architectures, keep=keep) if rpms else None
                done = Publication(repo_dir, url or f"file:{repo_dir.resolve()}", suite, component,
                                   apt(signer) if apt else None, yum(signer) if yum else None)  # fmt: skip
                _write_key(repo_dir / KEY_FILE, signer.public_key())
        except BaseException as exc:
            if made:
                with contextlib.suppress(OSError):
                    repo_dir.rmdir()  # only if still empty: a first publish refused leaves nothing
            if isinstance(exc, OSError):  # a full disk, a read-only or foreign-owned tree: the user's to fix
                where = f": {exc.filename}" if exc.filename else ""
                raise UnitgenError(
                    f"cannot write the repository {repo_dir}: {exc.strerror or exc}{where}",
                    hint="an index is replaced only once complete: hosts still get the previous one",
                ) from exc
            raise
    return done


def _write_key(path: Path, armored: str) -> None:
    if path.is_file() and path.read_text() == armored:
        return  # unchanged: the tree stays byte-for-byte as it was
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(armored)
    tmp.chmod(0o644)
    tmp.replace(path)
