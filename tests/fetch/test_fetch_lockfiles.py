"""``fetch`` warms a cache from the lockfiles people have (conda-lock.yml, pixi.lock v6/v7), over
real HTTP; then, with the server gone, conda (``create --offline --file explicit.txt``) and
py-rattler install from that cache alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import HAVE_CONDA, REPO, run_cli
from lockfile_world import (
    PLATFORMS,
    PYPI_URL,
    RATTLER_LOCK,
    conda_lock_yml,
    lock_channel,
    pixi_lock_v6,
    pixi_lock_v7,
)
from schema_check import validate

from conda_cache_plus.fetch.lockfiles import native_subdir

SCHEMA = os.path.join(REPO, "docs", "schemas", "fetch.json")
LINUX = ["lk-data-1.0-0", "lk-lib-2.0-h1", "lk-tool-3.0-0"]


@pytest.fixture
def served(tmp_path, http_server):
    built = lock_channel(os.path.join(http_server.directory, "ch"))
    return {"url": http_server.url("ch"), "built": built, "server": http_server, "dir": tmp_path}


def fetch(pkgs, *args):
    proc = run_cli("fetch", "--pkgs-dir", str(pkgs), "--json", *args)
    data = json.loads(proc.stdout) if proc.stdout.strip() else None
    return proc, data


def entries(pkgs) -> list[str]:
    return sorted(n for n in os.listdir(pkgs) if os.path.isdir(os.path.join(pkgs, n, "info")))


def test_conda_lock_yml_then_conda_installs_offline(served):
    tmp = served["dir"]
    lockfile, how = conda_lock_yml(served["url"], str(tmp))
    pkgs = tmp / "pkgs"
    proc, data = fetch(pkgs, lockfile, "--platform", "linux-64")
    assert proc.returncode == 0, proc.stderr
    with open(SCHEMA) as fh:
        assert validate(data, json.load(fh)) == []
    assert data["summary"]["counts"]["downloaded"] == 3, how
    assert data["lockfiles"][0]["format"] == "conda-lock.yml"
    assert entries(pkgs) == LINUX
    # the hashes of the lockfile were checked: a wrong one fails that package, nothing else
    again, data = fetch(tmp / "pkgs2", lockfile, "--platform", "osx-arm64")
    assert again.returncode == 0 and entries(tmp / "pkgs2") == [
        "lk-data-1.0-0",
        "lk-lib-2.0-h2",
        "lk-tool-3.0-0",
    ]
    if not HAVE_CONDA:
        pytest.skip("conda is not importable: the offline install was not run")
    if native_subdir() != "linux-64":
        pytest.skip("the offline conda install needs a linux-64 machine (lk-lib is linux-64)")
    explicit = tmp / "explicit.txt"  # what `conda-lock render --kind explicit` writes
    lines = ["@EXPLICIT"] + [
        f"{served['url']}/{b.subdir}/{b.fn}#{b.md5}"
        for b in served["built"].values()
        if b.dist in LINUX
    ]
    explicit.write_text("\n".join(lines) + "\n")
    served["server"].stop()  # the cache alone from here on
    env = dict(
        os.environ,
        HOME=str(tmp / "home"),
        CONDA_PKGS_DIRS=str(pkgs),
        CONDA_SOLVER="classic",
        CONDA_REGISTER_ENVS="false",
    )
    prefix = tmp / "env"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "conda", "create", "--offline", "--yes", "-p", str(prefix)),
            *("--file", str(explicit)),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(n[:-5] for n in os.listdir(prefix / "conda-meta") if n.endswith(".json")) == LINUX


def test_pixi_lock_v7_then_py_rattler_installs_from_the_cache(served):
    tmp = served["dir"]
    lockfile = pixi_lock_v7(served["url"], str(tmp / "pixi.lock"))
    pkgs = tmp / "pkgs"
    proc, data = fetch(pkgs, lockfile, "--platform", "linux-64", "--environment", "default")
    assert proc.returncode == 0, proc.stderr
    assert data["lockfiles"][0]["skipped"][0]["kind"] == "pypi"
    assert entries(pkgs) == LINUX
    everything, _ = fetch(pkgs, lockfile, "--platform", "linux-64")  # default: all environments
    assert everything.returncode == 0 and entries(pkgs) == [*LINUX[:2], "lk-test-0.1-0", LINUX[2]]
    said = run_cli("fetch", "--pkgs-dir", str(pkgs), lockfile, "--platform", "linux-64")
    assert said.returncode == 0, said.stderr
    assert (
        "pixi.lock: skipped 1 PyPI package(s) (requests): pip's or uv's cache, not conda's."
        in said.stdout + said.stderr
    )
    served["server"].stop()
    # py-rattler reads the lockfile itself; every archive comes from the cache fetch filled
    prefix, rattler_cache = tmp / "renv", tmp / "rattler-cache"
    out = subprocess.run(
        [
            *(sys.executable, RATTLER_LOCK, "install", lockfile, "default", "linux-64"),
            *(str(prefix), str(rattler_cache), str(pkgs)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.split() == LINUX
    assert (prefix / "share" / "lk-tool" / "README").is_file()


def test_pixi_lock_v6_documented_format(served):
    tmp = served["dir"]
    os.symlink(os.path.join(served["server"].directory, "ch"), tmp / "ch")  # the relative location
    lockfile = pixi_lock_v6(served["url"], str(tmp / "pixi.lock"), served["built"])
    pkgs = tmp / "pkgs"
    proc, data = fetch(pkgs, lockfile, "--platform", "linux-64")
    assert proc.returncode == 0, proc.stderr
    assert data["lockfiles"][0]["skipped"] == [
        {"kind": "pypi", "name": "requests", "location": PYPI_URL},
        {"kind": "source", "name": "my-workspace", "location": "."},
    ]
    assert entries(pkgs) == [*LINUX[:2], "lk-test-0.1-0", LINUX[2]]
    assert data["lockfiles"][0]["version"] == 6


def test_what_is_no_input_gets_exit_2_naming_the_formats(tmp_path):
    other = tmp_path / "environment.yml"
    other.write_text("name: demo\nchannels: [conda-forge]\ndependencies: [python]\n")
    proc = run_cli("fetch", "--pkgs-dir", str(tmp_path / "pkgs"), str(other))
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: {other}: not a fetch input")
    for fmt in ("@EXPLICIT", "conda-lock.yml", "pixi.lock"):
        assert fmt in line
    old = tmp_path / "pixi.lock"
    old.write_text("version: 5\nenvironments: {}\npackages: []\n")
    proc = run_cli("fetch", "--pkgs-dir", str(tmp_path / "pkgs"), str(old))
    assert proc.returncode == 2 and "fetch reads versions 6 and 7" in proc.stderr
    proc = run_cli("fetch", "--pkgs-dir", str(tmp_path / "pkgs"), "--platform", "linux-64",
                   str(tmp_path / "x-1-0.conda"))  # fmt: skip
    assert proc.returncode == 2


@pytest.mark.parametrize("platform", PLATFORMS)
def test_dry_run_names_the_platforms_packages(served, platform):
    lockfile = pixi_lock_v7(served["url"], str(served["dir"] / "pixi.lock"), pypi=False)
    proc, data = fetch(served["dir"] / "pkgs", lockfile, "--platform", platform, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    fns = sorted(i["fn"] for i in data["plan"]["items"])
    lib = "lk-lib-2.0-h1.conda" if platform == "linux-64" else "lk-lib-2.0-h2.conda"
    assert lib in fns and len(fns) == 4
