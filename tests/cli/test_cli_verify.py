"""`verify` and `repair` through the command line, as a user runs them."""

from __future__ import annotations

import json
import os

import pytest
from builders import make_files
from conftest import populate, run_cli


@pytest.fixture
def pkgs(tmp_path, build):
    a = build("alpha", "1.0", "0", files=make_files("alpha"), fmt=".conda")
    b = build("beta", "2.0", "0", files=make_files("beta"), fmt=".conda")
    return populate(tmp_path / "pkgs", [a, b])


def test_clean_cache_exits_0(pkgs):
    proc = run_cli("verify", "--pkgs-dir", pkgs)
    assert proc.returncode == 0, proc.stderr
    assert "Verified 2 package(s) in 1 cache(s) (fast level)" in proc.stdout
    assert "2 ok" in proc.stdout


def test_problems_exit_1_and_are_listed(pkgs):
    a = os.path.join(pkgs, "alpha-1.0-0")
    for name in ("README", "other", "data.bin"):
        os.unlink(os.path.join(a, "share", "alpha", name))
    os.rmdir(os.path.join(a, "share", "alpha", "empty"))
    os.unlink(os.path.join(a, "etc", "alpha.conf"))
    with open(os.path.join(pkgs, "beta-2.0-0", "share/beta/data.bin"), "r+b") as fh:
        fh.write(b"!!")
    proc = run_cli("verify", "--pkgs-dir", pkgs)
    assert proc.returncode == 1
    assert "1 ok, 1 corrupt" in proc.stdout  # the link lost its target; beta needs --full
    assert "missing file: share/alpha/README" in proc.stdout
    assert "... and 1 more (-v shows all)" in proc.stdout  # 6 problems, 5 shown
    assert "conda-cache repair" in proc.stdout  # the standalone command names itself
    assert "etc/alpha.conf" in run_cli("verify", "-v", "--pkgs-dir", pkgs).stdout
    proc = run_cli("verify", "--full", "--pkgs-dir", pkgs, "beta")
    assert proc.returncode == 1 and "wrong hash: share/beta/data.bin" in proc.stdout


def test_json_findings(pkgs):
    os.unlink(os.path.join(pkgs, "alpha-1.0-0", "share/alpha/other"))
    proc = run_cli("verify", "--json", "--full", "--pkgs-dir", pkgs)
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    assert data["ok"] is False and data["level"] == "full"
    assert data["summary"]["incomplete"] == 1 and data["summary"]["ok"] == 1
    bad = data["entries"][0]
    assert bad["status"] == "incomplete"
    assert bad["problems"] == [
        {
            "kind": "missing_file",
            "path": "share/alpha/other",
            "expected": "file",
            "actual": None,
            "detail": "",
        }
    ]
    # The second full run re-hashes nothing; --rehash does it all again.
    again = json.loads(run_cli("verify", "--json", "--full", "--pkgs-dir", pkgs).stdout)
    assert again["summary"]["bytes_hashed"] < 1000
    full = json.loads(run_cli("verify", "--json", "--full", "--rehash", "--pkgs-dir", pkgs).stdout)
    assert full["summary"]["bytes_hashed"] > 2 * 1_000_000


def test_repair_dry_run_then_yes(pkgs):
    target = os.path.join(pkgs, "alpha-1.0-0", "share/alpha/data.bin")
    with open(target, "r+b") as fh:
        fh.truncate(5)
    proc = run_cli("repair", "--dry-run", "--pkgs-dir", pkgs)
    assert proc.returncode == 0
    assert (
        "re-extract   alpha-1.0-0" in proc.stdout and "matches the record's sha256" in proc.stdout
    )
    assert os.path.getsize(target) == 5
    # No answer (stdin closed) takes the default, no: nothing changes, exit 0 as conda's "n"
    proc = run_cli("repair", "--pkgs-dir", pkgs, input="")
    assert proc.returncode == 0 and os.path.getsize(target) == 5
    assert "error" not in proc.stderr and "nothing was changed" in proc.stderr
    proc = run_cli("repair", "-y", "--json", "--pkgs-dir", pkgs)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["stats"]["re-extracted"] == 1
    assert data["actions"][0]["outcome"] == "done"
    assert run_cli("verify", "--full", "--pkgs-dir", pkgs).returncode == 0


def test_repair_json_without_yes_is_refused(pkgs):
    os.unlink(os.path.join(pkgs, "alpha-1.0-0", "share/alpha/other"))
    proc = run_cli("repair", "--json", "--pkgs-dir", pkgs)
    assert proc.returncode != 0
    assert not os.path.exists(os.path.join(pkgs, "alpha-1.0-0", "share/alpha/other"))


# -- nothing checked is not ok ---------------------------------------------------------------------
def _not_found_json(proc) -> list:
    data = json.loads(proc.stdout)
    if "ok" in data:  # verify has it, repair not
        assert data["ok"] is False
    return [(n["kind"], n["reason"]) for n in data["not_found"]]


@pytest.mark.parametrize("what", ["missing", "file"])
def test_verify_a_pkgs_dir_that_is_not_a_cache_is_not_ok(tmp_path, what):
    target = tmp_path / "nope"
    if what == "file":
        target.write_text("not a cache\n")
    proc = run_cli("verify", "--pkgs-dir", str(target))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    reason = "does not exist" if what == "missing" else "is a file, not a directory"
    assert f"no package cache at {target}: {reason}; nothing was checked" in proc.stdout
    proc = run_cli("verify", "--pkgs-dir", str(target), "--json")
    assert proc.returncode == 1
    assert _not_found_json(proc) == [("pkgs_dir", reason)]


def test_verify_a_spec_matching_nothing_is_not_ok(pkgs):
    proc = run_cli("verify", "--pkgs-dir", pkgs, "alpha", "nomatch>=2")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "spec nomatch>=2: no cached package matches it" in proc.stdout
    assert "1 ok" in proc.stdout  # alpha was still checked
    proc = run_cli("verify", "--pkgs-dir", pkgs, "nomatch", "--json")
    assert proc.returncode == 1
    assert _not_found_json(proc) == [("spec", "no cached package matches it")]
    assert run_cli("verify", "--pkgs-dir", pkgs, "alpha", "beta").returncode == 0


def test_verify_an_empty_cache_is_ok(tmp_path):
    """An existing, empty cache: everything in it (nothing) is fine; nothing was asked for."""
    (tmp_path / "pkgs").mkdir()
    assert run_cli("verify", "--pkgs-dir", str(tmp_path / "pkgs")).returncode == 0


def test_verify_some_configured_caches_missing_is_normal(pkgs, tmp_path):
    env = {"CONDA_PKGS_DIRS": f"{pkgs},{tmp_path / 'not-yet'}"}
    assert run_cli("verify", env=env).returncode == 0
    env = {"CONDA_PKGS_DIRS": f"{tmp_path / 'a'},{tmp_path / 'b'}"}
    proc = run_cli("verify", env=env)
    assert proc.returncode == 1
    assert "nothing was checked" in proc.stdout


def test_repair_with_nothing_matching_says_so(pkgs, tmp_path):
    proc = run_cli("repair", "--pkgs-dir", pkgs, "nomatch", "-y")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "spec nomatch: no cached package matches it" in proc.stdout
    assert "every checked package is ok" not in proc.stdout
    assert "Nothing to repair: nothing was checked." in proc.stdout
    proc = run_cli("repair", "--pkgs-dir", str(tmp_path / "nope"), "-y", "--json")
    assert proc.returncode == 1
    assert _not_found_json(proc) == [("pkgs_dir", "does not exist")]
    assert run_cli("repair", "--pkgs-dir", pkgs, "alpha", "-y").returncode == 0
