"""The ``plain`` renderer: output for logs and files (CI, cron, batch jobs).

No ANSI escapes and no carriage returns; progress as whole lines; prompts that state their
default and never hang on a closed stdin. It imports nothing from conda: the conda reporter
backend (:mod:`conda_cache_plus.reporter_backend`) wraps these classes, and the standalone CLI uses
them directly.
"""

from __future__ import annotations

import sys
import threading
import time


class PlainRenderer:
    def render(self, data, **kwargs) -> str:
        text = data if isinstance(data, str) else str(data)
        return text if text.endswith("\n") else text + "\n"

    def prompt(self, message: str = "Proceed", choices=("yes", "no"), default: str = "yes") -> str:
        options = "/".join(f"[{c[0]}]" if c == default else c[0] for c in choices)
        sys.stdout.write(f"{message} ({options})? ")
        sys.stdout.flush()
        try:
            line = sys.stdin.readline() if sys.stdin is not None else ""
        except (OSError, ValueError):
            line = ""
        if not line:  # stdin closed: never hang, never assume yes
            sys.stdout.write("\n(no answer: stdin is closed)\n")
            return "no" if "no" in choices else default
        answer = line.strip().lower()
        if not answer:
            return default
        for choice in choices:
            if answer in (choice, choice[0]):
                return choice
        return "no" if "no" in choices else default


class NullProgressBar:
    def __init__(self, description: str = "", **kwargs):
        self.description = description

    def update_to(self, fraction) -> None:
        pass

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass

    def finish(self) -> None:
        self.update_to(1)


class PlainProgressBar(NullProgressBar):
    """A line when the task starts and when it ends; in between at most one line every few
    seconds."""

    interval = 5.0
    _lock = threading.Lock()

    def __init__(self, description: str = "", stream=None, **kwargs):
        super().__init__(description)
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self.last = self.started
        self.fraction = 0.0
        self.closed = False
        self._line(f"{self.description.strip()} ... started")

    def _line(self, text: str) -> None:
        with self._lock:
            self.stream.write(text + "\n")
            self.stream.flush()

    def update_to(self, fraction) -> None:
        self.fraction = float(fraction)
        now = time.monotonic()
        if now - self.last >= self.interval and self.fraction < 1:
            self.last = now
            self._line(f"{self.description.strip()} ... {self.fraction:4.0%}")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            took = time.monotonic() - self.started
            self._line(f"{self.description.strip()} ... done ({took:.1f}s)")


class NullSpinner:
    def __init__(self, message: str, fail_message: str = "failed\n"):
        self.message = message
        self.fail_message = fail_message

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        return False


class PlainSpinner(NullSpinner):
    def __enter__(self):
        sys.stderr.write(f"{self.message} ... started\n")
        sys.stderr.flush()
        return self

    def __exit__(self, exc_type, exc, tb):
        end = "done" if exc_type is None else self.fail_message.strip()
        sys.stderr.write(f"{self.message} ... {end}\n")
        sys.stderr.flush()
        return False
