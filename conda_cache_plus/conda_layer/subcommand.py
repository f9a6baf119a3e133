"""``conda cache``: what differs when conda runs the verbs (its options, its settings)."""

from __future__ import annotations

import argparse

from .compat import conda_context, install_host


def add_conda_common(parser, *, destructive: bool, networking: bool) -> None:
    """conda's own output, prompt and networking options, as its verbs have them."""
    from conda.cli.helpers import add_output_and_prompt_options, add_parser_json

    if destructive:
        add_output_and_prompt_options(parser)
    else:
        add_parser_json(parser)
    if networking:
        from conda.cli.helpers import add_parser_networking

        add_parser_networking(parser)


def run_from_conda(args: argparse.Namespace):
    """The settings of one ``conda cache`` verb, from conda's context (conda parsed the args)."""
    from ..layouts.caches import resolve_pkgs_dirs
    from ..ui.output import Run

    install_host()
    ctx = conda_context()
    pkgs_dirs, origin = resolve_pkgs_dirs(getattr(args, "cache_dirs", None), use_conda=True)
    return Run(
        json=bool(ctx.json),
        quiet=bool(ctx.quiet),
        verbose=int(ctx.verbosity or 0),
        dry_run=bool(ctx.dry_run),
        yes=bool(ctx.always_yes),
        offline=bool(ctx.offline),
        console=str(getattr(ctx, "console", "classic")),
        conda=True,
        pkgs_dirs=pkgs_dirs,
        pkgs_origin=origin,
        fetch_threads=int(getattr(ctx, "fetch_threads", 5) or 5),
        args=args,
    )
