"""The staging tree of a service: rendered units and launcher, plus the app's venv when it has one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from unitgen.payload import AppPayload, build_app
from unitgen.render import render
from unitgen.spec import Spec
from unitgen.staging import write_tree


def stage(spec: Spec, staging: Path, *, template_dirs: Sequence[Path] = ()) -> tuple[list[Path], AppPayload | None]:
    """Write the whole staging tree atomically; returns the rendered paths and the app payload."""
    payloads: list[AppPayload] = []
    app = spec.app

    def fill(tree: Path) -> None:
        if app is not None:
            payloads.append(build_app(app, tree, python="/usr/bin/python3"))

    written = write_tree(render(spec, template_dirs=template_dirs), staging, fill=fill)
    return written, (payloads[0] if payloads else None)
