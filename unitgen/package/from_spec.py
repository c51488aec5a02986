"""From a service spec to the package model: what the packagers need to know about the service."""

from __future__ import annotations

import re
import textwrap
from typing import TYPE_CHECKING

from unitgen.errors import UnitgenError
from unitgen.launcher.script import cleanup_argv, compile_argv, install_dir, lintian_overrides
from unitgen.package import PackageInfo, Relations
from unitgen.package.model import Format, to_rpm
from unitgen.spec import FormatOverrides, Spec

if TYPE_CHECKING:
    from unitgen.app.payload import AppPayload

# The launcher runs on the target's /usr/bin/python3 with the standard library alone
# (3.11 features), and uses systemd-python for the journal when it is installed.
LAUNCHER_DEPENDS: tuple[str, ...] = ("python3 (>= 3.11)",)
LAUNCHER_RECOMMENDS: tuple[str, ...] = ("python3-systemd",)


def _purge_paths(spec: Spec) -> tuple[str, ...]:
    """What the service wrote that a purge removes (a remove keeps it)."""
    paths = []
    for base, directory in (
        ("/var/lib", spec.state_directory),
        ("/var/cache", spec.cache_directory),
        ("/var/log", spec.logs_directory),
    ):
        if directory:
            paths.append(f"{base}/{directory}")
            if spec.user is None:
                # DynamicUser=yes keeps the real directory under private/ (systemd.exec(5)).
                paths.append(f"{base}/private/{directory}")
    return tuple(paths)


# lintian's limit for the synopsis (synopsis-too-long above 80 characters).
SYNOPSIS_WIDTH = 80


def _normal(text: str) -> str:
    """Text as lintian compares a synopsis with the long description's first line."""
    return re.sub(r"[^a-z0-9]+", "", text.lower())


def _names_the_package(synopsis: str, name: str) -> bool:
    """lintian's errors for a synopsis that is (or starts with) the package name, or one word:
    description-is-pkg-name, description-starts-with-package-name, description-too-short."""
    return bool(re.match(rf"{re.escape(name)}\b", synopsis, re.IGNORECASE)) or not re.search(r"\s", synopsis)


def _summary(spec: Spec) -> str:
    """The one-line summary: the spec's, or its description, shaped for lintian and rpmlint:
    without a leading "Name:" and article, capitalized, no final full stop, at most 80 columns,
    and never the bare package name or a single word (prefixed by what the package is, then)."""
    p = spec.package
    summary = p.summary if p and p.summary else spec.description
    if summary.lower().startswith(spec.name + ":"):
        summary = summary[len(spec.name) + 1 :].strip() or summary
    first, _, rest = summary.partition(" ")
    if first.lower() in ("a", "an", "the") and rest.strip():
        summary = rest.strip()  # description-synopsis-starts-with-article
    summary = (summary[:1].upper() + summary[1:]).rstrip(". ")
    if _names_the_package(summary, spec.name):
        kinds = ("Timer job", "Scheduled job") if spec.timer else ("Service", "System service")
        summary = next(f"{k}: {summary}" for k in kinds if not _names_the_package(k, spec.name))
    if len(summary) > SYNOPSIS_WIDTH:
        cut = summary[: SYNOPSIS_WIDTH + 1].rsplit(" ", 1)[0] if " " in summary[:SYNOPSIS_WIDTH] else ""
        summary = (cut or summary[:SYNOPSIS_WIDTH]).rstrip(" ,;:-.")
    return summary


def _description(spec: Spec, summary: str) -> str:
    """The long description. Debian wants it to say more than the synopsis, so a first paragraph
    that only repeats the synopsis is dropped (description-synopsis-is-duplicated), and a
    paragraph saying what the package installs opens it when nothing else would."""
    p = spec.package
    kind = "a job run by a systemd timer" if spec.timer else "a systemd service"
    installs = (
        f"This package installs {spec.name} as {kind}, hardened and run through a single-instance "
        "launcher that takes a POSIX lock under /run (rendered by unitgen)."
    )
    text = p.description if p and p.description else spec.description
    paragraphs = [para for para in textwrap.dedent(text).strip().split("\n\n") if para.strip()]
    if paragraphs and _normal(paragraphs[0]) == _normal(summary):
        paragraphs.pop(0)
    if not (p and p.description):
        paragraphs = [*(para.rstrip(".") + "." for para in paragraphs), installs]
    first_line = textwrap.fill(" ".join(paragraphs[0].split()), width=79).partition("\n")[0] if paragraphs else ""
    if not paragraphs or _normal(first_line) == _normal(summary):
        paragraphs.insert(0, installs)
    return "\n\n".join(paragraphs)


def _override(fmt: Format, depends: tuple[str, ...], recommends: tuple[str, ...], over: FormatOverrides) -> Relations:
    """A [package.deb] or [package.rpm] list replaces the spec's common list for that format, never
    what unitgen itself requires (the interpreter the launcher and the venv run on): that is kept
    in front of it, in the format's own syntax."""

    def own(relations: tuple[str, ...]) -> tuple[str, ...]:
        return relations if fmt is Format.DEB else tuple(to_rpm(r) for r in relations)

    def merged(ours: tuple[str, ...], theirs: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if theirs is None else tuple(dict.fromkeys(own(ours) + theirs))  # both, once each

    return Relations(
        depends=merged(depends, over.depends),
        recommends=merged(recommends, over.recommends),
        conflicts=over.conflicts,
    )


def _systemd_depends(spec: Spec) -> tuple[str, ...]:
    """LoadCredential= came with systemd 247, LoadCredentialEncrypted= with 250 (issue 15): an
    older systemd ignores the line with a warning and starts the service without its secret."""
    if spec.encrypted_credentials:
        return ("systemd (>= 250)",)
    if spec.credentials:
        return ("systemd (>= 247)",)
    return ()


def package_info(spec: Spec, payload: AppPayload | None) -> PackageInfo:
    """`payload` is the app's venv when the spec has an [app] (None before it is built)."""
    p = spec.package
    if p is None:
        raise UnitgenError(
            f"{spec.source}: package: the spec has no [package] table",
            hint='add [package] with version = "1.0.0" and maintainer = "Name <email>"',
        )
    depends, recommends = LAUNCHER_DEPENDS, LAUNCHER_RECOMMENDS
    if payload is not None:
        # The venv is tied to the interpreter minor version it was built for; its launcher
        # speaks the journal protocol itself (python3-systemd is not in the venv).
        depends, recommends = payload.depends, ()
        if not payload.pure and p.architecture in ("all", "noarch"):
            raise UnitgenError(
                f"{spec.source}: package.architecture: the app's venv contains compiled code, so the "
                "package cannot be 'all'",
                hint="set package.architecture to the build machine's architecture, e.g. 'amd64'",
            )
    depends = depends + _systemd_depends(spec)
    summary = _summary(spec)
    units = [f"{spec.unit_stem}.service"]
    if spec.timer is not None:
        units.append(f"{spec.unit_stem}.timer")
    if spec.listen:  # issue 14: the package enables the socket; the service starts on demand
        units.append(f"{spec.unit_stem}.socket")
    return PackageInfo(
        name=spec.name,
        version=p.version,
        release=p.release,
        maintainer=p.maintainer,
        summary=summary,
        description=_description(spec, summary),
        license=p.license,
        homepage=p.homepage,
        depends=depends + p.depends,
        recommends=recommends + p.recommends,
        conflicts=p.conflicts,
        deb=_override(Format.DEB, depends, recommends, p.deb),
        rpm=_override(Format.RPM, depends, recommends, p.rpm),
        architecture=p.architecture,
        units=tuple(units),
        instances=tuple(i.name for i in spec.instances),
        timer=spec.timer is not None,
        start=spec.start_on_install,
        sysusers=(f"{spec.name}.conf",) if spec.user else (),
        tmpfiles=(f"{spec.name}.conf",),
        purge=_purge_paths(spec),
        # The app's venv and the launcher module: fresh bytecode after install (a
        # ProtectSystem=strict service cannot write it), none left behind on removal.
        configure=(
            *((payload.cleanup_argv, payload.compile_argv) if payload else ()),
            cleanup_argv(install_dir(spec.name)),
            compile_argv(spec.python, install_dir(spec.name)),
        ),
        unconfigure=(*((payload.cleanup_argv,) if payload else ()), cleanup_argv(install_dir(spec.name))),
        lintian_overrides=(
            *(
                (
                    f"unusual-interpreter {payload.venv}/bin/python [*]"
                    " # the app's scripts and its launcher run the interpreter of the app's own venv",
                )
                if payload
                else ()
            ),
            *lintian_overrides(spec.python),
            *(
                (
                    "maintainer-script-calls-systemctl [postinst:*]"
                    " # deb-systemd-helper knows no template instances: the listed ones are enabled with systemctl",
                )
                if spec.instances
                else ()
            ),
        ),
    )
