"""The README's commands run verbatim.

Every example output (a ```console block after a ``<!-- run ... -->`` comment) is what its
commands print, run in README order in one scratch directory shown as ``/tmp/demo``
(:func:`test_example_outputs_are_real`; ``UPDATE_README=1`` rewrites them from the run).

The tour (the ```bash block after ``<!-- tour -->``) runs line by line in one bash process in a
scratch directory, with the exit code of every command checked: 0 unless the line ends in
``# exits N``. Lines ending in ``# needs conda`` run only where conda is importable. It runs in
the setup the README describes (the venv activated, conda from a wheel: ``python -m conda``, as
that ``conda`` script refuses), with no environment faked for it. The two commands at the top
must be the ones .ci/run runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HAVE_CONDA

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

EXITS = re.compile(r"#\s*exits\s+(\d+)\s*$")
NEEDS_CONDA = re.compile(r"#\s*needs conda\s*$")


def _fenced_block_after(marker: str) -> str:
    text = README.read_text(encoding="utf-8")
    at = text.find(marker)
    assert at >= 0, f"README.md has no {marker} block"
    match = re.compile(r"```(?:bash|sh|console)?\n(.*?)```", re.S).search(text, at)
    assert match, f"no fenced block after {marker}"
    return match.group(1)


def _commands(block: str) -> list[str]:
    """Shell command lines of a block; continuation lines are joined, comment lines dropped."""
    commands: list[str] = []
    pending = ""
    for raw in block.splitlines():
        line = raw.rstrip()
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        commands.append(pending + line)
        pending = ""
    return commands


def _placeholder(verb: str) -> bool:
    import importlib

    from conda_cache_plus.cli import VERBS

    module = importlib.import_module(f"conda_cache_plus.cli.{VERBS[verb].module}")
    return "placeholder" in (module.__doc__ or "").lower()


def test_top_commands_are_what_ci_runs():
    commands = _commands(_fenced_block_after("<!-- quickstart -->"))
    assert len(commands) == 2, commands
    install_and_run, run_tests = commands
    assert "pip install" in install_and_run and "conda-cache info" in install_and_run
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    extra = re.search(r"pip install -e '\.\[(\w+)\]'", run_tests)
    assert extra, run_tests
    # .ci/run installs the checkout (its path in $repo) editable with the same extra
    assert re.search(r"pip install -q [^\n]*-e \"\$repo\[" + extra.group(1) + r"\]\"", ci), ci
    assert "python -m pytest" in run_tests
    assert '"$py" -m pytest' in ci


def test_every_verb_is_documented():
    from conda_cache_plus.cli import VERBS

    text = README.read_text(encoding="utf-8")
    for verb in VERBS:
        assert f"conda cache {verb}" in text or f"conda-cache {verb}" in text, verb


def test_tour_runs_verbatim(tmp_path):
    for verb in ("fetch", "verify", "repair"):
        if _placeholder(verb):
            pytest.skip(f"`conda-cache {verb}` is still a placeholder; the tour needs it")
    commands = _commands(_fenced_block_after("<!-- tour -->"))
    assert commands

    # the setup the README describes: the venv activated (its bin first on PATH: `python`,
    # `conda-cache`, and with a conda wheel the `conda` script that refuses to run), nothing else
    exe_dir = Path(sys.executable).parent
    bindir = tmp_path / "bin"
    bindir.mkdir()
    if not (exe_dir / "conda-cache").exists():  # not a venv with the project installed
        shim = bindir / "conda-cache"
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m conda_cache_plus "$@"\n')
        shim.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {
        "PATH": os.pathsep.join([str(bindir), str(exe_dir), os.environ.get("PATH", "")]),
        "VIRTUAL_ENV": str(exe_dir.parent),
        "HOME": str(home),
        "TMPDIR": str(scratch),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "CONDA_PKGS_DIRS": str(home / "default-pkgs"),
    }

    script = []
    expected: list[tuple[str, int]] = []
    for command in commands:
        if NEEDS_CONDA.search(command) and not HAVE_CONDA:
            continue
        code = EXITS.search(command)
        expected.append((command, int(code.group(1)) if code else 0))
        script += [command, f'echo "@@rc {len(expected) - 1} $?" >&2']
    proc = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        capture_output=True,
        text=True,
        env=env,
        cwd=scratch,
        timeout=600,
    )
    got = {
        int(m.group(1)): int(m.group(2))
        for m in re.finditer(r"^@@rc (\d+) (\d+)$", proc.stderr, re.M)
    }
    for index, (command, want) in enumerate(expected):
        assert got.get(index) == want, (
            f"README tour line {command!r} exited {got.get(index)}, expected {want}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    if HAVE_CONDA:  # what the README says conda doctor shows
        assert "❌ 1 damaged package(s) in the package caches" in proc.stdout, proc.stdout


# -- example outputs ------------------------------------------------------------------------------
# ``<!-- run`` + optional ``setup: CMD`` lines (run first, output not shown) and ``needs: conda``
# or ``needs: conda 26.1`` + ``-->``, then the ```console block: ``$ CMD`` lines, each followed
# by what it prints (stdout and stderr, as a terminal shows them). A line ``…`` stands for any
# number of lines. Where outputs may differ between runs, only these are compared loosely:
# durations (``0.02s``), dates, and on-disk sizes (whole 4 KiB blocks, which depend on the
# file system); runs of spaces count as one (column widths follow those fields).
RUN_BLOCK = re.compile(r"<!-- run\n(?P<opts>.*?)-->\n```console\n(?P<body>.*?)```", re.S)
SHOWN_ROOT = "/tmp/demo"
_TIME = re.compile(r"\b\d+\.\d+s\b")
_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_BLOCKS = re.compile(r"\b(\d+)\.0 KiB\b")


def _normal(line: str) -> str:
    line = _TIME.sub("<T>", line)
    line = _DATE.sub("<DATE>", line)
    line = _BLOCKS.sub(lambda m: "<DISK>" if int(m.group(1)) % 4 == 0 else m.group(0), line)
    return " ".join(line.split())


def _matches(expected: list[str], actual: list[str]) -> bool:
    """Line by line after :func:`_normal`; an expected ``…`` takes any run of lines."""
    exp = [_normal(x) for x in expected]
    act = [_normal(x) for x in actual]

    def walk(i: int, j: int) -> bool:
        if i == len(exp):
            return j == len(act)
        if exp[i] == "…":
            return any(walk(i + 1, k) for k in range(j, len(act) + 1))
        return j < len(act) and exp[i] == act[j] and walk(i + 1, j + 1)

    return walk(0, 0)


def _parse_block(body: str) -> list[tuple[str, list[str]]]:
    steps: list[tuple[str, list[str]]] = []
    for line in body.rstrip("\n").split("\n"):
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            assert steps, f"output before any command in a README block:\n{body}"
            steps[-1][1].append(line)
    return steps


def _conda_version() -> tuple[int, ...]:
    if not HAVE_CONDA:
        return ()
    import conda

    return tuple(int(p) for p in conda.__version__.split(".")[:2] if p.isdigit())


def _scenario_env(bindir: Path, scratch: str) -> dict:
    env = {
        "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": os.path.join(scratch, "home"),
        "TMPDIR": os.path.join(scratch, "tmp"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "XDG_CACHE_HOME": os.path.join(scratch, "home", ".cache"),
        "CONDA_SOLVER": "classic",
        "CONDA_PKGS_DIRS": os.path.join(scratch, "demo-pkgs"),
        "CONDA_ROOT": os.path.join(scratch, "no-root"),
        "CONDA_PREFIX": os.path.join(scratch, "env"),
        "CONDARC": os.path.join(scratch, "home", ".condarc"),
        "READMETOOLS": str(Path(__file__).resolve().parent / "readme_scenario.py"),
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
    }
    for d in ("home", "tmp", "env/conda-meta"):
        os.makedirs(os.path.join(scratch, d), exist_ok=True)
    Path(scratch, "env", "conda-meta", "history").touch()
    return env


def _shims(bindir: Path) -> None:
    bindir.mkdir()
    for name, target in (
        ("python", '"$@"'),
        ("conda-cache", '-m conda_cache_plus "$@"'),
        ("conda", '-m conda "$@"'),
    ):
        shim = bindir / name
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" {target}\n')
        shim.chmod(0o755)


def run_examples(tmp_path) -> list[tuple[re.Match, list[tuple[str, list[str], list[str]]]]]:
    """Every run block of the README, in order, in one scratch directory; per block, the match
    and (command, expected lines, actual lines) per step. Blocks needing a newer conda (or any
    conda, where there is none) are run for their state changes only and not compared."""
    import shutil
    import tempfile

    text = README.read_text(encoding="utf-8")
    bindir = tmp_path / "bin"
    _shims(bindir)
    # A fixed-length name: sizes that include paths (records) are the same in every run.
    scratch = tempfile.mkdtemp(prefix="demo-", dir="/tmp")
    try:
        env = _scenario_env(bindir, scratch)
        results = []
        for match in RUN_BLOCK.finditer(text):
            opts = [line.strip() for line in match.group("opts").splitlines() if line.strip()]
            needs = [o.split(":", 1)[1].split() for o in opts if o.startswith("needs:")]
            runnable = True
            for need in needs:
                if need[0] == "conda":
                    want = tuple(int(x) for x in need[1].split(".")) if len(need) > 1 else ()
                    runnable &= HAVE_CONDA and _conda_version() >= want
            for opt in opts:
                if opt.startswith("setup:"):
                    cmd = opt.split(":", 1)[1].strip().replace(SHOWN_ROOT, scratch)
                    subprocess.run(
                        ["bash", "-c", cmd],
                        cwd=scratch,
                        env=env,
                        check=True,
                        timeout=600,
                        capture_output=True,
                    )
            steps = []
            last_rc = 0
            for command, expected in _parse_block(match.group("body")):
                if not runnable and (command.startswith("conda ") or " conda " in command):
                    continue
                # each command runs in its own shell: `$?` is the previous command's exit code
                script = command.replace(SHOWN_ROOT, scratch).replace("$?", str(last_rc))
                proc = subprocess.run(
                    ["bash", "-c", script],
                    cwd=scratch,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    timeout=600,
                )
                last_rc = proc.returncode
                actual = proc.stdout.replace(scratch, SHOWN_ROOT).rstrip("\n")
                steps.append((command, expected, actual.split("\n") if actual else []))
            results.append((match, steps if runnable else []))
        return results
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def test_every_output_block_is_generated():
    """A console block showing output is a run block; blocks with commands only are exempt."""
    text = README.read_text(encoding="utf-8")
    generated = {m.start("body") for m in RUN_BLOCK.finditer(text)}
    for m in re.finditer(r"```console\n(.*?)```", text, re.S):
        lines = m.group(1).rstrip("\n").split("\n")
        if all(line.startswith("$ ") for line in lines):
            continue
        assert m.start(1) in generated, f"README block without <!-- run -->:\n{m.group(1)}"


def test_example_outputs_are_real(tmp_path):
    results = run_examples(tmp_path)
    assert results, "README.md has no <!-- run --> blocks"
    if os.environ.get("UPDATE_README"):
        text = README.read_text(encoding="utf-8")
        for match, steps in reversed(results):
            if not steps or any(line == "…" for _c, exp, _a in steps for line in exp):
                continue
            body = "".join(
                f"$ {cmd}\n" + "".join(line + "\n" for line in actual)
                for cmd, _exp, actual in steps
            )
            text = text[: match.start("body")] + body + text[match.end("body") :]
        README.write_text(text, encoding="utf-8")
        return
    for _match, steps in results:
        for command, expected, actual in steps:
            assert _matches(expected, actual), (
                f"README output of `{command}` differs from a real run "
                "(UPDATE_README=1 rewrites it):\n--- README\n"
                + "\n".join(expected)
                + "\n--- real\n"
                + "\n".join(actual)
            )
