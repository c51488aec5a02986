"""A python-mode app whose import fails, the way a missing dependency does."""

import not_installed_dependency_of_brokenapp  # type: ignore[import-not-found]  # noqa: F401
