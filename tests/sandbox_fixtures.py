"""pytest fixtures that boot a real systemd in a `unitgen.sandbox.Sandbox`.

Enable them for the whole suite with one line in tests/conftest.py:

    pytest_plugins = ["tests.sandbox_fixtures"]

- `sandbox`: a fresh sandbox for one test (about half a second to boot), torn down after it.
- `shared_sandbox`: one sandbox for all tests of a module; for tests that only add what they
  clean up themselves, or that use unit names no other test in the module uses.
- `sandbox_factory`: boots as many as a test asks for (`sandbox_factory("a")`), all torn down after it.

Tests using them need root: mark them `@pytest.mark.root`. At the end of the session, any
sandbox a test booted and did not tear down is torn down, and reported as an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest

from unitgen.sandbox import Sandbox


def sandbox_name(node: pytest.Item | pytest.Collector, prefix: str = "t") -> str:
    """A valid sandbox (and host) name derived from a test's name, for the journal and `ps`."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", node.name.removeprefix("test_")).strip("-.")
    return f"{prefix}-{base}"[:40].rstrip("-.")


@pytest.fixture
def sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    with Sandbox.boot(sandbox_name(request.node)) as sb:
        yield sb


@pytest.fixture(scope="module")
def shared_sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    with Sandbox.boot(sandbox_name(request.node, "m")) as sb:
        yield sb


@pytest.fixture
def sandbox_factory(request: pytest.FixtureRequest) -> Iterator[Callable[[str], Sandbox]]:
    booted: list[Sandbox] = []

    def boot(suffix: str) -> Sandbox:
        sb = Sandbox.boot(f"{sandbox_name(request.node)[:30]}-{suffix}")
        booted.append(sb)
        return sb

    try:
        yield boot
    finally:
        for sb in booted:
            sb.teardown()


@pytest.fixture(scope="session", autouse=True)
def no_sandbox_left_running() -> Iterator[None]:
    yield
    leaked = Sandbox.owned()
    for sb in leaked:
        sb.teardown()
    assert not leaked, f"tests left sandboxes running (now torn down): {[sb.id for sb in leaked]}"
