"""The cache of rendered maintainer scripts (issue 12): a hit is the fresh render byte for byte and
loads no Jinja; any change of template, Jinja or context is a miss; a directory or entry that is
not ours alone, or is damaged, is never used; the directory stays bounded and foreign files in it
are left alone."""

from __future__ import annotations

import hashlib
import marshal
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.test_package_helpers import make_info, make_staging
from unitgen.package import Format, PackageInfo, script_cache, scripts
from unitgen.package.from_spec import package_info
from unitgen.resources import template_root
from unitgen.spec import load_spec
from unitgen.staging.build import stage

ROOT = Path(__file__).parent.parent
NOBODY = 65534
# The examples with a [package] table: hello, a plain service; echo, socket-activated; pool, a
# template with instances; ticker, a timer job. Besides them "rich", the packaging tests' tree:
# sysusers, tmpfiles, purge, configure commands.
EXAMPLES = ("hello", "echo", "pool", "ticker")
Scripts = Callable[[Path, PackageInfo], dict[str, str]]
RENDERERS: dict[str, Scripts] = {"deb": scripts.deb_scripts, "rpm": scripts.rpm_scriptlets}


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, PackageInfo]]:
    """Each example's staging tree and PackageInfo, as `unitgen package` makes them."""
    base = tmp_path_factory.mktemp("script-cache-trees")
    out = {}
    for name in EXAMPLES:
        spec = load_spec(ROOT / "examples" / name / f"{name}.toml")
        staging = base / name
        _, payload = stage(spec, staging)
        out[name] = (staging, package_info(spec, payload))
    out["rich"] = (make_staging(base / "rich"), make_info())
    return out


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def entries(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if script_cache.ENTRY_NAME.fullmatch(p.name)}


def fresh(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fmt: str, staging: Path, info: PackageInfo
) -> dict[str, str]:
    """The scripts rendered with no cache at all: XDG_CACHE_HOME is a file."""
    blocker = tmp_path / "no-cache-here"
    blocker.write_text("not a directory\n")
    with monkeypatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(blocker))
        return RENDERERS[fmt](staging, info)


@pytest.fixture
def no_render(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Call it, and a render (a cache miss) fails the test."""

    def forbid() -> None:
        def render_called() -> None:
            raise AssertionError("rendered: the cache was not used")

        monkeypatch.setattr(scripts, "_env", render_called)

    return forbid


@pytest.mark.parametrize("fmt", ["deb", "rpm"])
@pytest.mark.parametrize("example", [*EXAMPLES, "rich"])
def test_a_hit_is_the_fresh_render(
    trees: dict[str, tuple[Path, PackageInfo]],
    cache_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_render: Callable[[], None],
    fmt: str,
    example: str,
) -> None:
    staging, info = trees[example]
    expected = fresh(monkeypatch, tmp_path, fmt, staging, info)
    assert expected  # every example has units: there are scripts to compare
    assert RENDERERS[fmt](staging, info) == expected  # a miss, stored
    directory = cache_home / "unitgen/scripts"
    assert directory.stat().st_mode & 0o777 == 0o700
    [entry] = entries(directory)
    assert (directory / entry).stat().st_mode & 0o777 == 0o600
    no_render()
    hit = RENDERERS[fmt](staging, info)
    assert {k: v.encode() for k, v in hit.items()} == {k: v.encode() for k, v in expected.items()}
    assert list(hit) == list(expected)  # the scripts' order too


def test_the_formats_and_contexts_have_their_own_entries(
    trees: dict[str, tuple[Path, PackageInfo]], cache_home: Path
) -> None:
    staging, info = trees["hello"]
    scripts.deb_scripts(staging, info)
    scripts.rpm_scriptlets(staging, info)
    newer = replace(info, version="9.9")
    scripts.deb_scripts(staging, newer)
    assert len(entries(cache_home / "unitgen/scripts")) == 3


@pytest.fixture
def template_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The templates copied to tmp_path and used by `scripts` (a Jinja environment of its own)."""
    copy = tmp_path / "templates"
    shutil.copytree(template_root() / "maintainer-scripts", copy / "maintainer-scripts")
    monkeypatch.setattr(scripts, "template_root", lambda: copy)
    scripts._env.cache_clear()
    yield copy / "maintainer-scripts"
    scripts._env.cache_clear()


def test_an_edited_template_is_a_miss(
    trees: dict[str, tuple[Path, PackageInfo]], cache_home: Path, template_copy: Path
) -> None:
    staging, info = trees["hello"]
    before = scripts.deb_scripts(staging, info)
    postinst = template_copy / "deb-postinst.sh.j2"
    postinst.write_text(postinst.read_text().replace("set -e\n", "set -e\n# edited\n", 1))
    after = scripts.deb_scripts(staging, info)
    assert "# edited\n" in after["postinst"] and "# edited\n" not in before["postinst"]
    assert len(entries(cache_home / "unitgen/scripts")) == 2


def test_the_key_covers_every_input(
    trees: dict[str, tuple[Path, PackageInfo]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, info = trees["hello"]
    sources = sorted((template_root() / "maintainer-scripts").glob("*.j2"))
    copies = tmp_path / "copies"
    copies.mkdir()
    for source in sources:
        shutil.copy(source, copies)
    copied = [copies / s.name for s in sources]
    context = {"info": info, "units": info.units}
    key = script_cache.key("deb", sources, context)
    assert script_cache.key("deb", copied, context) == key  # the bytes count, not where they are
    assert script_cache.key("rpm", sources, context) != key
    assert script_cache.key("deb", sources, {"info": replace(info, summary="Other"), "units": info.units}) != key
    assert script_cache.key("deb", sources, {"info": info, "units": (*info.units, "x.timer")}) != key
    assert script_cache.key("deb", sources, {"info": info, "units": list(info.units)}) != key
    copied[0].write_bytes(copied[0].read_bytes() + b" ")
    assert script_cache.key("deb", copied, context) != key
    # Another jinja2 first on sys.path: another installation, another key.
    fake = tmp_path / "site" / "jinja2"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert script_cache.key("deb", sources, context) != key


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({"a", "b"}, id="set"),
        pytest.param(frozenset({"a"}), id="frozenset"),
        pytest.param(object(), id="object"),
        pytest.param(1.5, id="float"),
    ],
)
def test_a_context_without_a_stable_serialization_is_refused(value: object) -> None:
    with pytest.raises(TypeError, match="unfit for a cache key"):
        script_cache.key("deb", [], {"units": ("a.service",), "extra": [value]})


def forge(directory: Path, key: str, content: dict[str, str]) -> Path:
    """An entry with a valid digest: what anyone able to write into `directory` could plant."""
    body = marshal.dumps(content)
    path = directory / f"{key}.scripts"
    path.write_bytes(hashlib.sha256(key.encode() + body).digest() + body)
    return path


KeyOf = Callable[[str, Path, PackageInfo], str]


@pytest.fixture
def key_of(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> KeyOf:
    """The key a build computes: the name of the one entry it writes into an empty cache."""

    def probe(fmt: str, staging: Path, info: PackageInfo) -> str:
        home = Path(tempfile.mkdtemp(prefix="key-probe-", dir=tmp_path))
        with monkeypatch.context() as patch:
            patch.setenv("XDG_CACHE_HOME", str(home))
            RENDERERS[fmt](staging, info)
        [entry] = entries(home / "unitgen/scripts")
        return entry.removesuffix(".scripts")

    return probe


FORGED = {"postinst": "#!/bin/sh\necho forged\n", "prerm": "", "postrm": ""}


@pytest.fixture
def hello(trees: dict[str, tuple[Path, PackageInfo]]) -> tuple[Path, PackageInfo]:
    return trees["hello"]


@pytest.fixture
def forged(hello: tuple[Path, PackageInfo], cache_home: Path, key_of: KeyOf) -> Path:
    """A private cache directory holding a forged entry for hello's deb scripts."""
    directory = cache_home / "unitgen/scripts"
    directory.mkdir(parents=True, mode=0o700)
    return forge(directory, key_of("deb", *hello), FORGED)


def test_an_entry_of_ours_is_used(hello: tuple[Path, PackageInfo], forged: Path) -> None:
    """The counterpart of the refusals below: the forged entry, ours and private, is read."""
    assert scripts.deb_scripts(*hello) == FORGED


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777, 0o1777, 0o750], ids=oct)
def test_a_cache_directory_others_can_use_is_not_used(hello: tuple[Path, PackageInfo], forged: Path, mode: int) -> None:
    forged.parent.chmod(mode)
    assert scripts.deb_scripts(*hello) != FORGED
    assert list(forged.parent.iterdir()) == [forged]  # nothing written there


@pytest.mark.root
def test_a_cache_directory_of_another_user_is_not_used(hello: tuple[Path, PackageInfo], forged: Path) -> None:
    os.chown(forged, NOBODY, NOBODY)
    os.chown(forged.parent, NOBODY, NOBODY)
    assert scripts.deb_scripts(*hello) != FORGED
    assert list(forged.parent.iterdir()) == [forged]


def test_a_symbolic_link_in_place_of_the_cache_directory_is_not_used(
    hello: tuple[Path, PackageInfo], forged: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    forged.parent.rename(elsewhere)
    forged.parent.symlink_to(elsewhere)
    assert scripts.deb_scripts(*hello) != FORGED
    assert list(elsewhere.iterdir()) == [elsewhere / forged.name]


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o666], ids=oct)
def test_an_entry_others_can_write_is_a_miss_and_replaced(
    hello: tuple[Path, PackageInfo], forged: Path, mode: int
) -> None:
    forged.chmod(mode)
    assert scripts.deb_scripts(*hello) != FORGED
    assert b"echo forged" not in forged.read_bytes()
    assert forged.stat().st_mode & 0o777 == 0o600


@pytest.mark.root
def test_an_entry_of_another_user_is_a_miss_and_replaced(hello: tuple[Path, PackageInfo], forged: Path) -> None:
    os.chown(forged, NOBODY, NOBODY)
    assert scripts.deb_scripts(*hello) != FORGED
    assert forged.stat().st_uid == os.geteuid()


def test_a_symbolic_link_entry_is_a_miss(hello: tuple[Path, PackageInfo], forged: Path, tmp_path: Path) -> None:
    target = tmp_path / "target.scripts"
    forged.rename(target)
    forged.symlink_to(target)
    assert scripts.deb_scripts(*hello) != FORGED
    assert not forged.is_symlink()
    assert b"echo forged" in target.read_bytes()  # the link replaced, its target left alone


CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    "empty": lambda data: b"",
    "truncated": lambda data: data[: len(data) // 2],
    "digest-only": lambda data: data[:32],
    "body-byte-flipped": lambda data: data[:-5] + bytes([data[-5] ^ 0x20]) + data[-4:],
    "digest-byte-flipped": lambda data: bytes([data[0] ^ 1]) + data[1:],
    "garbage": lambda data: os.urandom(len(data)),
    "appended": lambda data: data + b"\0",
}


@pytest.mark.parametrize("fmt", ["deb", "rpm"])
@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_a_corrupted_entry_is_rendered_afresh_and_replaced(
    trees: dict[str, tuple[Path, PackageInfo]], cache_home: Path, fmt: str, corruption: str
) -> None:
    staging, info = trees["rich"]
    expected = RENDERERS[fmt](staging, info)
    directory = cache_home / "unitgen/scripts"
    [name] = entries(directory)
    good = (directory / name).read_bytes()
    (directory / name).write_bytes(CORRUPTIONS[corruption](good))
    assert RENDERERS[fmt](staging, info) == expected
    assert (directory / name).read_bytes() == good


def test_another_keys_entry_copied_under_this_name_is_a_miss(
    hello: tuple[Path, PackageInfo], cache_home: Path, key_of: KeyOf
) -> None:
    """The digest covers the key: a valid entry of other scripts, renamed, is not read."""
    staging, info = hello
    other = replace(info, name="hello2")  # the scripts name the package
    theirs_text = scripts.deb_scripts(staging, other)
    expected = scripts.deb_scripts(staging, info)
    assert theirs_text != expected
    directory = cache_home / "unitgen/scripts"
    mine, theirs = (directory / f"{key_of('deb', staging, i)}.scripts" for i in (info, other))
    shutil.copy(theirs, mine)
    assert scripts.deb_scripts(staging, info) == expected


def test_pruning_removes_only_our_oldest_entries(trees: dict[str, tuple[Path, PackageInfo]], cache_home: Path) -> None:
    directory = cache_home / "unitgen/scripts"
    directory.mkdir(parents=True, mode=0o700)
    planted = [directory / f"{i:064x}.scripts" for i in range(script_cache.MAX_ENTRIES)]
    for age, path in enumerate(planted):
        path.write_bytes(b"old entry")
        os.utime(path, (1_000_000 + age, 1_000_000 + age))
    hexname = "f" * 64
    foreign = [
        directory / "notes.txt",
        directory / f"{hexname.upper()}.scripts",
        directory / f"{hexname}.scripts.bak",
        directory / f"{'e' * 63}.scripts",
        directory / f".{hexname}.123.abcd.tmp",
    ]
    for path in foreign:
        path.write_text("not an entry\n")
        os.utime(path, (1, 1))  # older than anything: pruning by age alone would take them first
    (directory / f"{'d' * 64}.scripts").mkdir()
    outside = cache_home / "outside"
    outside.write_text("someone's file\n")
    os.utime(outside, (1, 1))
    (directory / f"{'c' * 64}.scripts").symlink_to(outside)

    staging, info = trees["hello"]
    scripts.deb_scripts(staging, info)  # one new entry: the oldest planted one goes
    scripts.rpm_scriptlets(staging, info)  # another: the next oldest goes
    assert not planted[0].exists() and not planted[1].exists()
    assert all(path.exists() for path in planted[2:])
    assert all(path.read_text() == "not an entry\n" for path in foreign)
    assert (directory / f"{'d' * 64}.scripts").is_dir()
    assert (directory / f"{'c' * 64}.scripts").is_symlink() and outside.read_text() == "someone's file\n"
    regular = [
        p
        for p in directory.iterdir()
        if script_cache.ENTRY_NAME.fullmatch(p.name) and p.is_file() and not p.is_symlink()
    ]
    assert len(regular) == script_cache.MAX_ENTRIES


def test_a_hit_refreshes_the_entry_so_pruning_keeps_what_is_used(
    trees: dict[str, tuple[Path, PackageInfo]], cache_home: Path
) -> None:
    staging, info = trees["hello"]
    scripts.deb_scripts(staging, info)
    directory = cache_home / "unitgen/scripts"
    [name] = entries(directory)
    os.utime(directory / name, (1, 1))
    scripts.deb_scripts(staging, info)
    assert (directory / name).stat().st_mtime > 1


BUILD_AND_REPORT = """
import pickle, sys
from pathlib import Path
from unitgen.package import build
fmt, staging, info, out = pickle.loads(Path(sys.argv[1]).read_bytes())
build(fmt, staging, info, out)
print("jinja2" in sys.modules)
"""


@pytest.mark.parametrize("fmt", [Format.DEB, Format.RPM], ids=str)
def test_a_build_with_a_warm_cache_imports_no_jinja(
    trees: dict[str, tuple[Path, PackageInfo]], tmp_path: Path, fmt: Format
) -> None:
    staging, info = trees["hello"]
    env = {
        **os.environ,
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "PYTHONPATH": str(ROOT),
        "SOURCE_DATE_EPOCH": "1700000000",
    }
    loaded = []
    packages = []
    for run in ("cold", "warm"):
        job = tmp_path / f"{run}.pickle"
        job.write_bytes(pickle.dumps((fmt, staging, info, tmp_path / run)))
        argv = [sys.executable, "-c", BUILD_AND_REPORT, str(job)]
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
        loaded.append(result.stdout.strip())
        [package] = (tmp_path / run).iterdir()
        packages.append(package.read_bytes())
    assert loaded == ["True", "False"]
    assert packages[0] == packages[1]  # the cached scripts made the same package
