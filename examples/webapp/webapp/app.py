"""The HTTP service: `/` greets, `/health` answers 200 with the installed version.

Routing is bottle's; the server is the standard library's WSGI server with a thread per request.
`main()` is what unitgen's launcher calls (python mode, in the main thread): the launcher's own
SIGTERM handler raises SystemExit here, which ends `serve_forever()` and closes the socket.
Nothing is written to disk, so it runs under ProtectSystem=strict with a read-only venv.
"""

from __future__ import annotations

import os
import sys
from importlib import metadata
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import bottle

GREETING = "Hello from webapp"
HOST = os.environ.get("WEBAPP_HOST", "127.0.0.1")
PORT = int(os.environ.get("WEBAPP_PORT", "8090"))

app = bottle.Bottle()


def version() -> str:
    return metadata.version("webapp")


@app.get("/")
def index() -> str:
    bottle.response.content_type = "text/plain; charset=utf-8"
    return f"{GREETING} {version()} (bottle {bottle.__version__}, Python {sys.version.split()[0]})\n"


@app.get("/health")
def health() -> dict[str, Any]:
    return {"status": "ok", "version": version()}


class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow client never holds up a stop
    allow_reuse_address = True  # a restart binds at once, even with connections in TIME_WAIT


class Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        # One line per request on stdout, which the unit sends to the journal.
        print(f"{self.address_string()} {format % args}", flush=True)


def main() -> None:
    with make_server(HOST, PORT, app, server_class=Server, handler_class=Handler) as server:
        print(f"webapp {version()} listening on http://{HOST}:{PORT}/", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
