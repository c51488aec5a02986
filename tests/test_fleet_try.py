"""`unitgen try NAME --fleet 3` as a person runs it (issue 13): a real process boots three sandboxed
hosts and a real etcd cluster, shows who holds the fleet lock, a partition and the takeover, a stop
and the handover, and the journal entries; then leaves nothing behind, also when interrupted."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from unitgen.launcher.fleet_guard import EXIT_FLEET_LOST, MESSAGE_ID_FLEET_ACQUIRED, MESSAGE_ID_FLEET_LOST
from unitgen.sandbox import Sandbox

pytestmark = pytest.mark.root

ROOT = Path(__file__).parent.parent
SCHEMA = json.loads((ROOT / "schemas/unitgen-output.schema.json").read_text())
TTL = 5

SPEC = """\
description = "fleet trial"
exec = ["/usr/bin/sleep", "infinity"]
on_contention = "{on_contention}"

[lock]
scope = "fleet"
etcd = ["https://10.0.0.1:2379", "https://10.0.0.2:2379", "https://10.0.0.3:2379"]
ttl = 5
ca_file = "/etc/fleettry/ca.pem"
"""


def write_spec(where: Path, name: str, on_contention: str = "exit", text: str = SPEC) -> None:
    where.mkdir(parents=True, exist_ok=True)
    (where / f"{name}.toml").write_text(text.format(on_contention=on_contention))


def unitgen(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "unitgen", *args], cwd=cwd, capture_output=True, text=True,
                          check=False, timeout=300)


def comm(pid: int) -> str:
    """The command name of a live process (a zombie is dead: it only waits for its reaper)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return "" if stat.rsplit(")", 1)[1].split()[0] == "Z" else stat.split("(", 1)[1].rsplit(")", 1)[0]


def leftovers(err: str, name: str) -> list[str]:
    """What the run named in its output (etcd PIDs, data directory, bridge) or booted, still there."""
    left = []
    etcd = re.search(r"etcd: \d+ members \(PIDs ([\d, ]+)\) at .*, data in (\S+); bridge (\S+)", err)
    if etcd is not None:
        pids, data, bridge = etcd.groups()
        left += [f"etcd PID {p}" for p in pids.split(", ") if comm(int(p)) == "etcd"]
        left += [data] if Path(data).exists() else []
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
        left += [f"link {bridge}"] if f" {bridge}:" in links else []
        number = bridge.removeprefix("ugtry")
        left += [f"link {m}" for m in re.findall(rf" (ugt{number}h\d+)@", links)]
    Sandbox.clean_stale()
    left += [sb.name for sb in Sandbox.running() if sb.name.startswith(f"try-{name}-")]
    return left


def document(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(result.stdout)
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    return doc


@pytest.mark.parametrize("on_contention", [pytest.param("exit", id="contenders-exit-17"),
                                           pytest.param("wait", id="contenders-wait")])
def test_try_fleet_shows_the_holder_a_partition_the_takeover_and_the_journal(on_contention: str,
                                                                             tmp_path: Path) -> None:
    name = f"fleettry{on_contention}"
    write_spec(tmp_path, name, on_contention)
    result = unitgen("try", name, "--fleet", "3", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    doc = document(result)
    err = result.stderr
    assert doc["ok"] and doc["fleet"] == 3 and doc["problems"] == []
    # The hosts ran the spec with the trial's etcd: plain http on the bridge, the TLS file left out.
    assert all(e.startswith("http://10.233.") for e in doc["etcd"]["endpoints"]) and doc["etcd"]["ttl"] == TTL
    assert "the spec's TLS files are not used" in err
    # One holder, the others refused (exit 17) or waiting, each with its contention entry naming it.
    hosts = {h["host"]: h for h in doc["hosts"]}
    holder = doc["holder"]
    assert hosts[holder["host"]]["role"] == "holder" and hosts[holder["host"]]["token"] == holder["token"]
    others = [h for h in doc["hosts"] if h["host"] != holder["host"]]
    assert {h["role"] for h in others} == {"refused" if on_contention == "exit" else "waiting"}
    assert err.count(f"is already running on {holder['host']}") >= 2
    # The partition: the cut-off holder's app was gone before its lease could expire, it ended with
    # exit 76, and another host held the lock within ttl + 1 s, with a higher token.
    partition, stop = doc["handovers"]
    assert partition["cause"] == "partition" and partition["from"] == holder
    assert partition["to"]["host"] != holder["host"] and partition["to"]["token"] > holder["token"]
    # Waiting hosts react by themselves; with on_contention = "exit" the trial starts their services
    # every 0.5 s (as a timer would), which adds up to that much and a launcher's start.
    assert partition["seconds"] <= TTL + (1 if on_contention == "wait" else 2), partition
    assert partition["app_gone_before_expiry"] > 0, partition
    assert f"Main process exited, code=exited, status={EXIT_FLEET_LOST}/" in err
    # systemctl stop of the new holder: its lease is revoked, the next host holds it at once.
    assert stop["cause"] == "stop" and stop["from"] == partition["to"]
    assert stop["to"]["host"] != stop["from"]["host"] and stop["to"]["token"] > stop["from"]["token"]
    assert stop["seconds"] < 2, stop
    # Every host's journal shows its part: taken (with the token), lost, refused or waiting.
    journal = {h["host"]: "\n".join(h["journal"]) for h in doc["hosts"]}
    assert f"fencing token {holder['token']}" in journal[holder["host"]]
    assert "lost the fleet lock" in journal[holder["host"]]
    assert f"fencing token {stop['to']['token']}" in journal[stop["to"]["host"]]
    assert f"MESSAGE_ID={MESSAGE_ID_FLEET_ACQUIRED} MESSAGE_ID={MESSAGE_ID_FLEET_LOST}" in err
    assert leftovers(err, name) == []


TIMER_SPEC = """\
description = "fleet timer job"
exec = ["/usr/bin/sleep", "30"]

[timer]
on_calendar = "*:*:00"

[lock]
scope = "fleet"
etcd = ["http://10.0.0.1:2379"]
ttl = 5
"""


def test_try_fleet_a_timer_job_one_run_at_a_time_the_others_skipped(tmp_path: Path) -> None:
    """A job's skipped run ends inactive (17 is a success for a timer job): still 'refused', with its
    entry; the cut-off run is stopped (exit 76) and another host's run takes over."""
    write_spec(tmp_path, "fleettryjob", text=TIMER_SPEC)
    result = unitgen("try", "fleettryjob", "--fleet", "3", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    doc = document(result)
    assert doc["ok"], doc["problems"]
    assert sorted(h["role"] for h in doc["hosts"]) == ["holder", "refused", "refused"]
    partition, stop = doc["handovers"]
    assert partition["to"]["token"] > partition["from"]["token"] and partition["app_gone_before_expiry"] > 0
    assert stop["to"] is not None and stop["to"]["token"] > stop["from"]["token"]
    assert f"status={EXIT_FLEET_LOST}/" in result.stderr
    assert leftovers(result.stderr, "fleettryjob") == []


def test_try_fleet_without_json_prints_the_story(tmp_path: Path) -> None:
    write_spec(tmp_path, "fleettrytext")
    result = unitgen("try", "fleettrytext", "--fleet", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    out = result.stdout
    for expected in ("booted host try-fleettrytext-1", "booted host try-fleettrytext-2", "holder: try-fleettrytext-",
                     "partition:", "takeover:", "handover:", "journal, fleet entries of each host:",
                     "tore down the hosts, etcd and the bridge"):
        assert expected in out, out
    assert leftovers(out, "fleettrytext") == []


@pytest.mark.parametrize(("text", "args", "message"), [
    pytest.param('description = "x"\nexec = ["/bin/true"]\n', ["--fleet", "3"], "--fleet needs a fleet lock",
                 id="host-scope"),
    pytest.param(SPEC, ["--fleet", "1"], "--fleet 1: allowed 2 to 5 hosts", id="one-host"),
    pytest.param(SPEC, ["--fleet", "3", "--keep"], "--fleet and --keep do not go together", id="keep"),
    pytest.param(SPEC, ["--fleet", "3", "--install", "x.deb"], "--fleet and --install do not go together",
                 id="install"),
])
def test_try_fleet_refuses_what_it_cannot_show_before_building_anything(
        text: str, args: list[str], message: str, tmp_path: Path) -> None:
    write_spec(tmp_path, "refused", text=text)
    result = unitgen("try", "refused", *args, "--json", cwd=tmp_path)
    assert result.returncode == 1
    doc = document(result)
    assert message in doc["error"]["message"] and doc["error"]["hint"] != ""
    assert not (tmp_path / "build").exists()


@pytest.mark.parametrize(("sig", "after"), [
    pytest.param(signal.SIGINT, "booted host", id="INT-while-booting"),
    pytest.param(signal.SIGTERM, "started ", id="TERM-once-started"),
    pytest.param(signal.SIGINT, "partition:", id="INT-during-the-partition"),
    pytest.param(signal.SIGKILL, "installed ", id="KILL-etcd-dies-with-it"),
])
def test_try_fleet_interrupted_tears_everything_down(sig: signal.Signals, after: str, tmp_path: Path) -> None:
    name = f"fleetint{sig.value}{len(after)}"
    write_spec(tmp_path, name)
    with subprocess.Popen([sys.executable, "-m", "unitgen", "try", name, "--fleet", "3"], cwd=tmp_path,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if line.startswith(after) or line.startswith("  " + after):
                proc.send_signal(sig)
                break
        rest, _ = proc.communicate(timeout=120)
    out = "".join(seen) + rest
    assert proc.returncode == (128 + sig if sig != signal.SIGKILL else -sig), out
    assert "Traceback" not in out
    if sig == signal.SIGKILL:
        # Nothing ran its clean-up: etcd died with it (PR_SET_PDEATHSIG), the sandboxes with their
        # lifeline (clean_stale removes what is left of them); the bridge stays, removed here.
        time.sleep(1)
        bridge = re.search(r"bridge (\S+)", out)
        assert bridge is not None
        subprocess.run(["ip", "link", "del", bridge.group(1)], check=False, capture_output=True)
        data = re.search(r"data in (\S+);", out)
        assert data is not None
        subprocess.run(["rm", "-rf", "--", data.group(1)], check=True)
        left = leftovers(out, name)
        assert [x for x in left if x.startswith("etcd PID")] == [], left
        assert [x for x in left if x.startswith("try-")] == [], left
        return
    assert leftovers(out, name) == []
