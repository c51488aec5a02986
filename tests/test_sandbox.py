"""The sandbox boots a real systemd, runs units for real, and never touches the host."""

# ruff: noqa: S108  (paths under /tmp and /var/tmp here are the point: the host's, or the sandbox's own tmpfs)

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from unitgen.errors import UnitgenError
from unitgen.run import CommandError
from unitgen.sandbox import MASKED_UNITS, STATE_ROOT, Sandbox, describe_plan, host_hierarchies
from unitgen.sandbox import host as sandbox_host
from unitgen.sandbox.plan import cgroup_child

ROOT = Path(__file__).resolve().parent.parent

# A Type=notify service written on the fly: listens on 127.0.0.1:8080, then says READY=1.
NOTIFY_SERVICE = """\
#!/usr/bin/python3
import os, socket, http.server
server = http.server.HTTPServer(("127.0.0.1", 8080), http.server.SimpleHTTPRequestHandler)
address = os.environ["NOTIFY_SOCKET"]
if address.startswith("@"):
    address = "\\0" + address[1:]
with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
    notify.sendto(b"READY=1\\nSTATUS=serving on 127.0.0.1:8080", address)
print("sbx-notify is up", flush=True)
server.serve_forever()
"""

NOTIFY_UNIT = """\
[Unit]
Description=sandbox test: a hardened Type=notify service

[Service]
Type=notify
ExecStart=/usr/local/bin/sbx-notify
DynamicUser=yes
RuntimeDirectory=sbx-notify
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
NoNewPrivileges=yes
SystemCallFilter=@system-service
"""


def sandbox_processes(sb: Sandbox) -> set[int]:
    """Host PIDs of every process in the sandbox's cgroups, as the host sees them."""
    pids: set[int] = set()
    for cgroup in sb.cgroups:
        for procs in cgroup.rglob("cgroup.procs") if cgroup.is_dir() else []:
            pids |= {int(p) for p in procs.read_text().split()}
    return pids


@pytest.fixture(scope="module")
def canary() -> Iterator[Path]:
    """A file in the host's /tmp that systemd-tmpfiles would remove if it ever ran on the host."""
    fd, name = tempfile.mkstemp(prefix="unitgen-canary-", dir="/tmp")
    os.write(fd, b"still here\n")
    os.close(fd)
    path = Path(name)
    yield path
    assert path.read_text() == "still here\n", "the host's /tmp lost a file"
    path.unlink()


def test_plan_is_described_without_root() -> None:
    plan = describe_plan("demo")
    assert "mount -t overlay -o lowerdir=/" in plan
    assert "pivot_root" in plan
    assert "mount -t sysfs -o ro" in plan
    for unit in MASKED_UNITS:
        assert f"/run/systemd/system/{unit}" in plan


@pytest.mark.parametrize("name", ["", "-x", "a/b", "a b", "x" * 49, "dé"])
def test_invalid_names_are_refused(name: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("the root check comes first")
    with pytest.raises(UnitgenError, match="invalid sandbox name"):
        Sandbox.boot(name)


@pytest.mark.root
def test_dry_run_root_is_the_overlay_and_writes_stay_inside(canary: Path) -> None:
    token = secrets.token_hex(6)
    paths = [f"/{token}", f"/etc/{token}", f"/var/{token}", f"/tmp/{token}", f"/var/tmp/{token}"]
    script = f"touch {' '.join(paths)} && rm -f /tmp/* && cat /proc/self/mountinfo && echo PID=$$"
    out = Sandbox.probe(["/bin/sh", "-c", script])
    assert "PID=1" in out
    root = next(line for line in out.splitlines() if line.split()[4:5] == ["/"])
    assert " - overlay overlay " in root and "lowerdir=/," in root
    for path in paths:
        assert not Path(path).exists(), f"{path} reached the host"
    assert canary.exists()


@pytest.mark.root
def test_boot_reaches_running(shared_sandbox: Sandbox) -> None:
    sb = shared_sandbox
    assert sb.systemctl("is-system-running", check=False).stdout.strip() in ("running", "degraded")
    assert sb.run(["cat", "/proc/1/comm"]).stdout.strip() == "systemd"
    assert sb.run(["systemd-detect-virt", "--container"]).stdout.strip() == "container-other"
    assert sb.run(["hostname"]).stdout.strip() == sb.name
    assert Path(f"/proc/{sb.pid}/comm").read_text().strip() == "systemd"
    assert sb.systemctl("--failed", "--no-legend").stdout.strip() == ""
    assert sb.boot_seconds < 10


@pytest.mark.root
def test_run_a_command(shared_sandbox: Sandbox) -> None:
    sb = shared_sandbox
    assert sb.run(["sh", "-c", "echo $$"]).stdout.strip() != ""
    assert sb.run(["cat"], input="through stdin").stdout == "through stdin"
    assert sb.run(["sh", "-c", 'echo "$GREETING"'], env={"GREETING": "hi"}).stdout == "hi\n"
    assert sb.run(["sh", "-c", "exit 3"], check=False).returncode == 3
    with pytest.raises(CommandError) as failed:
        sb.run(["sh", "-c", "echo why >&2; exit 4"])
    assert failed.value.returncode == 4 and "why" in str(failed.value)
    # Host-kernel capabilities are not available to commands inside either.
    caps = sb.run(["grep", "CapBnd", "/proc/self/status"]).stdout.split()[1]
    assert not int(caps, 16) & (1 << 16), "CAP_SYS_MODULE must not be in the bounding set"


@pytest.mark.root
def test_copy_in_a_tree_and_start_a_notify_unit(shared_sandbox: Sandbox, tmp_path: Path) -> None:
    sb = shared_sandbox
    staging = tmp_path / "staging"
    (staging / "usr/local/bin").mkdir(parents=True)
    (staging / "lib/systemd/system").mkdir(parents=True)  # /lib is a symlink to usr/lib inside
    (staging / "etc/sbx").mkdir(parents=True)
    (staging / "usr/local/bin/sbx-notify").write_text(NOTIFY_SERVICE)
    (staging / "usr/local/bin/sbx-notify").chmod(0o755)
    (staging / "lib/systemd/system/sbx-notify.service").write_text(NOTIFY_UNIT)
    (staging / "etc/sbx/secret").write_text("s3cret\n")
    (staging / "etc/sbx/secret").chmod(0o600)
    staging.chmod(0o700)  # must not become the mode of the sandbox's /

    sb.copy_in(staging)

    modes = sb.run(["stat", "-c", "%a %U %n", "/", "/usr/local/bin/sbx-notify", "/etc/sbx/secret"]).stdout
    assert modes.splitlines() == ["755 root /", "755 root /usr/local/bin/sbx-notify", "600 root /etc/sbx/secret"]
    assert sb.run(["readlink", "/lib"]).stdout.strip() == "usr/lib"
    sb.systemctl("daemon-reload")
    sb.systemctl("start", "sbx-notify.service")
    props = sb.show("sbx-notify.service", "ActiveState", "SubState", "StatusText", "Type", "MainPID")
    assert props["ActiveState"] == "active" and props["SubState"] == "running"
    assert props["Type"] == "notify" and props["StatusText"] == "serving on 127.0.0.1:8080"
    user = sb.run(["ps", "-o", "user=", "-p", props["MainPID"]]).stdout.strip()
    assert user not in ("", "root"), "DynamicUser= should run it as a transient user"
    fetch = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8080/').status)"
    assert sb.run(["python3", "-c", fetch]).stdout.strip() == "200"
    assert not Path("/usr/local/bin/sbx-notify").exists()
    entries = sb.journal(unit="sbx-notify.service")
    assert "sbx-notify is up" in [e["MESSAGE"] for e in entries]
    sb.systemctl("stop", "sbx-notify.service")


@pytest.mark.root
@pytest.mark.skipif(shutil.which("dbus-daemon") is None, reason="no dbus-daemon: install Debian's dbus")
def test_resource_controls_and_the_system_bus_work(shared_sandbox: Sandbox) -> None:
    sb = shared_sandbox
    limits = ["-p", "MemoryMax=20M", "-p", "TasksMax=7", "-p", "IPAddressDeny=any"]
    result = sb.run(["systemd-run", "--wait", "--pipe", *limits, "cat", "/proc/self/cgroup"])  # needs D-Bus
    memory = next(line for line in result.stdout.splitlines() if ":memory:" in line).split(":")[2]
    assert memory.startswith("/system.slice/run-")
    sb.run(["systemd-run", "--unit=sbx-limited", *limits, "sleep", "100"])
    assert sb.read_file("/sys/fs/cgroup/memory/system.slice/sbx-limited.service/memory.limit_in_bytes") == b"20971520\n"
    assert sb.read_file("/sys/fs/cgroup/pids/system.slice/sbx-limited.service/pids.max") == b"7\n"
    sb.systemctl("stop", "sbx-limited.service")


@pytest.mark.root
def test_load_credential_reaches_the_service(shared_sandbox: Sandbox) -> None:
    # Failed before the sandbox made its mounts shared: systemd mounts the credentials in a child
    # mount namespace and moves them onto /run/credentials/UNIT, which never reached PID 1's
    # namespace, so $CREDENTIALS_DIRECTORY was an empty directory.
    sb = shared_sandbox
    sb.write_file("/etc/sbx-cred/secret", "s3cret-value\n", 0o600)
    sb.write_file(
        "/run/systemd/system/sbx-cred.service",
        "[Service]\nType=oneshot\nDynamicUser=yes\nLoadCredential=pw:/etc/sbx-cred/secret\n"
        'ExecStart=/bin/sh -c \'echo "got $(cat "$CREDENTIALS_DIRECTORY/pw")"\'\n',
    )
    sb.systemctl("daemon-reload")
    sb.systemctl("start", "sbx-cred.service")
    assert "got s3cret-value" in [e["MESSAGE"] for e in sb.journal(unit="sbx-cred.service")]


@pytest.mark.root
def test_a_mount_made_inside_never_appears_on_the_host(shared_sandbox: Sandbox) -> None:
    # The sandbox's mounts propagate among themselves (shared), never to the host's namespace.
    token = secrets.token_hex(6)
    shared_sandbox.run(["mkdir", f"/opt/sbx-{token}"])
    shared_sandbox.run(["mount", "-t", "tmpfs", "-o", "size=1M", f"sbx-{token}", f"/opt/sbx-{token}"])
    assert f"sbx-{token}" in shared_sandbox.run(["cat", "/proc/1/mountinfo"]).stdout
    assert f"sbx-{token}" not in Path("/proc/self/mountinfo").read_text()
    assert f"sbx-{token}" not in Path("/proc/1/mountinfo").read_text()
    shared_sandbox.run(["umount", f"/opt/sbx-{token}"])


@pytest.mark.root
def test_copy_in_a_single_file(shared_sandbox: Sandbox, tmp_path: Path) -> None:
    sb = shared_sandbox
    src = tmp_path / "tool.sh"
    src.write_text("#!/bin/sh\necho tool\n")
    src.chmod(0o750)
    sb.copy_in(src, "/opt/sbx/bin/")
    sb.copy_in(src, "/opt/sbx/renamed")
    assert sb.run(["/opt/sbx/bin/tool.sh"]).stdout == "tool\n"
    assert sb.run(["stat", "-c", "%a", "/opt/sbx/renamed"]).stdout.strip() == "750"


@pytest.mark.root
def test_write_and_read_files(shared_sandbox: Sandbox) -> None:
    sb = shared_sandbox
    sb.write_file("/etc/sbx-written/conf", "key = 1\n", 0o640)
    sb.write_file("/etc/sbx-written/blob", b"\x00\x01\xff")
    assert sb.read_file("/etc/sbx-written/conf") == b"key = 1\n"
    assert sb.read_file("/etc/sbx-written/blob") == b"\x00\x01\xff"
    assert sb.run(["stat", "-c", "%a", "/etc/sbx-written/conf"]).stdout.strip() == "640"
    assert not Path("/etc/sbx-written").exists()
    with pytest.raises(CommandError):
        sb.read_file("/etc/sbx-written/missing")


@pytest.mark.root
def test_symlinks_inside_never_lead_writes_to_the_host(shared_sandbox: Sandbox) -> None:
    sb = shared_sandbox
    with tempfile.TemporaryDirectory(dir="/var/lib", prefix="unitgen-host-") as host_dir:
        victim = Path(host_dir, "victim")
        victim.write_text("host content\n")
        sb.run(["ln", "-s", str(victim), "/etc/sbx-evil-link"])
        sb.run(["ln", "-s", host_dir, "/etc/sbx-evil-dir"])
        sb.write_file("/etc/sbx-evil-link", "sandbox content\n")
        sb.write_file("/etc/sbx-evil-dir/victim", "sandbox content\n")
        assert victim.read_text() == "host content\n"
        assert sb.read_file(str(victim)) == b"sandbox content\n"


@pytest.mark.root
def test_journal_finds_messages_and_decodes_binary_fields(shared_sandbox: Sandbox) -> None:
    sb = shared_sandbox
    tag = f"sbx-{secrets.token_hex(4)}"
    sb.run(["systemd-cat", "-t", tag, "-p", "warning", "echo", "hello from systemd-cat"])
    sb.run(["logger", "-t", tag, "hello from logger"])
    sb.run(["systemd-cat", "-t", tag], input="with a bell \a inside\n")

    def messages() -> list[str]:
        return [e["MESSAGE"] for e in sb.journal(f"SYSLOG_IDENTIFIER={tag}")]

    sb.wait_for(lambda: len(messages()) == 3, timeout=10, what="three journal entries")
    entries = sb.journal(f"SYSLOG_IDENTIFIER={tag}")
    assert [e["MESSAGE"] for e in entries] == ["hello from systemd-cat", "hello from logger", "with a bell \a inside"]
    assert entries[0]["PRIORITY"] == "4"
    assert all(isinstance(v, str) for e in entries for v in e.values())


@pytest.mark.root
def test_wait_for_times_out_with_what_it_waited_for(shared_sandbox: Sandbox) -> None:
    with pytest.raises(UnitgenError, match="waiting for the impossible"):
        shared_sandbox.wait_for(lambda: False, timeout=0.2, what="the impossible")


@pytest.mark.root
def test_host_is_untouched(sandbox: Sandbox, canary: Path) -> None:
    sysctls = ["fs/nr_open", "fs/file-max", "kernel/hostname", "net/unix/max_dgram_qlen", "kernel/core_pattern"]
    before = {name: Path("/proc/sys", name).read_text() for name in sysctls}
    token = secrets.token_hex(6)
    for where in ("/tmp", "/etc", "/var", "/var/tmp", "/var/lib", "/root"):
        sandbox.write_file(f"{where}/{token}", "inside\n")
    # Run the very things that are destructive on a host, inside.
    sandbox.run(["systemd-tmpfiles", "--create", "--remove", "--boot"], check=False)
    sandbox.systemctl("start", "systemd-tmpfiles-clean.service")
    sandbox.run(["sh", "-c", "echo 1073741816 > /proc/sys/fs/nr_open"], check=False)
    sandbox.run(["hostname", "sbx-renamed"], check=False)
    for where in ("/tmp", "/etc", "/var", "/var/tmp", "/var/lib", "/root"):
        assert not Path(f"{where}/{token}").exists()
    assert canary.read_text() == "still here\n"
    assert {name: Path("/proc/sys", name).read_text() for name in sysctls} == before
    assert not Path("/var/log/journal", sandbox.run(["cat", "/etc/machine-id"]).stdout.strip()).exists()


@pytest.mark.root
def test_two_sandboxes_are_independent(sandbox_factory: Callable[[str], Sandbox]) -> None:
    a, b = sandbox_factory("a"), sandbox_factory("b")
    assert a.pid != b.pid and a.id != b.id
    a.write_file("/etc/sbx-only-in-a", "a\n")
    assert b.run(["test", "-e", "/etc/sbx-only-in-a"], check=False).returncode == 1
    assert a.run(["cat", "/etc/machine-id"]).stdout != b.run(["cat", "/etc/machine-id"]).stdout
    a.run(["systemd-run", "--unit=sbx-listener", "python3", "-m", "http.server", "--bind", "127.0.0.1", "8081"])
    probe = "import socket; socket.create_connection(('127.0.0.1', 8081), timeout=1).close()"
    a.wait_for(lambda: a.run(["python3", "-c", probe], check=False).returncode == 0, 10, "the listener in a")
    assert b.run(["python3", "-c", probe], check=False).returncode != 0, "b must not see a's loopback"
    assert b.show("sbx-listener.service", "LoadState")["LoadState"] == "not-found"
    a.teardown()
    assert b.systemctl("is-system-running", check=False).stdout.strip() in ("running", "degraded")


@pytest.mark.root
def test_teardown_leaves_nothing_and_is_idempotent() -> None:
    sb = Sandbox.boot("sbx-teardown")
    sb.run(["systemd-run", "--unit=sbx-sleeper", "sleep", "1000"])
    sb.run(["sh", "-c", "sleep 1000 >/dev/null 2>&1 &"])  # a stray process outside any unit
    pids = sandbox_processes(sb) | {sb.pid}
    assert len(pids) > 3
    started = time.monotonic()
    sb.teardown()
    assert time.monotonic() - started < 5
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists(), f"process {pid} survived the teardown"
    assert not any(c.exists() for c in sb.cgroups)
    assert not sb.state.exists()
    assert not sb.alive()
    sb.teardown()
    with pytest.raises(UnitgenError, match="not running"):
        sb.run(["true"])
    assert sb.id not in [s.id for s in Sandbox.running()]


@pytest.mark.root
@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt], ids=["exception", "ctrl-c"])
def test_teardown_on_error_inside_with(error: type[BaseException]) -> None:
    with pytest.raises(error), Sandbox.boot("sbx-error") as sb:
        pid = sb.pid
        raise error("boom")
    assert not Path(f"/proc/{pid}").exists()
    assert not sb.state.exists()


@pytest.mark.root
def test_sandbox_dies_with_the_process_that_booted_it() -> None:
    """Even SIGKILL of the owner (no finally, no atexit) leaves no systemd behind."""
    code = textwrap.dedent(
        """
        import sys, time
        from unitgen.sandbox import Sandbox
        sb = Sandbox.boot("sbx-orphan")
        print(sb.pid, sb.id, flush=True)
        time.sleep(60)
        """
    )
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT) as owner:
        try:
            assert owner.stdout is not None
            pid_text, sid = owner.stdout.readline().split()
        finally:
            owner.kill()
    pid = int(pid_text)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not Path(f"/proc/{pid}").exists(), "the sandbox outlived its owner"
    assert sid in Sandbox.clean_stale()
    assert not (STATE_ROOT / sid).exists()


@pytest.mark.root
def test_a_sandbox_booted_in_a_thread_outlives_the_thread() -> None:
    booted: list[Sandbox] = []
    worker = threading.Thread(target=lambda: booted.append(Sandbox.boot("sbx-thread")))
    worker.start()
    worker.join()
    with booted[0] as sb:
        time.sleep(0.2)
        assert sb.alive()
        assert sb.run(["hostname"]).stdout.strip() == "sbx-thread"


@pytest.mark.root
def test_detached_sandbox_can_be_found_and_torn_down_later() -> None:
    sb = Sandbox.boot("sbx-detached", detach=True)
    try:
        info = json.loads((sb.state / "info.json").read_text())
        assert info["pid"] == sb.pid
        found = Sandbox.attach(sb.id)
        assert found.pid == sb.pid and found.alive()
        assert found.run(["hostname"]).stdout.strip() == "sbx-detached"
        found.teardown()
        assert not Path(f"/proc/{sb.pid}").exists()
        assert not sb.alive()
    finally:
        sb.teardown()


@pytest.mark.root
@pytest.mark.parametrize("phase", ["namespaces", "systemd-starting", "systemd-running"])
def test_an_abandoned_boot_leaves_nothing(monkeypatch: pytest.MonkeyPatch, phase: str) -> None:
    """Giving up at any point of a boot (a timeout, Ctrl-C) kills and removes all of it."""
    prepared: list[Sandbox] = []
    prepare, wait_running = Sandbox._prepare, Sandbox._wait_running

    def spy(name: str, *, detach: bool = False) -> Sandbox:
        prepared.append(prepare(name, detach=detach))
        return prepared[-1]

    def interrupted(self: Sandbox, deadline: float) -> None:
        if phase == "systemd-running":
            wait_running(self, deadline)
        raise KeyboardInterrupt

    monkeypatch.setattr(Sandbox, "_prepare", spy)
    if phase == "namespaces":
        with pytest.raises(UnitgenError, match=r"sbx-abandoned\..* failed to boot: timed out"):
            Sandbox.boot("sbx-abandoned", timeout=0.001)
    else:
        monkeypatch.setattr(Sandbox, "_wait_running", interrupted)
        with pytest.raises(KeyboardInterrupt):
            Sandbox.boot("sbx-abandoned")
    (sb,) = prepared
    assert not sb.state.exists()
    assert not any(c.exists() for c in sb.cgroups), "a process of the abandoned boot survived"
    assert not sb.alive()
    assert sb not in Sandbox.owned()


@pytest.mark.root
def test_a_boot_that_goes_wrong_is_reported_with_the_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_host, "SYSTEMD_ARGS", ("--unit=/",))  # not a unit name
    with pytest.raises(UnitgenError, match="failed to boot: systemd is maintenance") as failed:
        Sandbox.boot("sbx-bad-unit", timeout=20)
    assert "Falling back to rescue.target" in str(failed.value)
    assert "console.log" in str(failed.value)
    assert not [s for s in Sandbox.running() if s.name == "sbx-bad-unit"]


@pytest.mark.root
def test_dpkg_installs_inside_only(shared_sandbox: Sandbox, tmp_path: Path) -> None:
    tree = tmp_path / "pkg"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "usr/share/sbx-demo").mkdir(parents=True)
    (tree / "usr/share/sbx-demo/hello").write_text("hello\n")
    (tree / "DEBIAN/control").write_text(
        "Package: sbx-demo\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: demo\n"
    )
    deb = tmp_path / "sbx-demo_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb)], check=True, capture_output=True)
    shared_sandbox.copy_in(deb, "/var/tmp/")
    shared_sandbox.run(["dpkg", "-i", f"/var/tmp/{deb.name}"])
    assert shared_sandbox.run(["dpkg-query", "-W", "-f=${Status}", "sbx-demo"]).stdout == "install ok installed"
    assert subprocess.run(["dpkg-query", "-W", "sbx-demo"], capture_output=True, check=False).returncode != 0
    assert not Path("/usr/share/sbx-demo").exists()


@pytest.mark.root
@pytest.mark.skipif(shutil.which("rpmbuild") is None, reason="rpmbuild (Debian package rpm) is not installed")
def test_rpm_installs_inside_only(shared_sandbox: Sandbox, tmp_path: Path) -> None:
    spec = tmp_path / "sbx-rpm.spec"
    spec.write_text(
        textwrap.dedent(
            """\
            Name: sbx-rpm
            Version: 1.0
            Release: 1
            Summary: demo
            License: MIT
            BuildArch: noarch
            %description
            demo
            %install
            mkdir -p %{buildroot}/usr/share/sbx-rpm
            echo hello > %{buildroot}/usr/share/sbx-rpm/hello
            %files
            /usr/share/sbx-rpm/hello
            """
        )
    )
    top = tmp_path / "rpmbuild"
    subprocess.run(
        ["rpmbuild", "-bb", "--define", f"_topdir {top}", "--nodeps", str(spec)], check=True, capture_output=True
    )
    rpm = next(top.rglob("*.rpm"))
    shared_sandbox.copy_in(rpm, "/var/tmp/sbx.rpm")
    shared_sandbox.run(["rpm", "-i", "--nodeps", "/var/tmp/sbx.rpm"])
    assert shared_sandbox.run(["cat", "/usr/share/sbx-rpm/hello"]).stdout == "hello\n"
    assert not Path("/usr/share/sbx-rpm").exists()


@pytest.mark.root
def test_a_non_root_user_is_told_root_is_needed(unitgen_for_anyone: Path) -> None:
    # Debian's python3 (the venv's interpreter lives under /root, which nobody may enter).
    code = "from unitgen.sandbox import Sandbox\ntry:\n    Sandbox.boot()\nexcept Exception as e:\n    print(e)\n"
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "/usr/bin/python3", "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(unitgen_for_anyone), "PATH": "/usr/bin:/bin"},
        cwd="/",
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "needs root" in result.stdout and "namespaces" in result.stdout


@pytest.mark.root
def test_commands_time_out(shared_sandbox: Sandbox) -> None:
    with pytest.raises(UnitgenError, match="timed out"):
        shared_sandbox.run(["sleep", "5"], timeout=0.3)


EARLY_KILL = """
import os, signal, sys
from unitgen.sandbox import Sandbox
from unitgen.sandbox.stage2 import _join_cgroup
sb = Sandbox._prepare("sbx-early")
print(sb.id, flush=True)
if sys.argv[1] == "cgroups":  # what the helper does next: a cgroup in every hierarchy, joined
    for cgroup in sb.cgroups:
        _join_cgroup(cgroup)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.root
@pytest.mark.parametrize("phase", ["record-and-state", "cgroups"])
def test_an_owner_killed_before_systemd_started_leaves_nothing_after_clean_stale(phase: str) -> None:
    """The owner record is written first, so even a SIGKILL before the boot leaves nothing for good."""
    owner = subprocess.run(
        [sys.executable, "-c", EARLY_KILL, phase], capture_output=True, text=True, cwd=ROOT, check=False, timeout=30
    )
    assert owner.returncode == -9, owner.stderr
    sid = owner.stdout.strip()
    record = STATE_ROOT / f"{sid}.json"
    cgroups = [Path(c) for c in json.loads(record.read_text())["cgroups"]]
    assert (STATE_ROOT / sid).is_dir()
    assert all(c.is_dir() for c in cgroups) == (phase == "cgroups")

    assert sid in Sandbox.clean_stale()
    assert not record.exists() and not (STATE_ROOT / sid).exists()
    assert not any(c.exists() for c in cgroups)


@pytest.mark.root
def test_clean_stale_removes_unrecorded_leftovers_of_older_runs() -> None:
    """State directories and cgroups that no record names (what the record-last boot leaked)."""
    old = STATE_ROOT / "sbx-old.0badc0de"
    (old / "mnt").mkdir(parents=True)
    os.utime(old, (0, 0))  # long past any boot in progress
    hierarchy = host_hierarchies()[0]
    cgroup = Path(hierarchy.mountpoint + cgroup_child(hierarchy, "0badc0de"))
    cgroup.mkdir()

    assert "sbx-old.0badc0de" in Sandbox.clean_stale()
    assert not old.exists() and not cgroup.exists()


@pytest.mark.root
def test_clean_stale_removes_the_app_build_of_a_dead_process_only() -> None:
    with subprocess.Popen(["sleep", "60"]) as alive:
        try:
            mine = Path(tempfile.mkdtemp(prefix=f"unitgen-app-{alive.pid}."))
            gone = Path(tempfile.mkdtemp(prefix="unitgen-app-999999999."))  # above pid_max: dead
            Sandbox.clean_stale()
            assert mine.is_dir() and not gone.exists()
        finally:
            alive.kill()
    shutil.rmtree(mine)
