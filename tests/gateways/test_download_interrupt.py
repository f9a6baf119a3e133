"""Ctrl-C during a download on a slow or silent link (issue 24), on both download paths: the
standalone one (``python -m conda_cache_plus``, the standard library's http.client) and conda's
(``python -m conda cache``, conda's requests session).

The server on 127.0.0.1 sends part of an archive and then nothing (a link that died, or one so
slow that a read waits its whole timeout, set to ten minutes here). What arrived must be in the
``.partial`` while the download waits (that is what the progress bar shows, and what a resume
keeps), and Ctrl-C must end the command at once, not when the next block or the read timeout
comes. "At once" is not timed here (tests never assert on timings, and the machine may be busy):
the command must exit within two minutes, where the read timeout alone would take ten; the
measured delay is printed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import requires_conda
from fetch_helpers import serve_packages, write_explicit

SENT = 40_000  # bytes the server sends before it goes silent
READ_TIMEOUT = "600"


def _command(path: str, explicit: str, pkgs: str) -> list[str]:
    if path == "standalone":
        return [sys.executable, "-m", "conda_cache_plus", "fetch", explicit, "--pkgs-dir", pkgs]
    return [sys.executable, "-m", "conda", "cache", "fetch", explicit, "--pkgs-dir", pkgs]


def _environ(path: str, tmp_path) -> dict:
    env = dict(os.environ, CONDA_REMOTE_READ_TIMEOUT_SECS=READ_TIMEOUT)
    if path == "standalone":
        env["CONDA_CACHE_PLUS_NO_CONDA"] = "1"
    else:
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        env.update(
            HOME=str(home),
            CONDA_PKGS_DIRS=str(tmp_path / "pkgs"),
            CONDA_SOLVER="classic",
            CONDA_REGISTER_ENVS="false",
            CONDA_ENVS_DIRS=str(tmp_path / "envs"),
            CONDA_CACHE_PLUS_NO_CONDA="",
        )
    return env


def _wait_for_size(proc, path: str, size: int, deadline: float) -> None:
    while not (os.path.exists(path) and os.path.getsize(path) >= size):
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"exited {proc.returncode} before {size} bytes: {out}{err}")
        assert time.monotonic() < deadline, (
            f"{path}: {os.path.getsize(path) if os.path.exists(path) else 'missing'} bytes, "
            f"{size} were sent (what arrives must reach the partial while the link waits)"
        )
        time.sleep(0.05)


@pytest.mark.parametrize(
    "path", ["standalone", pytest.param("conda", marks=requires_conda)], ids=str
)
def test_ctrl_c_on_a_silent_link_is_honoured_and_keeps_what_arrived(path, tmp_path, http_server):
    [pkg] = serve_packages(http_server, [("silent", "1", 4, 3_000_000)])
    route = f"/{pkg.subdir}/{pkg.fn}"
    http_server.behaviour.silent_after[route] = SENT
    explicit = write_explicit(tmp_path / "env.txt", http_server, [pkg])
    pkgs = str(tmp_path / "pkgs")
    env = _environ(path, tmp_path)
    proc = subprocess.Popen(
        [*_command(path, explicit, pkgs), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    partial = os.path.join(pkgs, pkg.fn + ".partial")
    try:
        _wait_for_size(proc, partial, SENT, time.monotonic() + 120)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    print(f"{path}: exited {time.monotonic() - sent:.2f}s after SIGINT")
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    assert json.loads(out)["summary"]["interrupted"] is True
    assert os.path.getsize(partial) == SENT  # kept for the resume

    # the link is back: the next run resumes from what was kept
    http_server.behaviour.silent_after.clear()
    done = subprocess.run(
        [*_command(path, explicit, pkgs), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["summary"]["bytes_resumed"] == SENT
    assert http_server.requests_for(route)[-1]["range"] == f"bytes={SENT}-"
    assert os.path.isdir(os.path.join(pkgs, pkg.dist))
