"""conda's ``plain`` reporter backend (``--console plain``, ``console: plain``, ``CONDA_CONSOLE``).

For logs and files (CI, cron, batch jobs), where the classic backend hides its bars (stdout is not a
terminal) or garbles them (carriage returns and escapes in a log). The rendering lives in
:mod:`conda_cache_plus.ui.plain`, which does not import conda; this module gives it conda's ABCs and
asks conda what only conda knows (``--quiet``, environment names, the active prefix).

Imported only from the ``conda_reporter_backends`` hook, so only when conda asks for backends.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

from conda.plugins.types import (
    CondaReporterBackend,
    ProgressBarBase,
    ReporterRendererBase,
    SpinnerBase,
)

from ..ui import plain

NAME = "plain"
DESCRIPTION = (
    "Plain lines for logs and files: no escapes or carriage returns, progress as start/done "
    "lines with periodic totals; prompts answer as classic's do"
)


class PlainCondaProgressBar(plain.PlainProgressBar, ProgressBarBase):
    pass


class NullCondaProgressBar(plain.NullProgressBar, ProgressBarBase):
    pass


class PlainCondaSpinner(plain.PlainSpinner, SpinnerBase):
    pass


class NullCondaSpinner(plain.NullSpinner, SpinnerBase):
    pass


class PlainReporterRenderer(plain.PlainRenderer, ReporterRendererBase):
    """conda instantiates this with no arguments, once per style it renders."""

    @property
    def stream(self):
        # conda writes its spinners, bars and prompts to stdout; a log of `conda create > log`
        # keeps them in order with everything else that way
        return sys.stdout

    @classmethod
    def _default_stream(cls):
        return sys.stdout

    @classmethod
    @contextmanager
    def progress_bar_context_manager(cls):
        with super().progress_bar_context_manager() as batch:
            if _opened_by_condas_fetch():
                # conda reports 100% after the download and again after the extraction
                batch.completions_needed = 2
                batch.lead_newline = _conda_left_line_open()
            yield batch

    def quiet(self) -> bool:
        from conda.base.context import context

        return bool(context.quiet)

    def envs_row(self, prefix: str, details: dict | None, show_size: bool) -> dict:
        if details:
            return super().envs_row(prefix, details, show_size)
        from conda.base.context import context
        from conda.common.path import paths_equal
        from conda.core.prefix_data import PrefixData

        pd = prefix if isinstance(prefix, PrefixData) else PrefixData(prefix)
        path = str(getattr(pd, "prefix_path", prefix))
        active = bool(context.active_prefix) and paths_equal(path, context.active_prefix)
        is_frozen = getattr(pd, "is_frozen", None)  # conda >= 25.5
        size = None
        if show_size and hasattr(pd, "size"):
            try:
                size = pd.size()
            except OSError:
                size = None
        return {
            "name": getattr(pd, "name", None) or super().envs_row(path, None, False)["name"],
            "active": active,
            "frozen": bool(is_frozen()) if callable(is_frozen) else False,
            "size": size,
            "prefix": path,
        }

    def progress_bar(self, description: str, **kwargs) -> ProgressBarBase:
        kwargs.pop("enabled", None)  # see PlainRenderer.progress_bar
        if self.quiet():
            return NullCondaProgressBar(description)
        return PlainCondaProgressBar(description, stream=self.stream, **kwargs)

    def spinner(self, message: str, failed_message: str = "failed\n") -> SpinnerBase:
        if self.quiet():
            return NullCondaSpinner(message, failed_message)
        return PlainCondaSpinner(message, failed_message, stream=self.stream)


def _opened_by_condas_fetch() -> bool:
    """Whether conda's fetch pipeline (``ProgressiveFetchExtract.execute``) opened this batch.

    Nothing tells a backend who opened a batch, so look at the caller: ``with`` → contextlib's
    ``__enter__`` → our generator → this function.
    """
    frame = sys._getframe(1)
    for _ in range(6):
        if frame is None:
            return False
        if frame.f_globals.get("__name__") == "conda.core.package_cache_data":
            return True
        frame = frame.f_back
    return False


def _conda_left_line_open() -> bool:
    """Whether conda's fetch pipeline just printed its heading without a newline: it does so
    off a terminal, unless --verbose, --quiet or --json made it print nothing."""
    from conda.base.context import context

    if context.verbose or context.quiet or context.json:
        return False
    try:  # conda >= 26.7
        from conda.common.terminal import is_tty, term_dumb

        on_terminal = is_tty() and not term_dumb()
    except ImportError:  # conda 24.11 to 26.6 decided on a flag computed at import
        from conda.common.io import IS_INTERACTIVE

        on_terminal = IS_INTERACTIVE
    return not on_terminal


def plain_backend() -> CondaReporterBackend:
    return CondaReporterBackend(name=NAME, description=DESCRIPTION, renderer=PlainReporterRenderer)
