"""One rule for every verb: the verbs that change the cache take --lock-timeout; --json without
-y behaves the same in each; with --json a usage error is a JSON document too."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import populate, run_cli

from conda_cache_plus.model.cache_paths import CacheLayout

CHANGERS = {
    "repair": [],
    "remove": ["rv-lib"],
    "clean": ["--unused", "--grace", "0"],
}


@pytest.fixture
def pkgs(tmp_path, build):
    path = tmp_path / "pkgs"
    populate(str(path), [build("rv-lib", "1.0", "0"), build("rv-tool", "1.0", "0")])
    damaged = path / "rv-tool-1.0-0" / "share" / "rv-tool" / "data.bin"
    damaged.write_bytes(b"not what the package holds")
    return str(path)


@pytest.mark.parametrize("verb", sorted(CHANGERS))
def test_json_without_yes_is_the_same_refusal_everywhere(pkgs, verb):
    def entries():
        return sorted(n for n in os.listdir(pkgs) if not n.startswith("."))

    before = entries()
    proc = run_cli(verb, *CHANGERS[verb], "--pkgs-dir", pkgs, "--json", "--lock-timeout", "5")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["exception_name"] == "UsageError" and doc["exit_code"] == 2
    assert "without --yes in --json mode" in doc["error"]
    assert entries() == before


@pytest.mark.parametrize("verb", sorted(CHANGERS))
def test_a_usage_error_under_json_is_json(pkgs, verb):
    proc = run_cli(verb, *CHANGERS[verb], "--no-such-option", "--pkgs-dir", pkgs, "--json")
    assert proc.returncode == 2
    doc = json.loads(proc.stdout)
    assert doc["exit_code"] == 2 and "--no-such-option" in doc["error"]
    assert "usage:" in proc.stderr  # argparse's own lines stay on stderr
    plain = run_cli(verb, *CHANGERS[verb], "--no-such-option", "--pkgs-dir", pkgs)
    assert plain.returncode == 2 and plain.stdout == ""


def test_repair_gives_up_after_lock_timeout(pkgs):
    """Another process holds the damaged entry's lock (an extraction running): repair waits
    --lock-timeout seconds for it, then reports that entry as failed, naming the lock."""
    lock = CacheLayout(pkgs).entry_lock("rv-tool-1.0-0")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from conda_cache_plus.gateways.locks import FileLock; "
            f"FileLock({lock!r}).acquire(); print('held', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = run_cli("repair", "--pkgs-dir", pkgs, "--yes", "--json", "--lock-timeout", "1")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        data = json.loads(proc.stdout)
        (action,) = data["actions"]
        assert action["outcome"] == "failed"
        assert lock in action["detail"] or "lock" in action["detail"]
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    done = run_cli("repair", "--pkgs-dir", pkgs, "--yes", "--json", "--lock-timeout", "1")
    assert done.returncode == 0, done.stdout + done.stderr
