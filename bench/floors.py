"""The honest floors the launcher benchmarks compare with, written once for all of them.

Each is a standard-library Python program doing the work the rendered launcher does on its way to
READY=1, as plainly as the stdlib allows; run as `python3 -I -S -c FLOOR_READY ARGS` (or from a
file). They use `_socket`, not `socket` (whose IntEnum set-up costs milliseconds), as the launcher
does. Used by bench_launcher.py (one process, a receiver socket as systemd) and bench_instances.py
(500 units of a template in a real systemd).
"""

from __future__ import annotations

import textwrap

# The work both floors do on their way to READY=1: open the lock file, F_SETLK an F_WRLCK on the
# whole file, write the PID, send READY=1 with the launcher's STATUS= to $NOTIFY_SOCKET.
# Arguments: LOCK_FILE STATUS ...
_LOCK_AND_NOTIFY = """\
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
os.ftruncate(fd, 0)
os.write(fd, b"%d\\n" % os.getpid())
s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)
s.sendto(b"READY=1\\nSTATUS=" + sys.argv[2].encode(), os.environ["NOTIFY_SOCKET"].encode())
s.close()
"""

# exec mode: the above, then exec the app with the lock's fd kept open (the lock stays the app's:
# POSIX locks belong to the process, which exec does not change).
# Arguments: LOCK_FILE STATUS PROGRAM ARGS...
FLOOR_READY = f"""
import _socket, fcntl, os, sys
{_LOCK_AND_NOTIFY}os.set_inheritable(fd, True)
os.execv(sys.argv[3], sys.argv[3:])
"""

# python mode: a plain interpreter (`python3 -I`, with site, as an app needs it: the launcher loads
# site itself in python mode) that does the above in a thread and pauses (the app `_signal:pause`).
# Arguments: LOCK_FILE STATUS
FLOOR_PYTHON = f"""
import _signal, _socket, fcntl, os, sys, threading
def hold():
{textwrap.indent(_LOCK_AND_NOTIFY, "    ")}    threading.Event().wait()
threading.Thread(target=hold, daemon=True).start()
_signal.pause()
"""
