"""The launcher and a C program using the classic APUE already_running() lock exclude each other."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.launcher_helpers import (
    build_apue,
    holder,
    launcher_argv,
    make_settings,
    run,
    short_tmpdir,
    start,
    stop,
    wait_for_holder,
)
from unitgen.launcher.runtime import EXIT_ALREADY_RUNNING


@pytest.fixture(scope="module")
def apue() -> Iterator[Path]:
    with short_tmpdir() as directory:
        yield build_apue(directory)


@pytest.fixture
def lock() -> Iterator[Path]:
    with short_tmpdir() as directory:
        yield directory / "demo.pid"


def test_launcher_defers_to_a_running_apue_program(apue: Path, lock: Path) -> None:
    c_program = subprocess.Popen([str(apue), str(lock)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert c_program.stdout is not None
        assert c_program.stdout.readline() == f"locked {c_program.pid}\n"
        result = run(launcher_argv(make_settings(lock, argv=["/bin/true"])))
        assert result.returncode == EXIT_ALREADY_RUNNING
        assert f"demo is already running as PID {c_program.pid} (lock {lock})" in result.stderr
        assert lock.read_text() == f"{c_program.pid}\n", "the contender must not touch the holder's file"
        assert holder(lock) == c_program.pid
    finally:
        c_program.communicate(timeout=20)  # closing its stdin ends it
    assert c_program.returncode == 0


def test_apue_program_defers_to_a_running_launcher(apue: Path, lock: Path) -> None:
    service = start(launcher_argv(make_settings(lock)))
    try:
        wait_for_holder(lock, service.pid)
        result = subprocess.run([str(apue), str(lock)], capture_output=True, text=True, timeout=20, check=False)
        assert (result.returncode, result.stdout) == (1, "busy\n")
        assert lock.read_text() == f"{service.pid}\n"
    finally:
        stop(service)


def test_each_takes_over_once_the_other_is_gone(apue: Path, lock: Path) -> None:
    service = start(launcher_argv(make_settings(lock)))
    wait_for_holder(lock, service.pid)
    stop(service)
    c_program = subprocess.Popen([str(apue), str(lock)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert c_program.stdout is not None
    assert c_program.stdout.readline() == f"locked {c_program.pid}\n"
    c_program.communicate(timeout=20)
    service = start(launcher_argv(make_settings(lock)))
    try:
        wait_for_holder(lock, service.pid)
        assert lock.read_text() == f"{service.pid}\n"
    finally:
        stop(service)
