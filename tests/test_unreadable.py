"""An entry we may not read is a finding (issue 11, item 4): verify (fast and ``--full
--rehash``) exits 1 naming it, ``conda doctor`` shows ❌, and info/list mark it, as a real
non-root user (``chmod 000`` means nothing to root; tests/as_user.py)."""

from __future__ import annotations

import json
import os
import sys

import pytest
from as_user import World
from builders import make_files
from conftest import HAVE_CONDA, populate

from conda_cache_plus import pkgbuild

# what to make unreadable, relative to the pkgs dir
TARGETS = {
    "entry": "alpha-1.0-0",
    "info": "alpha-1.0-0/info",
    "paths_json": "alpha-1.0-0/info/paths.json",
    "record": "alpha-1.0-0/info/repodata_record.json",
    "payload": "alpha-1.0-0/share/alpha/data.bin",
    "archive": "alpha-1.0-0.conda",
}


@pytest.fixture
def world():
    w = World()
    try:
        built = os.path.join(w.path, "built", "noarch")
        a = pkgbuild.build_package(built, "alpha", "1.0", "0", files=make_files("alpha"))
        b = pkgbuild.build_package(built, "beta", "2.0", "0", files=make_files("beta"))
        w.pkgs = populate(os.path.join(w.path, "pkgs"), [a, b])
        yield w
    finally:
        w.cleanup()


def _unreadable(world, what):
    os.chmod(os.path.join(world.pkgs, TARGETS[what]), 0)
    world.hand_over()


@pytest.mark.parametrize("what", sorted(TARGETS))
@pytest.mark.parametrize("level", [["--full", "--rehash"], []], ids=["full-rehash", "fast"])
def test_verify_reports_unreadable(world, what, level):
    _unreadable(world, what)
    proc = world.cli("verify", *level, "--json", "--pkgs-dir", world.pkgs)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    bad = {e["entry"]: e for e in data["entries"] if e["status"] != "ok"}
    assert set(bad) == {"alpha-1.0-0"}, bad
    kinds = {p["kind"] for p in bad["alpha-1.0-0"]["problems"]}
    assert "unreadable" in kinds, bad["alpha-1.0-0"]["problems"]
    # the plain text names it too
    text = world.cli("verify", *level, "-v", "--pkgs-dir", world.pkgs)
    assert text.returncode == 1
    assert "unreadable" in text.stdout


def test_readable_again_is_ok(world):
    """Nothing is remembered as damaged: once readable, the entry verifies ok."""
    _unreadable(world, "payload")
    assert world.cli("verify", "--pkgs-dir", world.pkgs).returncode == 1
    os.chmod(os.path.join(world.pkgs, TARGETS["payload"]), 0o644)
    proc = world.cli("verify", "--full", "--pkgs-dir", world.pkgs)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_info_and_list_agree(world):
    _unreadable(world, "entry")
    info = world.cli("info", "--pkgs-dir", world.pkgs)
    assert "unreadable" in info.stdout, info.stdout
    listing = world.cli("list", "--json", "--pkgs-dir", world.pkgs)
    rows = {r["name"]: r for r in json.loads(listing.stdout)["packages"]}
    assert rows["alpha"]["problems"], rows["alpha"]
    assert not rows["beta"]["problems"]


@pytest.mark.skipif(not HAVE_CONDA, reason="conda is not importable here")
def test_conda_doctor_shows_unreadable(world):
    from conda_cache_plus.conda_layer.compat import conda_version_tuple

    if conda_version_tuple() < (26, 1):
        pytest.skip("conda doctor NAME needs conda >= 26.1")
    env = os.path.join(world.path, "env")
    os.makedirs(os.path.join(env, "conda-meta"))
    open(os.path.join(env, "conda-meta", "history"), "w").close()
    _unreadable(world, "entry")
    environ = {
        "CONDA_PKGS_DIRS": world.pkgs,
        "CONDA_SOLVER": "classic",
        "CONDA_REGISTER_ENVS": "false",
        "CONDA_ENVS_DIRS": os.path.join(world.path, "envs"),
        "CONDARC": os.path.join(world.path, "condarc"),
    }
    proc = world.run("-m", "conda", "doctor", "-p", env, "package-cache", "-v", env=environ)
    assert "❌" in proc.stdout, proc.stdout + proc.stderr
    assert "alpha-1.0-0" in proc.stdout
    assert "✅ The package caches are intact" not in proc.stdout


def test_runs_as_someone_else(world):
    """The premise of this module: the command does not run as root."""
    proc = world.run("-c", "import os; print(os.geteuid())")
    assert proc.stdout.strip() != "0", proc.stderr
    assert sys.executable  # (keeps the import used when the module is read alone)
