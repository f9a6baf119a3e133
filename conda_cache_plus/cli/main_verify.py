"""`conda cache verify` (placeholder until its issue lands)."""

from __future__ import annotations

from ..exceptions import UsageError


def configure_parser(parser) -> None:
    parser.add_argument("specs", nargs="*", metavar="SPEC")


def execute(args, run) -> int:
    raise UsageError("`verify` is not available yet")
