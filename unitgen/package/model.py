"""The one package model both formats are written from (the nfpm pattern: one config, many formats).

`PackageInfo` is what the spec's `[package]` table maps to. Every field is documented where it is
declared; fields that only one format uses say so. Relation strings are written in Debian syntax
(`python3 (>= 3.11)`, `a | b`) and translated for RPM (`python3 >= 3.11`, `(a or b)`); a per-format
override replaces the common list when the two worlds name things differently.
"""

from __future__ import annotations

import enum
import re
import textwrap
from dataclasses import dataclass, field

from unitgen.errors import UnitgenError


class Format(enum.Enum):
    DEB = "deb"
    RPM = "rpm"


class Compression(enum.Enum):
    """Payload compression. gzip and xz are the standard library's (zlib, liblzma); every dpkg and
    rpm in use reads both (Debian 8+, RHEL 7+). zstd is the system's libzstd (unitgen.package.zstd);
    dpkg reads it from 1.21.18 (Debian 12 bookworm; not Debian 11) and rpm from 4.14 (RHEL 8 and
    later, Fedora 28+; not RHEL 7).

    gzip -6 is the default, chosen by measurement (bench/bench_package.py; 3000 files, 40 MiB):
    gzip -9 took twice as long (2.8 s against 1.4 s) for a package 1% smaller, and xz -6, 23%
    smaller, took 14 times as long (19.5 s), since Python's lzma has no threads where dpkg-deb's
    and rpm's xz use every core. `--compression xz` is there for the size-bound, `zstd` for
    targets that read it: on the same tree zstd -3 took 0.4 times gzip -6's time for a package 3%
    larger (bench_package.py, one thread each). gzip stays the default all the same: every dpkg,
    rpm and repository tool reads it, where older reprepro and aptly releases and tools linked to
    an older libarchive cannot read zstd members, and for a service without a large payload the
    difference is milliseconds.
    """

    GZIP = "gzip"
    XZ = "xz"
    ZSTD = "zstd"

    def default_level(self) -> int:
        # gzip: zlib's own default (see above); xz: xz(1)'s and dpkg-deb's default preset;
        # zstd: zstd(1)'s and dpkg-deb's default level.
        return 3 if self is Compression.ZSTD else 6


@dataclass(frozen=True)
class Relations:
    """Package relations of one format; `None` in an override means "use the common list"."""

    depends: tuple[str, ...] | None = None
    recommends: tuple[str, ...] | None = None
    conflicts: tuple[str, ...] | None = None


# Debian policy 5.6.1 (Package) and 5.6.12 (Version); RPM accepts a superset of the name rule but
# not '-' in version or release, so we hold both formats to the stricter intersection.
_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_VERSION = re.compile(r"^[0-9][A-Za-z0-9.+~]*$")
_RELEASE = re.compile(r"^[A-Za-z0-9.+~]+$")
_UNIT = re.compile(r"^[A-Za-z0-9:_.\\-]+\.(service|timer|socket|path|target|mount)$")
_TEMPLATE = re.compile(r"^[A-Za-z0-9:_.\\-]+@\.(service|timer|socket)$")
_INSTANCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # as unitgen.spec.instances: safe unquoted in sh
_RELATION = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9+._-]*)\s*(?:\(\s*(<<|<=|=|>=|>>)\s*([^\s)]+)\s*\))?\s*$")


@dataclass(frozen=True)
class PackageInfo:
    # --- identity -------------------------------------------------------------------------
    name: str
    """Package name, Debian rules: lower case, digits, `+ - .`; at least two characters."""
    version: str
    """Upstream version, e.g. `1.2.3`; no `-` (that separates the release)."""
    maintainer: str
    """`Full Name <email>`: deb `Maintainer:`, rpm `Packager`/`Vendor`, and the changelog author."""
    summary: str
    """One line, no trailing full stop (deb short description, rpm `Summary`)."""
    description: str
    """Long description, plain paragraphs separated by blank lines; re-wrapped to 79 columns
    (`wrapped_description`), except lines indented by two spaces, which are kept verbatim."""
    license: str
    """SPDX identifier, e.g. `MIT`, `Apache-2.0`, `GPL-3.0-or-later`."""
    release: str = "1"
    """Packaging revision: deb `VERSION-RELEASE`, rpm `Release`."""
    homepage: str | None = None
    """Upstream URL: deb `Homepage`, rpm `URL`."""
    copyright: str | None = None
    """Copyright notice for debian/copyright, e.g. `2026 Example Corp`; defaults to the maintainer."""
    license_text: str | None = None
    """Full license text for debian/copyright when the license is not in /usr/share/common-licenses."""
    changelog: str = "New upstream release."
    """Entry for this version in changelog.Debian.gz and the rpm %changelog."""

    # --- relations ------------------------------------------------------------------------
    depends: tuple[str, ...] = ()
    """Common dependencies in Debian syntax (`name`, `name (>= 1)`, `a | b`); translated for RPM."""
    recommends: tuple[str, ...] = ()
    """Common weak dependencies (deb `Recommends`, rpm `Recommends`)."""
    conflicts: tuple[str, ...] = ()
    """Common conflicts (deb `Conflicts`, rpm `Conflicts`)."""
    deb: Relations = field(default_factory=Relations)
    """Debian-only overrides: a non-None list replaces the common one for .deb."""
    rpm: Relations = field(default_factory=Relations)
    """RPM-only overrides, in RPM syntax (used verbatim, no translation)."""
    architecture: str = "all"
    """`all` for architecture-independent packages (written as `noarch` for RPM), else a Debian arch."""
    section: str = "admin"
    """Debian section."""
    group: str = "System Environment/Daemons"
    """RPM group (informational; modern rpm ignores it)."""

    # --- lifecycle (what the maintainer scripts do) -------------------------------------------
    units: tuple[str, ...] = ()
    """Systemd units the scripts manage, as shipped in usr/lib/systemd/system: stopped on removal,
    disable state purged. Usually `NAME.service`, plus `NAME.timer` for a cron-like job."""
    timer: bool = False
    """True for a cron-like job: only the `.timer` units are enabled, started and restarted; the
    timer's `.service` is only stopped on removal (restarting it on upgrade would run the job)."""
    enable: bool = True
    """Enable the units on first install (deb: deb-systemd-helper; rpm: `systemctl preset`, so a
    distribution's preset policy decides). An admin's `disable` survives upgrades either way."""
    start: bool = True
    """Start the enabled units on first install; with False they are only try-restarted on upgrade."""
    restart_on_upgrade: bool = True
    """Restart running units after an upgrade (deb `--restart-after-upgrade`, rpm
    `%systemd_postun_with_restart`). False: the service keeps running the old code until restarted."""
    sysusers: tuple[str, ...] = ()
    """File names in usr/lib/sysusers.d (e.g. `NAME.conf`) applied with systemd-sysusers before start."""
    tmpfiles: tuple[str, ...] = ()
    """File names in usr/lib/tmpfiles.d applied with `systemd-tmpfiles --create` before start."""
    configure: tuple[tuple[str, ...], ...] = ()
    """Commands (argv lists) run as root once the files are in place: deb postinst `configure`
    (after users and tmpfiles, before units start), rpm %posttrans (install and upgrade, after an
    upgrade removed the old files, so nothing they create keeps an old directory alive). A failing
    command fails a deb configure. E.g. the payload's `cleanup_argv` then `compile_argv`."""
    unconfigure: tuple[tuple[str, ...], ...] = ()
    """Commands run before the package's files are removed or replaced: deb prerm (remove, upgrade,
    deconfigure), rpm %preun on erase. Failures are ignored, so a broken state can still be
    removed. E.g. `AppPayload.cleanup_argv` (drops the `__pycache__` directories no package owns)."""
    lintian_overrides: tuple[str, ...] = ()
    """Extra lintian overrides shipped in /usr/share/lintian/overrides/NAME, one tag (with its
    pointer) per entry, each preceded in the file by the comment given after ` # `, e.g.
    `"unusual-interpreter # scripts of the app's venv run its own python"`."""
    purge: tuple[str, ...] = ()
    """Absolute paths (state, logs, caches, config the service wrote) removed on `dpkg --purge`.
    RPM has no purge; `rpm -e` keeps them, like Fedora packages keep /var/lib data."""
    instances: tuple[str, ...] = ()
    """With template units (NAME@.service): the instances enabled and started on first install
    (issue 14). Instances an admin adds or disables are left alone; removal stops them all."""

    def __post_init__(self) -> None:
        for ok, what, value in (
            (_NAME.match(self.name), "package name", self.name),
            (_VERSION.match(self.version), "package version", self.version),
            (_RELEASE.match(self.release), "package release", self.release),
        ):
            if not ok:
                raise UnitgenError(
                    f"invalid {what}: {value!r}",
                    hint="names: lower case letters, digits, '+-.'; versions start with a digit, no '-'",
                )
        if not self.summary or "\n" in self.summary:
            raise UnitgenError("package summary must be one non-empty line")
        for unit in self.units:
            if not (_UNIT.match(unit) or _TEMPLATE.match(unit)):
                raise UnitgenError(
                    f"invalid unit name in package units: {unit!r}",
                    hint="give full names such as 'NAME.service', or templates 'NAME@.service' with instances",
                )
        templates = [u for u in self.units if _TEMPLATE.match(u)]
        if bool(templates) != bool(self.instances):
            raise UnitgenError(
                "package instances and template units go together",
                hint="list the instances to enable (e.g. 'a') with units such as 'NAME@.service'",
            )
        for instance in self.instances:
            if not _INSTANCE.match(instance):
                raise UnitgenError(f"invalid instance name in package instances: {instance!r}")
        if self.timer and not any(u.endswith(".timer") for u in self.units):
            raise UnitgenError(
                "timer = true, but package units name no .timer unit",
                hint="add NAME.timer to units, next to NAME.service",
            )
        for path in self.purge:
            if not path.startswith("/") or ".." in path.split("/") or path.rstrip("/") in _NEVER_PURGE:
                raise UnitgenError(f"refusing to purge {path!r}", hint="give a package-owned absolute path")
        for argv in self.configure + self.unconfigure:
            if not argv or not all(isinstance(a, str) for a in argv):
                raise UnitgenError(f"a configure/unconfigure command must be a non-empty argv list: {argv!r}")
        for conf in self.sysusers + self.tmpfiles:
            if "/" in conf or not conf.endswith(".conf"):
                raise UnitgenError(f"expected a file name ending in .conf, got {conf!r}")
        for rel in self.depends + self.recommends + self.conflicts:
            to_rpm(rel)  # validates the Debian syntax once, at construction

    # --- derived views the writers use ------------------------------------------------------
    @property
    def deb_version(self) -> str:
        return f"{self.version}-{self.release}"

    @property
    def deb_architecture(self) -> str:
        return self.architecture

    @property
    def rpm_architecture(self) -> str:
        return "noarch" if self.architecture == "all" else _RPM_ARCH.get(self.architecture, self.architecture)

    @property
    def wrapped_description(self) -> str:
        """The description with each paragraph wrapped to 79 columns (lintian and rpmlint limits)."""
        paragraphs = []
        for para in textwrap.dedent(self.description).strip().split("\n\n"):
            lines = para.splitlines()
            if any(line.startswith("  ") for line in lines):
                # Preformatted, kept as is, but a line over 79 columns is folded at a space with
                # its own indentation (lintian's extended-description-line-too-long).
                paragraphs.append("\n".join(_fold(line.rstrip()) for line in lines))
            else:
                paragraphs.append(textwrap.fill(" ".join(para.split()), width=79, break_long_words=False))
        return "\n\n".join(paragraphs)

    @property
    def enable_units(self) -> tuple[str, ...]:
        """Units to enable and start: the timers of a timer job, the sockets of a socket-activated
        service (systemd starts the service on the first connection), else the services; a
        template's as the listed instances (NAME@a.service ...)."""
        if self.timer:
            base = tuple(u for u in self.units if u.endswith(".timer"))
        elif any(u.endswith(".socket") for u in self.units):
            base = tuple(u for u in self.units if u.endswith(".socket"))
        else:
            base = self.units
        return self._instantiate(base)

    def _instantiate(self, units: tuple[str, ...]) -> tuple[str, ...]:
        out: list[str] = []
        for unit in units:
            if _TEMPLATE.match(unit):
                out += [unit.replace("@.", f"@{i}.") for i in self.instances]
            else:
                out.append(unit)
        return tuple(out)

    @property
    def template_units(self) -> tuple[str, ...]:
        """The template unit files (NAME@.service ...): their instances are enabled by name."""
        return tuple(u for u in self.units if _TEMPLATE.match(u))

    @property
    def restart_units(self) -> tuple[str, ...]:
        """What an upgrade restarts: as enable_units, except that a socket-activated service
        restarts its service (its socket keeps listening: no connection is refused meanwhile) and
        a template restarts every running instance (a shell glob, quoted: systemctl matches it
        against loaded units, so an admin-added instance is restarted too)."""
        if self.timer:
            base = tuple(u for u in self.units if u.endswith(".timer"))
        else:
            base = tuple(u for u in self.units if u.endswith(".service"))
        return tuple(self._glob(u) for u in base)

    @property
    def stop_units(self) -> tuple[str, ...]:
        """What removal stops: every unit, every running instance of a template (a quoted glob)."""
        return tuple(self._glob(u) for u in self.units)

    @staticmethod
    def _glob(unit: str) -> str:
        return f"'{unit.replace('@.', '@*.')}'" if _TEMPLATE.match(unit) else unit

    def relations(self, fmt: Format) -> Relations:
        """Final relation lists for one format (override if given, else the common list)."""
        over = self.deb if fmt is Format.DEB else self.rpm

        def pick(common: tuple[str, ...], special: tuple[str, ...] | None) -> tuple[str, ...]:
            if special is not None:
                return special
            return common if fmt is Format.DEB else tuple(to_rpm(r) for r in common)

        return Relations(
            depends=pick(self.depends, over.depends),
            recommends=pick(self.recommends, over.recommends),
            conflicts=pick(self.conflicts, over.conflicts),
        )


def _fold(line: str, width: int = 79) -> str:
    if len(line) <= width:
        return line
    indent = line[: len(line) - len(line.lstrip())]
    return textwrap.fill(
        line.strip(), width=width, initial_indent=indent, subsequent_indent=indent, break_long_words=False
    )


# Paths a typo in `purge` must never reach (rm -rf in a postrm).
_NEVER_PURGE = frozenset(
    {
        "",
        "/etc",
        "/var",
        "/var/lib",
        "/var/log",
        "/var/cache",
        "/usr",
        "/run",
        "/srv",
        "/opt",
        "/home",
        "/tmp",  # noqa: S108 -- a deny list, not a temp file
    }
)
_RPM_ARCH = {"amd64": "x86_64", "arm64": "aarch64", "i386": "i686", "armhf": "armv7hl"}
_RPM_OP = {"<<": "<", "<=": "<=", "=": "=", ">=": ">=", ">>": ">"}


def to_rpm(relation: str) -> str:
    """Translate one Debian relation (`a (>= 1) | b`) to RPM syntax (`(a >= 1 or b)`)."""
    parts = []
    for alt in relation.split("|"):
        m = _RELATION.match(alt)
        if not m:
            raise UnitgenError(
                f"cannot parse package relation {relation!r}",
                hint="use Debian syntax: 'name', 'name (>= 1.0)', 'a | b'",
            )
        name, op, ver = m.groups()
        parts.append(name if op is None else f"{name} {_RPM_OP[op]} {ver}")
    return parts[0] if len(parts) == 1 else "(" + " or ".join(parts) + ")"


def to_plain(info: PackageInfo) -> dict[str, object]:
    """`info` as builtin values only (str, int, bool, None, tuples, dicts): what the staging tree's
    stamp keeps (unitgen.staging.stamp), so an unchanged spec need not be loaded again."""
    return {**vars(info), "deb": dict(vars(info.deb)), "rpm": dict(vars(info.rpm))}


def from_plain(plain: object) -> PackageInfo | None:
    """The PackageInfo `to_plain` made, checked again as at construction; None for anything else."""
    if not isinstance(plain, dict):
        return None
    try:
        fields = {**plain, "deb": Relations(**plain["deb"]), "rpm": Relations(**plain["rpm"])}
        return PackageInfo(**fields)
    except (KeyError, TypeError, UnitgenError):
        return None
