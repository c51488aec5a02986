"""`render --diff` and `package --diff`: what would change, as a unified diff, writing nothing.

Real `unitgen` processes in scratch directories; the "installed" files live under a tmp_path root
given with --root, never the host's /usr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_helpers import document

ROOT = Path(__file__).parent.parent
SPEC = (
    'description = "demo service"\nexec = ["/bin/sleep", "infinity"]\n\n'
    '[package]\nversion = "1.0"\nmaintainer = "A <a@example.com>"\n'
)
UNIT = "usr/lib/systemd/system/demo.service"


def unitgen(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "unitgen", *args], cwd=cwd, env=env, capture_output=True, text=True)


def snapshot(top: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `top` with its bytes and mode: to prove nothing was written."""
    return {
        str(p.relative_to(top)): (p.read_bytes(), p.stat().st_mode)
        for p in sorted(top.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "demo.toml").write_text(SPEC)
    return tmp_path


@pytest.fixture
def rendered(project: Path) -> Path:
    assert unitgen("render", "demo", cwd=project).returncode == 0
    return project / "build/demo"


@pytest.mark.parametrize("command", [pytest.param("render", id="render"), pytest.param("package", id="package")])
def test_nothing_there_yet_every_file_is_added_and_nothing_is_written(project: Path, command: str) -> None:
    empty_root = project / "root"
    empty_root.mkdir()
    result = unitgen(command, "demo", "--diff", "--root", str(empty_root), cwd=project)
    assert result.returncode == 1, result.stderr
    assert f"diff --git a/{UNIT} b/{UNIT}\nnew file mode 100644\n--- /dev/null\n+++ b/{UNIT}\n" in result.stdout
    assert "+Description=demo service\n" in result.stdout
    assert "new file mode 100755\n--- /dev/null\n+++ b/usr/libexec/demo/demo-launcher" in result.stdout
    assert sorted(p.name for p in project.iterdir()) == ["demo.toml", "root"]  # no build/, no dist/
    assert "compared with the installed files under" in result.stderr


@pytest.mark.parametrize("command", [pytest.param("render", id="render"), pytest.param("package", id="package")])
def test_no_change_exits_0_with_an_empty_diff(rendered: Path, project: Path, command: str) -> None:
    result = unitgen(command, "demo", "--diff", cwd=project)
    assert (result.returncode, result.stdout) == (0, ""), result.stderr
    assert not (project / "dist").exists()


def test_a_spec_change_is_a_unified_diff_against_the_staging_tree(rendered: Path, project: Path) -> None:
    (project / "demo.toml").write_text(SPEC.replace("demo service", "the new demo"))
    before = snapshot(rendered)
    result = unitgen("render", "demo", "--diff", cwd=project)
    assert result.returncode == 1, result.stderr
    assert f"--- a/{UNIT}\n+++ b/{UNIT}\n@@ " in result.stdout
    assert "-Description=demo service\n+Description=the new demo\n" in result.stdout
    assert snapshot(rendered) == before


def test_modes_removed_files_and_a_symlink_in_the_staging_tree(rendered: Path, project: Path) -> None:
    (rendered / "usr/lib/tmpfiles.d/demo.conf").chmod(0o600)
    (rendered / "usr/share/stale.txt").write_text("old\n")
    doc = rendered / "usr/share/doc/demo/README.unitgen"
    doc.unlink()
    doc.symlink_to("/etc/passwd")  # compared as a link, never followed
    result = unitgen("render", "demo", "--diff", "--json", cwd=project)
    assert result.returncode == 1, result.stderr
    [service] = document(result)["services"]
    assert service["against"] == {"kind": "staging", "path": str(rendered)}
    changes = {c["path"]: (c["status"], c["old_mode"], c["new_mode"]) for c in service["changes"]}
    assert changes == {
        "usr/lib/tmpfiles.d/demo.conf": ("mode", "0600", "0644"),
        "usr/share/stale.txt": ("removed", "0644", None),
        "usr/share/doc/demo/README.unitgen": ("modified", "0777", "0644"),
    }
    assert "old mode 100600\nnew mode 100644\n" in service["diff"]
    assert "root:" not in service["diff"]


def test_the_diff_applies_with_git_apply_and_then_nothing_changes(rendered: Path, project: Path) -> None:
    new_spec = SPEC.replace('"/bin/sleep", "infinity"]', '"/bin/sleep", "1000"]\nuser = "demo"')
    (project / "demo.toml").write_text(new_spec)
    (rendered / "usr/share/stale.txt").write_text("old\n")
    patch = unitgen("render", "demo", "--diff", cwd=project).stdout
    assert "new file mode" in patch and "deleted file mode" in patch  # sysusers.d added, stale.txt removed
    subprocess.run(["git", "apply", "--unsafe-paths", "-"], input=patch, text=True, cwd=rendered, check=True)
    assert unitgen("render", "demo", "--diff", cwd=project).returncode == 0


def test_without_a_staging_tree_the_installed_files_are_the_baseline(project: Path) -> None:
    root = project / "root"
    assert unitgen("render", "demo", "--out", str(root), cwd=project).returncode == 0  # "installed"
    (root / ".unitgen-output").unlink()
    unit = root / UNIT
    unit.write_text(unit.read_text().replace("Restart=on-failure", "Restart=always"))
    (root / "usr/lib/systemd/system/demo.timer").write_text("[Timer]\nOnCalendar=daily\n")  # an older version's
    (root / "usr/libexec/demo/old-helper").write_text("#!/bin/sh\n")
    (root / "usr/libexec/demo/__pycache__").mkdir()  # compiled on the target by the package: not a change
    (root / "usr/libexec/demo/__pycache__/unitgen_launcher.cpython-311.pyc").write_bytes(b"\0")
    (root / "usr/lib/systemd/system/other.service").write_text("[Service]\n")  # someone else's: not ours to list
    before = snapshot(root)
    result = unitgen("render", "demo", "--diff", "--root", str(root), "--json", cwd=project)
    assert result.returncode == 1, result.stderr
    [service] = document(result)["services"]
    assert service["against"] == {"kind": "installed", "path": str(root)}
    assert {c["path"]: c["status"] for c in service["changes"]} == {
        UNIT: "modified",
        "usr/lib/systemd/system/demo.timer": "removed",
        "usr/libexec/demo/old-helper": "removed",
    }
    assert "-Restart=always\n+Restart=on-failure\n" in service["diff"]
    assert snapshot(root) == before
    assert not (project / "build").exists()


def test_a_batch_diffs_each_service_and_exits_1_when_any_changed(rendered: Path, project: Path) -> None:
    (project / "other.toml").write_text(SPEC)
    result = unitgen("render", "demo", "other", "--diff", "--json", "--root", str(project / "nowhere"), cwd=project)
    assert result.returncode == 1
    doc = document(result)
    assert doc["changed"] is True
    assert [(s["name"], s["changed"], s["against"]["kind"]) for s in doc["services"]] == [
        ("demo", False, "staging"),
        ("other", True, "installed"),
    ]


@pytest.mark.parametrize(
    ("args", "spec", "message"),
    [
        pytest.param(["package", "demo", "--diff"], 'description = "x"\nexec = ["/bin/true"]\n', "[package]",
                     id="package-needs-a-package-table"),
        pytest.param(["render", "demo", "--diff"], 'description = "x"\n', "exec", id="bad-spec"),
        pytest.param(["render", "demo", "--diff", "--out", "."], SPEC, "--out", id="out-refused-like-render"),
        pytest.param(["render", "demo", "--root", "/"], SPEC, "--root is read only", id="root-without-diff"),
        pytest.param(["package", "demo", "--root", "r"], SPEC, "--root is read only", id="root-package"),
    ],
)  # fmt: skip
def test_what_the_command_refuses_diff_refuses_too(tmp_path: Path, args: list[str], spec: str, message: str) -> None:
    (tmp_path / "demo.toml").write_text(spec)
    result = unitgen(*args, cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("ERROR") and message in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.toml"]
