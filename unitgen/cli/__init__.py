"""The command line: parses arguments, calls the library, turns `UnitgenError` into a message.

Library code raises; only `main()` prints and picks the exit code (0 ok, 1 failure,
2 usage). Tracebacks only with --debug. With --json, `main()` writes exactly one JSON
document on stdout (see `unitgen.cli.report` and schemas/unitgen-output.schema.json).

The modules beside this one (`report`, `completion`, `diff`) are imported only by the
commands that use them: `import unitgen.cli` stays light (tests/test_layout.py).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from types import FrameType
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

from unitgen import __version__
from unitgen.errors import UnitgenError

if TYPE_CHECKING:
    from unitgen.package.model import PackageInfo
    from unitgen.publish import Signer
    from unitgen.spec import Spec
    from unitgen.staging import stamp

RAISE_INTERNAL_ERRORS = "UNITGEN_RAISE_INTERNAL_ERRORS"

# A command's result: its exit code and, for --json, the document it reports.
Result = tuple[int, dict[str, Any] | None]


def _spec_path(args: argparse.Namespace) -> Path:
    return Path(args.spec) if args.spec else Path(f"{args.name}.toml")


def _out_dir(args: argparse.Namespace) -> Path:
    return Path(args.out) if args.out else Path("build") / args.name


def _inputs(args: argparse.Namespace) -> list[Path]:
    """What the output directory may never be or contain: the spec, the templates, dist."""
    inputs = [_spec_path(args), *(Path(t) for t in getattr(args, "templates", []))]
    if getattr(args, "dist", None):
        inputs.append(Path(args.dist))
    return inputs


def _writable_out_dir(args: argparse.Namespace) -> Path:
    """--out, checked before any work is done (`write_tree` checks again before replacing it)."""
    from unitgen.staging.tree import check_out_dir, protected_paths

    out = _out_dir(args).absolute()
    check_out_dir(out, protected_paths(_inputs(args)))
    return out


def cmd_init(args: argparse.Namespace) -> Result:
    from unitgen.spec.starter import write_starter

    path = write_starter(args.name, _spec_path(args), force=args.force)
    if not args.json:
        print(f"wrote {path}")
    return 0, {"command": "init", "name": args.name, "path": str(path.absolute())}


def _each(args: argparse.Namespace) -> list[argparse.Namespace]:
    """One namespace per NAME of a batch command, with `name` set; --spec and --out name one
    service's files, so they go with one NAME only."""
    names: list[str] = args.names
    if len(names) > 1:
        given = [opt for opt in ("spec", "out") if getattr(args, opt, None)]
        if given:
            raise UnitgenError(
                f"--{given[0]} names the files of one service, and {len(names)} names were given",
                hint="give one NAME with --spec/--out, or several names with their NAME.toml and build/NAME",
            )
        seen = {n for n in names if names.count(n) > 1}
        if seen:
            raise UnitgenError(f"service {sorted(seen)[0]!r} is named twice")
    return [argparse.Namespace(**{**vars(args), "name": name}) for name in names]


def cmd_render(args: argparse.Namespace) -> Result:
    if args.diff:
        return _diff(args)
    _root_needs_diff(args)
    # Every spec and every --out first: one bad input among many writes nothing at all.
    # The app's venv is built by `package` and `try`; render stays quick and offline.
    from unitgen.staging import stamp

    jobs = [_render_job(one) for one in _each(args)]
    services = []
    for one, spec, out, found in jobs:
        if isinstance(found, stamp.Stamped):  # the tree on disk is current: what rendering would write
            files = [(PurePosixPath(path), mode, digest) for path, mode, digest in found.files]
            written = [out / path for path, _, _ in files]
        else:
            assert spec is not None
            written, files = _render_tree(one, spec, out, found)
        if not args.json:
            print("\n".join(str(path) for path in written))
        # The document (a sha256 of every file) only when it is printed: 8% of a 500-spec batch.
        services.append({"name": one.name, "out": str(out), "files": _files_document(files, out) if args.json else []})
    return 0, {"command": "render", "services": services}


def _render_job(
    one: argparse.Namespace,
) -> tuple[argparse.Namespace, Spec | None, Path, stamp.Stamped | stamp.Inputs]:
    """A service to render: nothing to do when its tree's stamp is current, else its spec, loaded
    (with the inputs read before it, for the stamp)."""
    before, stamped = _current_tree(one)
    if stamped is not None:
        return one, None, _out_dir(one).absolute(), stamped
    from unitgen.spec import load_spec

    return one, load_spec(_spec_path(one), one.name), _writable_out_dir(one), before


def _current_tree(one: argparse.Namespace) -> tuple[stamp.Inputs, stamp.Stamped | None]:
    """The inputs of the service's rendering, read now (before its spec is loaded), and the stamp
    of its output tree when that tree is what rendering would write now; no stamp also when --out
    may not be written: that is reported after the spec's own errors, as for a tree without one."""
    from unitgen.staging import stamp
    from unitgen.staging.tree import check_out_dir, clean_leftovers, protected_paths

    before = stamp.inputs(stamp.Source(_spec_path(one), one.name, tuple(Path(t) for t in one.templates)))
    out = _out_dir(one).absolute()
    try:
        check_out_dir(out, protected_paths(_inputs(one)))
    except UnitgenError:
        return before, None
    stamped = stamp.current(out, before)
    if stamped is not None:
        clean_leftovers(out)  # what a killed run left next to it, as a write would
    return before, stamped


def _render_tree(
    one: argparse.Namespace, spec: Spec, out: Path, before: stamp.Inputs
) -> tuple[list[Path], list[tuple[PurePosixPath, int, str]]]:
    """Render and write the tree, stamp it; the written paths and (path, mode, sha256) of each file."""
    from unitgen.render.units import render
    from unitgen.staging import stamp
    from unitgen.staging.tree import write_tree

    rendered = render(spec, template_dirs=[Path(t) for t in one.templates])
    written = write_tree(rendered, out, inputs=_inputs(one))
    files = stamp.digests(rendered)
    if spec.app is None:
        stamp.write(out, before, files, [(config.source, config.content) for config in spec.config], None)
    return written, [(PurePosixPath(path), mode, digest) for path, mode, digest in files]


def _root_needs_diff(args: argparse.Namespace) -> None:
    if args.root is not None and not args.diff:
        raise UnitgenError("--root is read only with --diff", hint=f"unitgen {args.command} NAME --diff --root DIR")


def _files_document(files: Sequence[tuple[PurePosixPath, int, str]], out: Path) -> list[dict[str, Any]]:
    return [
        {"path": str(out / path), "target": f"/{path}", "mode": f"{mode:04o}", "sha256": digest}
        for path, mode, digest in files
    ]


def _diff(args: argparse.Namespace) -> Result:
    """render --diff, package --diff: what would change, written nowhere."""
    from unitgen.cli.diff import diff_services

    # --out is checked as render would check it before replacing it: what the command would
    # refuse, --diff refuses too.
    return diff_services(args, _each(args), _spec_path, _writable_out_dir)


def _threshold(args: argparse.Namespace) -> float:
    from unitgen.spec import load_spec

    if args.threshold is not None:
        return float(args.threshold)
    spec = load_spec(_spec_path(args), args.name)
    return 1.5 if spec.network else 0.5


def cmd_check(args: argparse.Namespace) -> Result:
    from unitgen.staging.check import check_many

    each = _each(args)
    reports = check_many([(_out_dir(one), one.name, _threshold(one)) for one in each])
    failed = False
    services = []
    for one, report in zip(each, reports, strict=True):
        problems = report.problems(one.name)
        services.append(
            {
                "name": one.name,
                "units": list(report.units),
                "verify": report.verify_output.splitlines(),
                "score": report.score,
                "verdict": report.verdict,
                "threshold": report.threshold,
                "ok": not problems,
                "problems": problems,
            }
        )
        failed = failed or bool(problems)
        if args.json:
            continue
        if len(each) > 1:
            print(f"== {one.name}")
        print(f"units: {', '.join(report.units)}")
        print("systemd-analyze verify: " + ("clean" if not report.verify_output else "\n" + report.verify_output))
        # systemd's own word (SAFE, OK, ...) only for a passing score: "1.6 OK" beside a failure misleads.
        if report.score_ok:
            print(f"systemd-analyze security: {report.score:.1f} {report.verdict} (threshold {report.threshold:.1f})")
        else:
            print(f"systemd-analyze security: {report.score:.1f}, over the threshold {report.threshold:.1f}")
        for problem in problems:
            print(f"ERROR {problem}", file=sys.stderr)
        if not report.score_ok:
            print(
                "  hint: 'systemd-analyze security --offline=true' on the unit lists each setting's share;"
                " re-enable what [hardening] turned off, or pass --threshold",
                file=sys.stderr,
            )
    return (1 if failed else 0), {"command": "check", "ok": not failed, "services": services}


def cmd_package(args: argparse.Namespace) -> Result:
    if not args.sign:
        return _package(args, None)
    from unitgen.publish import GpgKey

    # Opened (and checked) before any work: a missing key or one that cannot sign builds nothing.
    with GpgKey(args.sign, Path(args.homedir) if args.homedir else None).opened() as signer:
        return _package(args, signer)


def _package(args: argparse.Namespace, signer: Signer | None) -> Result:
    from unitgen.package import Compression, Format, build, terminal_progress

    if args.diff:
        return _diff(args)  # checks the specs and --out the same way
    _root_needs_diff(args)
    if args.compression == "zstd":
        from unitgen.package.zstd import require

        require()  # libzstd: before any work, so that its absence builds nothing
    jobs = [_package_job(one) for one in _each(args)]  # every input first: one bad spec builds nothing
    packages = []
    for job in jobs:
        one, info = job.args, job.info
        if job.spec is not None:
            info = _stage(job, job.spec)
        formats = [Format(one.format)] if one.format != "both" else [Format.DEB, Format.RPM]
        for fmt in formats:
            # On a terminal, a progress line on stderr; in logs and pipes, nothing but the result.
            progress = terminal_progress(f"{fmt.value} {info.name}")
            compression = Compression(one.compression)
            path = build(
                fmt,
                job.staging,
                info,
                Path(one.dist),
                compression=compression,
                level=one.compression_level,
                progress=progress,
            )
            if signer is not None and fmt is Format.RPM:
                from unitgen.package.rpm import add_signature

                # The .deb is signed by publishing it: apt checks the repository's InRelease.
                add_signature(path, signer)
            if not args.json:
                print(path)
            packages.append({"name": info.name, "format": fmt.value, **_file_facts(path)})
    return 0, {"command": "package", "packages": packages}


class _PackageJob(NamedTuple):
    args: argparse.Namespace
    staging: Path
    info: PackageInfo
    spec: Spec | None  # None: the staging tree on disk is current (its stamp), nothing to render
    before: stamp.Inputs  # the inputs as read before the spec was loaded, for the stamp


def _package_job(one: argparse.Namespace) -> _PackageJob:
    """A service to package: its staging tree as it is on disk when its stamp says that rendering
    would write it again (issue 12: no spec to load, nothing to render), else its spec, loaded."""
    from unitgen.package.model import from_plain

    before, stamped = _current_tree(one)
    info = from_plain(stamped.attached) if stamped is not None else None  # render's stamps carry none
    if info is not None:
        return _PackageJob(one, _out_dir(one).absolute(), info, None, before)
    from unitgen.package.from_spec import package_info
    from unitgen.spec import load_spec

    spec = load_spec(_spec_path(one), one.name)
    info = package_info(spec, None)  # fails before any work when the spec has no [package] table
    return _PackageJob(one, _writable_out_dir(one), info, spec, before)


def _stage(job: _PackageJob, spec: Spec) -> PackageInfo:
    """Render and write the staging tree (and the app's venv); the package's metadata. A spec
    without [app] has the same metadata before and after staging: the stamp keeps it."""
    from unitgen.package.from_spec import package_info
    from unitgen.package.model import to_plain
    from unitgen.staging.build import stage

    _, payload = stage(
        spec,
        job.staging,
        template_dirs=[Path(t) for t in job.args.templates],
        inputs=_inputs(job.args),
        stamped=(job.before, to_plain(job.info)),
    )
    return package_info(spec, payload)


def _file_facts(path: Path) -> dict[str, Any]:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(path.absolute()), "size": path.stat().st_size, "sha256": digest.hexdigest()}


def cmd_try(args: argparse.Namespace) -> Result:
    from unitgen.cli.report import try_document
    from unitgen.sandbox import require_root
    from unitgen.spec import load_spec
    from unitgen.staging.build import stage
    from unitgen.trial import TryOptions, TryReport, parse_credential, teardown, try_service

    require_root()  # before building anything: the sandbox is the point of this command
    spec = load_spec(_spec_path(args), args.name)
    say = _say(args)
    if args.teardown:
        return teardown(spec, say), {"command": "try", "name": spec.name, "teardown": True}
    if args.fleet is not None:
        return _try_fleet(args, spec, say)
    credentials = tuple(parse_credential(spec, option) for option in args.credential)  # before writing anything
    staging = _out_dir(args)
    payload = None
    if args.install is None:
        staging = _writable_out_dir(args)
        _, payload = stage(spec, staging, template_dirs=[Path(t) for t in args.templates], inputs=_inputs(args))
    options = TryOptions(
        install=Path(args.install) if args.install else None,
        payload=payload,
        keep=args.keep,
        shell=args.shell,
        timeout=args.timeout,
        credentials=credentials,
    )
    report = TryReport()
    code = try_service(spec, staging, options, say, report)
    return code, try_document(spec.name, report)


def _try_fleet(args: argparse.Namespace, spec: Spec, say: Callable[[str], None]) -> Result:
    """`try NAME --fleet N`: the fleet lock on N sandboxed hosts (unitgen.trial.fleet)."""
    from unitgen.staging.build import stage
    from unitgen.trial.fleet import FleetOptions, FleetReport, check_fleet, try_fleet

    for flag in ("install", "keep", "shell"):
        if getattr(args, flag):
            raise UnitgenError(f"--fleet and --{flag} do not go together", hint="--fleet installs the staging tree "
                               "on every host and tears everything down at the end")
    check_fleet(spec, args.fleet)  # before building anything
    staging = _writable_out_dir(args)
    templates = tuple(Path(t) for t in args.templates)
    _, payload = stage(spec, staging, template_dirs=list(templates), inputs=_inputs(args))
    options = FleetOptions(hosts=args.fleet, payload=payload, template_dirs=templates, timeout=args.timeout)
    report = FleetReport()
    code = try_fleet(spec, staging, options, say, report)
    return code, report.document(spec.name)


def _say(args: argparse.Namespace) -> Callable[[str], None]:
    """Progress lines: stdout for a person, stderr with --json (stdout holds only the document)."""
    if args.json:
        return lambda line: print(line, file=sys.stderr)
    return print


def cmd_publish(args: argparse.Namespace) -> Result:
    from unitgen.publish import GpgKey, publish

    done = publish(
        [Path(p) for p in args.packages],
        Path(args.repo),
        key=GpgKey(args.sign, Path(args.homedir) if args.homedir else None),
        suite=args.suite,
        component=args.component,
        architectures=args.arch or ("amd64", "arm64"),
        keep=args.keep,
        url=args.url,
    )
    sides = {"apt": done.apt, "yum": done.yum}
    document: dict[str, Any] = {"command": "publish", "repo": str(Path(args.repo).absolute()), "url": done.url}
    for side, result in sides.items():
        if result is not None:
            document[side] = {
                "generation": result.generation,
                **{what: getattr(result, what) for what in ("added", "unchanged", "removed", "superseded")},
            }
    document["client"] = done.client_lines()
    if not args.json:
        for side, result in sides.items():
            if result is None:
                continue
            for what, paths in (("added", result.added), ("unchanged", result.unchanged),
                                ("removed from the index", result.removed),
                                ("not added, older than the newest kept", result.superseded)):  # fmt: skip
                for path in paths:
                    print(f"{side}: {what}: {path}")
        print("\n".join(done.client_lines()))
    return 0, document


def cmd_install(args: argparse.Namespace) -> Result:
    from unitgen.install import install
    from unitgen.spec import load_spec

    spec = load_spec(_spec_path(args), args.name)
    templates = [Path(t) for t in args.templates]
    done = install(
        spec,
        Path(args.root or "/"),
        template_dirs=templates,
        inputs=_inputs(args),
        say=_say(args),
        timeout=args.timeout,
    )
    files = [
        {"path": f"/{e.path}", "type": e.type, "mode": f"{e.mode:04o}"}
        | ({"sha256": e.sha256} if e.type == "file" else {})
        | ({"target": e.target} if e.type == "symlink" else {})
        for e in done.entries
    ]
    for path in done.kept:
        print(f"WARNING {path}: changed since unitgen installed it; kept", file=sys.stderr)
    for note in done.notes():  # edited [config] files, kept
        print(note, file=sys.stderr)
    if not args.json:
        what = "upgraded" if done.upgrade else "installed"
        state = f"; {done.state}" if done.state else " (offline: not started)" if not done.live else ""
        count = sum(e.type != "dir" for e in done.entries)
        print(f"{what} {spec.name}: {count} files, manifest {done.manifest}{state}")
    return 0, {
        "command": "install",
        "name": spec.name,
        "root": str(Path(args.root or "/").absolute()),
        "manifest": done.manifest,
        "upgrade": done.upgrade,
        "live": done.live,
        "state": done.state,
        "files": files,
        "removed": done.removed,
        "kept": done.kept,
        "steps": done.steps,
        "config": [o.to_json() for o in done.config],
    }


def cmd_uninstall(args: argparse.Namespace) -> Result:
    from unitgen.install import uninstall

    done = uninstall(args.name, Path(args.root or "/"), purge=args.purge, say=_say(args), timeout=args.timeout)
    for path in done.kept:
        print(f"WARNING {path}: changed since unitgen installed it; kept", file=sys.stderr)
    if not args.json:
        purged = f", purged {', '.join(done.purged)}" if done.purged else ""
        print(f"uninstalled {args.name}: {len(done.removed)} paths removed, {len(done.kept)} kept{purged}")
    return 0, {
        "command": "uninstall",
        "name": args.name,
        "root": str(Path(args.root or "/").absolute()),
        "live": done.live,
        "removed": done.removed,
        "kept": done.kept,
        "purged": done.purged,
        "steps": done.steps,
        "config": [o.to_json() for o in done.config],
    }


def cmd_completion(args: argparse.Namespace) -> Result:
    from unitgen.cli.completion import script

    sys.stdout.write(script(args.shell, _parser()))
    return 0, None


def _existing_dir(value: str) -> str:
    if not Path(value).is_dir():
        raise argparse.ArgumentTypeError(f"{value!r} is not a directory (a directory of *.j2 templates)")
    return value


def _timeout(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds greater than 0")
    return seconds


def _timeout_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--timeout",
        type=_timeout,
        metavar="SECONDS",
        help=f"wait at most SECONDS for each systemd step (default: {what} plus 30 s, 90 s for the other"
        " steps); one that takes longer is killed and reported",
    )


def _keep(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of versions, 1 or more")
    return int(value)


# Debian's architecture names publish accepts (unitgen.publish.ARCHITECTURES; repeated here so that
# building the parser loads no publish code).
ARCHITECTURES = ("amd64", "arm64", "armel", "armhf", "i386", "mips64el", "ppc64el", "riscv64", "s390x")


def _json_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,  # keeps a --json given before the command
        help="print one JSON document on stdout (schemas/unitgen-output.schema.json); progress goes to stderr",
    )


def _debug_option(p: argparse.ArgumentParser) -> None:
    # Also after the command, as the README writes it ('render x --debug'); SUPPRESS keeps
    # a --debug given before the command when this one is absent.
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="log commands and show tracebacks")


def _signing_options(p: argparse.ArgumentParser, help: str, *, required: bool = False) -> None:
    p.add_argument("--sign", metavar="KEYID", required=required, help=help)
    p.add_argument("--homedir", metavar="DIR", help="gpg's home for --sign (default: $GNUPGHOME or ~/.gnupg)")


def _level(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 9:
        raise argparse.ArgumentTypeError(f"{value!r} is not a level from 1 to 9")
    return int(value)


def _printable(text: str, limit: int = 300) -> str:
    """One line, no control characters, bounded: safe to echo whatever an exception carries."""
    flat = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return flat if len(flat) <= limit else flat[:limit] + "..."


class UsageError(Exception):
    """A bad command line (exit 2), raised instead of argparse's print-and-exit so that --json can
    report it as a document too."""

    def __init__(self, message: str, usage: str) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self.format_usage())


class _Unused:
    """The parser of a command that was not asked for: every option added to it goes nowhere."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


class _Subcommands(argparse._SubParsersAction):  # type: ignore[type-arg]
    """Builds only the asked-for command's parser (argparse's option set-up, ~5 ms for all of them,
    was 4% of a small `unitgen package`); the others are only named, so that `unitgen --help` lists
    them and a wrong name is refused with the list as before."""

    only: str | None = None  # set right after argparse makes this action

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        if self.only is None or name == self.only:
            return super().add_parser(name, **kwargs)
        if "help" in kwargs:  # what argparse's own add_parser records for the list of commands
            self._choices_actions.append(self._ChoicesPseudoAction(name, (), kwargs["help"]))
        self._name_parser_map[name] = _Unused()
        return _Unused()


def _command_of(argv: Sequence[str]) -> str | None:
    """The command in argv: its first word that is not an option (unitgen's own options take no
    value). None (every parser built) when there is none: `unitgen --help`, `--version`."""
    return next((word for word in argv if not word.startswith("-")), None)


def _parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line parser; with `only`, only that command's options are set up."""
    parser = _Parser(prog="unitgen", description="Hardened systemd units, a single-instance launcher and packages.")
    parser.add_argument("--version", action="version", version=f"unitgen {__version__}")
    parser.add_argument("--debug", action="store_true", help="log commands and show tracebacks")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document on stdout (see the command's --json)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", action=_Subcommands)
    if isinstance(sub, _Subcommands):
        sub.only = only

    def command(
        name: str,
        help: str,
        *,
        out: bool = True,
        templates: bool = False,
        batch: bool = False,
        json: bool = False,
        diff: bool = False,
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help)
        if json:
            _json_option(p)
        if diff:
            p.add_argument(
                "--diff",
                action="store_true",
                help="write nothing; show what would change against --out, or else the files installed under --root,"
                " as a unified diff (exit 0: no change, 1: changes)",
            )
            p.add_argument(
                "--root",
                metavar="DIR",
                help="with --diff: where the installed files are looked for when --out does not exist (default: /)",
            )
        if batch:
            # Many services in one process: one interpreter start and one template cache for all.
            p.add_argument(
                "names",
                nargs="+",
                metavar="NAME",
                help="service names; each spec is NAME.toml (or --spec, for one name), each tree build/NAME",
            )
        else:
            p.add_argument("name", help="the service name; the spec is NAME.toml unless --spec says otherwise")
        p.add_argument("--spec", metavar="FILE", help="the spec file (default: ./NAME.toml)")
        if out:
            p.add_argument("--out", metavar="DIR", help="the staging tree (default: build/NAME)")
        if templates:
            p.add_argument(
                "--templates",
                metavar="DIR",
                action="append",
                default=[],
                type=_existing_dir,
                help="a directory of templates that override the built-in ones (repeatable)",
            )
        _debug_option(p)
        return p

    p = command("init", "write a commented starter spec NAME.toml", out=False, json=True)
    p.add_argument("--force", action="store_true", help="overwrite an existing spec")
    p.set_defaults(func=cmd_init)

    p = command(
        "render",
        "render units, launcher and config into a staging tree",
        templates=True,
        batch=True,
        json=True,
        diff=True,
    )
    p.set_defaults(func=cmd_render)

    p = command("check", "systemd-analyze verify and security score of the rendered units", batch=True, json=True)
    p.add_argument(
        "--threshold", type=float, help="highest acceptable exposure score (default: 1.5, or 0.5 with network = false)"
    )
    p.set_defaults(func=cmd_check)

    p = command(
        "package", "render, then build .deb and .rpm packages", templates=True, batch=True, json=True, diff=True
    )
    p.add_argument("--dist", metavar="DIR", default="dist", help="where packages go (default: dist)")
    p.add_argument("--format", choices=["deb", "rpm", "both"], default="both", help="default: both")
    p.add_argument(
        "--compression",
        choices=["gzip", "xz", "zstd"],  # unitgen.package.Compression (not imported to build the parser)
        default="gzip",
        help="payload compression (default: gzip; xz gives ~20%% smaller packages for many times the time;"
        " zstd, for Debian 12+ and RHEL 8+, needs libzstd)",
    )
    p.add_argument("--compression-level", type=_level, metavar="1-9", help="compression level (default: 6; zstd: 3)")
    _signing_options(p, "sign the .rpm with this gpg key (id, fingerprint, user id, or a secret key file);"
                        " a .deb is signed by publishing it")  # fmt: skip
    p.set_defaults(func=cmd_package)

    p = sub.add_parser(
        "publish",
        help="add packages to a signed apt and yum repository of static files",
        description="add .deb and .rpm files to a signed apt repository (REPO) and yum repository (REPO/rpm),"
        " atomically, keeping the newest --keep versions; prints what a host adds to use it",
    )
    p.add_argument("packages", nargs="+", metavar="PACKAGE", help=".deb and .rpm files, e.g. dist/*.deb dist/*.rpm")
    p.add_argument("--repo", metavar="DIR", required=True, help="the repository (made if missing)")
    _signing_options(p, "the gpg key that signs the repository and its .rpm files (id, fingerprint, user id,"
                        " or a secret key file)", required=True)  # fmt: skip
    p.add_argument("--suite", default="stable", help="the apt suite (default: stable)")
    p.add_argument("--component", default="main", help="the apt component (default: main)")
    p.add_argument(
        "--arch",
        action="append",
        choices=ARCHITECTURES,
        help="an architecture the repository publishes, repeatable (default: amd64 and arm64; 'all' packages go"
        " into each)",
    )
    p.add_argument("--keep", type=_keep, default=3, metavar="N", help="versions kept per package (default: 3)")
    p.add_argument("--url", help="where hosts reach REPO, for the lines printed (default: its file: URL)")
    _json_option(p)
    _debug_option(p)
    p.set_defaults(func=cmd_publish)

    p = command(
        "try",
        "(root) start the service in a throw-away real systemd and show how it behaves",
        templates=True,
        json=True,
    )
    p.add_argument("--install", metavar="PACKAGE", help="install this .deb or .rpm instead of the staging tree")
    p.add_argument("--shell", action="store_true", help="open a shell inside the sandbox before tearing it down")
    p.add_argument("--keep", action="store_true", help="leave the sandbox running (see --teardown)")
    p.add_argument("--teardown", action="store_true", help="tear down a sandbox left by --keep")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the service (default 60)")
    p.add_argument("--credential", action="append", default=[], metavar="ID=@FILE",
                   help="a credential of the spec for this trial, its value read from FILE (repeatable)")
    p.add_argument("--fleet", type=int, metavar="N", help="[lock] scope = \"fleet\": N sandboxed hosts (2-5) and a real"
                   " etcd cluster: who holds the lock, a partition, the takeover, the journal entries")
    p.set_defaults(func=cmd_try)

    p = command(
        "install",
        "(root) render, then install the service onto this host with a manifest, enable and start it",
        out=False,
        templates=True,
        json=True,
    )
    p.add_argument("--root", metavar="DIR", help="install under DIR, offline: not started (default: /)")
    _timeout_option(p, "for start or restart, the units' TimeoutStartSec= and TimeoutStopSec=")
    p.set_defaults(func=cmd_install)

    p = sub.add_parser(
        "uninstall",
        help="(root) stop, disable and remove a service 'unitgen install' installed",
        description="(root) stop, disable and remove exactly the unchanged files of NAME's manifest",
    )
    p.add_argument("name", help="the service name")
    p.add_argument(
        "--purge", action="store_true", help="also remove the state directories the install created, and config files"
    )
    p.add_argument("--root", metavar="DIR", help="the root it was installed under (default: /)")
    _timeout_option(p, "for stop, the units' TimeoutStopSec=")
    _json_option(p)
    _debug_option(p)
    p.set_defaults(func=cmd_uninstall)

    p = sub.add_parser(
        "completion",
        help="print a shell completion script",
        description="print the completion script for SHELL; e.g. source <(unitgen completion bash)",
    )
    p.add_argument("shell", choices=["bash", "zsh", "fish"], help="the shell")
    p.set_defaults(func=cmd_completion)
    return parser


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C so that every `finally` and cleanup path runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    # Later signals must not cut the cleanup the first one started short (temporary trees,
    # sandboxes): they are noted and otherwise ignored. A Python handler rather than SIG_IGN,
    # which children started during the cleanup would inherit.
    for other in _STOP_SIGNALS:
        signal.signal(other, _already_stopping)
    raise Interrupted(signum)


def _already_stopping(signum: int, frame: FrameType | None) -> None:
    print(f"{signal.Signals(signum).name}: already stopping, cleaning up", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    for signum in _STOP_SIGNALS:
        signal.signal(signum, _on_stop_signal)
    argv = list(sys.argv[1:] if argv is None else argv)
    # Looked for before parsing: a bad command line is reported as a JSON document too.
    if "--json" not in argv:
        return _main(argv)[0]
    from unitgen.cli.report import json_stdout

    with json_stdout() as emit:
        code, document = _main(argv)
        emit(document)
    return code


def _main(argv: list[str]) -> Result:
    try:
        try:
            args = _parser(_command_of(argv)).parse_args(argv)
            if args.json and args.command == "completion":  # --json before the command
                raise UsageError("completion prints a shell script; --json does not apply to it", "")
        except UsageError as exc:
            sys.stderr.write(exc.usage)
            print(f"unitgen: error: {exc.message}", file=sys.stderr)
            return 2, error_document(exc.message, "'unitgen COMMAND --help' lists the options")
        if args.debug:
            import logging

            logging.basicConfig(level=logging.DEBUG, format="%(message)s")
        # Otherwise no handler: the warnings and errors of unitgen's loggers (unitgen.run) reach
        # stderr through logging's last resort, as "%(message)s" too, and `logging` (~5 ms) is
        # imported only by the code that logs (a small `package` loads none).
        return _run(args)
    except KeyboardInterrupt as exc:
        # The shell's convention, 128 + the signal: 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP.
        stopped = exc.signum if isinstance(exc, Interrupted) else int(signal.SIGINT)
        message = f"interrupted ({signal.Signals(stopped).name}); cleaned up"
        print(message, file=sys.stderr)
        return 128 + stopped, error_document(message)


def error_document(
    message: str, hint: str | None = None, *, file: str | None = None, key: str | None = None
) -> dict[str, Any]:
    """The --json form of an error: {"error": {"message", "hint", "file"?, "key"?}}."""
    error: dict[str, Any] = {"message": message, "hint": hint}
    if file is not None:
        error["file"] = file
    if key:
        error["key"] = key
    return {"error": error}


def _run(args: argparse.Namespace) -> Result:
    try:
        return args.func(args)  # type: ignore[no-any-return]
    except UnitgenError as exc:
        if args.debug:
            raise
        print(f"ERROR {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  hint: {exc.hint}", file=sys.stderr)
        # A spec error knows its file and key (unitgen.spec.fields.SpecError).
        return 1, error_document(exc.message, exc.hint, file=getattr(exc, "where", None), key=getattr(exc, "key", None))
    except OSError as exc:
        # A file system problem the checks above did not foresee (disk full, permissions):
        # say it plainly; --debug shows where.
        if args.debug:
            raise
        print(f"ERROR {exc}", file=sys.stderr)
        return 1, error_document(str(exc), file=None if exc.filename is None else str(exc.filename))
    except Exception as exc:
        # A bug in unitgen: one line, not a traceback, unless asked for (--debug, or the test
        # suite's UNITGEN_RAISE_INTERNAL_ERRORS=1, so that a bug never hides behind this line).
        if args.debug or os.environ.get(RAISE_INTERNAL_ERRORS) == "1":
            raise
        what = _printable(f"{type(exc).__name__}: {exc}")
        print(f"ERROR internal error: {what} (a bug in unitgen; run with --debug for the traceback)", file=sys.stderr)
        return 1, error_document(f"internal error: {what}", "a bug in unitgen; run with --debug for the traceback")


if __name__ == "__main__":
    sys.exit(main())
