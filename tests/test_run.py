"""The subprocess wrapper: a timeout or an interrupt takes the command's whole process tree with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unitgen.run import CommandError, run

# A command that leaves a grandchild behind it, as pip leaves its build backend.
TREE = 'sleep 300 & echo $! > "$1"; wait'


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose; its parent (the killed shell's reaper) collects it.
    return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"


def wait_gone(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_timeout_kills_the_grandchildren_too(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    with pytest.raises(subprocess.TimeoutExpired):
        run(["sh", "-c", TREE, "sh", pidfile], timeout=1)
    assert wait_gone(int(pidfile.read_text()))


def test_an_interrupt_kills_the_grandchildren_too(tmp_path: Path) -> None:
    pidfile, ready = tmp_path / "pid", tmp_path / "ready"
    code = (
        "import sys; from unitgen.run import run\n"
        "try:\n    run(['sh', '-c', sys.argv[1], 'sh', sys.argv[2]])\n"
        "except KeyboardInterrupt:\n    sys.exit(130)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    tree = f"{TREE.replace('wait', '')} touch {ready}; wait"
    proc = subprocess.Popen([sys.executable, "-c", code, tree, str(pidfile)], env=env)
    deadline = time.monotonic() + 10
    while not ready.exists():
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)  # what the CLI's TERM/HUP handlers turn into, too
    assert proc.wait(timeout=10) == 130
    assert wait_gone(int(pidfile.read_text()))


def test_failures_still_carry_the_output() -> None:
    with pytest.raises(CommandError) as caught:
        run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (caught.value.returncode, caught.value.stdout, caught.value.stderr) == (3, "out\n", "err\n")


def test_input_reaches_the_command() -> None:
    assert run(["cat"], input="hello").stdout == "hello"
