"""``clean`` takes every spelling of ``conda clean`` and gives it conda's meaning (where ours
differs, --help says how): run as a user types them, standalone and as ``conda cache clean``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import populate, run_cli
from envtools import World

# conda clean's own option strings (conda 24.11 - 26.7), checked against conda's parser below
CONDA_CLEAN_FLAGS = [
    "-a", "--all", "-i", "--index-cache", "-p", "--packages", "-t", "--tarballs",
    "-f", "--force-pkgs-dirs", "-c", "--tempfiles", "-l", "--logfiles",
    "-d", "--dry-run", "-y", "--yes", "--json", "-q", "--quiet", "-v", "--verbose",
]  # fmt: skip


@pytest.fixture
def world(tmp_path, build):
    w = World(tmp_path, build, populate)
    os.makedirs(os.path.join(w.pkgs, "cache"))
    os.makedirs(os.path.join(w.pkgs, ".logs"))
    with open(os.path.join(w.pkgs, ".logs", "conda.log"), "w") as fh:
        fh.write("log\n")
    return w


def plan(world, *flags, code=0):
    proc = run_cli("clean", *flags, "--grace", "0", "--json", env=world.env)
    assert proc.returncode == code, proc.stdout + proc.stderr
    return json.loads(proc.stdout) if code == 0 else proc


def items(data):
    return sorted((i["kind"], i["name"]) for i in data["items"])


UNUSED = ["alpha-1.0-0", "delta-1.0-0", "eps-1.0-0"]
EVERY = ["alpha-1.0-0", "alpha-2.0-0", "beta-1.0-0", "delta-1.0-0", "eps-1.0-0", "gamma-1.0-0"]


@pytest.mark.parametrize("long", [False, True])
def test_each_spelling_means_what_conda_clean_means(world, long):
    def f(short, full):
        return full if long else short

    assert items(plan(world, f("-p", "--packages"), "-d")) == [("extracted", n) for n in UNUSED]
    assert items(plan(world, f("-t", "--tarballs"), "-d")) == [("archive", n) for n in EVERY]
    assert items(plan(world, f("-i", "--index-cache"), "-d")) == [("index_cache", "cache")]
    assert items(plan(world, f("-l", "--logfiles"), "-d")) == [("temp", ".logs")]
    assert items(plan(world, f("-c", "--tempfiles"), "-d")) == []  # no leftovers in this world
    both = items(plan(world, f("-p", "--packages"), f("-t", "--tarballs"), "-d"))
    assert both == sorted(
        [("package", n) for n in UNUSED] + [("archive", n) for n in EVERY if n not in UNUSED]
    )
    everything = plan(world, f("-a", "--all"), "-d")
    assert items(everything) == sorted([*both, ("index_cache", "cache"), ("temp", ".logs")])
    assert everything["policy"]["all"] is everything["policy"]["logfiles"] is True
    forced = plan(world, f("-f", "--force-pkgs-dirs"), "-d")
    assert items(forced) == sorted(
        [("package", n) for n in EVERY] + [("index_cache", "cache"), ("temp", ".logs")]
    )
    used = next(i for i in forced["items"] if i["name"] == "alpha-2.0-0")
    assert any(r.startswith("used by 1 environment(s)") for r in used["reasons"])


def test_combined_short_flags_and_a_real_run(world):
    done = plan(world, "-pty")
    assert done["dry_run"] is False and done["removed"]["items"] == len(done["items"]) == 6
    for name in UNUSED:
        assert not os.path.exists(os.path.join(world.pkgs, name))
    assert os.path.isdir(os.path.join(world.pkgs, "alpha-2.0-0"))  # used: stays, archive goes
    assert not os.path.exists(os.path.join(world.pkgs, "alpha-2.0-0.conda"))
    for env in (world.env_hard, world.env_soft, world.env_copy):
        assert os.listdir(os.path.join(env, "share"))


@pytest.mark.parametrize(
    "flags, problem",
    [
        (["-c", "/some/env"], "takes no PREFIX here ('/some/env')"),
        (["-f", "-p"], "-f/--force-pkgs-dirs removes everything; drop --packages"),
        (["-t", "--extracted"], "-t/--tarballs and --extracted exclude each other"),
        (["-a", "--max-size", "1G"], "--all already picks the policies; drop --max-size"),
        ([], "say what to clean: -a/--all, -p/--packages"),
    ],
)
def test_usage_errors_name_the_flag(world, flags, problem):
    proc = plan(world, *flags, code=2)
    assert problem in proc.stderr + proc.stdout


def test_help_says_where_ours_differs():
    out = run_cli("clean", "--help", check=True).stdout
    for flag in CONDA_CLEAN_FLAGS:
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", out), flag
    for difference in ("conda clean -p", "conda clean -t", "conda clean -c PREFIX",
                       "conda clean -f removes the cache directories"):  # fmt: skip
        assert difference in " ".join(out.split()), difference


@pytest.mark.conda
def test_conda_clean_has_no_flag_we_lack(tmp_path):
    pytest.importorskip("conda")
    import argparse

    from conda.cli import main_clean

    sub = argparse.ArgumentParser().add_subparsers()
    theirs = main_clean.configure_parser(sub)
    strings = {s for a in theirs._actions for s in a.option_strings} - {"-h", "--help"}
    # conda's console/ prompt options come with conda cache clean too (conda adds them)
    missing = strings - set(CONDA_CLEAN_FLAGS) - {"--console", "--debug", "--trace"}
    assert not missing, missing


@pytest.mark.conda
def test_as_conda_cache_clean(world):
    pytest.importorskip("conda")
    env = {**os.environ, **world.env}
    args = [sys.executable, "-m", "conda", "cache", "clean", "-a", "-d", "--json", "--grace", "0"]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    data = json.loads(proc.stdout)
    assert ("temp", ".logs") in items(data) and ("index_cache", "cache") in items(data)
    assert data["dry_run"] is True
    assert os.path.isdir(os.path.join(world.pkgs, ".logs"))
