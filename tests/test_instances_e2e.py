"""Issue 14 in a real systemd (sandboxed): a template timer job (NAME@.timer, a lock per instance),
a template on sockets (NAME@.socket: every instance's socket on one tcp port, ReusePort=, and a
unix socket of its own), and a python-mode app serving on what `unitgen_launcher.listen_sockets()`
returns."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e_helpers import http_get, install, main_pid
from unitgen.sandbox import Sandbox

pytestmark = pytest.mark.root

# Serves HTTP on the sockets systemd passed (fds 3, 4, ...), answering "INSTANCE PID".
SERVE = (
    "import http.server as h,os,socket,threading\n"
    "class H(h.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        b = ('%s %d' % (os.environ['UNITGEN_INSTANCE'], os.getpid())).encode()\n"
    "        self.send_response(200); self.send_header('Content-Length', str(len(b))); self.end_headers()\n"
    "        self.wfile.write(b)\n"
    "    def log_message(self, *a): pass\n"
    "for fd in range(3, 3 + int(os.environ['LISTEN_FDS'])):\n"
    "    s = h.HTTPServer(('', 0), H, False); s.socket = socket.socket(fileno=fd)\n"
    "    threading.Thread(target=s.serve_forever).start()\n"
)
JOB = "import os, sys, time; print('run of', os.environ['UNITGEN_INSTANCE'], sys.argv[1]); time.sleep(30)"
TEMPLATES: dict[str, dict[str, Any]] = {
    "web": {
        "description": "Web pool",
        "exec": ["/usr/bin/python3", "-I", "-c", f"exec({SERVE!r})"],  # one line: a spec value has no newline
        "instances": ["a", "b"],
        "listen": ["tcp:8090", "unix:/run/web/{instance}.sock"],
    },
    "job": {
        "description": "A job per queue",
        "exec": ["/usr/bin/python3", "-I", "-c", JOB, "{instance}"],
        "instances": ["x", "y"],
        "timer": {"on_calendar": "hourly"},
    },
}


# A python-mode app: serves on what the documented call returns (installed into the system python).
PY_APP = """
import http.server, os, threading
import unitgen_launcher

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        names = ",".join(name for _fd, name in unitgen_launcher.listen_fds())
        body = f"{names} {os.getpid()}".encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)

def serve():
    (sock,) = unitgen_launcher.listen_sockets()
    server = http.server.HTTPServer(("", 0), Handler, bind_and_activate=False)
    server.socket = sock
    server.serve_forever()
"""


@pytest.fixture(scope="module")
def sb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    tmp = tmp_path_factory.mktemp("templates")
    with Sandbox.boot("i14-templates") as box:
        for name, raw in TEMPLATES.items():
            install(box, tmp, name, raw)
        app = tmp / "i14app.py"
        app.write_text(PY_APP)
        box.copy_in(app, "/usr/lib/python3/dist-packages/i14app.py")
        install(box, tmp, "pyweb", {"description": "Python web", "entry": "i14app:serve", "listen": ["tcp:8092"]})
        yield box


def unix_get(sb: Sandbox, path: str) -> str:
    code = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n"
        "print(s.makefile('rb').read().split(b'\\r\\n\\r\\n', 1)[1].decode())\n"
    )
    return sb.run(["/usr/bin/python3", "-I", "-c", code, path]).stdout.strip()


def test_template_sockets_share_the_port_and_each_has_its_own_unix_socket(sb: Sandbox) -> None:
    sb.systemctl("start", "web@a.socket", "web@b.socket")
    assert sb.show("web@a.service", "ActiveState")["ActiveState"] == "inactive"  # started on demand
    assert unix_get(sb, "/run/web/a.sock").split()[0] == "a"
    assert unix_get(sb, "/run/web/b.sock").split()[0] == "b"
    pids = {"a": main_pid(sb, "web@a.service"), "b": main_pid(sb, "web@b.service")}
    served = {http_get(sb, 8090) for _ in range(60)}
    # SO_REUSEPORT spreads connections over both instances' sockets on the one port.
    assert served == {f"200 a {pids['a']}", f"200 b {pids['b']}"}, served


def test_a_template_timer_job_runs_each_instance_under_its_own_lock(sb: Sandbox) -> None:
    sb.systemctl("start", "job@x.timer", "job@y.timer")
    assert sb.show("job@x.timer", "Triggers")["Triggers"] == "job@x.service"
    sb.systemctl("start", "--no-block", "job@x.service", "job@y.service")
    sb.wait_for(lambda: all(main_pid(sb, f"job@{i}.service") > 0 for i in "xy"), 20, "both runs")

    def holds_its_lock(instance: str) -> bool:
        pid = main_pid(sb, f"job@{instance}.service")
        return sb.run(["cat", f"/run/job/{instance}.pid"], check=False).stdout == f"{pid}\n"

    for instance in "xy":
        sb.wait_for(functools.partial(holds_its_lock, instance), 10, f"job@{instance} to hold its lock")
    # A second run of x while x runs is skipped (exit 17, a success for a timer job); y is unaffected.
    result = sb.run(["/usr/bin/env", "UNITGEN_INSTANCE=x", "/usr/libexec/job/job-launcher"], check=False)
    assert result.returncode == 17


def test_python_mode_serves_on_the_sockets_from_listen_sockets(sb: Sandbox) -> None:
    sb.systemctl("start", "pyweb.socket")
    answer = http_get(sb, 8092)
    assert answer == f"200 pyweb {main_pid(sb, 'pyweb.service')}", answer  # the launcher's own process
