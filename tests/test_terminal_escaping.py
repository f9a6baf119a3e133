"""No control character from a name reaches the screen (issue 24).

A cache directory or archive named with escape sequences (another tool, or someone hostile with
write access to a shared cache, can leave one) must not clear, recolour or retitle the terminal
of whoever looks at the cache. Each verb runs in a real pseudo-terminal (``pty``), the way a
user sees it, and every byte that reaches the terminal is read back: none may be a control
character other than line ends, except the live-progress codes our own display draws (none of
these verbs draws any). Under conda the same holds for ``conda cache`` and ``conda doctor -v``.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time

import pytest
from conftest import populate, requires_conda, requires_conda_at_least

# Each name is one way a terminal can be taken over: clear + recolour (CSI), set the window
# title (OSC, ended by BEL), a bare carriage return that lets the rest overwrite the line, a
# C1 control (U+009B, CSI in one character on some terminals), and bytes that are not UTF-8.
EVIL = [
    b"\x1b[2J\x1b[31mevil-1.0-0",
    b"\x1b]0;owned\x07title-1.0-0.conda",
    b"cr\rOK-1.0-0",
    "c1\u009b2Jx-1.0-0".encode(),
    b"bad\xff\xfe-1.0-0",
    b"\x1b[2Jpart-1.0-0.conda.partial",
]
ALLOWED = {b"\r", b"\n", b"\t"}
# What our own display draws (ui/terminal.py, ui/text.py): cursor up N lines, erase to the end of
# the line and below, bold on and off for table headings. None of the names above holds one.
OURS = re.compile(rb"\x1b\[[0-9]*A|\x1b\[[JK]|\x1b\[[01]m")


def run_in_pty(argv: list[str], env: dict, cwd: str, timeout: float = 300) -> tuple[int, bytes]:
    """Run ``argv`` with a pseudo-terminal as stdin, stdout and stderr; (exit code, bytes the
    terminal received)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        argv,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**env, "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "24"},
        cwd=cwd,
        start_new_session=True,
    )
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer has closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
            assert time.monotonic() < deadline, f"{argv} still running after {timeout}s"
        return proc.wait(timeout=timeout), bytes(out)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def control_characters(screen: bytes) -> list[str]:
    """Each control character on the screen (but our live display's), with what surrounds it."""
    assert b"cr\rOK" not in screen  # a carriage return inside a name, replayed
    text = OURS.sub(b"", screen).decode("utf-8", "replace")
    found = []
    for i, c in enumerate(text):
        if (ord(c) < 32 or 0x7F <= ord(c) < 0xA0) and c.encode() not in ALLOWED:
            found.append(repr(text[max(0, i - 40) : i + 40]))
    return found


@pytest.fixture
def evil_cache(tmp_path, build):
    a = build("alpha", "1.0", "0", fmt=".conda")
    b = build("beta", "2.0", "0", fmt=".tar.bz2")
    pkgs = populate(tmp_path / "pkgs", [a, b])
    raw = os.fsencode(pkgs)
    for name in EVIL:
        path = os.path.join(raw, name)
        if name.endswith((b".conda", b".partial")):
            shutil.copyfile(a.path, path)
        else:
            shutil.copytree(os.path.join(raw, os.fsencode(a.dist)), path, symlinks=True)
    with open(os.path.join(pkgs, "urls.txt"), "ab") as fh:
        fh.write(b"https://x.example/noarch/\x1b[2Jurl-1.0-0.conda\n")
    return pkgs


VERBS = [
    ["list"],
    ["info"],
    ["usage"],
    ["verify"],
    ["verify", "-v", "--full"],
    ["repair", "--dry-run"],
    ["remove", "--dry-run", "*"],
    ["clean", "--all", "--dry-run"],
    ["clean", "--temp", "-y"],
    ["export", "--dry-run", "OUT"],
]


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: "-".join(x.strip("-") for x in v))
def test_no_control_character_from_a_name_reaches_the_terminal(evil_cache, tmp_path, verb):
    argv = [a.replace("OUT", str(tmp_path / "out")) for a in verb]
    code, screen = run_in_pty(
        [sys.executable, "-m", "conda_cache_plus", *argv, "--pkgs-dir", evil_cache],
        dict(os.environ, CONDA_CACHE_PLUS_NO_CONDA="1"),
        str(tmp_path),
    )
    assert b"Traceback" not in screen, screen.decode("utf-8", "replace")
    assert code in (0, 1), (code, screen.decode("utf-8", "replace"))
    assert control_characters(screen) == [], screen.decode("utf-8", "replace")
    # the names are shown (escaped), not hidden
    if verb[0] == "verify":
        assert "evil-1.0-0" in screen.decode("utf-8", "replace")


@requires_conda
@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["cache", "verify", "-v"], id="cache-verify"),
        pytest.param(["cache", "clean", "--temp", "-y"], id="cache-clean-temp"),
        pytest.param(
            ["doctor", "-v", "package-cache"],
            marks=[requires_conda_at_least((26, 1), "conda doctor CHECK")],
            id="doctor",
        ),
    ],
)
def test_no_control_character_reaches_the_terminal_under_conda(evil_cache, tmp_path, argv):
    env_prefix = tmp_path / "env"
    (env_prefix / "conda-meta").mkdir(parents=True)
    (env_prefix / "conda-meta" / "history").write_text("")
    home = tmp_path / "home"
    home.mkdir()
    environ = dict(
        os.environ,
        HOME=str(home),
        CONDA_PKGS_DIRS=evil_cache,
        CONDA_SOLVER="classic",
        CONDA_REGISTER_ENVS="false",
        CONDA_ENVS_DIRS=str(tmp_path / "envs"),
        CONDA_OFFLINE="true",
    )
    environ.pop("CONDA_PREFIX", None)
    extra = ["-p", str(env_prefix)] if argv[0] == "doctor" else []
    code, screen = run_in_pty(
        [sys.executable, "-m", "conda", *argv, *extra], environ, str(tmp_path)
    )
    text = screen.decode("utf-8", "replace")
    assert "Traceback" not in text, text
    assert code in (0, 1), (code, text)
    assert control_characters(screen) == [], text


def test_json_carries_every_name_as_valid_utf8(evil_cache):
    """The same names in ``--json``: a valid UTF-8 document (the escapes are JSON's own)."""
    proc = subprocess.run(
        [sys.executable, "-m", "conda_cache_plus", "verify", "--json", "--pkgs-dir", evil_cache],
        capture_output=True,
        env=dict(os.environ, PYTHONIOENCODING="utf-8:strict"),
        timeout=300,
    )
    assert b"Traceback" not in proc.stderr, proc.stderr
    data = json.loads(proc.stdout.decode("utf-8"))
    assert proc.returncode == 1, data
