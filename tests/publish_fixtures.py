"""The publish tests' throw-away signing keys, as fixtures every test module can ask for.

Module-scoped: making an ed25519 key costs little, and a module that breaks a key's home cannot
affect the next module. Each key's gpg-agent is stopped when its fixture ends.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.test_publish_helpers import TestKey, key_fixture


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestKey]:
    yield from key_fixture(tmp_path_factory)


@pytest.fixture(scope="module")
def other_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestKey]:
    """A second key, for "signed by someone else" cases."""
    yield from key_fixture(tmp_path_factory, "someone else <else@example.org>")
