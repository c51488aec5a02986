"""The spec's [config] files under `unitgen install`: an edit is kept, as dpkg keeps a conffile's
and rpm a %config(noreplace) file's.

Like dpkg (which records a conffile's md5sum) and rpm (its digest), the manifest records, for a
config file, the default unitgen last installed, not what is on disk; a file that differs from it
was edited. On (re-)install, for each config file of the new version:

- absent: the new default is written ("installed"; rpm does the same, dpkg only with
  --force-confmiss: a service whose configuration is missing rarely starts);
- the default last installed (unedited): the new default replaces it ("installed", or
  "unchanged" when the default did not change);
- the new default already: "unchanged";
- anything else (edited content, a symbolic link, a directory): "kept" as it is; when the default
  changed, the new one is written beside it as FILE.unitgen-new (dpkg's .dpkg-dist, rpm's
  .rpmnew), atomically and through no symbolic link like every file, listed in the manifest,
  replaced by a later upgrade's and removed once the file takes a default again.

A config file the new version drops is removed when unedited and kept (still listed, so that a
purge finds it) when edited. `uninstall` removes an unedited config file and keeps an edited one
with its FILE.unitgen-new, both still listed in the manifest (state "removed", dpkg's
config-files state); `uninstall --purge` removes both, edited or not, and nothing else: an
admin's own file in /etc/NAME stays, and so does the directory then.
"""

from __future__ import annotations

import enum
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from unitgen.install.manifest import CONFIG_FILE, CONFIG_NEW, Entry
from unitgen.install.rootfs import Root, SymlinkInPathError

if TYPE_CHECKING:
    from unitgen.spec import Spec

NEW_SUFFIX = ".unitgen-new"


class Action(enum.StrEnum):
    INSTALLED = "installed"  # the new default written
    UNCHANGED = "unchanged"  # already the new default
    KEPT = "kept"  # edited, left as it is
    REMOVED = "removed"  # gone (uninstall, or dropped by the new version and unedited)


@dataclass(frozen=True)
class Outcome:
    """What became of one config file, for the report."""

    path: str  # as the user knows it (Root.show)
    action: Action
    edited: bool
    new: str | None = None  # FILE.unitgen-new holding a newer default, left in place
    dropped: bool = False  # install: the new version no longer has this file

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "action": str(self.action), "edited": self.edited, "new": self.new,
                "dropped": self.dropped}  # fmt: skip

    def note(self) -> str | None:
        """The line the text output shows for it (None: nothing worth saying)."""
        if self.action is not Action.KEPT or self.dropped:  # a dropped one is in `kept`, with a WARNING
            return None
        if self.new:
            return f"NOTE {self.path}: edited, kept; the new default is in {self.new}"
        return f"NOTE {self.path}: edited, kept"


def new_path(path: PurePosixPath) -> PurePosixPath:
    return path.with_name(path.name + NEW_SUFFIX)


def mark(entries: Iterable[Entry], spec: Spec) -> list[Entry]:
    """The planned entries with the spec's [config] files marked as such."""
    paths = {PurePosixPath(f.dest).relative_to("/") for f in spec.config}
    return [replace(e, config=CONFIG_FILE) if e.type == "file" and e.path in paths else e for e in entries]


@dataclass
class Plan:
    """What an install does with the config files, decided before anything is written."""

    keep: set[PurePosixPath] = field(default_factory=set)  # config files not written (kept, unchanged)
    edited: set[PurePosixPath] = field(default_factory=set)  # of those, the edited ones
    new: list[Entry] = field(default_factory=list)  # FILE.unitgen-new to write, with the new default
    carry: list[Entry] = field(default_factory=list)  # old manifest entries the new one keeps
    outcomes: list[Outcome] = field(default_factory=list)

    def source(self, entry: Entry) -> PurePosixPath:
        """The config file (in the staging tree) whose default a FILE.unitgen-new entry holds."""
        return entry.path.with_name(entry.path.name.removesuffix(NEW_SUFFIX))


def _present(root: Root, path: PurePosixPath) -> bool:
    return root.lstat(path) is not None


def plan(root: Root, planned: Sequence[Entry], old: dict[PurePosixPath, Entry]) -> Plan:
    """Decide, for each config file old and new, what the install writes, keeps and removes.
    What is not ours (an admin's file where a config file goes, at FILE.unitgen-new) is not
    decided here: `plan.refusals` refuses it."""
    result = Plan()
    for entry in planned:
        if entry.config != CONFIG_FILE:
            continue
        try:
            _plan_one(root, entry, old, result)
        except SymlinkInPathError:
            continue  # refused, plan.refusals says why
    planned_paths = {e.path for e in planned}
    for before in old.values():
        if before.config == CONFIG_FILE and before.path not in planned_paths:
            try:
                _plan_dropped(root, before, old, planned_paths, result)
            except SymlinkInPathError:
                continue
    return result


def _plan_one(root: Root, entry: Entry, old: dict[PurePosixPath, Entry], result: Plan) -> None:
    before = old.get(entry.path)
    show = root.show(entry.path)
    if before is None or not _present(root, entry.path):
        result.outcomes.append(Outcome(show, Action.INSTALLED, edited=False))
        return
    if root.sha256(entry.path) == entry.sha256:
        result.keep.add(entry.path)
        result.outcomes.append(Outcome(show, Action.UNCHANGED, edited=False))
        return
    if before.matches(root):
        result.outcomes.append(Outcome(show, Action.INSTALLED, edited=False))
        return
    result.keep.add(entry.path)
    result.edited.add(entry.path)
    npath = new_path(entry.path)
    pending = old.get(npath)
    if entry.sha256 != before.sha256:  # the default changed: the new one goes beside the edit
        result.new.append(Entry(npath, "file", entry.mode, sha256=entry.sha256, config=CONFIG_NEW))
    elif pending is not None and pending.config == CONFIG_NEW and _present(root, npath):
        result.carry.append(pending)  # still the newest default
    else:
        result.outcomes.append(Outcome(show, Action.KEPT, edited=True))
        return
    result.outcomes.append(Outcome(show, Action.KEPT, edited=True, new=root.show(npath)))


def _plan_dropped(
    root: Root, before: Entry, old: dict[PurePosixPath, Entry], planned: set[PurePosixPath], result: Plan
) -> None:
    show = root.show(before.path)
    if not _present(root, before.path):
        return
    if before.matches(root):  # removed with the old version's other files
        result.outcomes.append(Outcome(show, Action.REMOVED, edited=False, dropped=True))
        return
    # Edited: kept and still listed (a purge removes it), with the directories the install made
    # for it; its FILE.unitgen-new, a default no version has any more, goes.
    result.carry.append(before)
    result.carry += [
        old[p]
        for p in before.path.parents
        if p in old and p not in planned and old[p].type == "dir" and old[p] not in result.carry
    ]
    result.outcomes.append(Outcome(show, Action.KEPT, edited=True, dropped=True))


@dataclass
class Removal:
    """What `uninstall` did with the config files."""

    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # edited config files left in place
    remaining: list[Entry] = field(default_factory=list)  # entries the "removed" manifest keeps
    outcomes: list[Outcome] = field(default_factory=list)


def _unlink(root: Root, path: PurePosixPath) -> bool:
    """Remove a file or symbolic link (never a directory: not one unitgen made)."""
    st = root.lstat(path)
    return st is not None and not stat.S_ISDIR(st.st_mode) and root.unlink(path)


def remove(root: Root, entries: Sequence[Entry], *, purge: bool) -> Removal:
    """Remove the config files (and FILE.unitgen-new) of a manifest: unedited ones always, edited
    ones only with `purge`; an edited one kept keeps its FILE.unitgen-new too."""
    done = Removal()
    news = {e.path: e for e in entries if e.config == CONFIG_NEW}
    for entry in entries:
        if entry.config != CONFIG_FILE:
            continue
        try:
            _remove_one(root, entry, news.pop(new_path(entry.path), None), purge, done)
        except SymlinkInPathError:
            continue  # a link planted on the way: followed by nothing, removed nothing
    for orphan in news.values():  # a FILE.unitgen-new without its file (a damaged manifest)
        try:
            if (purge or orphan.matches(root)) and _unlink(root, orphan.path):
                done.removed.append(root.show(orphan.path))
        except SymlinkInPathError:
            continue
    return done


def _remove_one(root: Root, entry: Entry, pending: Entry | None, purge: bool, done: Removal) -> None:
    show = root.show(entry.path)
    present = _present(root, entry.path)
    edited = present and not entry.matches(root)
    keep = present and edited and not purge
    if present and not keep:
        if _unlink(root, entry.path):
            done.removed.append(show)
        else:  # a directory in its place: not unitgen's to remove
            keep = True
    if keep:
        done.kept.append(show)
        done.remaining.append(entry)
    new = None
    if pending is not None and _present(root, pending.path):
        if keep:  # stays beside the edited file it belongs to
            done.remaining.append(pending)
            new = root.show(pending.path)
        elif (purge or pending.matches(root)) and _unlink(root, pending.path):
            done.removed.append(root.show(pending.path))
        else:
            new = root.show(pending.path)  # edited by someone: not unitgen's default any more
    if present or new:
        done.outcomes.append(Outcome(show, Action.KEPT if keep else Action.REMOVED, edited=edited, new=new))
