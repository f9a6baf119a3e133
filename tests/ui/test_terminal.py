"""Live progress in a terminal (conda_cache_plus/terminal.py): the lines it draws, and a real
``fetch`` in a real pseudo-terminal (tmux, 80 columns) whose screen is read back."""

from __future__ import annotations

import io
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time

import pytest
from conftest import HAVE_CONDA
from fetch_helpers import serve_packages, write_explicit

from conda_cache_plus.ui import terminal


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def group(width=80, rows=24, clock=None):
    return terminal.LiveGroup(io.StringIO(), clock=clock or Clock(), size=lambda: (width, rows))


@pytest.mark.parametrize("width", [20, 40, 80, 132])
def test_lines_never_reach_the_last_column(width):
    g = group(width)
    g.expect(20, 20 * 1_300_000)
    with g:
        bars = [
            terminal.LiveBar(
                f"{'a-very-long-package-name-' * 2}{i}-1.0-0 | 1.2 MB | ",
                context_manager=g,
                size=1_300_000,
            )
            for i in range(12)
        ]
        for i, b in enumerate(bars):
            b.update_to(i / 12)
        lines = g.lines()
    assert lines and all(len(line) <= width - 1 for line in lines), lines


def test_task_lines_show_sizes_and_the_overall_line_counts_the_whole_job():
    clock = Clock()
    g = group(clock=clock)
    g.expect(20, 20 * 1024 * 1024)
    with g:
        done = [terminal.LiveBar(f"pkg{i}", context_manager=g, size=1024 * 1024) for i in range(12)]
        for b in done:
            b.update_to(1)
            b.close()
        running = terminal.LiveBar("zlib-1.3-0", context_manager=g, size=1024 * 1024)
        running.update_to(0.5)
        clock.now += 10
        lines = g.lines()
    assert lines[0].startswith("zlib-1.3-0") and "512.0 KiB / 1.0 MiB" in lines[0]
    assert "50%" in lines[0]
    overall = lines[-1]
    assert overall.startswith("Total: 12 of 20, 12.5 MiB of 20.0 MiB, ")
    assert "/s, ETA " in overall and "[" in overall


def test_closing_erases_the_region_and_leaves_the_cursor_at_column_0():
    out = io.StringIO()
    g = terminal.LiveGroup(out, clock=Clock(), size=lambda: (80, 24))
    with g:
        bars = [terminal.LiveBar(f"p{i}", context_manager=g, size=10) for i in range(3)]
        for b in bars:
            b.update_to(1)
            b.close()
    text = out.getvalue()
    # the last thing written moves up over every line drawn and clears to the end of the screen
    assert text.endswith("\r\x1b[1A\x1b[J") or text.endswith("\x1b[J")
    assert g.drawn == 0


def test_prompt_looks_like_condas_classic(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("maybe\ny\n"))
    assert terminal.prompt("Proceed", default="no") == "yes"
    out = capsys.readouterr().out
    assert out.startswith("Proceed (y/[n])? Invalid choice: maybe\nProceed (y/[n])? ")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert terminal.prompt("Proceed", default="no") == "no"  # closed stdin: the default


# -- a real terminal ------------------------------------------------------------------------------
TMUX = shutil.which("tmux")
needs_tmux = pytest.mark.skipif(TMUX is None, reason="tmux is not installed")


class Pane:
    """A tmux server of our own (its own socket), one 80x24 window running ``command``."""

    def __init__(self, tmp_path, command: str, env: dict):
        self.socket = str(tmp_path / "tmux.sock")
        script = tmp_path / "run.sh"
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
        script.write_text(f'{exports}{command}\necho "@@rc $?"\nsleep 600\n')
        self._tmux(
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "80",
            "-y",
            "24",
            f"bash --noprofile --norc {shlex.quote(str(script))}",
        )

    def _tmux(self, *args) -> str:
        return subprocess.run(
            [TMUX, "-S", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout

    def screen(self, history: bool = False) -> list[str]:
        args = ["capture-pane", "-p", "-J", "-t", "t"]  # -J: wrapped lines come back joined
        if history:
            args += ["-S", "-2000"]
        return self._tmux(*args).splitlines()

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "t", *keys)

    def wait_for(self, predicate, timeout: float = 240.0, seen: list | None = None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.screen()
            if seen is not None:
                seen.append(lines)
            if predicate(lines):
                return lines
            time.sleep(0.05)
        raise AssertionError("timed out; screen:\n" + "\n".join(self.screen(history=True)))

    def close(self):
        subprocess.run([TMUX, "-S", self.socket, "kill-server"], capture_output=True)


def _world(tmp_path, http_server, slow: float):
    specs = [(f"pkg{i:02d}-with-a-longish-name", "1.0", 5, 200_000) for i in range(20)]
    served = serve_packages(http_server, specs)
    for p in served:
        http_server.behaviour.slow[f"/{p.subdir}/{p.fn}"] = slow
    explicit = write_explicit(tmp_path / "env.txt", http_server, served)
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "TERM": "xterm-256color",
        "CONDA_PKGS_DIRS": str(tmp_path / "pkgs"),
        "CONDARC": str(home / ".condarc"),
        "CONDA_SOLVER": "classic",
        "LANG": "C.UTF-8",
        # a download the server holds until the test has seen its bar must not time out first,
        # however long a loaded machine takes to show it
        "CONDA_REMOTE_READ_TIMEOUT_SECS": "900",
    }
    env.pop("COLUMNS", None)
    return explicit, env


def _command(conda: bool, explicit: str) -> str:
    verb = ["-m", "conda", "cache"] if conda else ["-m", "conda_cache_plus"]
    return " ".join(shlex.quote(a) for a in [sys.executable, *verb, "fetch", explicit])


def _summary_index(lines: list[str], text: str) -> int:
    hits = [i for i, line in enumerate(lines) if text in line]
    assert hits, "\n".join(lines)
    return hits[-1]


@needs_tmux
@pytest.mark.parametrize("conda", [False, True], ids=["conda-cache", "conda cache"])
def test_fetch_in_a_real_terminal_at_80_columns(tmp_path, http_server, conda):
    if conda and not HAVE_CONDA:
        pytest.skip("conda is not importable here")
    explicit, env = _world(tmp_path, http_server, slow=0.02)
    # one download is held half-way until its bar has been seen: load cannot hide it
    gate = threading.Event()
    http_server.behaviour.gates[sorted(http_server.behaviour.slow)[0]] = gate
    if not conda:
        env["CONDA_CACHE_PLUS_NO_CONDA"] = "1"
    pane = Pane(tmp_path, _command(conda, explicit), env)
    try:
        seen: list[list[str]] = []
        try:
            pane.wait_for(
                lambda s: (
                    any(" / " in line and "%" in line and "[" in line for line in s)
                    and any(line.startswith("Total: ") and " of 20" in line for line in s)
                ),
                seen=seen,
            )
        finally:
            gate.set()
        pane.wait_for(lambda s: any(line.startswith("@@rc") for line in s), seen=seen)
        final = pane.screen(history=True)
    finally:
        pane.close()
    assert any(line.startswith("@@rc 0") for line in final), "\n".join(final)
    # while it ran: per-package bars with sizes and an overall line for the whole job (the
    # wait above asserts both were on one screen)
    # what stays: nothing wider than 80, no bar left behind, the summary at column 0
    assert all(len(line) <= 80 for line in final), [line for line in final if len(line) > 80]
    at = _summary_index(final, "package(s) ready in")
    assert final[at].startswith("20 of 20 package(s) ready in "), final[at]
    after_heading = final[_summary_index(final, "Downloading and Extracting Packages") + 1 : at]
    assert not [line for line in after_heading if line.strip()], after_heading


@needs_tmux
def test_ctrl_c_leaves_a_clean_line(tmp_path, http_server):
    explicit, env = _world(tmp_path, http_server, slow=0.3)
    env["CONDA_CACHE_PLUS_NO_CONDA"] = "1"
    pane = Pane(tmp_path, _command(False, explicit), env)
    try:
        pane.wait_for(lambda s: any(line.startswith("Total: ") for line in s))
        pane.keys("C-c")
        pane.wait_for(lambda s: any(line.startswith("@@rc") for line in s))
        final = pane.screen(history=True)
    finally:
        pane.close()
    assert any(line.startswith("@@rc 130") for line in final), "\n".join(final)
    assert all(len(line) <= 80 for line in final)
    at = _summary_index(final, "package(s) ready in")
    assert final[at].split()[1:3] == ["of", "20"] and final[at][0].isdigit(), final[at]
    assert not any(line.startswith("Total: ") or "[#" in line for line in final), final
