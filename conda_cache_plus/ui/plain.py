"""The ``plain`` renderer: output for logs and files (CI, cron, batch jobs).

No ANSI escapes and no carriage returns; progress as whole lines (one when a task starts, one when
it ends, and throttled aggregate lines across every bar running at the same time); spinners as a
start line and a done line; prompts that state their default and, like conda's classic console,
take it when stdin is closed (a backend decides how things look, never what happens).

It imports nothing from conda: the conda reporter backend
(:mod:`conda_cache_plus.conda_layer.reporter_backend`)
subclasses these classes with conda's ABCs, and the standalone CLI uses them directly.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager

from ..model.sizes import human_bytes, parse_size

# One lock for every write: bars run in conda's fetch threads, and a line must never be split.
_WRITE_LOCK = threading.RLock()

# CSI sequences (colours, cursor moves), OSC sequences (titles, links) and lone ESC pairs.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")

DEFAULT_INTERVAL = 5.0  # seconds between aggregate progress lines


def clean(text: str) -> str:
    """``text`` without terminal control: ANSI escapes, backspaces and carriage returns.

    A lone carriage return means "overwrite this line" on a terminal; in a log the overwritten
    text is still information, so it becomes a line break rather than vanishing.
    """
    text = _ANSI.sub("", text).replace("\b", "")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def write_line(stream, text: str) -> None:
    """Write whole lines atomically; a reader that went away (EPIPE) is not our error."""
    with _WRITE_LOCK:
        try:
            stream.write(clean(text).rstrip("\n") + "\n")
            stream.flush()
        except (BrokenPipeError, ValueError):
            pass


def label_of(description: str) -> str:
    """conda's bar descriptions are columns (``"zlib-1.3  | 87 KB  | "``); a log wants
    ``zlib-1.3 (87 KB)``."""
    parts = [p.strip() for p in clean(description).split("|")]
    parts = [p for p in parts if p]
    if not parts:
        return "task"
    head = " ".join(parts[0].split())
    return f"{head} ({', '.join(parts[1:])})" if len(parts) > 1 else head


def size_of(description: str) -> int | None:
    """The size conda puts in a bar's description, if any (it passes no size otherwise)."""
    for part in clean(description).split("|")[1:]:
        part = part.strip()
        if part and part[0].isdigit():
            try:
                return parse_size(part)
            except ValueError:
                return None
    return None


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class ProgressBatch:
    """Every progress bar running at the same time, summed up into one line at a time.

    Bars report fractions; the batch adds them up (by bytes where sizes are known, else by
    count) and writes ``progress: ...`` at most once every ``interval`` seconds, whichever thread
    reported. ``clock`` is injectable so the throttling is testable without sleeping.
    """

    def __init__(
        self,
        write: Callable[[str], None],
        *,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        summary_on_idle: bool = False,
    ):
        self.write = write
        self.interval = interval
        self.clock = clock
        # A batch without a context manager has no end to report at; it reports when its last
        # bar closes instead (only if there was more than one, or it would repeat the done line).
        self.summary_on_idle = summary_on_idle
        self._lock = threading.Lock()
        # bar -> [size or None, fraction, closed, done]; keyed by the bar itself (not id(), which a
        # finished bar hands on to the next one created)
        self._bars: dict[object, list] = {}
        self.started: float | None = None
        self._last_emit: float | None = None
        self.lines_written = 0
        # How many times a bar reaches 100% before its task is really over. conda's fetch
        # pipeline reports 100% once when the download ends and again when the extraction has
        # finished; whoever opens the batch for it says so (the conda backend does).
        self.completions_needed = 1
        # Set when whoever opened the batch left the current line unfinished (conda prints
        # "Downloading and Extracting Packages: ...working..." without a newline off a terminal).
        self.lead_newline = False
        self._lead_lock = threading.Lock()

    # -- bookkeeping (called by bars) ----------------------------------------------------------
    def add(self, bar, size: int | None) -> None:
        with self._lock:
            self._bars[bar] = [size, 0.0, False, False]

    def update(self, bar, fraction: float) -> None:
        with self._lock:
            now = self.clock()
            if self.started is None:
                self.started = now
                self._last_emit = now
            entry = self._bars.get(bar)
            if entry is not None:
                entry[1] = min(max(fraction, 0.0), 1.0)
            if now - self._last_emit >= self.interval and not self._all_closed():
                self._last_emit = now
                self._emit(self.progress_line(now))

    def mark_done(self, bar) -> None:
        with self._lock:
            entry = self._bars.get(bar)
            if entry is not None:
                entry[3] = True

    def close(self, bar) -> None:
        with self._lock:
            entry = self._bars.get(bar)
            if entry is None or entry[2]:
                return
            entry[2] = True
            if self.summary_on_idle and self._all_closed() and len(self._bars) > 1:
                self._emit(self.summary_line())

    def _all_closed(self) -> bool:
        return all(e[2] for e in self._bars.values())

    def idle(self) -> bool:
        with self._lock:
            return self._all_closed()

    def lead(self) -> str:
        """A newline before the batch's first line if the line it starts on is not empty."""
        with self._lead_lock:
            if self.lead_newline:
                self.lead_newline = False
                return "\n"
            return ""

    def _emit(self, text: str) -> None:
        self.lines_written += 1
        self.write(self.lead() + text)

    # -- the numbers -----------------------------------------------------------------------------
    def totals(self) -> dict:
        entries = list(self._bars.values())
        known = [e for e in entries if e[0]]
        return {
            "count": len(entries),
            # only what finished: a bar closed by Ctrl-C or a failure is not "done"
            "done": sum(1 for e in entries if e[3]),
            "bytes_total": sum(e[0] for e in known),
            "bytes_done": int(sum(e[0] * e[1] for e in known)),
            "sized": len(known) == len(entries) and bool(entries),
            "fraction": (sum(e[1] for e in entries) / len(entries)) if entries else 1.0,
        }

    def progress_line(self, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        t = self.totals()
        elapsed = max(now - (self.started if self.started is not None else now), 1e-9)
        parts = [f"progress: {t['done']} of {t['count']} done"]
        if t["sized"]:
            parts.append(f"{human_bytes(t['bytes_done'])} of {human_bytes(t['bytes_total'])}")
            rate = t["bytes_done"] / elapsed
            parts.append(f"{human_bytes(int(rate))}/s")
            left = t["bytes_total"] - t["bytes_done"]
            eta = left / rate if rate > 0 else None
        else:
            parts.append(f"{t['fraction']:.0%}")
            eta = elapsed * (1 - t["fraction"]) / t["fraction"] if t["fraction"] > 0 else None
        parts.append(f"ETA {_duration(eta)}" if eta is not None else "ETA unknown")
        return ", ".join(parts)

    def summary_line(self) -> str:
        t = self.totals()
        elapsed = (self.clock() - self.started) if self.started is not None else 0.0
        text = f"progress: {t['done']} of {t['count']} done"
        if t["sized"]:
            text += f", {human_bytes(t['bytes_total'])}"
        return text + f" in {elapsed:.1f}s"


class _DefaultBatches:
    """The batch for bars created without a context manager: one per burst of bars on one
    stream, so the counts restart once everything that was running has finished."""

    def __init__(self):
        self._lock = threading.Lock()
        self._current: ProgressBatch | None = None
        self._stream = None

    def join(self, stream, bar, size: int | None) -> ProgressBatch:
        with self._lock:  # get-or-create and add as one step, or a racing bar starts a new batch
            if self._current is None or self._current.idle() or self._stream is not stream:
                self._current = ProgressBatch(
                    lambda text: write_line(stream, text), summary_on_idle=True
                )
                self._stream = stream
            self._current.add(bar, size)
            return self._current


_DEFAULT_BATCHES = _DefaultBatches()


class NullProgressBar:
    def __init__(self, description: str = "", **kwargs):
        self.description = description

    def update_to(self, fraction) -> None:
        pass

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass

    def fail(self, word: str = "failed") -> None:
        self.close()

    def finish(self) -> None:
        self.update_to(1)


class PlainProgressBar(NullProgressBar):
    """A line when the task starts (its first update), a line when it ends (``close``), and its
    share of the batch's aggregate lines in between.

    Accepts conda's kwargs (``context_manager``, ``enabled``, ``leave``, ``position``) and our
    own ``size`` (bytes; otherwise read from conda's description).
    """

    def __init__(
        self,
        description: str = "",
        stream=None,
        *,
        context_manager=None,
        size: int | None = None,
        clock: Callable[[], float] | None = None,
        **kwargs,
    ):
        super().__init__(description)
        self.stream = stream if stream is not None else sys.stderr
        self.label = label_of(description)
        self.size = size if size is not None else size_of(description)
        self.clock = clock or time.monotonic
        self.fraction = 0.0
        self.started: float | None = None
        self.closed = False
        self.done = False
        self._completions = 0
        self._lock = threading.Lock()
        if isinstance(context_manager, ProgressBatch):
            self.batch = context_manager
            self.batch.add(self, self.size)
        else:
            self.batch = _DEFAULT_BATCHES.join(self.stream, self, self.size)
        self.completions_needed = getattr(self.batch, "completions_needed", 1)

    def _write(self, text: str) -> None:
        write_line(self.stream, self.batch.lead() + text)

    def _start(self) -> None:
        # caller holds self._lock
        if self.started is None:
            self.started = self.clock()
            self._write(f"{self.label}: started")

    def update_to(self, fraction) -> None:
        finished = False
        with self._lock:
            if self.closed:
                return
            self._start()
            self.fraction = float(fraction)
            if self.fraction >= 1 and not self.done:
                self._completions += 1
                if self._completions >= self.completions_needed:
                    # said when it happens, with its own time, not when the whole batch ends
                    self.done = finished = True
                    self._write(f"{self.label}: done in {self.clock() - self.started:.1f}s")
        if finished:
            self.batch.mark_done(self)
        self.batch.update(self, self.fraction)

    def fail(self, word: str = "failed") -> None:
        """Close with ``label: <word>`` (e.g. "refused") instead of "done"."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._write(f"{self.label}: {word}")
        self.batch.close(self)

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            if self.done:
                pass
            elif self.started is None:
                self._write(f"{self.label}: not completed")
            else:
                took = self.clock() - self.started
                if self.fraction < 1:
                    self._write(f"{self.label}: stopped at {self.fraction:.0%} after {took:.1f}s")
                else:  # downloaded, but what came after (extraction) did not finish
                    self._write(f"{self.label}: not completed after {took:.1f}s")
        self.batch.close(self)

    @classmethod
    def get_lock(cls):
        return _WRITE_LOCK


class NullSpinner:
    def __init__(self, message: str, fail_message: str = "failed\n"):
        self.message = message
        self.fail_message = fail_message

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        return False


class PlainSpinner(NullSpinner):
    """``message: started`` on entry, ``message: done`` (or the failure message) on exit."""

    def __init__(self, message: str, fail_message: str = "failed\n", stream=None):
        super().__init__(message, fail_message)
        self.stream = stream if stream is not None else sys.stderr

    def __enter__(self):
        write_line(self.stream, f"{self.message}: started")
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            end = "done"
        else:
            end = " ".join(clean(self.fail_message or "failed").split()) or "failed"
        write_line(self.stream, f"{self.message}: {end}")
        return False


def _stdin_lines():
    stdin = sys.stdin
    if stdin is None or getattr(stdin, "closed", False):
        return ""
    try:
        return stdin.readline()
    except (OSError, ValueError):
        return ""


def _isatty(stream) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):
        return False


class PlainRenderer:
    """Renders for logs. ``stream`` is where progress and spinners go (default stderr, so the
    standalone CLI's stdout holds only results; conda's backend passes stdout, conda's habit)."""

    def __init__(self, stream=None):
        self._stream = stream

    @property
    def stream(self):
        return self._stream if self._stream is not None else sys.stderr

    def quiet(self) -> bool:
        return False

    # -- results ---------------------------------------------------------------------------------
    def render(self, data, **kwargs) -> str:
        if isinstance(data, dict):
            return self.detail_view(data)
        if isinstance(data, (list, tuple)):
            text = "\n".join(str(item) for item in data)
        else:
            text = data if isinstance(data, str) else str(data)
        text = clean(text)
        return text if text.endswith("\n") else text + "\n"

    def detail_view(self, data: dict, **kwargs) -> str:
        """``key : value`` with the keys left-aligned in one column; multi-line values (conda
        pre-indents them for its own layout) are re-indented under this one."""
        if not data:
            return ""
        width = max(len(str(k)) for k in data)
        lines = []
        for key, value in data.items():
            text = clean(str(value)) if value not in (None, "") else "-"
            first, *rest = text.split("\n") or [""]
            lines.append(f"{str(key).ljust(width)} : {first.strip()}".rstrip())
            lines += [" " * (width + 3) + line.strip() for line in rest if line.strip()]
        return "\n".join(lines) + "\n"

    def envs_row(self, prefix: str, details: dict | None, show_size: bool) -> dict:
        """Name, flags and size of one environment; the conda backend asks conda."""
        details = details or {}
        import os

        name = details.get("name") or os.path.basename(prefix.rstrip("/")) or prefix
        return {
            "name": name,
            "active": bool(details.get("active")),
            "frozen": bool(details.get("frozen")),
            "size": details.get("size") if show_size else None,
            "prefix": prefix,
        }

    def envs_list(self, data, **kwargs) -> str:
        show_size = bool(kwargs.get("show_size", False))
        if isinstance(data, dict) and "envs" in data and isinstance(data["envs"], list):
            details = data.get("envs_details") or {}
            items: Iterable = [(p, details.get(p)) for p in data["envs"]]
        elif isinstance(data, dict):
            items = list(data.items())
        else:
            items = [(p, None) for p in data]
        rows = [self.envs_row(str(p), d, show_size) for p, d in items]
        show_size = show_size or any(r["size"] is not None for r in rows)
        headers = ["Name", "Flags"] + (["Size"] if show_size else []) + ["Path"]
        table = []
        for r in rows:
            flags = ",".join(f for f in ("active", "frozen") if r[f]) or "-"
            size = [human_bytes(r["size"]) if r["size"] is not None else "-"] if show_size else []
            table.append([str(r["name"]), flags, *size, r["prefix"]])
        lines = ["conda environments:" if rows else "No conda environments found."]
        if rows:
            widths = [max(len(x) for x in col) for col in zip(headers, *table, strict=True)]
            right = {2} if show_size else set()
            for row in [headers, *table]:
                cells = [
                    c.rjust(widths[i]) if i in right else c.ljust(widths[i])
                    for i, c in enumerate(row)
                ]
                lines.append("  ".join(cells).rstrip())
        return "\n".join(lines) + "\n"

    # -- progress and spinners -------------------------------------------------------------------
    def progress_bar(self, description: str, **kwargs):
        # conda's ``enabled`` is False whenever stdout is not a terminal, which is exactly
        # where this backend is for; only --quiet turns plain progress off.
        kwargs.pop("enabled", None)
        if self.quiet():
            return NullProgressBar(description)
        return PlainProgressBar(description, stream=self.stream, **kwargs)

    @classmethod
    @contextmanager
    def progress_bar_context_manager(cls, stream=None, **kwargs):
        """One batch for the bars created inside; a summary line when it ends."""
        out = stream

        def write(text: str) -> None:
            write_line(out if out is not None else cls._default_stream(), text)

        batch = ProgressBatch(write, **kwargs)
        try:
            yield batch
        finally:
            if batch.started is not None and batch.totals()["count"]:
                write(batch.summary_line())

    @classmethod
    def _default_stream(cls):
        return sys.stderr

    def spinner(self, message: str, failed_message: str = "failed\n"):
        if self.quiet():
            return NullSpinner(message, failed_message)
        return PlainSpinner(message, failed_message, stream=self.stream)

    # -- questions -------------------------------------------------------------------------------
    def prompt(self, message: str = "Proceed", choices=("yes", "no"), default: str = "yes") -> str:
        """Ask on stdout, read one line; answer exactly as conda's classic console does: an
        empty line or a closed stdin (cron, CI, ``< /dev/null``) takes the default, anything
        else not a choice asks again. Only the wording differs: the default is spelled out, and
        an answer nobody typed is written to the log."""
        choices = tuple(choices)
        if default not in choices:
            raise ValueError(f"Default value {default!r} must be part of `choices`")
        question = f"{clean(message)}? [{'/'.join(choices)}, default: {default}] "
        lookup = {"": default}
        for choice in choices:
            lookup.setdefault(choice.lower(), choice)
            lookup.setdefault(choice[:1].lower(), choice)
        while True:
            with _WRITE_LOCK:
                try:
                    sys.stdout.write(question)
                    sys.stdout.flush()
                except (BrokenPipeError, ValueError):
                    pass
            line = _stdin_lines()
            if not line:
                write_line(sys.stdout, f"\n(no answer: stdin is closed; answering {default})")
                return default
            answer = line.strip().lower()
            chosen = lookup.get(answer)
            if chosen is not None:
                if not _isatty(sys.stdin):  # nothing echoed the answer: the log should show it
                    write_line(sys.stdout, chosen)
                return chosen
            write_line(sys.stdout, f"Invalid choice: {answer}")
