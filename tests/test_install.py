"""`unitgen install` / `uninstall` under `--root DIR`: the offline path (an image build), real
`unitgen` processes writing into a scratch root, real systemd-sysusers, systemd-tmpfiles and
systemctl --root. The live path (a running systemd) is tests/test_install_systemd.py.

Install needs root (it gives every file to root), so these tests do too.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cli_helpers import document, unitgen
from unitgen.install import rootfs, timeouts

pytestmark = pytest.mark.root

ROOT = Path(__file__).parent.parent
NAME = "demo"
SPEC = f"""description = "demo service"
exec = ["/bin/sleep", "infinity"]
user = "{NAME}"
state_directory = true
"""
UNIT = f"usr/lib/systemd/system/{NAME}.service"
LAUNCHER = f"usr/libexec/{NAME}/{NAME}-launcher"
SYSUSERS = f"usr/lib/sysusers.d/{NAME}.conf"
MANIFEST = f"var/lib/unitgen/{NAME}.manifest"
# journalctl's catalog database, rebuilt by install and uninstall as by the packages' trigger:
# the system's, like the user; it stays, without the service's entries.
CATALOG_DB = {"var/lib/systemd", "var/lib/systemd/catalog", "var/lib/systemd/catalog/database"}


def tree(root: Path) -> dict[str, tuple[object, ...]]:
    """Every path under `root` with its type, mode, owner and content (or link target)."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                what: object = str(path.readlink())
            elif stat.S_ISREG(st.st_mode):
                what = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                what = None
            out[str(path.relative_to(root))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, what)
    return out


class Host:
    """A scratch root that looks like an image (an /etc, a /var/lib) and the spec beside it."""

    def __init__(self, tmp: Path) -> None:
        self.dir = tmp
        self.root = tmp / "root"
        for sub in ("etc", "var/lib", "usr/lib/systemd/system"):
            (self.root / sub).mkdir(parents=True)
        self.spec = tmp / f"{NAME}.toml"
        self.spec.write_text(SPEC)

    def install(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return unitgen("install", NAME, "--root", str(self.root), *extra, cwd=self.dir)

    def uninstall(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return unitgen("uninstall", NAME, "--root", str(self.root), *extra, cwd=self.dir)

    def manifest(self) -> dict[str, Any]:
        return json.loads((self.root / MANIFEST).read_text())  # type: ignore[no-any-return]

    def install_killed(self, kill_if: str, setup: str = "") -> subprocess.CompletedProcess[str]:
        """`unitgen install` SIGKILLed in Root.write_file, before writing, once the Python
        expression `kill_if` (of `rel`, run on every file in turn) is true; `setup` runs first."""
        code = (
            f"import os, signal, sys\nfrom unitgen.install import rootfs\n{setup}real = rootfs.Root.write_file\n"
            "def write_file(self, rel, content, mode, created):\n"
            f"    if {kill_if}:\n"
            "        os.kill(os.getpid(), signal.SIGKILL)\n"
            "    real(self, rel, content, mode, created)\n"
            "rootfs.Root.write_file = write_file\n"
            "from unitgen.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n"
        )
        return subprocess.run(
            [sys.executable, "-c", code, "install", NAME, "--root", str(self.root)],
            cwd=self.dir, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, check=False,
        )  # fmt: skip


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


def test_install_puts_every_file_in_place_and_lists_it_in_the_manifest(host: Host) -> None:
    result = host.install("--json")
    assert result.returncode == 0, result.stderr
    doc = document(result)
    assert doc["live"] is False and doc["upgrade"] is False and doc["state"] == ""
    files = {f["path"]: f for f in doc["files"]}
    for rel in (UNIT, LAUNCHER, SYSUSERS, f"usr/libexec/{NAME}/unitgen_launcher.py"):
        path = host.root / rel
        st = path.lstat()
        assert stat.S_ISREG(st.st_mode) and (st.st_uid, st.st_gid) == (0, 0), rel
        assert files[f"/{rel}"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert files[f"/{rel}"]["mode"] == f"{stat.S_IMODE(st.st_mode):04o}"
    assert files[f"/{LAUNCHER}"]["mode"] == "0755"
    manifest = host.manifest()
    assert manifest["state"] == "complete"
    assert [e["path"] for e in manifest["entries"]] == list(files)
    entries = {e["path"]: e for e in manifest["entries"]}
    assert entries["/usr/libexec"]["created"] is True  # made by the install
    assert entries["/usr/lib/systemd/system"]["created"] is False  # there before
    assert manifest["purge"] == [f"/var/lib/{NAME}"]  # absent before the first install
    # The offline steps, as a package installed with DPKG_ROOT runs them.
    assert any(s.startswith("systemd-sysusers --root=") for s in doc["steps"])
    assert NAME in (host.root / "etc/passwd").read_text()
    assert (host.root / f"etc/systemd/system/multi-user.target.wants/{NAME}.service").is_symlink()
    assert not list(host.root.rglob(f"*{rootfs.TMP_INFIX}*"))


def test_uninstall_removes_exactly_what_was_installed_and_nothing_foreign(host: Host) -> None:
    (host.root / "usr/lib/systemd/system/other.service").write_text("[Service]\nExecStart=/bin/true\n")
    before = tree(host.root)
    assert host.install().returncode == 0
    notes = host.root / f"usr/libexec/{NAME}/notes.txt"  # an admin's file in the service's directory
    notes.write_text("mine\n")
    result = host.uninstall("--purge", "--json")  # without --purge a record of the state directory stays
    assert result.returncode == 0, result.stderr
    doc = document(result)
    assert doc["kept"] == [] and f"{host.root}/{UNIT}" in doc["removed"]
    after = tree(host.root)
    # What stays on purpose: the system user (Debian never deletes one), the tmpfiles directory
    # (in /run, a tmpfs at boot), the directories systemctl enable made, the admin's note and
    # so the directory that holds it.
    users = {"etc/.pwd.lock", "etc/passwd", "etc/group", "etc/shadow", "etc/gshadow"}
    kept = {*users, *CATALOG_DB, "run", f"run/{NAME}", "etc/systemd", "etc/systemd/system"}
    kept |= {"usr/libexec", f"usr/libexec/{NAME}", f"usr/libexec/{NAME}/notes.txt"}
    assert set(after) - set(before) == kept
    assert {k: v for k, v in after.items() if k in before} == before  # the foreign unit untouched
    assert not (host.root / MANIFEST).exists()


def test_bytecode_in_a_directory_the_install_did_not_create_is_never_removed(host: Host) -> None:
    """Only the __pycache__ of directories the install made is its own compile step's."""
    foreign = host.root / "usr/lib/systemd/__pycache__/tool.cpython-311.pyc"  # usr/lib/systemd was there
    foreign.parent.mkdir()
    foreign.write_bytes(b"someone else's bytecode")
    assert host.install().returncode == 0
    assert host.install().returncode == 0  # an upgrade cleans bytecode too
    result = host.uninstall("--purge")
    assert result.returncode == 0, result.stderr
    assert foreign.read_bytes() == b"someone else's bytecode"


def test_an_admins_file_that_only_looks_like_a_killed_writes_leftover_is_kept(host: Host) -> None:
    """Leftovers are exactly `.FILE.unitgen-` and 8 hex digits (what the writer makes), nothing broader."""
    assert host.install().returncode == 0
    backup = (host.root / UNIT).parent / f".{Path(UNIT).name}.unitgen-backup"
    backup.write_text("an admin's copy\n")
    assert host.install().returncode == 0
    assert host.uninstall().returncode == 0
    assert backup.read_text() == "an admin's copy\n"


def test_reinstall_upgrades_replacing_its_files_and_removing_what_the_new_version_lacks(host: Host) -> None:
    assert host.install().returncode == 0
    old_unit = (host.root / UNIT).read_bytes()
    host.spec.write_text(SPEC.replace(f'user = "{NAME}"\n', "").replace("demo service", "demo service v2"))
    result = host.install("--json")
    assert result.returncode == 0, result.stderr
    doc = document(result)
    assert doc["upgrade"] is True
    assert (host.root / UNIT).read_bytes() != old_unit and b"v2" in (host.root / UNIT).read_bytes()
    assert not (host.root / SYSUSERS).exists()  # no user any more: its sysusers.d file is gone
    # ... and the directory the first install made for it, now empty.
    assert doc["removed"] == [f"{host.root}/{SYSUSERS}", f"{host.root}/usr/lib/sysusers.d"]
    assert f"/{SYSUSERS}" not in {e["path"] for e in host.manifest()["entries"]}
    assert host.manifest()["purge"] == [f"/var/lib/{NAME}"]  # the first install's record carries over


def test_an_edited_file_refuses_the_upgrade_and_is_kept_by_uninstall(host: Host) -> None:
    assert host.install().returncode == 0
    launcher = host.root / LAUNCHER
    launcher.write_text(launcher.read_text() + "# local change\n")
    before = tree(host.root)
    result = host.install()
    assert result.returncode == 1
    assert f"{launcher} was changed since unitgen installed it" in result.stderr
    assert tree(host.root) == before
    result = host.uninstall("--json")
    assert result.returncode == 0, result.stderr
    assert document(result)["kept"] == [str(launcher)]
    assert f"WARNING {launcher}: changed since unitgen installed it; kept" in result.stderr
    assert launcher.read_text().endswith("# local change\n")
    assert not (host.root / UNIT).exists()


def _admin_file(root: Path, rel: str) -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text("an admin's file\n")


def _symlink_parent(root: Path) -> None:
    (root / "elsewhere").mkdir()
    (root / "usr/libexec").mkdir(parents=True)
    (root / f"usr/libexec/{NAME}").symlink_to(root / "elsewhere")


def _symlink_file(root: Path) -> None:
    (root / UNIT).symlink_to(root / "etc/passwd")


def _other_manifest(root: Path) -> None:
    (root / "var/lib/unitgen").mkdir(parents=True)
    entry = {"path": f"/{LAUNCHER}", "type": "file", "mode": "0755", "owner": "root:root", "sha256": "0" * 64}
    doc = {"unitgen_manifest": 1, "name": "other", "state": "complete", "entries": [entry]}
    (root / "var/lib/unitgen/other.manifest").write_text(json.dumps(doc))


def _dpkg_owned(root: Path) -> None:
    # Debian's database names /lib/systemd/system for units under merged /usr; the file itself
    # is not even on disk (removed by hand), and the package still owns the name.
    dpkg = root / "var/lib/dpkg"
    (dpkg / "info").mkdir(parents=True)
    (dpkg / "status").write_text(
        f"Package: {NAME}\nStatus: install ok installed\nVersion: 0.9\nArchitecture: all\n"
        "Maintainer: A <a@example.com>\nDescription: x\n\n"
    )
    (dpkg / f"info/{NAME}.list").write_text(
        f"/.\n/lib\n/lib/systemd\n/lib/systemd/system\n/lib/systemd/system/{NAME}.service\n"
    )


def _etc_unit(root: Path) -> None:
    _admin_file(root, f"etc/systemd/system/{NAME}.service")


def _masked(root: Path) -> None:
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / f"etc/systemd/system/{NAME}.service").symlink_to("/dev/null")


def _dir_at_file(root: Path) -> None:
    (root / UNIT).mkdir()


@pytest.mark.parametrize(
    ("plant", "message"),
    [
        pytest.param(lambda r: _admin_file(r, UNIT), f"{UNIT} exists and is not unitgen's", id="admin-file-at-unit"),
        pytest.param(
            lambda r: _admin_file(r, LAUNCHER), f"{LAUNCHER} exists and is not unitgen's", id="admin-launcher"
        ),
        pytest.param(_symlink_parent, f"usr/libexec/{NAME} is a symbolic link", id="symlink-parent-dir"),
        pytest.param(_symlink_file, f"{UNIT} exists and is not unitgen's", id="symlink-at-file"),
        pytest.param(_dir_at_file, f"{UNIT} exists and is not unitgen's", id="directory-at-file"),
        pytest.param(_other_manifest, "is listed in the manifest of the service other", id="other-manifest"),
        pytest.param(_dpkg_owned, f"{UNIT} belongs to the package {NAME} (dpkg)", id="dpkg-owned-lib-alias"),
        pytest.param(_etc_unit, f"etc/systemd/system/{NAME}.service: {NAME}.service already exists", id="etc-unit"),
        pytest.param(_masked, "masked (a link to /dev/null)", id="masked-unit"),
    ],
)
def test_install_refuses_what_it_does_not_own_and_writes_nothing(host: Host, plant: Any, message: str) -> None:
    plant(host.root)
    before = tree(host.root)
    result = host.install("--json")
    assert result.returncode == 1
    error = document(result)["error"]
    assert "nothing was written" in error["message"] and message in error["message"], error
    assert tree(host.root) == before  # "elsewhere", behind the planted link, too


def test_install_needs_root(host: Host, unitgen_for_anyone: Path) -> None:
    host.dir.chmod(0o755)
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
         "/usr/bin/python3", "-m", "unitgen", "uninstall", NAME, "--root", str(host.root)],
        capture_output=True, text=True, env={"PYTHONPATH": str(unitgen_for_anyone), "PATH": "/usr/bin:/bin"},
        cwd="/", check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "ERROR unitgen uninstall must run as root" in result.stderr


def test_uninstall_of_a_service_not_installed_says_so(host: Host) -> None:
    result = host.uninstall()
    assert result.returncode == 1
    assert f"{NAME} is not installed by unitgen: there is no {host.root}/{MANIFEST}" in result.stderr


def test_purge_removes_only_the_state_directory_the_install_created(host: Host) -> None:
    assert host.install().returncode == 0
    state = host.root / f"var/lib/{NAME}"
    state.mkdir()  # what systemd's StateDirectory= makes at the first start
    (state / "data").write_text("state\n")
    result = host.uninstall()
    assert result.returncode == 0, result.stderr
    assert (state / "data").exists()  # a plain uninstall keeps the state, like apt remove
    assert host.manifest()["state"] == "removed" and host.manifest()["entries"] == []
    result = host.uninstall("--purge", "--json")
    assert result.returncode == 0, result.stderr
    assert document(result)["purged"] == [f"/var/lib/{NAME}"]
    assert not state.exists() and not (host.root / MANIFEST).exists()


def test_purge_never_removes_a_state_directory_that_was_there_before(host: Host) -> None:
    state = host.root / f"var/lib/{NAME}"
    state.mkdir()
    (state / "precious").write_text("not the service's\n")
    assert host.install().returncode == 0
    assert host.manifest()["purge"] == []
    assert host.uninstall("--purge").returncode == 0
    assert (state / "precious").exists()


def test_an_install_killed_half_way_is_cleaned_by_uninstall_and_taken_over_by_install(host: Host) -> None:
    # SIGKILL after the third file: the in-progress manifest was written before the first.
    def kill() -> subprocess.CompletedProcess[str]:
        # next(count) first: every file counts, as the fourth one is what is killed.
        return host.install_killed("next(count) == 4 and str(rel) != 'var/lib/unitgen/demo.manifest'",
                                   setup="import itertools\ncount = itertools.count(1)\n")  # fmt: skip

    before = tree(host.root)
    killed = kill()
    assert killed.returncode == -9, killed.stderr
    assert host.manifest()["state"] == "installing"
    written = [p for p in tree(host.root) if p not in before and (host.root / p).is_file()]
    assert written  # some files are there, not all
    result = host.uninstall("--purge")
    assert result.returncode == 0, result.stderr
    assert set(tree(host.root)) == set(before)
    # Again, then a re-install takes the half-done one over.
    kill()
    result = host.install()
    assert result.returncode == 0, result.stderr
    assert host.manifest()["state"] == "complete" and (host.root / LAUNCHER).is_file()


def test_a_template_enables_each_listed_instance_and_uninstall_disables_them(host: Host) -> None:
    pool = ["pool", "--root", str(host.root)]
    result = unitgen("install", *pool, "--spec", str(ROOT / "examples/pool/pool.toml"), "--json", cwd=host.dir)
    assert result.returncode == 0, result.stderr
    assert "systemctl --root=" in " ".join(document(result)["steps"])
    wants = host.root / "etc/systemd/system/multi-user.target.wants"
    assert sorted(p.name for p in wants.iterdir()) == ["pool@a.service", "pool@b.service", "pool@c.service"]
    assert (host.root / "usr/lib/systemd/system/pool@c.service.d/unitgen-instance.conf").is_file()
    result = unitgen("uninstall", *pool, cwd=host.dir)
    assert result.returncode == 0, result.stderr
    assert not wants.exists()
    assert not (host.root / "usr/lib/systemd/system/pool@c.service.d").exists()


def test_an_upgrade_that_drops_the_timer_disables_it_before_removing_it(host: Host) -> None:
    host.spec.write_text(SPEC + '\n[timer]\non_calendar = "*:*:00"\n')
    assert host.install().returncode == 0
    timer_link = host.root / f"etc/systemd/system/timers.target.wants/{NAME}.timer"
    assert timer_link.is_symlink()
    host.spec.write_text(SPEC)
    result = host.install("--json")
    assert result.returncode == 0, result.stderr
    doc = document(result)
    assert f"systemctl --root={host.root} --quiet disable {NAME}.timer" in doc["steps"]
    assert not timer_link.is_symlink() and not (host.root / f"usr/lib/systemd/system/{NAME}.timer").exists()
    assert (host.root / f"etc/systemd/system/multi-user.target.wants/{NAME}.service").is_symlink()


def test_an_app_venv_is_installed_with_its_links_and_removed_whole(host: Host) -> None:
    before = tree(host.root)
    webapp = ["webapp", "--root", str(host.root)]
    result = unitgen("install", *webapp, "--spec", str(ROOT / "examples/webapp/webapp.toml"), "--json", cwd=host.dir)
    assert result.returncode == 0, result.stderr
    link = {"path": "/usr/lib/webapp/venv/bin/python3", "type": "symlink", "mode": "0777", "target": "/usr/bin/python3"}
    assert link in document(result)["files"]
    assert (host.root / "usr/lib/webapp/venv/bin/python").readlink() == Path("python3")
    assert (host.root / "usr/lib/webapp/venv/pyvenv.cfg").is_file()
    # What the package's postinst compiles, as it would be on a live host.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(host.root / "usr/lib/webapp/venv/lib")], check=True)
    result = unitgen("uninstall", *webapp, "--purge", cwd=host.dir)
    assert result.returncode == 0, result.stderr
    assert not (host.root / "usr/lib/webapp").exists()  # bytecode and all
    users = {"etc/.pwd.lock", "etc/passwd", "etc/group", "etc/shadow", "etc/gshadow"}
    assert set(tree(host.root)) - set(before) == {*users, *CATALOG_DB, "run", "run/webapp", "etc/systemd",
                                                  "etc/systemd/system"}  # fmt: skip


def test_a_second_install_waits_for_the_first_under_the_same_root(host: Host) -> None:
    import fcntl

    fd = os.open(host.root, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as a running `unitgen install` holds it
    argv = [sys.executable, "-m", "unitgen", "install", NAME, "--root", str(host.root), "--json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(argv, cwd=host.dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as p:
        try:
            assert p.stderr is not None
            assert "waiting for another unitgen install or uninstall" in p.stderr.readline()
            assert not (host.root / MANIFEST).exists()  # nothing written while it waits
        finally:
            os.close(fd)  # the first one is done
        out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert json.loads(out)["command"] == "install" and host.manifest()["state"] == "complete"


@pytest.mark.parametrize(
    "purge",
    [
        pytest.param("/", id="root"),
        pytest.param("/etc", id="etc"),
        pytest.param("/var/lib", id="var-lib"),
        pytest.param("/var/lib/../../etc", id="dot-dot"),
        pytest.param("/var/lib/demo/../..", id="dot-dot-below"),
    ],
)
def test_a_manifest_that_names_more_than_a_state_directory_purges_nothing(host: Host, purge: str) -> None:
    assert host.install().returncode == 0
    manifest = host.manifest()
    manifest["purge"] = [purge]
    (host.root / MANIFEST).write_text(json.dumps(manifest))
    before = tree(host.root)
    result = host.uninstall("--purge")
    assert result.returncode == 1
    assert "not a manifest unitgen can read" in result.stderr and "is not a state, cache or log" in result.stderr
    assert tree(host.root) == before


def test_an_app_is_refused_before_its_venv_is_built(host: Host) -> None:
    # A project that cannot be built: only a refusal that comes first says what is wrong here.
    (host.dir / "proj").mkdir()
    (host.dir / "proj/pyproject.toml").write_text('[build-system]\nrequires = []\nbuild-backend = "no_such_backend"\n')
    host.spec.write_text(SPEC + '\n[app]\nproject = "proj"\n')
    _admin_file(host.root, UNIT)
    before = tree(host.root)
    result = host.install()
    assert result.returncode == 1
    assert f"{host.root}/{UNIT} exists and is not unitgen's" in result.stderr, result.stderr
    assert "could not build" not in result.stderr
    assert tree(host.root) == before


# [config] files: kept when edited, as dpkg keeps a conffile and rpm a %config(noreplace) file.
CONF = f"etc/{NAME}/{NAME}.conf"
NEW = f"{CONF}.unitgen-new"
CONFIG_SPEC = SPEC + f'\n[config]\n"/{CONF}" = "{NAME}.conf"\n'


class ConfigHost(Host):
    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.spec.write_text(CONFIG_SPEC)
        self.default("port = 1\n")

    def default(self, text: str) -> None:
        """The project's default config file, what the next install ships."""
        (self.dir / f"{NAME}.conf").write_text(text)

    def config_entries(self) -> dict[str, dict[str, Any]]:
        return {e["path"]: e for e in self.manifest()["entries"] if "config" in e}


@pytest.fixture
def chost(tmp_path: Path) -> ConfigHost:
    return ConfigHost(tmp_path)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def changed(before: dict[str, tuple[object, ...]], after: dict[str, tuple[object, ...]]) -> set[str]:
    return {p for p in set(before) | set(after) if before.get(p) != after.get(p)}


def _edit(root: Path) -> None:
    (root / CONF).write_text("port = 8080  # the admin's\n")


def _to_new_default(root: Path) -> None:
    (root / CONF).write_text("port = 2\n")  # the admin made the very change the new version makes


def _delete(root: Path) -> None:
    (root / CONF).unlink()


def _symlink(root: Path) -> None:
    (root / "srv").mkdir()
    (root / "srv/shared.conf").write_text("port = 9\n")
    (root / CONF).unlink()
    (root / CONF).symlink_to("/srv/shared.conf")


def _nothing(root: Path) -> None:
    pass


EDITED = "port = 8080  # the admin's\n"


@pytest.mark.parametrize(
    ("admin", "default", "conf", "new", "action", "edited"),
    [
        pytest.param(_nothing, "port = 2\n", "port = 2\n", None, "installed", False, id="unedited-new-default"),
        pytest.param(_nothing, "port = 1\n", "port = 1\n", None, "unchanged", False, id="unedited-same-default"),
        pytest.param(_edit, "port = 2\n", EDITED, "port = 2\n", "kept", True, id="edited-new-default"),
        pytest.param(_edit, "port = 1\n", EDITED, None, "kept", True, id="edited-same-default"),
        pytest.param(_to_new_default, "port = 2\n", "port = 2\n", None, "unchanged", False, id="edited-to-new-default"),
        pytest.param(_delete, "port = 2\n", "port = 2\n", None, "installed", False, id="deleted-restored"),
        pytest.param(_symlink, "port = 2\n", "/srv/shared.conf", "port = 2\n", "kept", True, id="symlink-kept"),
    ],
)
def test_reinstall_treats_a_config_file_as_a_conffile(
    chost: ConfigHost, admin: Any, default: str, conf: str, new: str | None, action: str, edited: bool
) -> None:
    assert chost.install().returncode == 0
    admin(chost.root)
    chost.default(default)
    before = tree(chost.root)
    result = chost.install("--json")
    assert result.returncode == 0, result.stderr
    doc = document(result)
    path = chost.root / CONF
    assert (str(path.readlink()) if path.is_symlink() else path.read_text()) == conf
    new_path = f"{chost.root}/{NEW}"
    assert doc["config"] == [
        {"path": str(path), "action": action, "edited": edited, "new": new_path if new else None, "dropped": False}
    ]
    if new is None:
        assert not (chost.root / NEW).exists()
    else:
        assert (chost.root / NEW).read_text() == new
        st = (chost.root / NEW).lstat()
        assert stat.S_ISREG(st.st_mode) and (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o644)
        assert f"NOTE {path}: edited, kept; the new default is in {new_path}" in result.stderr
    # Nothing else changed: the config file only when it takes the default, FILE.unitgen-new
    # only when written (and the manifest, which records the default installed).
    expect = ({CONF} if action == "installed" else set()) | ({NEW} if new else set())
    assert changed(before, tree(chost.root)) - {MANIFEST} == expect
    assert chost.config_entries()[f"/{CONF}"]["sha256"] == sha(default)  # what dpkg records, too
    if path.is_symlink():
        assert (chost.root / "srv/shared.conf").read_text() == "port = 9\n"  # not followed
    assert not list(chost.root.rglob(f".*{rootfs.TMP_INFIX}*"))  # no temporary file left


def test_a_config_files_unitgen_new_is_replaced_by_the_next_upgrade_and_goes_once_merged(chost: ConfigHost) -> None:
    assert chost.install().returncode == 0
    _edit(chost.root)
    for default in ("port = 2\n", "port = 3\n"):
        chost.default(default)
        assert chost.install().returncode == 0
        assert (chost.root / NEW).read_text() == default
    pending = {"path": f"/{NEW}", "type": "file", "mode": "0644", "owner": "root:root", "sha256": sha("port = 3\n")}
    assert chost.config_entries()[f"/{NEW}"] == {**pending, "config": "new"}
    # The same default again: the pending one stays, still listed.
    result = chost.install("--json")
    assert result.returncode == 0, result.stderr
    assert document(result)["config"][0]["new"] == f"{chost.root}/{NEW}"
    assert (chost.root / NEW).read_text() == "port = 3\n" and f"/{NEW}" in chost.config_entries()
    # The admin merges (takes the new default as it is): unedited again, the next default goes in.
    (chost.root / CONF).write_text((chost.root / NEW).read_text())
    chost.default("port = 4\n")
    result = chost.install("--json")
    assert result.returncode == 0, result.stderr
    assert document(result)["config"][0]["action"] == "installed"
    assert (chost.root / CONF).read_text() == "port = 4\n"
    assert not (chost.root / NEW).exists() and f"/{NEW}" not in chost.config_entries()
    assert f"{chost.root}/{NEW}" in document(result)["removed"]


@pytest.mark.parametrize("edited", [pytest.param(True, id="edited-kept"), pytest.param(False, id="unedited-removed")])
def test_a_config_file_the_new_version_drops_is_kept_only_if_edited(chost: ConfigHost, edited: bool) -> None:
    assert chost.install().returncode == 0
    if edited:
        _edit(chost.root)
    chost.spec.write_text(SPEC)  # no [config] any more
    result = chost.install("--json")
    assert result.returncode == 0, result.stderr
    doc = document(result)
    conf = f"{chost.root}/{CONF}"
    assert doc["config"] == [{"path": conf, "action": "kept" if edited else "removed", "edited": edited,
                              "new": None, "dropped": True}]  # fmt: skip
    if edited:
        assert (chost.root / CONF).read_text() == EDITED and doc["kept"] == [conf]
        assert f"WARNING {conf}: changed since unitgen installed it; kept" in result.stderr
        assert set(chost.config_entries()) == {f"/{CONF}"}  # still listed: a purge finds it
        result = chost.uninstall("--purge", "--json")
        assert result.returncode == 0, result.stderr
        assert conf in document(result)["removed"]
    else:
        assert conf in doc["removed"] and doc["kept"] == []
    assert not (chost.root / f"etc/{NAME}").exists()  # made by the install, empty now


def test_uninstall_keeps_an_edited_config_file_and_purge_removes_only_what_install_made(chost: ConfigHost) -> None:
    before = tree(chost.root)
    assert chost.install().returncode == 0
    _edit(chost.root)
    chost.default("port = 2\n")
    assert chost.install().returncode == 0
    (chost.root / f"etc/{NAME}/local.conf").write_text("an admin's own file\n")
    result = chost.uninstall("--json")
    assert result.returncode == 0, result.stderr
    doc = document(result)
    conf, new = f"{chost.root}/{CONF}", f"{chost.root}/{NEW}"
    assert doc["kept"] == [conf]
    assert doc["config"] == [{"path": conf, "action": "kept", "edited": True, "new": new, "dropped": False}]
    assert (chost.root / CONF).read_text() == EDITED and (chost.root / NEW).read_text() == "port = 2\n"
    assert not (chost.root / UNIT).exists()
    manifest = chost.manifest()  # like dpkg's config-files state: what a purge will remove
    assert manifest["state"] == "removed"
    assert [e["path"] for e in manifest["entries"]] == [f"/etc/{NAME}", f"/{CONF}", f"/{NEW}"]
    again = chost.uninstall()
    assert again.returncode == 1
    assert f"{NAME} was uninstalled already; what is left of it: {conf}, {new}, /var/lib/{NAME}" in again.stderr
    assert f"'unitgen uninstall {NAME} --purge' removes that too" in again.stderr
    result = chost.uninstall("--purge", "--json")
    assert result.returncode == 0, result.stderr
    doc = document(result)
    assert doc["config"] == [{"path": conf, "action": "removed", "edited": True, "new": None, "dropped": False}]
    assert {conf, new} <= set(doc["removed"])
    after = tree(chost.root)
    # The admin's own file stays, and so does the directory holding it; nothing else of unitgen's.
    users = {"etc/.pwd.lock", "etc/passwd", "etc/group", "etc/shadow", "etc/gshadow"}
    system = {*users, *CATALOG_DB, "etc/systemd", "etc/systemd/system", "run", f"run/{NAME}"}
    assert set(after) - set(before) == {*system, f"etc/{NAME}", f"etc/{NAME}/local.conf"}
    assert not (chost.root / MANIFEST).exists()


def test_uninstall_removes_an_unedited_config_file_and_its_directory(chost: ConfigHost) -> None:
    assert chost.install().returncode == 0
    result = chost.uninstall("--json")
    assert result.returncode == 0, result.stderr
    doc = document(result)
    conf = f"{chost.root}/{CONF}"
    assert doc["config"] == [{"path": conf, "action": "removed", "edited": False, "new": None, "dropped": False}]
    assert not (chost.root / f"etc/{NAME}").exists() and doc["kept"] == []


def _admin_new(root: Path) -> None:
    (root / NEW).write_text("the admin's notes\n")


def _symlink_new(root: Path) -> None:
    (root / NEW).symlink_to("/etc/passwd")


def _dir_new(root: Path) -> None:
    (root / NEW).mkdir()


@pytest.mark.parametrize(
    ("plant", "message"),
    [
        pytest.param(_admin_new, f"{NEW} exists and is not unitgen's", id="admin-file"),
        pytest.param(_symlink_new, f"{NEW} exists and is not unitgen's", id="symlink"),
        pytest.param(_dir_new, f"{NEW} exists and is not unitgen's", id="directory"),
    ],
)
def test_an_upgrade_that_would_overwrite_a_foreign_unitgen_new_is_refused(
    chost: ConfigHost, plant: Any, message: str
) -> None:
    assert chost.install().returncode == 0
    _edit(chost.root)
    plant(chost.root)
    chost.default("port = 2\n")
    before = tree(chost.root)
    result = chost.install("--json")
    assert result.returncode == 1
    error = document(result)["error"]
    assert "nothing was written" in error["message"] and message in error["message"], error
    assert tree(chost.root) == before


def test_an_upgrade_that_would_overwrite_an_edited_unitgen_new_is_refused(chost: ConfigHost) -> None:
    assert chost.install().returncode == 0
    _edit(chost.root)
    chost.default("port = 2\n")
    assert chost.install().returncode == 0
    (chost.root / NEW).write_text("port = 2  # merging here\n")
    chost.default("port = 3\n")
    before = tree(chost.root)
    result = chost.install()
    assert result.returncode == 1
    assert f"{NEW} was changed since unitgen installed it" in result.stderr
    assert tree(chost.root) == before


def test_an_upgrade_killed_half_way_leaves_an_edited_config_file_edited(chost: ConfigHost) -> None:
    # SIGKILL at the first file after the in-progress manifest: the config file must still count
    # as edited then, or the uninstall that cleans up would remove it as unitgen's own.
    kill_if = "not str(rel).endswith('.manifest')"
    assert chost.install().returncode == 0
    _edit(chost.root)
    chost.default("port = 2\n")
    killed = chost.install_killed(kill_if)
    assert killed.returncode == -9, killed.stderr
    assert chost.manifest()["state"] == "installing"
    # A re-install takes it over and still writes the new default beside the edit ...
    result = chost.install("--json")
    assert result.returncode == 0, result.stderr
    assert document(result)["config"][0]["new"] == f"{chost.root}/{NEW}"
    assert (chost.root / CONF).read_text() == EDITED and (chost.root / NEW).read_text() == "port = 2\n"
    # ... and, killed again, an uninstall keeps the edit.
    chost.default("port = 3\n")
    killed = chost.install_killed(kill_if)
    assert killed.returncode == -9, killed.stderr
    result = chost.uninstall("--json")
    assert result.returncode == 0, result.stderr
    assert document(result)["kept"] == [f"{chost.root}/{CONF}"]
    assert (chost.root / CONF).read_text() == EDITED


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/etc/passwd", id="etc-passwd"),
        pytest.param("/etc/other/other.conf", id="another-service"),
        pytest.param(f"/etc/{NAME}", id="the-directory"),
    ],
)
def test_a_manifest_config_entry_outside_etc_name_purges_nothing(chost: ConfigHost, path: str) -> None:
    assert chost.install().returncode == 0
    manifest = chost.manifest()
    manifest["entries"].append({"path": path, "type": "file", "mode": "0644", "sha256": "0" * 64, "config": "file"})
    (chost.root / MANIFEST).write_text(json.dumps(manifest))
    before = tree(chost.root)
    result = chost.uninstall("--purge")
    assert result.returncode == 1
    assert "not a manifest unitgen can read" in result.stderr and f"is not below /etc/{NAME}" in result.stderr
    assert tree(chost.root) == before


def catalog_ids(root: Path) -> str:
    return subprocess.run(["journalctl", f"--root={root}", "--list-catalog"], capture_output=True, text=True,
                          check=True).stdout  # fmt: skip


def test_install_and_uninstall_rebuild_the_journal_catalog(host: Host) -> None:
    from unitgen.launcher.runtime import MESSAGE_ID_ALREADY_RUNNING

    # systemd's own entries, as on every system (journalctl leaves the database as it is when
    # it finds no entry at all, so an empty root would keep the service's after uninstall).
    (host.root / "usr/lib/systemd/catalog").mkdir(parents=True)
    shutil.copy("/usr/lib/systemd/catalog/systemd.catalog", host.root / "usr/lib/systemd/catalog")
    result = host.install("--json")
    assert result.returncode == 0, result.stderr
    assert f"journalctl --root={host.root} --update-catalog" in document(result)["steps"]
    assert (host.root / f"usr/lib/systemd/catalog/{NAME}.catalog").is_file()
    assert MESSAGE_ID_ALREADY_RUNNING in catalog_ids(host.root)  # what journalctl -x shows
    result = host.uninstall("--json")
    assert result.returncode == 0, result.stderr
    assert f"journalctl --root={host.root} --update-catalog" in document(result)["steps"]
    assert MESSAGE_ID_ALREADY_RUNNING not in catalog_ids(host.root)
    assert catalog_ids(host.root)  # systemd's are still there


def test_an_edited_non_config_file_still_refuses_the_upgrade_when_the_config_is_edited_too(chost: ConfigHost) -> None:
    assert chost.install().returncode == 0
    _edit(chost.root)
    launcher = chost.root / LAUNCHER
    launcher.write_text(launcher.read_text() + "# local change\n")
    chost.default("port = 2\n")
    before = tree(chost.root)
    result = chost.install()
    assert result.returncode == 1
    assert f"{launcher} was changed since unitgen installed it" in result.stderr
    assert str(chost.root / CONF) not in result.stderr  # the config file's edit is no reason to refuse
    assert tree(chost.root) == before  # no FILE.unitgen-new either


# -- how long a step may take (unitgen.install.timeouts) --


def test_the_wait_for_a_job_comes_from_the_installed_unit_and_the_admins_drop_ins(host: Host) -> None:
    host.spec.write_text(SPEC + "start_timeout = 200\nstop_timeout = 45\n")
    assert host.install().returncode == 0
    unit = [f"{NAME}.service"]

    def bound(verb: str, units: list[str] = unit, override: float | None = None) -> float:
        return timeouts.for_job(host.root, verb, units, override).seconds

    # TimeoutStopSec=45, TimeoutStartSec=200, as rendered; a restart is a stop and a start (which,
    # when it times out, is killed like a stop); 30 s on top for systemd's own work.
    assert (bound("stop"), bound("start"), bound("restart")) == (45 + 30, 200 + 45 + 30, 45 + 200 + 45 + 30)
    assert bound("stop", [f"{NAME}.socket", f"{NAME}.timer"]) == 30  # no command of their own
    # `systemctl edit`: a drop-in in /etc overrides the unit file; a later file name wins.
    edits = host.root / f"etc/systemd/system/{NAME}.service.d"
    edits.mkdir(parents=True)
    (edits / "override.conf").write_text("[Service]\nTimeoutStartSec=10min\nTimeoutStopSec=1min \\\n 30s\n")
    assert (bound("stop"), bound("start")) == (90 + 30, 600 + 90 + 30)
    (edits / "zz-forever.conf").write_text("# waits as long as it takes\n[Service]\nTimeoutSec=infinity\n")
    assert bound("stop") == timeouts.LONGEST + 30  # bounded all the same
    (edits / "zz-forever.conf").write_text("[Unit]\nTimeoutSec=1\n[Service]\nTimeoutStopSec=\n")  # the default
    assert bound("stop") == timeouts.SYSTEMD_DEFAULT + 30
    assert bound("restart", override=5) == 5  # --timeout replaces it
    assert timeouts.fixed(None).seconds == timeouts.SYSTEMD_DEFAULT and timeouts.fixed(7.5).seconds == 7.5


def test_the_wait_for_instances_is_the_longest_of_them(host: Host) -> None:
    result = unitgen("install", "pool", "--root", str(host.root), "--spec", str(ROOT / "examples/pool/pool.toml"),
                     cwd=host.dir)  # fmt: skip
    assert result.returncode == 0, result.stderr
    slow = host.root / "etc/systemd/system/pool@b.service.d"  # `systemctl edit pool@b`
    slow.mkdir(parents=True)
    (slow / "override.conf").write_text("[Service]\nTimeoutStopSec=5min\n")
    units = ["pool@a.service", "pool@b.service", "pool@c.service"]
    stop = timeouts.for_job(host.root, "stop", units, None)
    assert stop.seconds == 300 + 30 and "pool@b.service: TimeoutStopSec=300s" in stop.why
    assert timeouts.for_job(host.root, "stop", ["pool@a.service"], None).seconds == 10 + 30  # the template's


def test_drop_ins_apply_in_file_name_order_a_higher_directory_masking_the_same_name(tmp_path: Path) -> None:
    def conf(path: str, text: str) -> None:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)

    conf("usr/lib/systemd/system/web-api.service", "[Service]\nTimeoutStartSec=20\nTimeoutStopSec=20\n")
    conf("usr/lib/systemd/system/web-api.service.d/50-vendor.conf", "[Service]\nTimeoutStopSec=40\n")
    assert timeouts.service_timeouts(tmp_path, "web-api.service") == (20, 40)
    conf("etc/systemd/system/web-.service.d/10-all-web.conf", "[Service]\nTimeoutSec=60\n")  # before 50-vendor
    assert timeouts.service_timeouts(tmp_path, "web-api.service") == (60, 40)
    conf("etc/systemd/system/web-api.service.d/50-vendor.conf", "[Service]\n")  # masks /usr/lib's
    assert timeouts.service_timeouts(tmp_path, "web-api.service") == (60, 60)
    conf("run/systemd/system/service.d/90-every-service.conf", "[Service]\nTimeoutStartSec=0\n")
    assert timeouts.service_timeouts(tmp_path, "web-api.service") == (timeouts.LONGEST, 60)


@pytest.mark.parametrize(
    ("span", "seconds"),
    [
        pytest.param("90", 90, id="bare"),
        pytest.param("1min 30s", 90, id="parts"),
        pytest.param("1min30s", 90, id="parts-joined"),
        pytest.param("5 min", 300, id="space-before-unit"),
        pytest.param("500ms", 0.5, id="milliseconds"),
        pytest.param("2h", 7200, id="hours"),
        pytest.param("1.5s", 1.5, id="fraction"),
        pytest.param("infinity", float("inf"), id="infinity"),
        pytest.param("10 parsecs", None, id="unknown-unit"),
        pytest.param("-5s", None, id="negative"),
        pytest.param("", None, id="empty"),
    ],
)
def test_systemd_time_spans_are_read_as_systemd_reads_them(span: str, seconds: float | None) -> None:
    assert timeouts.parse_span(span) == seconds


@pytest.mark.parametrize("value", ["0", "-3", "soon", "nan", "inf", ""])
def test_timeout_must_be_a_positive_number_of_seconds(host: Host, value: str) -> None:
    before = tree(host.root)
    for command in (host.install, host.uninstall):
        result = command("--timeout", value)
        assert result.returncode == 2, result.stderr
        assert f"argument --timeout: {value!r} is not a number of seconds greater than 0" in result.stderr
    assert tree(host.root) == before


def test_a_step_that_hangs_is_killed_at_the_timeout_and_the_install_left_as_when_it_does_not_start(
    host: Host,
) -> None:
    # A systemd-tmpfiles that never returns, and a child of its own that would outlive it.
    fake = host.dir / "bin"
    fake.mkdir()
    (fake / "systemd-tmpfiles").write_text(f"#!/bin/sh\nsleep 1000 &\necho $! > {host.dir}/child\nwait\n")
    (fake / "systemd-tmpfiles").chmod(0o755)
    before = tree(host.root)
    env = {"PATH": f"{fake}:{os.environ['PATH']}"}
    result = unitgen("install", NAME, "--root", str(host.root), "--timeout", "1.5", "--json", cwd=host.dir, env=env)
    assert result.returncode == 1, result.stderr
    error = document(result)["error"]
    assert (
        f"systemd-tmpfiles --root={host.root} --create {NAME}.conf timed out after 1.5 s (--timeout) and was"
        f" killed; {NAME} is installed but may not run; 'unitgen uninstall {NAME}' removes it" in error["message"]
    )
    assert f"journalctl -u {NAME}.service" in error["hint"] and "--timeout SECONDS" in error["hint"]
    child = Path(f"/proc/{(host.dir / 'child').read_text().strip()}/stat")
    assert not child.exists() or child.read_text().split(") ")[1][0] == "Z"  # its whole process group went
    assert host.manifest()["state"] == "complete" and (host.root / UNIT).is_file()
    result = host.uninstall("--purge")
    assert result.returncode == 0, result.stderr
    users = {"etc/.pwd.lock", "etc/passwd", "etc/group", "etc/shadow", "etc/gshadow"}  # kept, as by Debian
    assert set(tree(host.root)) - set(before) <= {*users, *CATALOG_DB} and not (host.root / MANIFEST).exists()
