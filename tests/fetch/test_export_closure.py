"""``export DIR SPEC`` brings what SPEC depends on (or names precisely what no cache holds), leaves
no lock file in the channel, and its own "Install from it" line installs when pasted."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

import pytest
from conftest import HAVE_CONDA, populate, run_cli


@pytest.fixture
def cache(tmp_path, build):
    pkgs = tmp_path / "pkgs"
    built = [
        build("cx-base", "1.0", "0"),
        build("cx-base", "2.0", "0"),
        build("cx-lib", "1.0", "0", depends=["cx-base >=2", "__unix"]),
        build("cx-tool", "1.0", "0", depends=["cx-lib"]),
        build("cx-other", "1.0", "0"),
        build("cx-broken", "1.0", "0", depends=["cx-ghost >=1.5", "cx-base"]),
    ]
    populate(str(pkgs), built)
    return str(pkgs)


def export(cache, channel, *args):
    specs = [a for a in args if not a.startswith("-")]
    opts = [a for a in args if a.startswith("-")]
    proc = run_cli("export", str(channel), *specs, "--pkgs-dir", cache, *opts)
    return proc


def test_dependencies_come_along_and_no_lock_file_stays(tmp_path, cache):
    channel = tmp_path / "ch"
    proc = export(cache, channel, "cx-tool", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert sorted(i["fn"] for i in data["items"]) == [
        "cx-base-2.0-0.conda",  # the newest that satisfies cx-base >=2
        "cx-lib-1.0-0.conda",
        "cx-tool-1.0-0.conda",
    ]
    assert data["findings"] == []
    left = sorted(
        os.path.relpath(os.path.join(root, name), channel)
        for root, dirs, files in os.walk(channel)
        for name in files + dirs
    )
    assert left == ["noarch", "noarch/cx-base-2.0-0.conda", "noarch/cx-lib-1.0-0.conda",
                    "noarch/cx-tool-1.0-0.conda", "noarch/repodata.json"]  # fmt: skip


def test_a_missing_dependency_is_named(tmp_path, cache):
    proc = export(cache, tmp_path / "ch", "cx-broken", "--json")
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert [(f["kind"], f["what"], f["problem"]) for f in data["findings"]] == [
        ("missing_dependency", "cx-ghost >=1.5 (needed by cx-broken-1.0-0)", True)
    ]
    assert sorted(i["fn"] for i in data["items"]) == [
        "cx-base-2.0-0.conda",
        "cx-broken-1.0-0.conda",
    ]
    text = export(cache, tmp_path / "ch2", "cx-broken")
    assert "cx-ghost >=1.5 (needed by cx-broken-1.0-0)" in text.stdout + text.stderr


def test_an_old_lock_file_is_taken_away(tmp_path, cache):
    channel = tmp_path / "ch"
    channel.mkdir()
    (channel / ".conda-cache-export.lock").touch()
    assert export(cache, channel, "cx-other").returncode == 0
    assert not (channel / ".conda-cache-export.lock").exists()


@pytest.mark.skipif(not HAVE_CONDA, reason="conda is not importable: the hint is conda's")
def test_the_install_hint_works_as_printed(tmp_path, cache):
    channel = tmp_path / "ch"
    proc = export(cache, channel, "cx-tool")
    assert proc.returncode == 0, proc.stderr
    (hint,) = [line for line in proc.stdout.splitlines() if line.startswith("Install from it: ")]
    command = hint[len("Install from it: ") :]
    assert re.fullmatch(
        r"conda create -p ENV --offline -c \S+ --override-channels cx-tool", command
    )
    prefix = tmp_path / "env"
    args = shlex.split(command.replace("ENV", shlex.quote(str(prefix))))
    env = dict(
        os.environ,
        HOME=str(tmp_path / "home"),
        CONDA_PKGS_DIRS=str(tmp_path / "conda-pkgs"),
        CONDA_SOLVER="classic",
        CONDA_REGISTER_ENVS="false",
        CONDA_ALWAYS_YES="true",
    )
    done = subprocess.run(
        [sys.executable, "-m", *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    installed = sorted(os.listdir(prefix / "conda-meta"))
    assert [n for n in installed if n.endswith(".json")] == [
        "cx-base-2.0-0.json",
        "cx-lib-1.0-0.json",
        "cx-tool-1.0-0.json",
    ]
