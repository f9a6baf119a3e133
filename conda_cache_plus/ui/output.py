"""How verbs talk to the user: results, messages, progress, prompts.

Under conda everything goes through conda's reporters (``conda.reporters.render``,
``get_progress_bar``, ``get_spinner``, the backend's ``prompt``), so ``--json`` and
``--console NAME`` apply to our verbs exactly as to conda's own. Without conda the same calls go
to our plain renderer (:mod:`conda_cache_plus.ui.plain`), or to a JSON dump with ``--json``.

Rules every verb keeps: with ``--json`` stdout carries exactly one JSON document (progress goes
nowhere, or to stderr); messages are suppressed by ``--quiet``; warnings go to stderr.
"""

from __future__ import annotations

import sys

from ..exceptions import UsageError
from ..model.host import require_conda_host
from ..model.plainclass import FieldsEq
from .jsonstream import is_plain
from .text import printable, set_console

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Run(FieldsEq):
    """The resolved settings of one verb invocation, wherever they came from (not a
    dataclass: model/plainclass.py says why)."""

    FIELDS = ("json", "quiet", "verbose", "dry_run", "yes", "offline", "console", "conda",
              "pkgs_dirs", "pkgs_origin", "fetch_threads", "args")  # fmt: skip

    def __init__(
        self,
        json: bool = False,
        quiet: bool = False,
        verbose: int = 0,
        dry_run: bool = False,
        yes: bool = False,
        offline: bool = False,
        console: str = "classic",
        conda: bool = False,
        pkgs_dirs: list[str] | None = None,
        pkgs_origin: str = "",
        fetch_threads: int = 5,
        args: Any = None,
    ):
        self.json = json
        self.quiet = quiet
        self.verbose = verbose
        self.dry_run = dry_run
        self.yes = yes
        self.offline = offline
        self.console = console
        self.conda = conda
        self.pkgs_dirs = [] if pkgs_dirs is None else pkgs_dirs
        self.pkgs_origin = pkgs_origin
        self.fetch_threads = fetch_threads
        self.args = args

    @property
    def command(self) -> str:
        """How the user runs us, for hints: ``conda cache`` or ``conda-cache``."""
        return "conda cache" if self.conda else "conda-cache"

    @property
    def out(self) -> Output:
        if not hasattr(self, "_out"):
            self._out = Output(self)
        return self._out


def _json_default(obj):
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if hasattr(obj, "to_json"):
        return obj.to_json()
    return str(obj)


def dumps(data: Any) -> str:
    """The text every verb's ``--json`` prints (``json.dumps(indent=2)``, ui/jsonstream)."""
    from .jsonstream import dumps as stream_dumps

    return stream_dumps(data, _json_default)


class Output:
    def __init__(self, run: Run):
        self.run = run
        self.emitted = False  # whether result() has printed the one JSON document
        set_console("json" if run.json else run.console)

    # -- the verb's result ---------------------------------------------------------------------
    def result(self, data: dict, text: str | None) -> None:
        """Emit the verb's one result: ``data`` as JSON, else ``text`` for people."""
        if self.run.json or self.run.console == "json":
            self.emitted = True
            if self.run.conda:
                # conda's reporter encodes it (indented, in Python): it needs plain data. Most
                # verbs give plain data already; a check costs a fifth of the C encoder's round
                # trip that makes any other data plain (usage --json at 5,000 entries: 14 ms
                # against 68), and conda then writes the same bytes from either.
                if not is_plain(data):
                    import json

                    plain = json.dumps(data, default=_json_default, ensure_ascii=False)
                    data = json.loads(plain)
                require_conda_host().render_json(data)
                sys.stdout.write("\n")
            else:
                from .jsonstream import write

                # written as it is made: at 10^5 entries the text alone is hundreds of MB
                write(data, sys.stdout.write, _json_default)
                sys.stdout.write("\n")
            sys.stdout.flush()
            return
        if text is None or (self.run.quiet and not text):
            return
        self._render_text(text)

    def _render_text(self, text: str) -> None:
        text = printable(text)  # names from the disk never reach the terminal raw
        if self.run.conda:
            # conda.reporters.render(text), whole lines: classic before conda 26.7 returns the
            # text without its newline, and the next output (a live bar) would join that line
            out = require_conda_host().render_text(text)
            if isinstance(out, str) and out and not out.endswith("\n"):
                out += "\n"
            sys.stdout.write(out)
        elif self.run.console == "plain":
            from .plain import PlainRenderer

            sys.stdout.write(PlainRenderer().render(text))
        else:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()

    # -- side messages -------------------------------------------------------------------------
    def message(self, text: str) -> None:
        """A progress note for people; silent with --json or --quiet."""
        if self.run.json or self.run.quiet or self.run.console == "json":
            return
        if self.live:
            from .terminal import active_group

            group = active_group()
            if group is not None:  # above the live bars, which are drawn again below it
                group.print_above(text)
                return
        self._render_text(text)

    @property
    def live(self) -> bool:
        """Live bars (:mod:`.terminal`): the classic console on a terminal, with or without
        conda, unless --quiet, --json or -v (whose lines would tear the bars)."""
        if not hasattr(self, "_live"):
            from .terminal import live_possible

            self._live = (
                self.run.console == "classic"
                and not (self.run.json or self.run.quiet or self.run.verbose)
                and live_possible()
            )
        return self._live

    def warn(self, text: str) -> None:
        sys.stderr.write(f"warning: {printable(text)}\n")
        sys.stderr.flush()

    # -- progress --------------------------------------------------------------------------------
    def progress_bar(self, description: str, **kwargs):
        """A progress bar through the active reporter backend (a no-op one with --json/--quiet)."""
        enabled = not (self.run.json or self.run.quiet or self.run.console == "json")
        description = printable(description)  # it names a package: shown on every backend
        if self.live:
            from .plain import NullProgressBar
            from .terminal import LiveBar

            if not kwargs.pop("enabled", True):
                return NullProgressBar(description)
            return LiveBar(description, **kwargs)
        if self.run.conda:
            kwargs.setdefault("enabled", enabled)
            return require_conda_host().progress_bar(description, **kwargs)
        from .plain import NullProgressBar, PlainRenderer

        if not enabled or self.run.console == "classic":
            # classic off a terminal draws nothing, as conda's does; --console plain logs lines
            return NullProgressBar(description)
        return PlainRenderer().progress_bar(description, **kwargs)

    def progress_group(self):
        """A context manager around a set of concurrent bars; pass what it yields to each bar
        as ``context_manager=`` (conda does the same) so totals and one summary line cover all."""
        if self.live:
            from .terminal import LiveGroup

            return LiveGroup()
        if self.run.conda:
            return require_conda_host().progress_group()
        from .plain import PlainRenderer

        return PlainRenderer.progress_bar_context_manager()

    def spinner(self, message: str, fail_message: str = "failed\n"):
        message = printable(message)
        if self.live and not self.run.conda:
            from .terminal import LiveSpinner

            return LiveSpinner(message, fail_message)
        if self.run.conda:
            return require_conda_host().spinner(message, fail_message)
        from .plain import NullSpinner, PlainRenderer

        if self.run.json or self.run.quiet:
            return NullSpinner(message, fail_message)
        return PlainRenderer().spinner(message, fail_message)

    # -- prompts ---------------------------------------------------------------------------------
    def confirm(self, message: str) -> bool:
        """Ask before anything destructive. Default no; ``-y`` answers yes.

        With ``--json`` there is nobody to ask (and conda's JSON backend would answer yes on its
        own), so ``--json`` without ``--yes`` is refused instead of guessing.
        """
        if self.run.yes:
            return True
        if self.run.json or self.run.console == "json":
            raise UsageError(
                "refusing to change the cache without --yes in --json mode; "
                "add --yes, or --dry-run to see the plan"
            )
        if self.run.conda:
            try:
                answer = require_conda_host().prompt(message, choices=("yes", "no"), default="no")
            except EOFError:
                answer = "no"
            # KeyboardInterrupt goes on up: Ctrl-C at a prompt is an interruption (exit 130)
            return answer in ("yes", "y")
        if self.run.console == "classic":
            # conda's classic prompt, so the question looks the same with and without conda
            from .terminal import prompt

            return prompt(message, choices=("yes", "no"), default="no") == "yes"
        from .plain import PlainRenderer

        return PlainRenderer().prompt(message, choices=("yes", "no"), default="no") == "yes"
