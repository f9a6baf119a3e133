"""The README's commands run verbatim.

The tour (the ```bash block after ``<!-- tour -->``) runs line by line in one bash process in a
scratch directory, with the exit code of every command checked: 0 unless the line ends in
``# exits N``. Lines ending in ``# needs conda`` run only where conda is importable (through a
``conda`` shim calling ``python -m conda``, as a pip-installed conda has no initialised
``conda`` command). The two commands at the top must be the ones .ci/run runs.
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

    bindir = tmp_path / "bin"
    bindir.mkdir()
    # `python` and `conda-cache` are this interpreter's; `conda` is conda's module entry point.
    # Shims, not symlinks: a symlinked venv python would not find its pyvenv.cfg.
    shim = bindir / "python"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    shim.chmod(0o755)
    exe_dir = Path(sys.executable).parent
    if (exe_dir / "conda-cache").exists():
        (bindir / "conda-cache").symlink_to(exe_dir / "conda-cache")
    else:
        shim = bindir / "conda-cache"
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m conda_cache_plus "$@"\n')
        shim.chmod(0o755)
    if HAVE_CONDA:
        shim = bindir / "conda"
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m conda "$@"\n')
        shim.chmod(0o755)
        # `conda doctor` needs an environment to report on; a user would have one activated
        env_prefix = tmp_path / "env"
        (env_prefix / "conda-meta").mkdir(parents=True)
        (env_prefix / "conda-meta" / "history").touch()

    home = tmp_path / "home"
    home.mkdir()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {
        "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "TMPDIR": str(scratch),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "CONDA_SOLVER": "classic",
        "CONDA_REGISTER_ENVS": "false",
        "CONDA_PKGS_DIRS": str(home / "default-pkgs"),
    }
    if HAVE_CONDA:
        env["CONDA_PREFIX"] = str(tmp_path / "env")

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
