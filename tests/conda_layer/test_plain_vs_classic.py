"""The ``plain`` backend decides how conda's own commands look, never what they do.

Every cell of the matrix runs one real conda command twice, with ``--console classic`` and with
``--console plain``, from identical starting states, and asserts the same exit code and the same
resulting environment (or package cache, for ``clean``). Answers come from ``-y``, a closed stdin
(cron, CI: the prompt takes its default, "yes"), or a pseudo-terminal typing ``y`` or ``n``.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import sys
import time

import pytest
from conda_world import CondaWorld, needs_plugin
from conftest import HAVE_CONDA, requires_conda

pytestmark = [requires_conda, needs_plugin]

COMMANDS = ("create", "install", "remove", "clean")
MODES = ("yes-flag", "stdin-closed", "pty-y", "pty-n")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    if not HAVE_CONDA:
        pytest.skip("conda is not importable here")
    w = CondaWorld(tmp_path_factory.mktemp("matrix"))
    # templates, made once with classic and -y: a starting env for install, one for remove
    for name, specs in (("one", ["demo-data"]), ("two", ["demo-data", "demo-tool"])):
        proc = w.conda(*create_args(w, os.path.join(w.root, "tpl", name), specs), "-y")
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return w


def create_args(w: CondaWorld, prefix: str, specs: list[str]) -> list[str]:
    channel = ["-c", w.channel, "--override-channels"]
    return ["create", "--offline", "-p", prefix, *channel, *specs]


def run_in_pty(argv: list[str], env: dict, answer: str, timeout: float = 300) -> tuple[int, str]:
    """Run with stdin, stdout and stderr on a pseudo-terminal; type ``answer`` at the prompt."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
    )
    os.close(slave)
    out = b""
    answered = False
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"no exit within {timeout}s; output so far:\n{out.decode()}")
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child side is closed
                data = b""
            if not data:
                break
            out += data
            if not answered and re.search(rb"Proceed[^\n]*[?\]] *$", out):
                os.write(master, answer.encode() + b"\n")
                answered = True
        code = proc.wait(timeout=timeout)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return code, out.decode(errors="replace")


def env_state(prefix: str):
    meta = os.path.join(prefix, "conda-meta")
    if not os.path.exists(os.path.join(meta, "history")):
        return None
    return sorted(f for f in os.listdir(meta) if f.endswith(".json"))


def pkgs_state(pkgs: str):
    return sorted(
        f for f in os.listdir(pkgs) if f.endswith((".conda", ".tar.bz2")) or f.startswith("demo-")
    )


def run_case(w: CondaWorld, command: str, mode: str, console: str, where: str):
    """Set up the starting state in ``where``, run the command, return (exit code, state)."""
    os.makedirs(where)
    prefix = os.path.join(where, "env")
    env = {}
    if command == "create":
        argv = create_args(w, prefix, ["demo-data"])
    elif command in ("install", "remove"):
        tpl = "one" if command == "install" else "two"
        shutil.copytree(os.path.join(w.root, "tpl", tpl), prefix, symlinks=True)
        if command == "install":
            channel = ["-c", w.channel, "--override-channels"]
            argv = ["install", "--offline", "-p", prefix, *channel, "demo-tool"]
        else:
            argv = ["remove", "--offline", "-p", prefix, "demo-tool"]
    else:  # clean: a copy of the shared cache, tarballs and all
        pkgs = os.path.join(where, "pkgs")
        shutil.copytree(w.pkgs, pkgs, symlinks=True)
        env["CONDA_PKGS_DIRS"] = pkgs
        argv = ["clean", "--tarballs"]
    argv += ["--console", console]
    if mode == "yes-flag":
        argv.append("-y")
    full_env = {**w.env, **env}
    cmd = [sys.executable, "-m", "conda", *argv]
    if mode.startswith("pty-"):
        code, out = run_in_pty(cmd, full_env, answer=mode[-1])
    else:
        proc = subprocess.run(
            cmd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
        )
        code, out = proc.returncode, proc.stdout + proc.stderr
    state = pkgs_state(env["CONDA_PKGS_DIRS"]) if command == "clean" else env_state(prefix)
    return code, state, out


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("command", COMMANDS)
def test_plain_does_what_classic_does(world, tmp_path, command, mode):
    classic = run_case(world, command, mode, "classic", str(tmp_path / "classic"))
    plain = run_case(world, command, mode, "plain", str(tmp_path / "plain"))
    context = f"\n--- classic:\n{classic[2]}\n--- plain:\n{plain[2]}"
    assert plain[0] == classic[0], "exit codes differ" + context
    assert plain[1] == classic[1], "resulting state differs" + context
    # and the cell means something: "n" changes nothing, every other answer goes ahead
    assert classic[0] == 0, context
    before = {
        "create": None,
        "install": ["demo-data-0.3-0.json"],
        "remove": ["demo-data-0.3-0.json", "demo-lib-1.1-0.json", "demo-tool-2.0-0.json"],
    }
    if command == "clean":
        changed = not any(f.endswith((".conda", ".tar.bz2")) for f in classic[1])
    else:
        changed = classic[1] != before[command]
    assert changed == (mode != "pty-n"), context
    if mode == "stdin-closed":
        assert "stdin is closed; answering yes" in plain[2]
