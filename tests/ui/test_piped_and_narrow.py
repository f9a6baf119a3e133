"""Piped output is never cut; a narrow terminal gets a readable form (one block per row), not
a table both elided and wrapped. ``COLUMNS`` stands for the terminal's width, as it does for
conda and every shell tool."""

from __future__ import annotations

import json
import os

import pytest
from conftest import populate, run_cli
from envtools import make_env

from conda_cache_plus.layouts.caches import PackageCaches
from conda_cache_plus.ui.text import table

LONG = "a-directory-name-long-enough-to-need-more-than-eighty-columns-on-its-own"


@pytest.fixture
def world(tmp_path, build):
    pkgs = tmp_path / LONG / "pkgs"
    built = [build("nr-lib", "1.0", "0"), build("nr-tool-with-a-long-name", "2.0", "0")]
    populate(str(pkgs), built)
    recs = PackageCaches([str(pkgs)]).records()
    env = make_env(tmp_path / LONG / "envs" / "one", [r for r in recs if r.name == "nr-lib"])
    home = tmp_path / "home"
    (home / ".conda").mkdir(parents=True)
    return {"pkgs": str(pkgs), "env": str(env), "vars": {"HOME": str(home)}}


def cli(world, *args, columns=None):
    # "" is no width: what a pipe gets (a COLUMNS exported by the caller's shell must not count)
    env = {**world["vars"], "COLUMNS": str(columns or "")}
    proc = run_cli(*args, "--pkgs-dir", world["pkgs"], env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_usage_env_piped_shows_whole_paths(world):
    out = cli(world, "usage", "--env", world["env"])
    assert "\u2026" not in out
    assert os.path.join(world["pkgs"], "nr-lib-1.0-0") in out.split()


def test_list_piped_is_never_cut(world):
    out = cli(world, "list", "-v")
    assert "\u2026" not in out
    assert "nr-tool-with-a-long-name" in out.split()


@pytest.mark.parametrize("columns", [40, 80])
def test_clean_plan_at_a_narrow_terminal_still_names_what_goes(world, columns):
    out = cli(world, "clean", "--unused", "--grace", "0", "--dry-run", columns=columns)
    assert "\u2026" not in out
    planned = json.loads(
        run_cli(
            "clean", "--unused", "--grace", "0", "--dry-run", "--json",
            "--pkgs-dir", world["pkgs"], env={**world["vars"], "COLUMNS": ""},
        ).stdout
    )  # fmt: skip
    names = [i["name"] for i in planned["items"]]
    assert names == ["nr-tool-with-a-long-name-2.0-0"]
    lines = [line.strip() for line in out.splitlines()]
    for name in names:
        # the entry's name is one word on a line of its own, or a table row's second cell
        assert name in lines or any(line.split()[1:2] == [name] for line in lines if line)


def test_table_forms(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    headers, rows = ["Name", "Path"], [["alpha", "/a/" + "x" * 60], ["beta", "/b"]]
    piped = table(headers, rows, shrink=(1,), max_width=None)
    assert ("x" * 60) in piped and "\u2026" not in piped  # (run under pytest: not a terminal)
    fits = table(headers, rows, shrink=(1,), max_width=40)
    assert "\u2026" in fits and all(len(line) <= 40 for line in fits.splitlines())
    narrow = table(["Kind", "Entry", "Why"], [["package", "e" * 30, "unused"]], key=1, max_width=20)
    assert narrow.splitlines() == ["e" * 30, "  Kind: package", "  Why: unused"]
