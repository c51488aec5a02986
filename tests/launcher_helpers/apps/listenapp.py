"""A python-mode app that serves on the sockets systemd passed, through the launcher's documented call."""

from __future__ import annotations

import os

import unitgen_launcher  # type: ignore[import-not-found]  # the launcher module the app runs under


def serve() -> None:
    names = [name for _fd, name in unitgen_launcher.listen_fds()]
    socks = unitgen_launcher.listen_sockets()
    assert unitgen_launcher.listen_sockets() == socks  # the same objects on every call
    print("sockets", os.getpid(), ",".join(names), os.environ.get("UNITGEN_INSTANCE", "-"), flush=True)
    for sock in socks:
        conn, _ = sock.accept()
        with conn:
            conn.sendall(f"{os.getpid()} {os.get_inheritable(sock.fileno())}\n".encode())
