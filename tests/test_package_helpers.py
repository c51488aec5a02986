"""Shared pieces of the packager tests: a realistic staging tree and the package model for it.

The staging tree is built here, independent of the renderer: a Type=notify Python service (it
reports its version in STATUS=, so a test can see which version runs), its sysusers.d and
tmpfiles.d files, a conffile, a README, and optionally a timer. Golden files live in
tests/golden/package/; `UNITGEN_UPDATE_GOLDEN=1` rewrites them instead of comparing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from unitgen.package import PackageInfo
from unitgen.run import run

NAME = "ugdemo"
GOLDEN = Path(__file__).parent / "golden" / "package"
EPOCH = "1700000000"

SERVICE = f"""\
[Unit]
Description=unitgen packaging test service
Documentation=man:systemd.service(5)

[Service]
Type=notify
ExecStart=/usr/libexec/{NAME}/{NAME}-launcher
EnvironmentFile=-/etc/default/{NAME}
User={NAME}
Group={NAME}
StateDirectory={NAME}
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
"""

TIMER = """\
[Unit]
Description=unitgen packaging test timer

[Timer]
OnCalendar=daily
Persistent=yes

[Install]
WantedBy=timers.target
"""

# A minimal sd_notify service: READY=1 and its version in STATUS=, then sleep until stopped.
LAUNCHER = """\
#!/usr/bin/python3
import os
import signal
import socket
import sys

VERSION = "@VERSION@"


def notify(message):
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(message.encode())


signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
with open("/var/lib/@NAME@/started", "a") as log:
    log.write(VERSION + "\\n")
notify("READY=1\\nSTATUS=version " + VERSION)
while True:
    signal.pause()
"""

SYSUSERS = f'u {NAME} - "unitgen packaging test" /var/lib/{NAME}\n'
TMPFILES = f"d /var/lib/{NAME} 0750 {NAME} {NAME} -\n"
DEFAULTS = f"# Options for {NAME} @VERSION@.\nGREETING=hello\n"
README = f"{NAME}\n=====\n\nA service used by unitgen's packaging tests.\n"


def make_staging(root: Path, version: str = "1.0", *, timer: bool = False) -> Path:
    """Write a staging tree under `root` (removed first) and return it."""
    if root.exists():
        shutil.rmtree(root)
    files = {
        f"usr/lib/systemd/system/{NAME}.service": (SERVICE, 0o644),
        f"usr/lib/sysusers.d/{NAME}.conf": (SYSUSERS, 0o644),
        f"usr/lib/tmpfiles.d/{NAME}.conf": (TMPFILES, 0o644),
        f"usr/libexec/{NAME}/{NAME}-launcher": (
            LAUNCHER.replace("@VERSION@", version).replace("@NAME@", NAME),
            0o755,
        ),
        f"etc/default/{NAME}": (DEFAULTS.replace("@VERSION@", version), 0o644),
        f"usr/share/doc/{NAME}/README": (README, 0o644),
    }
    if timer:
        files[f"usr/lib/systemd/system/{NAME}.timer"] = (TIMER, 0o644)
    for rel, (text, mode) in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
    return root


def make_info(version: str = "1.0", **overrides: Any) -> PackageInfo:
    info = PackageInfo(
        name=NAME,
        version=version,
        maintainer="Jane Doe <jane@example.org>",
        summary="Example service used by the packaging tests",
        description=(
            "A small Type=notify service that reports its version to systemd.\n\n"
            "It exists to check that the maintainer scripts install, upgrade and remove a\n"
            "service the way debhelper and the systemd RPM macros do."
        ),
        license="MIT",
        license_text=MIT,
        copyright="2026 Example Corp",
        homepage="https://example.org/ugdemo",
        depends=("python3 (>= 3.11)",),
        units=(f"{NAME}.service",),
        sysusers=(f"{NAME}.conf",),
        tmpfiles=(f"{NAME}.conf",),
        purge=(f"/var/lib/{NAME}",),
    )
    return replace(info, **overrides)


MIT = """\
Permission is hereby granted, free of charge, to any person obtaining a copy of this software
and associated documentation files (the "Software"), to deal in the Software without
restriction, including without limitation the rights to use, copy, modify, merge, publish,
distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the
Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING
BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""


def tool(*argv: str, check: bool = True) -> str:
    """Run one of the real packaging tools on the host (they only read packages)."""
    if shutil.which(argv[0]) is None:
        pytest.fail(f"{argv[0]} is not installed (scripts/bootstrap installs it)")
    # A scratch TMPDIR per call: lintian leaves its mldbm-elf-* files behind in it.
    with tempfile.TemporaryDirectory(prefix="unitgen-tool.") as scratch:
        result = run(argv, check=check, env={**os.environ, "TMPDIR": scratch})
    return result.stdout + result.stderr if not check else result.stdout


def golden(name: str, actual: str) -> None:
    """Compare `actual` with tests/golden/package/NAME; rewrite it with UNITGEN_UPDATE_GOLDEN=1."""
    path = GOLDEN / name
    if os.environ.get("UNITGEN_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
        return
    if not path.exists():
        pytest.fail(f"no golden file {path}; run with UNITGEN_UPDATE_GOLDEN=1 to create it")
    assert actual == path.read_text(), f"{path} differs (UNITGEN_UPDATE_GOLDEN=1 to accept)"
