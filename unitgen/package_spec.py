"""From a service spec to the package model: what the packagers need to know about the service."""

from __future__ import annotations

from unitgen.errors import UnitgenError
from unitgen.package import PackageInfo, Relations
from unitgen.payload import AppPayload
from unitgen.spec import Spec

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


def _summary(spec: Spec) -> str:
    """The one-line summary: the spec's, or its description without a leading "Name:" (lintian's
    description-starts-with-package-name, rpmlint's name-repeated-in-summary), capitalized."""
    p = spec.package
    summary = p.summary if p and p.summary else spec.description
    if summary.lower().startswith(spec.name + ":"):
        summary = summary[len(spec.name) + 1 :].strip() or summary
        # ... and without a leading article (lintian's description-synopsis-starts-with-article).
        first, _, rest = summary.partition(" ")
        if first.lower() in ("a", "an", "the") and rest:
            summary = rest
    return (summary[:1].upper() + summary[1:]).rstrip(".")


def _description(spec: Spec) -> str:
    p = spec.package
    if p and p.description:
        return p.description
    # Debian wants a long description that says more than the synopsis.
    kind = "a job run by a systemd timer" if spec.timer else "a systemd service"
    return (
        f"{spec.description}.\n\nThis package installs {spec.name} as {kind}, hardened and run through a "
        "single-instance launcher that takes a POSIX lock under /run (rendered by unitgen)."
    )


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
    units = [f"{spec.name}.service"]
    if spec.timer is not None:
        units.append(f"{spec.name}.timer")
    return PackageInfo(
        name=spec.name,
        version=p.version,
        release=p.release,
        maintainer=p.maintainer,
        summary=_summary(spec),
        description=_description(spec),
        license=p.license,
        homepage=p.homepage,
        depends=depends + p.depends,
        recommends=recommends + p.recommends,
        conflicts=p.conflicts,
        deb=Relations(p.deb.depends, p.deb.recommends, p.deb.conflicts),
        rpm=Relations(p.rpm.depends, p.rpm.recommends, p.rpm.conflicts),
        architecture=p.architecture,
        units=tuple(units),
        timer=spec.timer is not None,
        start=spec.start_on_install,
        sysusers=(f"{spec.name}.conf",) if spec.user else (),
        tmpfiles=(f"{spec.name}.conf",),
        purge=_purge_paths(spec),
        # The app's venv: fresh bytecode after install (a ProtectSystem=strict service cannot
        # write it), none left behind on removal.
        configure=(payload.cleanup_argv, payload.compile_argv) if payload else (),
        unconfigure=(payload.cleanup_argv,) if payload else (),
        lintian_overrides=(
            f"unusual-interpreter {payload.venv}/bin/python [*]"
            " # the app's scripts and its launcher run the interpreter of the app's own venv",
        )
        if payload
        else (),
    )
