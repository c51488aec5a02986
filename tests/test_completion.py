"""`unitgen completion bash|zsh|fish`: the scripts, loaded into the real shells and asked for completions."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from unitgen.cli import _parser

ROOT = Path(__file__).parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def script(shell: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "unitgen", "completion", shell], env=ENV, capture_output=True, text=True, check=True
    )
    return result.stdout


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory as a user has it: two specs, a directory whose name ends in .toml, a build dir."""
    (tmp_path / "web.toml").write_text("")
    (tmp_path / "worker.toml").write_text("")
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / "dir.toml").mkdir()
    (tmp_path / "build").mkdir()
    return tmp_path


def bash_words(line: str) -> list[str]:
    """COMP_WORDS as bash makes them: split at blanks, and at '=' (it is in COMP_WORDBREAKS)."""
    words: list[str] = []
    for word in line.split(" "):
        if word.startswith("--") and "=" in word:
            option, value = word.split("=", 1)
            words += [option, "=", value] if value else [option, "="]
        else:
            words.append(word)
    return words


def bash_complete(line: str, cwd: Path) -> list[str]:
    """What bash offers for `line` (completing its last word), as the shell calls the function."""
    code = f"""
source <({sys.executable} -m unitgen completion bash)
COMP_WORDS=("$@")
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
_unitgen unitgen "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    argv = ["bash", "-c", code, "bash", *bash_words(line)]
    result = subprocess.run(argv, cwd=cwd, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0 and not result.stderr, result.stderr
    return sorted(filter(None, result.stdout.splitlines()))


COMMANDS = ["check", "completion", "init", "install", "package", "publish", "render", "try", "uninstall"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param("unitgen ", [*COMMANDS, "--debug", "-h", "--help", "--json", "--version"], id="commands"),
        pytest.param("unitgen re", ["render"], id="command-prefix"),
        pytest.param("unitgen render ", ["web", "worker"], id="service-names"),
        pytest.param("unitgen render web w", ["web", "worker"], id="more-names"),
        pytest.param("unitgen --debug check wo", ["worker"], id="after-a-top-option"),
        pytest.param("unitgen try ", ["web", "worker"], id="try-name"),
        pytest.param("unitgen package --format ", ["both", "deb", "rpm"], id="format-choices"),
        pytest.param("unitgen package web --compression ", ["gzip", "xz", "zstd"], id="compression-choices"),
        pytest.param("unitgen package --comp", ["--compression", "--compression-level"], id="option-prefix"),
        pytest.param("unitgen render --out ", ["build", "dir.toml"], id="out-directories"),
        pytest.param("unitgen package --dist b", ["build"], id="dist-directories"),
        pytest.param("unitgen render --spec n", ["notes.txt"], id="spec-files"),
        pytest.param("unitgen check --threshold ", [], id="a-number-has-no-completion"),
        pytest.param("unitgen completion ", ["bash", "fish", "zsh"], id="shells"),
        pytest.param("unitgen package --format=", ["both", "deb", "rpm"], id="option=value"),
        pytest.param("unitgen render --out=b", ["build"], id="option=directory"),
    ],
)
def test_bash_completes(project: Path, line: str, expected: list[str]) -> None:
    assert bash_complete(line, project) == sorted(expected)


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    [action] = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_bash_offers_every_option_the_parser_has(project: Path, command: str) -> None:
    # Generated from the parser: an option added to the command line is completed without more work.
    parser = _subcommands()[command]
    options = sorted(s for a in parser._actions for s in a.option_strings if s.startswith("--"))
    assert bash_complete(f"unitgen {command} --", project) == options


def test_bash_registers_the_function_for_unitgen() -> None:
    code = f"source <({sys.executable} -m unitgen completion bash); complete -p unitgen"
    out = subprocess.run(["bash", "-c", code], env=ENV, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "complete -F _unitgen unitgen"


def fish_complete(line: str, cwd: Path, tmp: Path) -> list[str]:
    path = tmp / "unitgen.fish"
    path.write_text(script("fish"))
    code = f"source {path}; complete -C {line!r}"
    # A private home: fish writes its history and variables there.
    env = {**ENV, "HOME": str(tmp), "XDG_CONFIG_HOME": str(tmp / "config"), "XDG_DATA_HOME": str(tmp / "data")}
    result = subprocess.run(["fish", "--no-config", "-c", code], cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0 and not result.stderr, result.stderr
    return sorted(line.split("\t")[0] for line in result.stdout.splitlines())


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param("unitgen re", ["render"], id="command-prefix"),
        pytest.param("unitgen render ", ["web", "worker"], id="service-names"),
        pytest.param("unitgen package --format ", ["both", "deb", "rpm"], id="format-choices"),
        pytest.param("unitgen render --out b", ["build/"], id="out-directories"),
        pytest.param("unitgen completion ", ["bash", "fish", "zsh"], id="shells"),
    ],
)
def test_fish_completes(
    project: Path, tmp_path_factory: pytest.TempPathFactory, line: str, expected: list[str]
) -> None:
    assert fish_complete(line, project, tmp_path_factory.mktemp("fish")) == expected


def test_zsh_script_parses_and_registers_with_compinit(tmp_path: Path) -> None:
    path = tmp_path / "_unitgen"
    path.write_text(script("zsh"))
    assert subprocess.run(["zsh", "-n", str(path)], capture_output=True, text=True).stderr == ""
    # Both ways in: autoloaded from $fpath (the packages' file) and sourced from the command.
    code = (
        f"fpath=({tmp_path} $fpath); autoload -U compinit; compinit -u -d {tmp_path}/zcompdump;"
        f" print -r -- $_comps[unitgen]; source {path}; print -r -- $_comps[unitgen]; whence -w _unitgen_services"
    )
    result = subprocess.run(
        ["zsh", "-f", "-c", code], env={**ENV, "HOME": str(tmp_path)}, capture_output=True, text=True
    )
    assert result.returncode == 0 and not result.stderr, result.stderr
    assert result.stdout.split("\n")[:3] == ["_unitgen", "_unitgen", "_unitgen_services: function"]


# An interactive zsh on a pseudo-terminal (zsh's own zpty): a line is typed, then TAB, and the
# screen is read until the completed text shows up (or 10 s pass).
ZSH_DRIVER = r"""
zmodload zsh/zpty
zpty z "zsh -f -i"
zpty -w z "PS1='> '; fpath=($1 \$fpath); autoload -U compinit; compinit -u -d $1/zcompdump; unitgen() { :; }"
zpty -n -w z "$2"$'\t'
local screen= chunk
integer i
for (( i = 0; i < 100; i++ )); do
    while zpty -r -t z chunk; do screen+=$chunk; done
    [[ ${screen//$'\e'\[[0-9;?]#[a-zA-Z]/} == *"$3"* ]] && break
    sleep 0.1
done
zpty -d z
print -r -- "${screen//$'\e'\[[0-9;?]#[a-zA-Z]/}"
"""


@pytest.mark.parametrize(
    ("typed", "completed"),
    [
        pytest.param("unitgen ren", "unitgen render ", id="command"),
        pytest.param("unitgen render wo", "unitgen render worker ", id="service-name"),
        pytest.param("unitgen package --format r", "unitgen package --format rpm ", id="format-choice"),
        pytest.param("unitgen check --js", "unitgen check --json ", id="option"),
    ],
)
def test_zsh_completes_on_a_terminal(project: Path, tmp_path_factory: pytest.TempPathFactory, typed: str,
                                     completed: str) -> None:  # fmt: skip
    functions = tmp_path_factory.mktemp("zsh")
    (functions / "_unitgen").write_text(script("zsh"))
    driver = functions / "driver.zsh"
    driver.write_text(ZSH_DRIVER)
    env = {**ENV, "HOME": str(functions), "TERM": "dumb"}
    result = subprocess.run(["zsh", "-f", str(driver), str(functions), typed, completed], cwd=project, env=env,
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert completed in result.stdout.replace("\b", ""), result.stdout + result.stderr


def test_the_shells_are_there() -> None:
    # The zsh and fish tests need the real shells (scripts/bootstrap installs them): never a silent skip.
    assert all(shutil.which(shell) for shell in ("bash", "zsh", "fish"))
