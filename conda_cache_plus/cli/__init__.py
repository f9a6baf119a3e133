"""The ``conda cache`` command line: one parser, verbs dispatched from a table.

The same verbs run as ``conda cache VERB`` (the plugin; conda parses and owns the context) and as
``conda-cache VERB`` / ``python -m conda_cache_plus VERB`` (standalone; no conda needed). Only how
common options are added and where settings are read differs; verbs see a :class:`~..output.Run`.

Option names avoid prefixes of conda's pre-parser options (``--no-plugins``, ``--json``,
``--debug``, ``--trace``, ``--verbose``) and dests that are conda settings
(``conda/cli/conda_argparse.py``, ``conda/base/context.py``).
"""

from __future__ import annotations

import os
import sys

from .. import __version__

TYPE_CHECKING = False  # typing itself costs a --version a third of its time
if TYPE_CHECKING:
    import argparse

# What a verb imports is what it uses: argparse, the verb's module and its engines are imported
# only once a verb is picked, and ``--version`` imports none of them (benchmarks/bench_startup).


class Verb:
    __slots__ = ("destructive", "module", "networking", "summary")

    def __init__(
        self, module: str, summary: str, destructive: bool = False, networking: bool = False
    ):
        self.module = module
        self.summary = summary
        self.destructive = destructive
        self.networking = networking


# Verb → handler module. Each module has configure_parser(parser) and execute(args, run) -> int.
VERBS: dict[str, Verb] = {
    "dir": Verb("main_dir", "Print the package cache directories, one per line (-v: details)."),
    "info": Verb("main_info", "Show every package cache: location, writability, counts, sizes."),
    "list": Verb("main_list", "List cached packages (optionally matching specs)."),
    "fetch": Verb(
        "main_fetch",
        "Download and extract packages into the cache (from @EXPLICIT files or URLs).",
        destructive=True,
        networking=True,
    ),
    "verify": Verb("main_verify", "Check cached packages against their metadata and checksums."),
    "repair": Verb(
        "main_repair",
        "Re-extract or re-download corrupt cache entries.",
        destructive=True,
        networking=True,
    ),
    "usage": Verb("main_usage", "Show which environments use which cached packages."),
    "remove": Verb("main_remove", "Remove cached packages matching specs.", destructive=True),
    "export": Verb(
        "main_export",
        "Write cached packages into a channel directory (repodata.json per subdir).",
        destructive=True,
    ),
    "clean": Verb(
        "main_clean",
        "Remove cache entries by policy: unused, age, per-name count, size budget, kind.",
        destructive=True,
    ),
}

SUMMARY = "Inspect, verify, repair, fetch and prune conda's package caches."
DESCRIPTION = (
    SUMMARY + "\n\nWorks on every cache in pkgs_dirs (writable first). Destructive verbs ask first,"
    " take -y/--yes and -d/--dry-run, and report what they did. Every verb takes --json."
)


SPECS_HELP = "Only packages matching these specs (name, glob or MatchSpec)."


def add_specs(parser: argparse.ArgumentParser, help: str = SPECS_HELP) -> None:
    """The ``SPEC ...`` positional most verbs take."""
    parser.add_argument("specs", nargs="*", metavar="SPEC", help=help)


def add_level_option(parser: argparse.ArgumentParser, help: str) -> None:
    """``--full``: the verify level (``fast`` unless given), shared by verify and repair."""
    parser.add_argument(
        "--full",
        action="store_const",
        const="full",
        default="fast",
        dest="verify_level",
        help=help,
    )


def _verb_module(verb: str):
    import importlib

    return importlib.import_module(f"{__name__}.{VERBS[verb].module}")


def _add_pkgs_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pkgs-dir",
        dest="cache_dirs",  # not "pkgs_dirs": that dest would become a conda setting
        action="append",
        metavar="DIR",
        help="Use this package cache instead of the configured pkgs_dirs (repeatable).",
    )


def _add_standalone_common(parser: argparse.ArgumentParser, verb: Verb) -> None:
    group = parser.add_argument_group("Output, Prompt, and Flow Control Options")
    group.add_argument(
        "--json", action="store_true", help="Report everything as one JSON document."
    )
    group.add_argument(
        "--console",
        choices=("classic", "plain", "json"),
        default=None,
        help="How to render output (without conda: classic and plain are the same).",
    )
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        dest="verbosity",
        help="Say more (repeatable).",
    )
    group.add_argument("-q", "--quiet", action="store_true", help="Do not show progress.")
    if verb.destructive:
        group.add_argument(
            "-d",
            "--dry-run",
            action="store_true",
            help="Only show what would be done; change nothing.",
        )
        group.add_argument(
            "-y", "--yes", action="store_true", dest="yes", help="Do not ask for confirmation."
        )
    if verb.networking:
        group.add_argument("--offline", action="store_true", help="Do not use the network.")


def _lazy_subparsers_action() -> type:
    """Sub-parsers whose options are added only when their verb is picked.

    conda builds every plugin's parser on every command (``conda install`` included), so
    configuring all verbs up front would import the fetch, verify and clean engines each time.
    Here ``conda cache --help`` needs only the verb table; a verb's options (and its module)
    are loaded when argparse selects that verb, before it parses the verb's arguments.
    """
    global _LazySubParsersAction
    if _LazySubParsersAction is None:
        import argparse

        class LazySubParsersAction(argparse._SubParsersAction):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.pending: dict[str, object] = {}

            def __call__(self, parser, namespace, values, option_string=None):
                configure = self.pending.pop(values[0], None) if values else None
                if configure is not None:
                    configure()
                return super().__call__(parser, namespace, values, option_string)

        _LazySubParsersAction = LazySubParsersAction
    return _LazySubParsersAction


_LazySubParsersAction: type | None = None


def configure_parser(parser: argparse.ArgumentParser, *, conda: bool) -> None:
    """Add the verbs to ``parser`` (conda's ``cache`` subparser, or our top-level parser)."""
    import argparse
    import functools

    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.register("action", "parsers", _lazy_subparsers_action())
    sub = parser.add_subparsers(dest="cache_verb", metavar="VERB", title="verbs")
    sub.required = False
    for name, verb in VERBS.items():
        p = sub.add_parser(
            name,
            help=verb.summary,
            description=verb.summary,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.pending[name] = functools.partial(_configure_verb, p, name, verb, conda)
    parser.set_defaults(_cache_parser=parser)


def _configure_verb(p: argparse.ArgumentParser, name: str, verb: Verb, conda: bool) -> None:
    _verb_module(name).configure_parser(p)
    _add_pkgs_dir(p)
    if conda:
        from ..conda_layer.subcommand import add_conda_common

        add_conda_common(p, destructive=verb.destructive, networking=verb.networking)
    else:
        _add_standalone_common(p, verb)


def run_standalone(args: argparse.Namespace):
    from ..layouts.caches import resolve_pkgs_dirs
    from ..ui.output import Run

    console = getattr(args, "console", None) or os.environ.get("CONDA_CONSOLE") or "classic"
    as_json = bool(getattr(args, "json", False)) or console == "json"
    pkgs_dirs, origin = resolve_pkgs_dirs(getattr(args, "cache_dirs", None), use_conda=False)
    offline_env = os.environ.get("CONDA_OFFLINE", "").lower() in ("1", "true", "yes")
    return Run(
        json=as_json,
        quiet=bool(getattr(args, "quiet", False)),
        verbose=int(getattr(args, "verbosity", 0) or 0),
        dry_run=bool(getattr(args, "dry_run", False)),
        yes=bool(getattr(args, "yes", False)),
        offline=bool(getattr(args, "offline", False)) or offline_env,
        console=console,
        conda=False,
        pkgs_dirs=pkgs_dirs,
        pkgs_origin=origin,
        fetch_threads=int(os.environ.get("CONDA_FETCH_THREADS") or 5),
        args=args,
    )


def _json_error(run, exc: BaseException, code: int) -> None:
    """With --json, stdout must hold one JSON document even when the verb failed before giving
    its result (conda's own --json errors do the same); after a result, stderr says enough."""
    if not getattr(run, "json", False) or code == 0 or run.out.emitted:
        return
    run.out.result(
        {
            "version": 1,
            "error": str(exc),
            "exception_name": type(exc).__name__,
            "exit_code": code,
        },
        None,
    )


# Verbs that make a cache where there is none, or that only say where caches are.
CREATES_CACHES = frozenset({"dir", "fetch"})
# Verbs that act on what the caches hold: a --pkgs-dir that is not a directory leaves them
# nothing to act on, which is not success (verify and repair name it in their own report).
ACTS_ON_CACHES = frozenset({"list", "usage", "remove", "clean", "export"})


def _bad_pkgs_dirs(run) -> int:
    """Name each --pkgs-dir that is not a directory, with the one wording every verb uses
    (``info`` shows the same, ``verify`` reports it as ``not_found``); exit 1 when any is bad."""
    from ..model.cache_paths import pkgs_dir_problem
    from ..ui.text import printable

    bad = [(d, why) for d in run.pkgs_dirs if (why := pkgs_dir_problem(d))]
    for d, why in bad:
        sys.stderr.write(f"error: --pkgs-dir {printable(d)}: {why}; nothing was done.\n")
    if bad and getattr(run, "json", False):
        run.out.result(
            {
                "version": 1,
                "error": "; ".join(f"--pkgs-dir {d}: {why}" for d, why in bad),
                "not_found": [{"kind": "pkgs_dir", "what": d, "reason": why} for d, why in bad],
                "exit_code": 1,
            },
            None,
        )
    return 1 if bad else 0


def _hint_if_no_caches(run) -> None:
    """A brand-new user (no cache anywhere yet) learns how to point us at one."""
    if run.pkgs_origin == "--pkgs-dir" or any(os.path.isdir(d) for d in run.pkgs_dirs):
        return
    from ..ui.text import printable

    sys.stderr.write(
        "hint: no package caches found: pass --pkgs-dir or set CONDA_PKGS_DIRS\n"
        f"  (looked in {printable(', '.join(run.pkgs_dirs)) or 'nothing'})\n"
    )


def dispatch(args: argparse.Namespace, run) -> int:
    """Run the verb; the one place where errors become messages and exit codes."""
    verb = getattr(args, "cache_verb", None)
    if not verb:
        args._cache_parser.print_help()
        return 0
    # here, not at the top: conda imports this module for every command (conda_subcommands)
    from ..exceptions import CachePlusError, exit_code_for

    try:
        if verb in ACTS_ON_CACHES and run.pkgs_origin == "--pkgs-dir" and _bad_pkgs_dirs(run):
            return 1
        if verb not in CREATES_CACHES and not run.quiet:
            _hint_if_no_caches(run)
        return int(_verb_module(verb).execute(args, run) or 0)
    except CachePlusError as exc:
        code = exit_code_for(exc)
        message = str(exc)
        if not run.conda:  # hints name the command the user typed
            message = message.replace("conda cache ", f"{run.command} ")
        from ..ui.text import printable  # here, not at the top: --version stays light

        # exit code 0 (a dry run stopping where it would ask) is news, not an error
        sys.stderr.write(f"{'error: ' if code else ''}{printable(message)}\n")
        _json_error(run, exc, code)
        return code
    except KeyboardInterrupt:
        sys.stderr.write("\nInterrupted. Completed work was kept; partial downloads can resume.\n")
        code = exit_code_for(KeyboardInterrupt())
        _json_error(run, KeyboardInterrupt("interrupted"), code)
        return code
    except BrokenPipeError:
        # `conda cache list | head`: the reader went away; that is not an error.
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        except OSError:
            pass
        return 0


def conda_action(args: argparse.Namespace) -> int:
    """Entry point for ``conda cache`` (conda has parsed args and set up its context)."""
    from ..conda_layer.subcommand import run_from_conda

    return dispatch(args, run_from_conda(args))


def conda_configure_parser(parser: argparse.ArgumentParser) -> None:
    """conda builds every plugin's parser on every command (``conda list`` too), so even the
    verbs' sub-parsers are made only once conda picked ``cache``: its sub-parsers action then
    parses our arguments with this parser's ``parse_known_args``, which configures it first."""

    def parse_known_args(*args, **kwargs):
        del parser.parse_known_args  # from now on the class's own method
        configure_parser(parser, conda=True)
        return parser.parse_known_args(*args, **kwargs)

    parser.parse_known_args = parse_known_args


def _json_usage_errors() -> type:
    """argparse's parser whose usage errors are also a JSON document on stdout (the one a
    verb's usage error gives), beside argparse's usage lines on stderr: for ``--json``. Made
    when needed, as argparse itself is imported only then."""
    import argparse

    class JsonUsageErrors(argparse.ArgumentParser):
        def error(self, message: str):
            import json  # only a usage error needs it: a verb's --json is ui/jsonstream's

            doc = {
                "version": 1,
                "error": f"{self.prog}: {message}",
                "exception_name": "UsageError",
                "exit_code": 2,
            }
            sys.stdout.write(json.dumps(doc, indent=2) + "\n")
            sys.stdout.flush()
            super().error(message)

    return JsonUsageErrors


def _wants_json(argv: list[str]) -> bool:
    if "--json" in argv or "--console=json" in argv:
        return True
    if any(a == "--console" and argv[i + 1] == "json" for i, a in enumerate(argv[:-1])):
        return True
    return os.environ.get("CONDA_CONSOLE") == "json"


def build_standalone_parser(*, json_errors: bool = False) -> argparse.ArgumentParser:
    import argparse

    cls = _json_usage_errors() if json_errors else argparse.ArgumentParser
    # the verbs' sub-parsers are of the same class (argparse's default for add_subparsers)
    parser = cls(prog="conda-cache", add_help=True)
    parser.add_argument("-V", "--version", action="version", version=f"conda-cache {__version__}")
    configure_parser(parser, conda=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``conda-cache`` and ``python -m conda_cache_plus``: the same verbs, no conda needed."""
    if (sys.argv[1:] if argv is None else argv) in (["--version"], ["-V"]):
        # what argparse's version action prints, without building a parser for it
        sys.stdout.write(f"conda-cache {__version__}\n")
        return 0
    from ..conda_layer.compat import install_host_if_importable
    from .quickargs import parse

    install_host_if_importable()
    given = sys.argv[1:] if argv is None else list(argv)
    args = parse(given, VERBS, configure_standalone)  # None: argparse decides
    if args is None:
        args = build_standalone_parser(json_errors=_wants_json(given)).parse_args(given)
    return dispatch(args, run_standalone(args))


def configure_standalone(parser, name: str) -> None:
    """A verb's standalone options, on argparse's sub-parser or quickargs' recorder."""
    _configure_verb(parser, name, VERBS[name], conda=False)
