"""Shared test switches.

Tests that need root (namespaces, mounts, a real systemd, dpkg/rpm inside a sandbox) carry
`@pytest.mark.root`. As a normal user they are skipped; with `--require-root-tests` (what
`scripts/test` passes when run as root, and so CI) any skipped test is a failure, so a green
CI always means every test, the integration tests included, really ran.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Sandbox fixtures (sandbox, shared_sandbox, sandbox_factory) and a session-end check that
# no test left a sandboxed systemd running; the launcher tests' scratch dir and journal receiver;
# the fleet tests' etcd cluster and the processes they start.
pytest_plugins = ["tests.sandbox_fixtures", "tests.launcher_fixtures", "tests.fleet_fixtures", "tests.publish_fixtures"]

# unitgen turns an unexpected exception into one "ERROR internal error" line; in the suite (and
# the unitgen processes it starts) it raises instead, so a bug shows its traceback.
os.environ.setdefault("UNITGEN_RAISE_INTERNAL_ERRORS", "1")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require-root-tests",
        action="store_true",
        help="fail instead of skipping when a test marked 'root' cannot run",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (run scripts/test as root)")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    # In CI every test must run: a skip (root-only or one that found something missing on the
    # machine) is a failure there, never a silent pass.
    if report.skipped and not hasattr(report, "wasxfail") and item.config.getoption("--require-root-tests"):
        report.outcome = "failed"
        report.longrepr = f"test was skipped but --require-root-tests is set: {report.longrepr}"


@pytest.fixture(scope="session")
def unitgen_for_anyone() -> Iterator[Path]:
    """A world-readable copy of the unitgen package (put it on PYTHONPATH), for tests that run
    unitgen as another user: a checkout in a 0700 home (root's, or Debian's adduser default)
    is closed to them. pytest's own base directory is 0700 too, hence a directory of its own."""
    lib = Path(tempfile.mkdtemp(prefix="unitgen-test-lib-"))
    shutil.copytree(
        Path(__file__).parent.parent / "unitgen", lib / "unitgen", ignore=shutil.ignore_patterns("__pycache__")
    )
    for path in (lib, *lib.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield lib
    shutil.rmtree(lib)
