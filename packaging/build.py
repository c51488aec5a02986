"""Build unitgen's own .deb and .rpm from the checkout's wheel and the files in packaging/.

Run through `scripts/package-self [DIR]`; packaging/README.md says why the packages look as they do.
Standard library only, plus the distributions' tools: `pip wheel`, `dpkg-deb`, `rpmbuild`.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "packaging"
PRIVATE = "usr/share/unitgen"  # the modules and templates, private to the application
# Where each shell looks for completions shipped by packages. zsh's differs: Debian's zsh reads
# vendor-completions, Fedora's the upstream default site-functions.
BASH_COMPLETION = "usr/share/bash-completion/completions/unitgen"
FISH_COMPLETION = "usr/share/fish/vendor_completions.d/unitgen.fish"
ZSH_COMPLETION = {"deb": "usr/share/zsh/vendor-completions/_unitgen", "rpm": "usr/share/zsh/site-functions/_unitgen"}


def source_date_epoch() -> int:
    """SOURCE_DATE_EPOCH if set, else the last commit's time, so two builds of one commit are identical."""
    if "SOURCE_DATE_EPOCH" in os.environ:
        return int(os.environ["SOURCE_DATE_EPOCH"])
    out = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%ct"], capture_output=True, text=True)
    return int(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else 0


def project_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as f:
        version: str = tomllib.load(f)["project"]["version"]
    return version


def build_wheel(scratch: Path) -> Path:
    # From a copy: setuptools writes build/ and *.egg-info next to the sources it builds.
    source = scratch / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info"))
    # No build isolation: the bootstrap venv already has the build backend, and isolation would fetch it.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(scratch), str(source)],
        check=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    [wheel] = scratch.glob("unitgen-*.whl")
    return wheel


def write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=0)  # mtime 0: the same bytes every build


def stage_common(wheel: Path, root: Path, fmt: str) -> None:
    """The files both formats ship: the package from the wheel, the command, its manual page and
    the shell completions."""
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            if info.filename.startswith("unitgen/") and not info.is_dir():
                write(root / PRIVATE / info.filename, zf.read(info))
    write(root / "usr/bin/unitgen", (HERE / "unitgen.in").read_bytes(), 0o755)
    write(root / "usr/share/man/man1/unitgen.1.gz", gzipped((HERE / "unitgen.1").read_bytes()))
    write(root / PRIVATE / "unitgen-output.schema.json", (ROOT / "schemas/unitgen-output.schema.json").read_bytes())
    for shell, path in (("bash", BASH_COMPLETION), ("zsh", ZSH_COMPLETION[fmt]), ("fish", FISH_COMPLETION)):
        write(root / path, completion(root, shell))


def completion(root: Path, shell: str) -> bytes:
    """`unitgen completion SHELL` of the staged modules themselves: the script matches the command
    line it completes. -B: no bytecode written into the staged tree."""
    env = {**os.environ, "PYTHONPATH": str(root / PRIVATE)}
    argv = [sys.executable, "-B", "-m", "unitgen", "completion", shell]
    return subprocess.run(argv, check=True, capture_output=True, env=env, stdin=subprocess.DEVNULL).stdout


def normalize(root: Path, epoch: int) -> None:
    """Directories 0755 and every timestamp at `epoch`, for reproducible archives."""
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_dir():
            path.chmod(0o755)
        os.utime(path, (epoch, epoch), follow_symlinks=False)
    os.utime(root, (epoch, epoch))


def build_deb(wheel: Path, version: str, out: Path, scratch: Path, epoch: int) -> Path:
    root = scratch / "deb"
    stage_common(wheel, root, "deb")
    doc = root / "usr/share/doc/unitgen"
    write(doc / "copyright", (HERE / "debian/copyright").read_bytes())
    write(doc / "changelog.gz", gzipped((HERE / "debian/changelog").read_bytes()))
    files = sorted(p for p in root.rglob("*") if p.is_file())
    size_kib = sum((p.stat().st_size + 1023) // 1024 for p in files)
    control = (HERE / "debian/control.in").read_text().replace("@VERSION@", version)
    control = control.replace("@INSTALLED_SIZE@", str(size_kib))
    write(root / "DEBIAN/control", control.encode())
    # dpkg's md5sums format: a check against corruption, not a security measure.
    digests = {p: hashlib.md5(p.read_bytes(), usedforsecurity=False).hexdigest() for p in files}
    sums = "".join(f"{digest}  {p.relative_to(root)}\n" for p, digest in digests.items())
    write(root / "DEBIAN/md5sums", sums.encode())
    for script in ("postinst", "prerm"):
        write(root / "DEBIAN" / script, (HERE / "debian" / script).read_bytes(), 0o755)
    normalize(root, epoch)
    deb = out / f"unitgen_{version}_all.deb"
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(deb)],
                   check=True, stdout=subprocess.DEVNULL, env=env)  # fmt: skip
    return deb


def build_rpm(wheel: Path, version: str, out: Path, scratch: Path, epoch: int) -> Path:
    root = scratch / "rpm-stage"
    stage_common(wheel, root, "rpm")
    write(root / "usr/share/licenses/unitgen/LICENSE", license_text().encode())
    normalize(root, epoch)
    top = scratch / "rpmbuild"
    defines = {
        "_topdir": str(top),
        "stage": str(root),
        "version": version,
        "_rpmdir": str(scratch / "rpms"),
        "_build_id_links": "none",
        "use_source_date_epoch_as_buildtime": "1",
        "clamp_mtime_to_source_date_epoch": "1",
        "_buildhost": "reproducible",
        # The staged tree is final (man page compressed, nothing to strip); the brp scripts would only
        # re-walk it, and on Debian they run under dash, which they were not written for.
        "__os_install_post": "%{nil}",
    }
    argv = ["rpmbuild", "--quiet", "-bb", str(HERE / "rpm/unitgen.spec")]
    for key, value in defines.items():
        argv += ["--define", f"{key} {value}"]
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
    [built] = (scratch / "rpms").rglob("*.rpm")
    rpm = out / f"unitgen-{version}-1.noarch.rpm"
    shutil.copyfile(built, rpm)
    return rpm


def license_text() -> str:
    """The MIT text from the Debian copyright file, de-indented (one source for both formats)."""
    text = (HERE / "debian/copyright").read_text()
    body = text.split("License: MIT\n", 1)[1]
    # In the copyright format a paragraph break is a line holding a single indented dot.
    return "".join("\n" if line.strip() == "." else line[1:] for line in body.splitlines(keepends=True))


def main() -> int:
    parser = argparse.ArgumentParser(description="build unitgen's own .deb and .rpm")
    parser.add_argument("dist", nargs="?", type=Path, default=ROOT / "dist/self", help="output directory")
    parser.add_argument("--format", choices=("deb", "rpm", "both"), default="both")
    args = parser.parse_args()
    out: Path = args.dist.resolve()
    out.mkdir(parents=True, exist_ok=True)
    version, epoch = project_version(), source_date_epoch()
    with tempfile.TemporaryDirectory(prefix="unitgen-self.") as tmp:
        scratch = Path(tmp)
        wheel = build_wheel(scratch / "wheel")
        built = []
        if args.format in ("deb", "both"):
            built.append(build_deb(wheel, version, out, scratch, epoch))
        if args.format in ("rpm", "both"):
            built.append(build_rpm(wheel, version, out, scratch, epoch))
    for path in built:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
