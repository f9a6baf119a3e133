"""What a user meets first: hints that name the command typed, -v everywhere, small helpers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import populate, run_cli

from conda_cache_plus.cli import VERBS

NO_CONDA = {"CONDA_CACHE_PLUS_NO_CONDA": "1"}


def test_pkgbuild_help_prints_help_and_makes_nothing(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "conda_cache_plus.pkgbuild", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0 and "usage:" in proc.stdout
    assert os.listdir(tmp_path) == []


def test_a_new_user_without_caches_gets_a_hint(tmp_path):
    env = dict(NO_CONDA, HOME=str(tmp_path / "home"), CONDA_ROOT=str(tmp_path / "root"))
    env["CONDA_PKGS_DIRS"] = ""
    proc = run_cli("list", env=env, check=True)
    assert "no package caches found: pass --pkgs-dir or set CONDA_PKGS_DIRS" in proc.stderr
    assert "hint" not in run_cli("list", "-q", env=env, check=True).stderr
    # a cache named on the command line is not "not found": info says it does not exist
    named = run_cli("info", "--pkgs-dir", str(tmp_path / "x"), env=env, check=True)
    assert "hint" not in named.stderr and "does not exist" in named.stdout


def test_standalone_hints_name_the_standalone_command(cache):
    payload = next((cache / "beta-2.1-h1").rglob("*.txt"), None) or next(
        p for p in (cache / "beta-2.1-h1").rglob("*") if p.is_file() and "info" not in p.parts
    )
    payload.write_bytes(payload.read_bytes() + b"changed")
    (cache / "beta-2.1-h1.conda.partial").write_bytes(b"x" * 10)
    proc = run_cli("verify", "--pkgs-dir", str(cache), env=NO_CONDA)
    assert proc.returncode == 1
    assert ": conda-cache repair --pkgs-dir" in proc.stdout and "conda cache" not in proc.stdout
    assert "None" not in proc.stdout and "10 B so far" in proc.stdout


def test_a_missing_file_url_is_not_an_http_error(tmp_path):
    url = "file://" + str(tmp_path / "nope-1-0.conda")
    proc = run_cli("fetch", "-q", "--pkgs-dir", str(tmp_path / "pkgs"), url, env=NO_CONDA)
    assert proc.returncode != 0 and "no such file" in proc.stderr + proc.stdout
    assert "HTTP" not in proc.stderr + proc.stdout


VERBOSE_ARGS = {
    "dir": [],
    "info": [],
    "list": [],
    "usage": [],
    "verify": [],
    "repair": ["--dry-run"],
    "remove": ["alpha", "--dry-run"],
    "clean": ["--unused", "--dry-run"],
    "export": None,  # writes a channel; its own tests cover it
    "fetch": None,  # needs a server; tests/cli/test_cli_fetch.py
}


def test_every_verb_is_in_the_v_table():
    # a new verb must say how its -v is tried (None: a test of its own covers it)
    assert set(VERBOSE_ARGS) == set(VERBS)


@pytest.mark.parametrize("verb", sorted(v for v, a in VERBOSE_ARGS.items() if a is not None))
def test_every_verb_takes_v(verb, cache, build):
    args = VERBOSE_ARGS[verb]
    populate(cache, [build("alpha", "0.1", "0")])
    plain = run_cli(verb, *args, "--pkgs-dir", str(cache), env=NO_CONDA)
    verbose = run_cli(verb, *args, "-v", "--pkgs-dir", str(cache), env=NO_CONDA)
    assert plain.returncode == verbose.returncode, verbose.stderr
    if verb in ("dir", "list"):
        assert verbose.stdout != plain.stdout, verb
