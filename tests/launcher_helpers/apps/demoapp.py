"""A python-mode app for the launcher tests. Entries are selected as "demoapp:NAME".

It prints what it observes on stdout (one line per fact) and reads its parameters from DEMO_*
environment variables. It knows nothing about unitgen.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from pathlib import Path


def say(*words: object) -> None:
    print(*words, flush=True)


def wait_for_file(path: str) -> None:
    while not Path(path).exists():
        time.sleep(0.01)


def sleep() -> None:
    say("started", os.getpid(), threading.current_thread() is threading.main_thread(), *sys.argv)
    time.sleep(60)


def exit_code() -> int:
    return int(os.environ["DEMO_EXIT"])


def open_close_lock() -> None:
    """Everything an app might do with its own pid file: read it, open and close it, twice."""
    lock = os.environ["DEMO_LOCK"]
    content = Path(lock).read_text()
    fd = os.open(lock, os.O_RDONLY)
    os.close(fd)
    with Path(lock).open("rb"):
        pass
    say("closed", content.strip())
    time.sleep(60)


def fork_worker() -> int:
    """Leave a forked worker behind and let the main process end."""
    pid = os.fork()
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    say("worker", pid)
    return 0


def graceful() -> None:
    try:
        say("started", os.getpid())
        time.sleep(60)
    finally:
        say("cleanup")


def listen_when_told() -> None:
    """Listen on DEMO_PORT once DEMO_GO exists; stop listening once DEMO_STOP exists."""
    say("started", os.getpid())
    wait_for_file(os.environ["DEMO_GO"])
    server = socket.create_server(("127.0.0.1", int(os.environ["DEMO_PORT"])))
    say("listening")
    wait_for_file(os.environ["DEMO_STOP"])
    server.close()
    say("closed")
    time.sleep(60)


def report_lock() -> None:
    """Say whether this process holds a POSIX lock on DEMO_LOCK (from /proc/locks) and what the file says."""
    lock = Path(os.environ["DEMO_LOCK"])
    inode, pid = lock.stat().st_ino, os.getpid()
    held = False
    for line in Path("/proc/locks").read_text().splitlines():
        parts = line.split()
        if "->" not in parts and parts[1] == "POSIX" and int(parts[4]) == pid:
            held = held or int(parts[5].rsplit(":", 1)[1]) == inode
    say("held" if held else "not-held", repr(lock.read_text()))


def notify_ready() -> None:
    """Say READY=1 ourselves, the way any sd_notify client does."""
    address = os.environ["NOTIFY_SOCKET"]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"READY=1\nSTATUS=demo app says hello", address.replace("@", "\0", 1))
    time.sleep(60)


def unitgen_reload() -> None:
    """The optional reload hook the launcher calls on SIGHUP."""
    say("reloaded")


not_callable = 42


def helper() -> None:
    """Whether the launcher loaded the helper module before the app asked for it, then where the
    app's `import unitgen_credentials` finds it."""
    say("loaded before the import:", "unitgen_credentials" in sys.modules)
    import unitgen_credentials  # type: ignore[import-not-found]  # deployed next to the launcher

    say("imported from:", unitgen_credentials.__file__)
