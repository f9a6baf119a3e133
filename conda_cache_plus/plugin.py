"""conda plugin hooks. Hook functions only: conda imports this module on every command, so
everything heavy is imported inside the hooks, and only when conda calls them."""

from __future__ import annotations

from conda import plugins


@plugins.hookimpl
def conda_subcommands():
    from .cli import SUMMARY, conda_action, conda_configure_parser

    yield plugins.types.CondaSubcommand(
        name="cache",
        summary=SUMMARY,
        action=conda_action,
        configure_parser=conda_configure_parser,
    )
