"""Live progress and prompts in a terminal: one renderer for ``conda cache`` and ``conda-cache``.

Used when the console is ``classic`` and stdout is a terminal (not dumb), without --quiet, --json
or -v. conda's classic backend draws one tqdm bar per package with a fixed description and no
totals, and leaves the cursor at the 80th column once its bars clear (a full-width line puts the
terminal in its pending-wrap state); the standalone command had no live output at all. Here a
:class:`LiveGroup` owns a region of lines at the bottom of the output: one line per running task
(name, bytes done of total, bar, percent) and one overall line ("12 of 20, 340.0 MiB of 1.2 GiB,
5.1 MiB/s, ETA 12s"). Every line is cut to the terminal's width minus one, so nothing ever wraps;
closing the group erases the region and leaves the cursor at column 0 of its first line, so what
comes next (the summary) starts clean, on Ctrl-C too.

Off a terminal, or with another console, nothing here is used: conda's reporters (``plain``,
``json``, other backends) and the standalone plain lines apply as before.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable

from ..model.sizes import human_bytes
from .plain import _duration
from .text import printable, shorten, shown

# Redraws at most this often (seconds); the first and the last state are always drawn.
MIN_INTERVAL = 0.1
# At most this many task lines (the terminal's height permitting); the rest are counted.
MAX_TASK_LINES = 8

_ACTIVE: list[LiveGroup] = []  # the group on screen, if any (messages print above it)
_ACTIVE_LOCK = threading.Lock()


def live_possible(stream=None) -> bool:
    """Whether ``stream`` (default stdout) is a terminal we can draw on."""
    stream = stream if stream is not None else sys.stdout
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
    term = os.environ.get("TERM", "")
    return tty and term not in ("", "dumb", "unknown")


def terminal_size(stream=None) -> tuple[int, int]:
    """(columns, lines) of the terminal behind ``stream``, ``COLUMNS``/``LINES`` first."""
    stream = stream if stream is not None else sys.stdout
    cols = lines = 0
    try:
        size = os.get_terminal_size(stream.fileno())
        cols, lines = size.columns, size.lines
    except (OSError, ValueError, AttributeError):
        pass
    env_cols, env_lines = os.environ.get("COLUMNS", ""), os.environ.get("LINES", "")
    cols = int(env_cols) if env_cols.isdigit() else cols
    lines = int(env_lines) if env_lines.isdigit() else lines
    return (cols if cols >= 20 else 80), (lines if lines >= 3 else 24)


def _label(description: str) -> str:
    """conda-style descriptions are columns (``"zlib-1.3  | 87 KB  | "``): the first one."""
    head = description.split("|", 1)[0]
    return shown(" ".join(head.split())) or "task"


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "\u2026"[:width]


def bar_cells(fraction: float, width: int) -> str:
    width = max(width, 3)
    inner = width - 2
    full = round(min(max(fraction, 0.0), 1.0) * inner)
    return "[" + "#" * full + "-" * (inner - full) + "]"


class LiveBar:
    """One task's line. conda's ProgressBarBase interface (``update_to``, ``refresh``,
    ``close``, ``finish``) plus our ``size`` (bytes) for the "done of total" column."""

    def __init__(
        self,
        description: str = "",
        *,
        context_manager: LiveGroup | None = None,
        size: int | None = None,
        stream=None,
        label: str | None = None,
        **kwargs,
    ):
        self.description = description
        self.label = label or _label(description)
        self.size = size
        self.fraction = 0.0
        self.closed = False
        self._own_group = not isinstance(context_manager, LiveGroup)
        self.group = context_manager if not self._own_group else LiveGroup(stream=stream)
        if self._own_group:
            self.group.__enter__()
        self.group.add(self)

    def set_size(self, size: int) -> None:
        """The task's bytes, once known (a download learns them from the server)."""
        if size and self.size != size:
            self.size = size

    def update_to(self, fraction) -> None:
        if self.closed:
            return
        self.fraction = min(max(float(fraction), 0.0), 1.0)
        self.group.changed()

    def refresh(self) -> None:
        self.group.changed(force=True)

    def finish(self) -> None:
        self.update_to(1)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.group.remove(self)
        if self._own_group:
            self.group.__exit__(None, None, None)

    @classmethod
    def get_lock(cls):
        return None

    def line(self, width: int) -> str:
        pct = f"{self.fraction * 100:3.0f}%"
        if self.size:
            sizes = (
                f"{human_bytes(int(self.size * self.fraction)):>9} / {human_bytes(self.size):<9}"
            )
        else:
            sizes = ""
        name_width = min(max(len(self.label), 12), 28)
        fixed = name_width + 1 + (len(sizes) + 1 if sizes else 0) + 1 + len(pct)
        bar_width = width - fixed
        if bar_width < 8:  # a narrow terminal: drop the sizes first, then shorten the name
            sizes, fixed = "", name_width + 2 + len(pct)
            bar_width = width - fixed
        if bar_width < 8:
            name_width = max(width - 8 - 2 - len(pct), 4)
            bar_width = width - name_width - 2 - len(pct)
        name = shorten(self.label, name_width).ljust(name_width)
        parts = [name] + ([sizes] if sizes else []) + [bar_cells(self.fraction, bar_width), pct]
        return _fit(" ".join(parts), width)


class LiveGroup:
    """The live region: the task lines and one overall line. Pass it to bars as
    ``context_manager=``; :meth:`expect` announces the whole job so the overall line can say
    "12 of 20" before the last task has started."""

    def __init__(
        self,
        stream=None,
        *,
        clock: Callable[[], float] = time.monotonic,
        size: Callable[[], tuple[int, int]] | None = None,
        title: str = "Total",
    ):
        self.stream = stream if stream is not None else sys.stdout
        self.clock = clock
        self.size = size or (lambda: terminal_size(self.stream))
        self.title = title
        self.lock = threading.RLock()
        self.bars: list[LiveBar] = []
        self.finished: list[tuple[int | None, float]] = []  # (size, fraction) of closed bars
        self.expected_count: int | None = None
        self.expected_bytes: int | None = None
        self.started: float | None = None
        self.drawn = 0  # lines of ours on screen, above the cursor
        self._last_draw = 0.0
        self.closed = False

    # -- the job ---------------------------------------------------------------------------------
    def expect(self, count: int, total_bytes: int | None = None) -> None:
        with self.lock:
            self.expected_count = count
            self.expected_bytes = total_bytes or None

    def add(self, bar: LiveBar) -> None:
        with self.lock:
            if self.started is None:
                self.started = self.clock()
            self.bars.append(bar)
        self.changed(force=True)

    def remove(self, bar: LiveBar) -> None:
        with self.lock:
            if bar in self.bars:
                self.bars.remove(bar)
                self.finished.append((bar.size, bar.fraction))
        self.changed(force=True)

    def changed(self, force: bool = False) -> None:
        with self.lock:
            now = self.clock()
            if self.closed or (not force and now - self._last_draw < MIN_INTERVAL):
                return
            self._last_draw = now
            self._draw(self.lines())

    # -- what is shown (pure: tests call it with any width) --------------------------------------
    def totals(self) -> dict:
        with self.lock:
            states = [(b.size, b.fraction) for b in self.bars] + self.finished
            done = sum(1 for _s, f in self.finished if f >= 1)
            count = max(self.expected_count or 0, len(states))
            bytes_done = int(sum((s or 0) * f for s, f in states))
            return {"count": count, "done": done, "bytes_done": bytes_done}

    def overall_line(self, width: int) -> str:
        t = self.totals()
        elapsed = self.clock() - self.started if self.started is not None else 0.0
        parts = [f"{t['done']} of {t['count']}"]
        eta = None
        rate = t["bytes_done"] / elapsed if elapsed > 0.5 and t["bytes_done"] else None
        if self.expected_bytes:  # the whole job's bytes are known: a byte ETA
            parts.append(f"{human_bytes(t['bytes_done'])} of {human_bytes(self.expected_bytes)}")
            if rate:
                eta = max(self.expected_bytes - t["bytes_done"], 0) / rate
            fraction = min(t["bytes_done"] / self.expected_bytes, 1.0)
        else:  # sizes come as downloads start: bytes so far, ETA by count
            if t["bytes_done"]:
                parts.append(human_bytes(t["bytes_done"]))
            states = [b.fraction for b in self.bars] + [f for _s, f in self.finished]
            fraction = sum(states) / t["count"] if t["count"] else 0.0
            if elapsed > 0.5 and fraction > 0:
                eta = elapsed * (1 - fraction) / fraction
        if rate:
            parts.append(f"{human_bytes(int(rate))}/s")
        if eta is not None:
            parts.append(f"ETA {_duration(eta)}")
        text = f"{self.title}: " + ", ".join(parts)
        bar_width = width - len(text) - 1
        if bar_width >= 12:
            return f"{text} {bar_cells(fraction, min(bar_width, 30))}"
        return _fit(text, width)

    def lines(self) -> list[str]:
        cols, rows = self.size()
        width = cols - 1  # never the last column: a full line leaves the cursor pending a wrap
        with self.lock:
            room = max(min(MAX_TASK_LINES, rows - 2), 0)
            shown = self.bars[:room]
            out = [b.line(width) for b in shown]
            if len(self.bars) > len(shown):
                out.append(_fit(f"  ... and {len(self.bars) - len(shown)} more running", width))
            if len(self.bars) > 1 or self.expected_count:
                out.append(self.overall_line(width))
            return out

    # -- drawing ---------------------------------------------------------------------------------
    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (BrokenPipeError, ValueError, OSError):
            self.closed = True

    def _erase_codes(self) -> str:
        return f"\r\x1b[{self.drawn}A\x1b[J" if self.drawn else "\r\x1b[J"

    def _draw(self, lines: list[str]) -> None:
        # caller holds self.lock; the cursor is at column 0 below the region
        out = [f"\x1b[{self.drawn}A" if self.drawn else "", "\r"]
        out += [f"{line}\x1b[K\n" for line in lines]
        out.append("\x1b[J")
        self.drawn = len(lines)
        self._write("".join(out))

    def print_above(self, text: str) -> None:
        """A message while the region is on screen: above it, then the region again."""
        with self.lock:
            self._write(self._erase_codes() + printable(text.rstrip("\n")) + "\n")
            self.drawn = 0
            if not self.closed:
                self._draw(self.lines())

    def __enter__(self) -> LiveGroup:
        with _ACTIVE_LOCK:
            _ACTIVE.append(self)
        return self

    def __exit__(self, *exc) -> None:
        with self.lock:
            if not self.closed:
                self.closed = True
                if self.drawn:
                    self._write(self._erase_codes())
                self.drawn = 0
        with _ACTIVE_LOCK:
            if self in _ACTIVE:
                _ACTIVE.remove(self)


def active_group() -> LiveGroup | None:
    with _ACTIVE_LOCK:
        return _ACTIVE[-1] if _ACTIVE else None


class LiveSpinner:
    """``message: ...working... done`` on one line, as conda's quiet spinner prints it."""

    def __init__(self, message: str, fail_message: str = "failed\n", stream=None):
        self.message = message
        self.fail_message = fail_message
        self.stream = stream if stream is not None else sys.stdout

    def __enter__(self):
        self.stream.write(f"{self.message}: ...working... ")
        self.stream.flush()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.stream.write("done\n" if exc_type is None else self.fail_message)
        self.stream.flush()
        return False


def prompt(message: str = "Proceed", choices=("yes", "no"), default: str = "yes") -> str:
    """conda's classic prompt, ``Proceed ([y]/n)? ``, for the standalone command: the same
    question looks the same with and without conda. A closed stdin answers the default."""
    choices = tuple(choices)
    if default not in choices:
        default = choices[-1]
    options = "/".join(f"[{c[0]}]" if c == default else c[0] for c in choices)
    question = f"{message} ({options})? "
    lookup = {alt: c for c in choices for alt in (c, c[0])}
    lookup[""] = default
    while True:
        sys.stdout.write(question)
        sys.stdout.flush()
        try:
            line = sys.stdin.readline() if sys.stdin is not None else ""
        except (OSError, ValueError):
            line = ""
        if not line:  # end of input: nobody can answer
            sys.stdout.write("\n")
            return default
        answer = line.strip().lower()
        if answer in lookup:
            sys.stdout.write("\n")
            sys.stdout.flush()
            return lookup[answer]
        sys.stdout.write(f"Invalid choice: {answer}\n")
