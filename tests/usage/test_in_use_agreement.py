"""usage, clean and remove give one answer to "in use" and to "writable" (issue 23).

Two caches hold the same package; environments use entries in every way conda can (registered
and hard-linked, unregistered and hard-linked, softlinked, copied), each from one cache. Run as a
user runs them (``--json``, ``--dry-run``), the three verbs must agree entry by entry: what usage
calls in use, clean and remove keep, and only that.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import populate
from envtools import make_env


def cli(env: dict, *args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "conda_cache_plus", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode in (0, 1), (args, proc.stdout, proc.stderr)
    return json.loads(proc.stdout)


@pytest.fixture
def world(tmp_path, build):
    a, b = str(tmp_path / "A"), str(tmp_path / "B")
    pkgs = {n: build(n, "1.0", "0") for n in ("alpha", "beta", "gamma", "delta", "free")}
    populate(a, list(pkgs.values()))
    populate(b, [pkgs["alpha"], pkgs["free"]])
    envs_dir = tmp_path / "envs"
    home = tmp_path / "home"
    (home / ".conda").mkdir(parents=True)
    entry = lambda cache, name: os.path.join(cache, f"{name}-1.0-0")  # noqa: E731
    registered = make_env(envs_dir / "hard", [entry(a, "alpha")])
    make_env(envs_dir / "soft", [entry(a, "gamma")], mode="softlink")
    make_env(envs_dir / "copy", [entry(a, "delta")], mode="copy")
    hidden = make_env(tmp_path / "elsewhere" / "hidden", [entry(a, "beta")])
    (home / ".conda" / "environments.txt").write_text(registered + "\n")
    environ = dict(
        os.environ,
        HOME=str(home),
        CONDA_ENVS_DIRS=str(envs_dir),
        CONDA_PKGS_DIRS=f"{a},{b}",
        CONDA_CACHE_PLUS_GRACE="0",
    )
    expected = {entry(a, n) for n in ("alpha", "beta", "gamma", "delta")}
    every = {entry(a, n) for n in pkgs} | {entry(b, "alpha"), entry(b, "free")}
    return environ, [a, b], expected, every, hidden


def _dirs(caches):
    return [w for c in caches for w in ("--pkgs-dir", c)]


def _removed(plan: dict) -> set[str]:
    return {os.path.join(i["pkgs_dir"], i["name"]) for i in plan["items"] if i["kind"] == "package"}


def test_usage_clean_and_remove_agree_on_in_use(world):
    environ, caches, expected, every, _hidden = world
    usage = cli(environ, "usage", *_dirs(caches))
    # in use, or maybe (an environment nobody registered links it): what clean and remove keep
    in_use = {
        e["extracted_package_dir"] for e in usage["entries"] if e["used_by"] or e["maybe_used_by"]
    }
    clean = cli(environ, "clean", "--unused", "--dry-run", *_dirs(caches))
    remove = cli(environ, "remove", "*", "--dry-run", *_dirs(caches))
    assert in_use == expected, sorted(in_use)
    assert every - _removed(clean) == in_use, sorted(_removed(clean))
    assert every - _removed(remove) == in_use, sorted(_removed(remove))


def test_a_writable_cache_without_urls_txt_is_writable(world):
    """conda's rule: a writable directory whose urls.txt is gone is a writable cache (conda
    recreates the file); remove and clean act on it, dir/info say writable."""
    environ, caches, _expected, _every, _hidden = world
    b = caches[1]
    os.unlink(os.path.join(b, "urls.txt"))
    info = cli(environ, "dir", "--pkgs-dir", b)
    assert info["dirs"][0]["writable"] is True, info
    remove = cli(environ, "remove", "free", "--dry-run", "--pkgs-dir", b)
    assert _removed(remove) == {os.path.join(b, "free-1.0-0")}, remove
    assert not remove["read_only"], remove


def test_clean_all_removes_at_least_what_each_policy_removes(world):
    environ, caches, *_ = world
    paths = {}
    for flags in (["--tarballs"], ["--unused"], ["--all"]):
        plan = cli(environ, "clean", *flags, "--dry-run", *_dirs(caches))
        paths[flags[0]] = {p for i in plan["items"] for p in i["paths"]}
    assert paths["--tarballs"] <= paths["--all"], sorted(paths["--tarballs"] - paths["--all"])
    assert paths["--unused"] <= paths["--all"], sorted(paths["--unused"] - paths["--all"])
