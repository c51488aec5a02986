"""`unitgen init`: a commented starter spec that renders as it is."""

from __future__ import annotations

from pathlib import Path

import jinja2

from unitgen.errors import UnitgenError
from unitgen.resources import bytecode_cache, template_root
from unitgen.spec import validate_name


def starter_spec(name: str) -> str:
    validate_name(name)
    env = jinja2.Environment(
        bytecode_cache=bytecode_cache(),
        loader=jinja2.FileSystemLoader(str(template_root())),
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701 - the output is TOML, not HTML
    )
    return env.get_template("spec/init.toml.j2").render(name=name)


def write_starter(name: str, path: Path, *, force: bool = False) -> Path:
    content = starter_spec(name)
    if path.exists() and not force:
        raise UnitgenError(f"{path} already exists", hint="use --force to overwrite it")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(content, encoding="utf-8")
    tmp.replace(path)
    return path
