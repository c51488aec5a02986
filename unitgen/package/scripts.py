"""Maintainer scripts (deb) and scriptlets (rpm), rendered from templates/maintainer-scripts/.

The semantics are those of debhelper's dh_installsystemd/dh_installsysusers/dh_installtmpfiles
snippets and of systemd's RPM macros; the templates say, per block, which one they mirror.

Rendered scripts are cached (`script_cache`), keyed by the templates, this module, the Jinja
installation and the render context: importing jinja2 and loading the templates was ~50 ms of a
~210 ms package build of a small tree, what made unitgen's .rpm slower than `rpmbuild -bb` there
(issue 12). On a hit jinja2 is not imported at all, hence its import inside `_env`.
"""

from __future__ import annotations

import functools
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from unitgen.errors import UnitgenError
from unitgen.package import script_cache
from unitgen.package.model import PackageInfo
from unitgen.resources import bytecode_cache, template_root

if TYPE_CHECKING:
    import jinja2

DEB_SCRIPTS = ("preinst", "postinst", "prerm", "postrm")
RPM_SCRIPTLETS = ("pre", "post", "preun", "postun", "posttrans")
CATALOG_DIR = "usr/lib/systemd/catalog"


def purge_record(name: str) -> str:
    """Where the deb postinst records which purge paths the package created (root's, 0644, in a
    directory the service cannot write, so the service cannot widen what a purge removes)."""
    return f"/var/lib/unitgen/{name}.created"


@functools.cache
def _env() -> jinja2.Environment:
    import jinja2  # only on a cache miss: see the module's docstring

    env = jinja2.Environment(
        bytecode_cache=bytecode_cache(),
        loader=jinja2.FileSystemLoader(str(template_root() / "maintainer-scripts")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 -- shell scripts, not HTML; values are validated or quoted with |sh
    )
    env.filters["sh"] = shlex.quote
    return env


def _context(staging: Path, info: PackageInfo) -> dict[str, object]:
    unitdir = staging / "usr/lib/systemd/system"
    for unit in info.units:
        if not (unitdir / unit).is_file():
            raise UnitgenError(f"package units name {unit}, but the staging tree has no {unitdir / unit}")
    for conf, top in [(c, "usr/lib/sysusers.d") for c in info.sysusers] + [
        (c, "usr/lib/tmpfiles.d") for c in info.tmpfiles
    ]:
        if not (staging / top / conf).is_file():
            raise UnitgenError(f"package config names {conf}, but the staging tree has no {top}/{conf}")
    if info.restart_on_upgrade:
        upgrade_action: str | None = "restart" if info.start else "try-restart"
    else:
        upgrade_action = "start" if info.start else None
    if upgrade_action is not None and (info.instances or any(u.endswith(".socket") for u in info.units)):
        # Issue 14: only what runs is restarted: a socket-activated service starts on demand, and a
        # template's instances are matched by a glob (systemctl cannot "restart" a pattern that
        # matches no loaded unit; try-restart leaves stopped and admin-disabled instances alone).
        upgrade_action = "try-restart" if info.restart_on_upgrade else None
    return {
        "info": info,
        "configure": [shlex.join(argv) for argv in info.configure],
        "unconfigure": [shlex.join(argv) for argv in info.unconfigure],
        "units": info.units,
        "enable_units": info.enable_units,
        # Issue 14: a template's listed instances are enabled by name (deb-systemd-helper knows no
        # instances); stop and restart name every instance through quoted globs.
        "instance_units": info.enable_units if info.instances else (),
        "helper_units": () if info.instances else info.enable_units,
        "template_units": info.template_units,
        "restart_units": info.restart_units,
        "stop_units": info.stop_units,
        "upgrade_action": upgrade_action,
        "tmpfiles": info.tmpfiles,
        "purge_record": purge_record(info.name),
        # A journal catalog file (issue 15): the rpm scriptlets rebuild the catalog.
        "catalog": any((staging / CATALOG_DIR).glob("*.catalog")),
    }


def _rendered(fmt: str, templates: dict[str, str], context: dict[str, object]) -> dict[str, str]:
    """{name: text} of `templates` ({name: template file}) rendered with `context`, from the
    cache when this exact render was done before."""
    directory = template_root() / "maintainer-scripts"
    # Every template of the directory, both formats', so an {% include %} would be covered too;
    # this module for the Environment's options and filters.
    sources = [*sorted(directory.glob("*.j2")), Path(__file__)]
    key = script_cache.key(fmt, sources, {"templates": templates, **context})
    cached = script_cache.load(key)
    if cached is not None:
        return cached
    env = _env()
    scripts = {name: env.get_template(template).render(context) for name, template in templates.items()}
    script_cache.store(key, scripts)
    return scripts


def deb_scripts(staging: Path, info: PackageInfo) -> dict[str, str]:
    """preinst/postinst/prerm/postrm texts; scripts with nothing to do are left out."""
    ctx = _context(staging, info)
    ctx["sysusers"] = info.sysusers
    if not (info.units or info.sysusers or info.tmpfiles or info.purge or info.configure or info.unconfigure):
        return {}
    return _rendered("deb", {name: f"deb-{name}.sh.j2" for name in ("postinst", "prerm", "postrm")}, ctx)


def rpm_scriptlets(staging: Path, info: PackageInfo) -> dict[str, str]:
    """Scriptlet bodies for %pre/%post/%preun/%postun, run by /bin/sh with the count in $1."""
    ctx = _context(staging, info)
    ctx["sysusers"] = [
        (conf, content, sysusers_compat(content))
        for conf in info.sysusers
        for content in [(staging / "usr/lib/sysusers.d" / conf).read_text().strip()]
    ]
    rendered = _rendered("rpm", {name: f"rpm-{name}.sh.j2" for name in RPM_SCRIPTLETS}, ctx)
    return {name: text for name, text in rendered.items() if text.strip() != ":"}


def sysusers_compat(conf: str) -> list[str]:
    """groupadd/useradd commands for the `u` and `g` lines of a sysusers.d(5) file.

    The fallback for systems without systemd-sysusers, as Fedora's %sysusers_create_compat does.
    A `u` line's ID is `UID`, `UID:GID` or `UID:GROUPNAME` (`-` for automatic): with a group
    name the user's primary group is that group (a `g` line or an existing group), otherwise a
    group named after the user. Other line types (m, r) have no useradd equivalent worth
    guessing; they are skipped.
    """
    lines: list[str] = []
    for raw in conf.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        fields = shlex.split(raw)
        kind, name = fields[0], fields[1]
        ident = fields[2] if len(fields) > 2 else "-"
        if kind == "g":
            lines.append(_groupadd(name, ident))
        elif kind == "u":
            uid, _, gid = ident.partition(":")
            # "uid:groupname" names the primary group; "uid" and "uid:gid" mean a group named
            # after the user (with that gid, if given).
            group = gid if gid and gid != "-" and not gid.isdigit() else name
            if group == name:
                lines.append(_groupadd(name, gid or uid))
            gecos = fields[3] if len(fields) > 3 and fields[3] != "-" else name
            home = fields[4] if len(fields) > 4 and fields[4] != "-" else "/"
            shell = fields[5] if len(fields) > 5 and fields[5] != "-" else "/usr/sbin/nologin"
            uid_opt = f" -u {shlex.quote(uid)}" if uid.isdigit() else ""
            q = shlex.quote(name)
            lines.append(
                f"getent passwd {q} >/dev/null || useradd -r -g {shlex.quote(group)}{uid_opt}"
                f" -d {shlex.quote(home)} -s {shlex.quote(shell)} -c {shlex.quote(gecos)} {q}"
            )
    return lines


def _groupadd(group: str, gid: str) -> str:
    q = shlex.quote(group)
    gid_opt = f" -g {shlex.quote(gid)}" if gid.isdigit() else ""
    return f"getent group {q} >/dev/null || groupadd -r{gid_opt} {q}"
