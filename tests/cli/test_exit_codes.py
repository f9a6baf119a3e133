"""Every verb against the exit-code table of the README (0 ok, 1 problems found, 2 usage,
3 error, 130 interrupted), as a user runs them: real processes, a prompt answered "n", Ctrl-C
(SIGINT) while a prompt waits."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, run_cli
from fetch_helpers import serve_packages, write_explicit

from conda_cache_plus.cli import VERBS
from conda_cache_plus.exceptions import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PROBLEMS_FOUND,
    EXIT_USAGE,
)

README = os.path.join(REPO, "README.md")


def _damage(pkgs: str) -> None:
    os.unlink(os.path.join(pkgs, "beta-2.1-h1", "info", "paths.json"))


def _explicit(tmp_path, http_server, *, gone: bool = False) -> str:
    good, bad = serve_packages(http_server, [("good", "1", 3), ("gone", "1", 3)])
    if gone:
        os.unlink(os.path.join(http_server.directory, "noarch", bad.fn))
    return write_explicit(tmp_path / "env.txt", http_server, [good, bad] if gone else [good])


# verb -> [(code, how)]: how(tmp_path, cache, http_server) -> argv (after the verb)
CASES = {
    "dir": [(EXIT_OK, lambda t, c, h: ["--pkgs-dir", c])],
    "info": [(EXIT_OK, lambda t, c, h: ["--pkgs-dir", c])],
    "list": [(EXIT_OK, lambda t, c, h: ["--pkgs-dir", c])],
    "usage": [
        (EXIT_OK, lambda t, c, h: ["--pkgs-dir", c]),
        (EXIT_PROBLEMS_FOUND, lambda t, c, h: ["--pkgs-dir", c, "--env", str(t / "nope")]),
    ],
    "verify": [
        (EXIT_OK, lambda t, c, h: ["--pkgs-dir", c]),
        (EXIT_PROBLEMS_FOUND, lambda t, c, h: _damage(c) or ["--pkgs-dir", c]),
        (EXIT_PROBLEMS_FOUND, lambda t, c, h: ["--pkgs-dir", c, "nomatch"]),
    ],
    "repair": [
        (EXIT_OK, lambda t, c, h: ["--pkgs-dir", c, "-y"]),
        (EXIT_PROBLEMS_FOUND, lambda t, c, h: ["--pkgs-dir", c, "nomatch", "-y"]),
        (EXIT_OK, lambda t, c, h: _damage(c) or ["--pkgs-dir", c, "-y", "--offline"]),
    ],
    "remove": [
        (EXIT_OK, lambda t, c, h: ["--pkgs-dir", c, "alpha", "-y"]),
        (EXIT_OK, lambda t, c, h: ["--pkgs-dir", c, "nomatch", "-y"]),
    ],
    "clean": [
        (EXIT_OK, lambda t, c, h: ["--pkgs-dir", c, "--tarballs", "-y"]),
        (EXIT_USAGE, lambda t, c, h: ["--pkgs-dir", c]),  # nothing said about what to clean
    ],
    "export": [(EXIT_OK, lambda t, c, h: ["--pkgs-dir", c, str(t / "channel"), "-y"])],
    "fetch": [
        (EXIT_OK, lambda t, c, h: [_explicit(t, h), "--pkgs-dir", c]),
        (EXIT_ERROR, lambda t, c, h: [_explicit(t, h, gone=True), "--pkgs-dir", c]),
        (EXIT_USAGE, lambda t, c, h: [str(t / "no-such-file.txt"), "--pkgs-dir", c]),
    ],
}

PROMPTING = ("remove", "clean", "repair")


def _listing(pkgs) -> list[str]:
    """The cache's packages (not our own state directory, which reading may create)."""
    return sorted(n for n in os.listdir(pkgs) if not n.startswith("."))


def _prompting_args(verb: str, cache: str) -> list[str]:
    if verb == "repair":
        _damage(cache)
        return ["repair", "--pkgs-dir", cache]
    if verb == "remove":
        return ["remove", "--pkgs-dir", cache, "alpha"]
    return ["clean", "--pkgs-dir", cache, "--tarballs"]


def test_every_verb_has_cases():
    assert set(CASES) == set(VERBS)


@pytest.mark.parametrize(
    ("verb", "i"), [(v, i) for v, cases in CASES.items() for i in range(len(cases))]
)
def test_verb_exit_code(tmp_path, cache, http_server, verb, i):
    code, how = CASES[verb][i]
    proc = run_cli(verb, *how(tmp_path, str(cache), http_server))
    assert proc.returncode == code, proc.stdout + proc.stderr
    if code in (EXIT_OK, EXIT_PROBLEMS_FOUND):
        assert "error:" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_usage_errors_exit_2(verb):
    proc = run_cli(verb, "--no-such-option")
    assert proc.returncode == EXIT_USAGE, proc.stdout + proc.stderr


@pytest.mark.parametrize("verb", PROMPTING)
def test_answering_no_exits_0_and_changes_nothing(cache, verb):
    before = _listing(cache)
    proc = run_cli(*_prompting_args(verb, str(cache)), input="n\n")
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    assert "error" not in proc.stderr and "nothing was changed" in proc.stderr
    assert _listing(cache) == before


@pytest.mark.parametrize("verb", PROMPTING)
def test_ctrl_c_at_the_prompt_exits_130(cache, verb):
    """SIGINT while the prompt waits for an answer (what Ctrl-C at a terminal sends)."""
    argv = [sys.executable, "-m", "conda_cache_plus", *_prompting_args(verb, str(cache))]
    before = _listing(cache)
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    _wait_for_prompt(proc, time.monotonic() + 120)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert _listing(cache) == before


def test_readme_has_the_table():
    with open(README, encoding="utf-8") as fh:
        text = fh.read()
    rows = re.findall(r"^\| `(\w+)` \|", text, re.M)
    assert set(VERBS) <= set(rows), "README exit-code table must list every verb"


# -- the same through conda (`conda cache VERB`, conda's own prompt) ------------------------------
def _wait_for_prompt(proc, deadline: float) -> bytes:
    os.set_blocking(proc.stdout.fileno(), False)
    out = b""
    # conda's classic prompt (the standalone CLI's too) or the plain backend's
    while not re.search(rb"(\(y/\[n\]\)\? |default: no\] )$", out):
        assert proc.poll() is None, out + proc.stderr.read()
        assert time.monotonic() < deadline, out
        out += proc.stdout.read() or b""
        time.sleep(0.05)
    return out


@pytest.mark.parametrize("console", ["classic", "plain"])
def test_conda_cache_remove_no_and_ctrl_c(tmp_path, cache, console):
    from conftest import HAVE_CONDA

    if not HAVE_CONDA:
        pytest.skip("conda is not importable here")
    from conda_world import CondaWorld, needs_plugin

    if needs_plugin.args[0]:
        pytest.skip(needs_plugin.kwargs["reason"])
    world = CondaWorld(tmp_path / "world")
    argv = [sys.executable, "-m", "conda", "cache", "remove", "--pkgs-dir", str(cache), "alpha"]
    argv += ["--console", console]
    before = _listing(cache)
    proc = subprocess.run(argv, input="n\n", capture_output=True, text=True, env=world.env)
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    assert _listing(cache) == before
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=world.env
    )
    _wait_for_prompt(proc, time.monotonic() + 180)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert _listing(cache) == before
