"""--json: exactly one JSON document on stdout, whatever else runs.

The field names are an interface (CI scripts read them): schemas/unitgen-output.schema.json
describes every document, and tests/test_cli_json.py validates real outputs against it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from unitgen.trial import TryReport

Emit = Callable[[dict[str, Any] | None], None]


@contextlib.contextmanager
def json_stdout() -> Iterator[Emit]:
    """Point file descriptor 1 at stderr while the command runs, so that nothing else reaches
    stdout: neither a stray print nor a child process (systemctl, pip, dpkg in a sandbox) that
    inherits it. The document is written to the real stdout once the command is over."""
    documents: list[dict[str, Any]] = []
    sys.stdout.flush()
    real = os.dup(1)
    os.dup2(2, 1)
    try:
        yield lambda document: documents.append(document) if document is not None else None
    finally:
        sys.stdout.flush()
        os.dup2(real, 1)
        os.close(real)
    for document in documents:
        sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


_SCORE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s+(\S+)")


def try_document(name: str, report: TryReport) -> dict[str, Any]:
    """`unitgen try --json`: what `try` printed, as data."""
    score = _SCORE.match(report.security)
    return {
        "command": "try",
        "name": name,
        "ok": report.ok,
        "state": report.state,
        "sub_state": report.sub_state,
        "result": report.result,
        "main_pid": report.main_pid,
        "restarts": report.restarts,
        "lock": {"file": report.lock_file, "holder_pid": report.lock_holder_pid, "text": report.lock},
        "security": {
            "score": float(score.group(1)) if score else None,
            "verdict": score.group(2) if score else None,
            "text": report.security,
        },
        "second_instance": {"result": report.second_instance, "exit_code": report.second_instance_exit_code},
        "journal": report.journal,
    }
