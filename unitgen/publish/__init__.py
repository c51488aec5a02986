"""Deliver to a fleet: signed apt (and yum) repositories as static trees.

    from unitgen.publish import GpgKey, publish
    done = publish([Path("dist/hello_1.0.0-1_all.deb")], Path("repo"), key=GpgKey("ABCD1234"))
    print(*done.client_lines(), sep="\\n")

`.deb` files go into the apt repository at the root of `repo_dir` (see `unitgen.publish.apt` for
the layout, the atomic swap and the retention rule). Every problem a user can fix raises
`UnitgenError` before the repository changes: a missing key, a package that is not a .deb,
an architecture the repository does not publish, a version already published with other contents.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from unitgen.errors import UnitgenError
from unitgen.publish.apt import ARCHITECTURES, KEEP, KEY_FILE, AptResult, check_name, publish_debs
from unitgen.publish.signing import GpgKey, Signer

__all__ = ["ARCHITECTURES", "KEEP", "AptResult", "GpgKey", "Publication", "Signer", "publish"]


@dataclass
class Publication:
    """What `publish` did, and what a host needs to use the repository."""

    repo_dir: Path
    url: str
    suite: str
    component: str
    apt: AptResult | None

    def client_lines(self) -> list[str]:
        """The lines an operator adds on a host, with the key fetched from the repository."""
        lines = []
        if self.apt is not None:
            keyring = "/etc/apt/keyrings/unitgen-repo.asc"
            lines += [
                f"# apt: fetch {self.url}/{KEY_FILE} to {keyring}, then in /etc/apt/sources.list.d/unitgen-repo.list:",
                f"deb [signed-by={keyring}] {self.url} {self.suite} {self.component}",
            ]
        return lines


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
    """Add `packages` to the repositories in `repo_dir`, signed with `key`; see the module doc."""
    if not packages:
        raise UnitgenError("nothing to publish", hint="name the .deb files, e.g. dist/*.deb")
    check_name("suite", suite)
    check_name("component", component)
    debs = []
    for path in packages:
        if path.suffix != ".deb":
            raise UnitgenError(
                f"{path}: cannot publish a {path.suffix or 'suffix-less'} file", hint="publish .deb files"
            )
        if not path.is_file():
            raise UnitgenError(f"{path}: no such package file")
        debs.append(path)
    with key.opened() as signer:
        apt = publish_debs(debs, repo_dir, signer, suite=suite, component=component,
                           architectures=architectures, keep=keep)  # fmt: skip
    return Publication(repo_dir, url or f"file:{repo_dir.resolve()}", suite, component, apt)
