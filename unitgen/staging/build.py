"""The staging tree of a service: rendered units and launcher, plus the app's venv when it has one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from unitgen.render.units import render
from unitgen.spec import Spec
from unitgen.staging import stamp
from unitgen.staging.tree import write_tree

if TYPE_CHECKING:
    from unitgen.app.payload import AppPayload


def stage(
    spec: Spec,
    staging: Path,
    *,
    template_dirs: Sequence[Path] = (),
    inputs: Sequence[Path] = (),
    stamped: tuple[stamp.Inputs, object] | None = None,
) -> tuple[list[Path], AppPayload | None]:
    """Write the whole staging tree atomically; returns the rendered paths and the app payload.
    `inputs` (the spec file, ...) must not be inside `staging`: see `write_tree`. `stamped`: the
    spec's inputs as read before it was loaded and what to attach to the tree's stamp (see
    stamp.py), for a spec without [app]."""
    payloads: list[AppPayload] = []
    app = spec.app

    def fill(tree: Path) -> None:
        if app is not None:
            from unitgen.app.payload import build_app  # pip and venv code, for specs with [app] only

            payloads.append(build_app(app, tree, python="/usr/bin/python3"))

    sources = [*inputs, *template_dirs]
    if app is not None:
        sources += [Path(p) for p in (app.project, app.requirements, *app.wheels, *app.find_links) if p]
    # No fill without an app: write_tree may then keep an existing tree that already holds exactly
    # these files (a venv is built afresh every time, so a tree with one is always replaced).
    files = render(spec, template_dirs=template_dirs)
    written = write_tree(files, staging, fill=fill if app is not None else None, inputs=sources)
    if stamped is not None and app is None:
        before, attached = stamped
        reads = [(config.source, config.content) for config in spec.config]
        stamp.write(staging.absolute(), before, stamp.digests(files), reads, attached)
    return written, (payloads[0] if payloads else None)
