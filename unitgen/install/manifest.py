"""The record of what `unitgen install NAME` put on a host: ROOT/var/lib/unitgen/NAME.manifest.

A JSON document, root's, 0644, in a directory only root can write (the deb postinst's purge
record lives there too), so a service cannot widen what its uninstall removes. One entry per
file, symbolic link and directory of the staging tree: path, type, mode, owner, sha256 (files),
target (links), and for directories whether the install created them (only those are removed,
and only when empty). The spec's [config] files are marked `"config": "file"` (their sha256 is
the default last installed: the file on disk differs from it once edited), the FILE.unitgen-new
beside an edited one `"config": "new"`; only paths below /etc/NAME may be. `purge` lists the
state directories that did not exist before the first install: `uninstall --purge` removes those
and no others, like the packages' postrm.

Crash safety: before the first file is written, the manifest is written with `"state":
"installing"`, listing every path the install may leave behind (the new files and, on an
upgrade, the old ones) and, for files being replaced, the hash they had (`previous`). An install
killed half-way is thus still recognised: a re-install takes it over (its files are unitgen's),
and `uninstall` removes what it wrote, including temporary files. The final manifest
(`"state": "complete"`) replaces it last, once every file is in place.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Any

from unitgen import __version__
from unitgen.errors import UnitgenError
from unitgen.install.rootfs import Root

DIRECTORY = PurePosixPath("var/lib/unitgen")
SUFFIX = ".manifest"
FORMAT = 1
INSTALLING = "installing"
COMPLETE = "complete"
CONFIG_FILE = "file"  # Entry.config of a [config] file
CONFIG_NEW = "new"  # Entry.config of the FILE.unitgen-new beside it
CONFIG_ROLES = (CONFIG_FILE, CONFIG_NEW)


def manifest_path(name: str) -> PurePosixPath:
    return DIRECTORY / f"{name}{SUFFIX}"


@dataclass(frozen=True)
class Entry:
    path: PurePosixPath  # relative to the root, no leading slash
    type: str  # "file", "symlink" or "dir"
    mode: int
    sha256: str = ""  # files
    target: str = ""  # symbolic links
    created: bool = False  # directories: made by the install (removed when empty)
    owner: str = "root:root"
    previous: str = ""  # while installing: the hash the file had before this install replaced it
    # A [config] file ("file": its sha256 is the default last installed, as dpkg records a
    # conffile's) or the FILE.unitgen-new beside an edited one that holds a newer default ("new").
    # Both are kept when edited, and removed edited or not by `uninstall --purge` (unitgen.install.conffiles).
    config: str = ""

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"path": f"/{self.path}", "type": self.type, "mode": f"{self.mode:04o}",
                               "owner": self.owner}  # fmt: skip
        if self.type == "file":
            doc["sha256"] = self.sha256
        if self.type == "symlink":
            doc["target"] = self.target
        if self.type == "dir":
            doc["created"] = self.created
        if self.previous:
            doc["previous_sha256"] = self.previous
        if self.config:
            doc["config"] = self.config
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Entry:
        path = PurePosixPath(str(doc["path"]).lstrip("/"))
        if ".." in path.parts or not path.parts or doc["type"] not in ("file", "symlink", "dir"):
            raise ValueError(f"bad entry {doc!r}")
        config = str(doc.get("config", ""))
        if config and (config not in CONFIG_ROLES or doc["type"] != "file"):
            raise ValueError(f"bad config entry {doc!r}")
        return cls(
            path=path,
            type=str(doc["type"]),
            mode=int(str(doc["mode"]), 8),
            sha256=str(doc.get("sha256", "")),
            target=str(doc.get("target", "")),
            created=bool(doc.get("created", False)),
            owner=str(doc.get("owner", "root:root")),
            previous=str(doc.get("previous_sha256", "")),
            config=config,
        )

    def matches(self, root: Root) -> bool:
        """The path still holds what the install put there (or, while installing, what it replaced)."""
        if self.type == "file":
            return root.sha256(self.path) in {h for h in (self.sha256, self.previous) if h}
        if self.type == "symlink":
            return root.readlink(self.path) == self.target
        return False


@dataclass(frozen=True)
class Manifest:
    name: str
    state: str
    entries: tuple[Entry, ...]
    purge: tuple[str, ...] = ()  # absolute paths of state directories the install created
    units: tuple[str, ...] = ()  # what uninstall stops and disables
    enable: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)  # version, spec, ...: shown, not used

    def by_path(self) -> dict[PurePosixPath, Entry]:
        return {e.path: e for e in self.entries}

    def to_bytes(self) -> bytes:
        doc = {
            "unitgen_manifest": FORMAT,
            "name": self.name,
            "state": self.state,
            "unitgen": __version__,
            **self.extra,
            "units": list(self.units),
            "enable": list(self.enable),
            "purge": list(self.purge),
            "entries": [e.to_json() for e in self.entries],
        }
        return (json.dumps(doc, indent=1) + "\n").encode()

    def completed(self, entries: tuple[Entry, ...]) -> Manifest:
        return replace(self, state=COMPLETE, entries=entries)


def read(root: Root, name: str) -> Manifest | None:
    """NAME's manifest under the root, or None when there is none."""
    path = manifest_path(name)
    st = root.lstat(path)
    if st is None:
        return None
    text = _read_bytes(root, path)
    try:
        doc = json.loads(text)
        if doc.get("unitgen_manifest") != FORMAT or doc.get("name") != name:
            raise ValueError("not a unitgen manifest of this service")
        return Manifest(
            name=name,
            state=str(doc["state"]),
            entries=_config_checked(name, tuple(Entry.from_json(e) for e in doc["entries"])),
            purge=tuple(_purge_path(str(p)) for p in doc.get("purge", ())),
            units=tuple(str(u) for u in doc.get("units", ())),
            enable=tuple(str(u) for u in doc.get("enable", ())),
            extra={k: doc[k] for k in ("version", "spec") if k in doc},
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise UnitgenError(
            f"{root.show(path)}: not a manifest unitgen can read ({exc})",
            hint="it was edited or damaged; restore it, or remove the service's files and the manifest by hand",
        ) from None


def _config_checked(name: str, entries: tuple[Entry, ...]) -> tuple[Entry, ...]:
    # A purge removes config files edited or not: only ever below /etc/NAME (all the spec allows),
    # whatever a damaged or forged manifest says.
    for entry in entries:
        if entry.config and (len(entry.path.parts) < 3 or entry.path.parts[:2] != ("etc", name)):
            raise ValueError(f"config entry /{entry.path} is not below /etc/{name}")
    return entries


# What a purge may ever remove: a service's own state, cache or log directory (what
# unitgen.package.from_spec lists), never anything a damaged or forged manifest names.
_PURGEABLE = re.compile(r"/var/(lib|cache|log)/(private/)?[A-Za-z0-9][A-Za-z0-9._@-]*")


def _purge_path(path: str) -> str:
    if not _PURGEABLE.fullmatch(path) or ".." in path:
        raise ValueError(f"purge path {path!r} is not a state, cache or log directory of a service")
    return path


def _read_bytes(root: Root, path: PurePosixPath) -> bytes:
    with root.directory(path.parent) as dfd:
        assert dfd is not None
        fd = os.open(path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        with os.fdopen(fd, "rb") as f:
            return f.read()


def others(root: Root, name: str) -> dict[PurePosixPath, str]:
    """Every path listed in another service's manifest, with that service's name."""
    owned: dict[PurePosixPath, str] = {}
    for file in root.listdir(DIRECTORY):
        other = file.removesuffix(SUFFIX)
        if not file.endswith(SUFFIX) or other == name or file.startswith("."):
            continue
        manifest = read(root, other)
        if manifest is None:
            continue
        for entry in manifest.entries:
            if entry.type != "dir":
                owned[entry.path] = other
    return owned


def write(root: Root, manifest: Manifest) -> None:
    root.write_file(manifest_path(manifest.name), manifest.to_bytes(), 0o644, [])


def remove(root: Root, name: str) -> None:
    root.unlink(manifest_path(name))
    root.rmdir(DIRECTORY)  # shared with the packages' purge records: only when empty
