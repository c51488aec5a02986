"""unitgen's own manual page (packaging/unitgen.1, shipped by its .deb and .rpm) documents every
command, install and uninstall with their options among them, and renders without a warning."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from unitgen.cli import _parser

PAGE = Path(__file__).parent.parent / "packaging/unitgen.1"


def commands() -> list[str]:
    [action] = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(action.choices)


@pytest.mark.parametrize("command", commands())
def test_the_manual_page_documents_every_command(command: str) -> None:
    # Each command is a .TP entry whose tag starts with its name (.BI install " name", ...).
    assert re.search(rf'^\.B[IR]? "?{command}\b', PAGE.read_text(), re.M), f"{command} is not in {PAGE}"


@pytest.mark.parametrize(
    ("option", "commands"),
    [
        pytest.param("root", "(install, uninstall)", id="root"),
        pytest.param("purge", "(uninstall)", id="purge"),
        pytest.param("timeout", "(install, uninstall)", id="timeout"),
        pytest.param("json", "install, uninstall)", id="json"),
    ],
)
def test_the_manual_page_documents_the_install_options(option: str, commands: str) -> None:
    text = PAGE.read_text()
    entry = re.search(rf"^\.BI? \\-\\-{option}\b.*\n(.*)", text, re.M)
    assert entry is not None and commands in entry.group(1), option


def test_the_manual_page_renders_without_warnings() -> None:
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed")
    result = subprocess.run(["groff", "-man", "-ww", "-z", str(PAGE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stderr == "", result.stderr
