"""The `package-cache` check under a real `conda doctor` (a subprocess, as users run it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from builders import make_files
from conftest import populate, requires_conda_at_least

# named checks, --list summaries and fixers arrived in conda 26.1
pytestmark = requires_conda_at_least((26, 1), "conda doctor NAME / --list / --fix")


@pytest.fixture
def world(tmp_path, build):
    a = build("alpha", "1.0", "0", files=make_files("alpha"), fmt=".conda")
    b = build("beta", "2.0", "0", files=make_files("beta"), fmt=".conda")
    pkgs = populate(tmp_path / "pkgs", [a, b])
    env = tmp_path / "env"
    (env / "conda-meta").mkdir(parents=True)
    (env / "conda-meta" / "history").write_text("")
    # The env was installed from beta's cache entry.
    rec = dict(b.repodata_entry(), fn=b.fn, url=f"https://conda.example.org/demo/noarch/{b.fn}")
    rec["link"] = {"source": os.path.join(pkgs, b.dist), "type": 1}
    (env / "conda-meta" / f"{b.dist}.json").write_text(json.dumps(rec))
    home = tmp_path / "home"
    home.mkdir()
    environ = dict(
        os.environ,
        HOME=str(home),
        CONDA_PKGS_DIRS=pkgs,
        CONDA_SOLVER="classic",
        CONDA_REGISTER_ENVS="false",
        CONDA_ENVS_DIRS=str(tmp_path / "envs"),
    )
    environ.pop("CONDA_PREFIX", None)
    environ.pop("REQUESTS_CA_BUNDLE", None)
    return pkgs, str(env), environ


def doctor(world, *args, input=None, **extra_env):
    _, env, environ = world
    environ = dict(environ, **extra_env)
    return subprocess.run(
        [sys.executable, "-m", "conda", "doctor", "-p", env, *args],
        capture_output=True,
        text=True,
        env=environ,
        input=input,
        timeout=300,
    )


def damage(pkgs):
    os.unlink(os.path.join(pkgs, "alpha-1.0-0", "share/alpha/other"))
    with open(os.path.join(pkgs, "beta-2.0-0", "share/beta/data.bin"), "r+b") as fh:
        fh.truncate(7)


def test_list_shows_summary_and_fix(world):
    out = doctor(world, "--list").stdout
    line = next(x for x in out.splitlines() if x.strip().startswith("package-cache:"))
    assert "Verify the package caches" in line and "(fix: Re-extract or re-download" in line


def test_clean_caches(world):
    proc = doctor(world, "package-cache")
    assert proc.returncode == 0, proc.stderr
    assert "✅ The package caches are intact: 2 package(s) in 1 package cache(s)" in proc.stdout
    assert "not at the environment" in proc.stdout


def test_damage_reported_used_entries_first(world):
    pkgs, env, _ = world
    damage(pkgs)
    out = doctor(world, "package-cache").stdout
    assert "❌ 2 damaged package(s) in the package caches (1 corrupt, 1 incomplete); 1 used" in out
    assert f"corrupt: beta-2.0-0 in {pkgs}  (used by {env})" in out
    assert "alpha-1.0-0" not in out  # not used: only named with -v
    out = doctor(world, "package-cache", "-v").stdout
    lines = out.splitlines()
    beta = next(i for i, x in enumerate(lines) if "beta-2.0-0" in x)
    alpha = next(i for i, x in enumerate(lines) if "alpha-1.0-0" in x)
    assert beta < alpha  # the entry an environment uses comes first
    assert "wrong size: share/beta/data.bin (expected" in out
    assert "missing file: share/alpha/other" in out


def test_fix_dry_run_changes_nothing(world):
    pkgs, _, _ = world
    damage(pkgs)
    proc = doctor(world, "package-cache", "--fix", "--dry-run")
    assert proc.returncode == 0
    assert "Repair plan:" in proc.stdout and "re-extract   beta-2.0-0" in proc.stdout
    assert "Dry run" in proc.stderr
    assert not os.path.exists(os.path.join(pkgs, "alpha-1.0-0", "share/alpha/other"))


def test_fix_with_yes_repairs(world):
    pkgs, _, _ = world
    damage(pkgs)
    proc = doctor(world, "package-cache", "--fix", "-y")
    assert proc.returncode == 0, proc.stderr
    assert "Re-extracted 2" in proc.stdout
    assert "✅ The package caches are intact" in doctor(world, "package-cache").stdout


def test_fix_answer_no_changes_nothing(world):
    pkgs, _, _ = world
    damage(pkgs)
    doctor(world, "package-cache", "--fix", input="n\n")
    assert not os.path.exists(os.path.join(pkgs, "alpha-1.0-0", "share/alpha/other"))


def test_fix_json_never_removes_without_yes(world):
    pkgs, _, _ = world
    damage(pkgs)
    # alpha's archive is bad and its URL unreachable offline: only removal is left for it.
    with open(os.path.join(pkgs, "alpha-1.0-0.conda"), "r+b") as fh:
        fh.write(b"garbage")
    proc = doctor(world, "package-cache", "--fix", "--json", CONDA_OFFLINE="true")
    assert "removing needs an explicit --yes" in proc.stdout
    assert os.path.isdir(os.path.join(pkgs, "alpha-1.0-0"))  # kept
    assert os.path.getsize(os.path.join(pkgs, "beta-2.0-0", "share/beta/data.bin")) > 7  # fixed
    proc = doctor(world, "package-cache", "--fix", "--json", "--yes", CONDA_OFFLINE="true")
    assert not os.path.exists(os.path.join(pkgs, "alpha-1.0-0"))
    assert "✅" in doctor(world, "package-cache").stdout
