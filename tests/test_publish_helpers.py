"""Shared pieces of the publish tests: throw-away gpg keys (never the user's keyring) and packages.

Each key lives in its own GNUPGHOME under the test's temporary directory; the gpg-agent gpg starts
for it is stopped when the fixture ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e_helpers import example_toml
from tests.test_package_helpers import make_info, make_staging
from unitgen.package import PackageInfo, build_deb
from unitgen.package.from_spec import package_info
from unitgen.publish import GpgKey
from unitgen.publish.signing import stop_agent
from unitgen.render.units import render
from unitgen.run import run
from unitgen.spec import parse_spec
from unitgen.staging.tree import write_tree


@dataclass(frozen=True)
class TestKey:
    home: Path
    fingerprint: str
    public: Path  # armored
    keyring: Path  # binary, as gpgv --keyring and apt's Signed-By take it
    algo: str  # as gpg --quick-gen-key names it

    __test__ = False  # not a test class for pytest

    @property
    def key(self) -> GpgKey:
        return GpgKey(self.fingerprint, self.home)


def make_key(home: Path, algo: str = "ed25519", uid: str = "unitgen test <test@example.org>") -> TestKey:
    home.mkdir(mode=0o700, parents=True)
    gpg = ["gpg", "--batch", "--homedir", str(home)]
    run([*gpg, "--passphrase", "", "--quick-gen-key", uid, algo, "sign", "never"])
    listing = run([*gpg, "--with-colons", "--list-secret-keys"]).stdout
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    public = home / "public.asc"
    public.write_text(run([*gpg, "--armor", "--export", fingerprint]).stdout)
    keyring = home / "public.gpg"
    run([*gpg, "--output", str(keyring), "--export", fingerprint])
    return TestKey(home, fingerprint, public, keyring, algo)


def key_fixture(factory: pytest.TempPathFactory, uid: str = "unitgen test <test@example.org>") -> Iterator[TestKey]:
    """The body of a session fixture: a fresh key, its gpg-agent stopped at the end."""
    key = make_key(factory.mktemp("gpg") / "home", uid=uid)
    yield key
    stop_agent(key.home)


def deb(tmp: Path, version: str, *, tag: str = "", **overrides: object) -> Path:
    """The ugdemo test package at `version` (`tag` changes its contents, not its version)."""
    staging = make_staging(tmp / f"staging-{version}{tag}", version + tag)
    return build_deb(staging, make_info(version, **overrides), tmp / f"dist-{version}{tag}")


def hello_versions(tmp: Path, build: Callable[[Path, PackageInfo, Path], Path]) -> dict[str, Path]:
    """examples/hello at 1.0.0 and 1.1.0, rendered and packaged with `build` (build_deb or build_rpm)."""
    out = {}
    for version in ("1.0.0", "1.1.0"):
        raw = example_toml("hello")
        raw["package"] = {**raw["package"], "version": version}
        spec = parse_spec(raw, name="hello", where="hello.toml")
        staging = tmp / f"staging-{version}"
        write_tree(render(spec), staging)
        out[version] = build(staging, package_info(spec, None), tmp / "dist")
    return out
