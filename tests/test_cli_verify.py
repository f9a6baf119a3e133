"""`verify` and `repair` through the command line, as a user runs them."""

from __future__ import annotations

import json
import os

import pytest
from conftest import populate, run_cli
from test_verify import make_files


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
    # No answer (stdin closed) means no.
    proc = run_cli("repair", "--pkgs-dir", pkgs, input="")
    assert proc.returncode != 0 and os.path.getsize(target) == 5
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
