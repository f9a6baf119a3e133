"""Environments conda does not register (issue 12): made by real ``conda create --offline`` with
``CONDA_REGISTER_ENVS=false`` in a prefix outside ``envs_dirs``, so no tool can list them.

- hard-linked: the entry's files have links no known environment accounts for, so
  ``clean --unused`` keeps it ("linked from outside the known environments");
- softlinked: nothing in the cache shows the symlinks pointing at it; ``clean --unused`` says
  that environments may be invisible (register_envs is off), and ``--env PREFIX`` protects it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import requires_conda

from conda_cache_plus import pkgbuild

pytestmark = [requires_conda, pytest.mark.conda, pytest.mark.slow]


def make_hidden(t):
    """A hard-linked and a softlinked environment that conda did not register."""
    channel = t / "channel"
    pkgs = [pkgbuild.build_package(str(channel / "noarch"), n, "1.0", "0") for n in ("hh", "ss")]
    url = pkgbuild.write_channel(str(channel), pkgs)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDA")}
    env.update(
        HOME=str(t / "home"),
        CONDA_PKGS_DIRS=str(t / "pkgs"),
        CONDA_ENVS_DIRS=str(t / "envs"),
        CONDA_SOLVER="classic",
        CONDA_REGISTER_ENVS="false",
        CONDARC=str(t / "condarc"),
        XDG_CACHE_HOME=str(t / "xdg"),
    )
    os.makedirs(env["HOME"])

    def conda(*args, extra=None):
        proc = subprocess.run(
            [sys.executable, "-m", "conda", *args],
            env={**env, **(extra or {})},
            capture_output=True,
            text=True,
            timeout=300,
        )
        return proc

    flags = ["--offline", "--yes", "-c", url, "--override-channels"]
    hard, soft = str(t / "elsewhere" / "hard"), str(t / "elsewhere" / "soft")
    for prefix, spec, extra in (
        (hard, "hh", None),
        (soft, "ss", {"CONDA_ALLOW_SOFTLINKS": "true", "CONDA_ALWAYS_SOFTLINK": "true"}),
    ):
        proc = conda("create", "-p", prefix, spec, *flags, extra=extra)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return {
        "conda": conda,
        "pkgs": str(t / "pkgs"),
        "hard": hard,
        "soft": soft,
        "home": env["HOME"],
    }


@pytest.fixture(scope="module")
def hidden(tmp_path_factory):
    return make_hidden(tmp_path_factory.mktemp("unregistered"))


def test_conda_did_not_register_them(hidden):
    txt = os.path.join(hidden["home"], ".conda", "environments.txt")
    listed = ""
    if os.path.exists(txt):
        with open(txt) as fh:
            listed = fh.read()
    assert hidden["hard"] not in listed and hidden["soft"] not in listed
    assert os.stat(os.path.join(hidden["hard"], "share", "hh", "README")).st_nlink == 2
    assert os.path.islink(os.path.join(hidden["soft"], "share", "ss", "README"))


def test_usage_does_not_see_them(hidden):
    data = json.loads(hidden["conda"]("cache", "usage", "--json").stdout)
    assert data["environments"] == []


def test_clean_unused_keeps_the_hard_linked_one_and_warns(hidden):
    proc = hidden["conda"]("cache", "clean", "--unused", "--grace", "0", "--dry-run", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    kept = {s["name"]: s["reason"] for s in data["skipped"]}
    assert kept["hh-1.0-0"].startswith("linked from outside the known environments"), kept
    assert any("register_envs is off" in n for n in data["notes"]), data["notes"]
    # the softlinked one cannot be seen: it is planned, and the note is the warning
    assert "ss-1.0-0" in {i["name"] for i in data["items"]}
    text = hidden["conda"]("cache", "clean", "--unused", "--grace", "0", "--dry-run").stdout
    assert "softlinked or reflinked ones are not" in " ".join(text.split())


def test_named_with_env_both_are_kept(hidden):
    proc = hidden["conda"](
        "cache",
        "clean",
        "--unused",
        "--grace",
        "0",
        "--env",
        hidden["soft"],
        "--env",
        hidden["hard"],
        "--yes",
        "--json",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["items"] == []
    for prefix, name in ((hidden["hard"], "hh"), (hidden["soft"], "ss")):
        with open(os.path.join(prefix, "share", name, "README")) as fh:
            assert fh.read() == f"{name} 1.0\n"


def test_real_clean_keeps_the_hard_linked_one(tmp_path):
    """Without --env, the softlinked one's entry goes, the hard one stays."""
    hidden = make_hidden(tmp_path)  # its own world: it removes, and tests run in any order
    proc = hidden["conda"]("cache", "clean", "--unused", "--grace", "0", "--yes", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert os.path.isdir(os.path.join(hidden["pkgs"], "hh-1.0-0"))
    assert not os.path.isdir(os.path.join(hidden["pkgs"], "ss-1.0-0"))
    # what the README says: softlinks from an unknown environment cannot be seen
    assert not os.path.exists(os.path.join(hidden["soft"], "share", "ss", "README"))
