"""``usage``, ``remove`` and ``clean`` through the command line, in real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO, run_cli
from schema_check import validate

from conda_cache_plus.model.cache_paths import CacheLayout

SCHEMAS = os.path.join(REPO, "docs", "schemas")


def assert_schema(data, verb):
    with open(os.path.join(SCHEMAS, verb + ".json")) as fh:
        assert validate(data, json.load(fh)) == []


def cli(world, *args, **kw):
    if args[:1] == ("clean",) and "--grace" not in args:
        # the world was built a moment ago: without this, the grace period keeps all of it
        args = (*args, "--grace", "0")
    return run_cli(*args, env=world.env, **kw)


def plan_view(data):
    """What a dry run promises: the items (without their status) and the totals."""
    items = [{k: v for k, v in i.items() if k != "status"} for i in data["items"]]
    return items, data["totals"], data["skipped"]


@pytest.mark.parametrize(
    "policy",
    [
        ["--unused"],
        ["--older-than", "30d"],
        ["--keep-latest", "1"],
        ["--unused", "--older-than", "30d", "--keep-latest", "1"],
        ["--max-size", "100K"],
        ["--tarballs"],
        ["--extracted", "--unused"],
        ["--temp", "--index-cache", "--unused"],
        ["--all"],
    ],
)
def test_dry_run_equals_the_real_run(world, policy):
    os.makedirs(os.path.join(world.pkgs, "cache"))
    dry = cli(world, "clean", *policy, "--dry-run", "--json", check=True)
    planned = json.loads(dry.stdout)
    assert planned["dry_run"] is True
    before = sorted(os.listdir(world.pkgs))
    assert sorted(os.listdir(world.pkgs)) == before  # the dry run changed nothing
    real = json.loads(cli(world, "clean", *policy, "--yes", "--json", check=True).stdout)
    assert plan_view(real) == plan_view(planned)
    assert_schema(planned, "clean")
    assert_schema(real, "clean")
    assert all(i["status"] == "removed" for i in real["items"])
    for item in real["items"]:
        assert not any(os.path.lexists(p) for p in item["paths"])
    totals, removed = real["totals"], real["removed"]
    assert totals["items"] == len(real["items"]) == removed["items"]
    for key in ("apparent", "disk", "freed", "files", "dirs"):
        assert totals[key] == sum(i["bytes"][key] for i in real["items"])
    assert removed["bytes"] == totals["apparent"]
    assert removed["files"] == totals["files"] and removed["dirs"] == totals["dirs"]
    # environments still work after any policy
    for env in (world.env_hard, world.env_soft, world.env_copy):
        meta = [f for f in os.listdir(os.path.join(env, "conda-meta")) if f.endswith(".json")]
        with open(os.path.join(env, "conda-meta", meta[0])) as fh:
            for rel in json.load(fh)["files"]:
                assert os.path.exists(os.path.join(env, rel)), rel


def test_json_without_yes_is_refused(world):
    proc = cli(world, "clean", "--unused", "--json")
    assert proc.returncode == 2
    assert "--yes" in proc.stderr
    assert len([r for r in world.caches.records()]) == 6


def test_no_target_is_a_usage_error(world):
    proc = cli(world, "clean")
    assert proc.returncode == 2 and "say what to clean" in proc.stderr


def test_prompt_answer_no_changes_nothing(world):
    proc = cli(world, "clean", "--unused", input="n\n")
    assert proc.returncode == 0  # "n" is a choice, not an error (as conda)
    assert "Would remove" not in proc.stdout
    assert len(world.caches.records()) == 6


def test_prompt_answer_yes(world):
    proc = cli(world, "clean", "--unused", input="y\n")
    assert proc.returncode == 0, proc.stderr
    assert len(world.caches.records()) == 3


HOLDER = r"""
import fcntl, os, sys, time
path, kind, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
os.makedirs(os.path.dirname(path), exist_ok=True)
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
if kind == "flock":
    fcntl.flock(fd, fcntl.LOCK_EX)
elif kind == "byte21":
    os.write(fd, b"x" * 64)
    fcntl.lockf(fd, fcntl.LOCK_EX, 1, 21)
else:
    fcntl.lockf(fd, fcntl.LOCK_EX)
print("locked", flush=True)
release = sys.argv[4] if len(sys.argv) > 4 else None
end = time.monotonic() + seconds
while time.monotonic() < end and not (release and os.path.exists(release)):
    time.sleep(0.02)
"""


def hold(path, kind, seconds, release=None):
    """Hold a lock in another process for ``seconds``, or until the file ``release`` exists."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, path, kind, str(seconds), *([release] if release else [])],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.mark.parametrize("which", ["ours", "mamba", "rattler"])
def test_times_out_while_another_process_holds_the_cache(world, which):
    layout = CacheLayout(world.pkgs)
    path, kind = {
        "ours": (layout.cache_lock, "lockf"),
        "mamba": (layout.mamba_lock, "lockf"),
        "rattler": (layout.rattler_lock, "flock"),
    }[which]
    holder = hold(path, kind, 30)
    try:
        proc = cli(world, "clean", "--unused", "-y", "--lock-timeout", "0.5")
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 3
    assert "locked by" in proc.stderr and "try again" in proc.stderr
    assert len(world.caches.records()) == 6  # nothing was removed


def test_waits_for_the_lock_with_a_message(world, tmp_path):
    lock = os.path.realpath(CacheLayout(world.pkgs).cache_lock)
    release = str(tmp_path / "release")
    holder = hold(lock, "lockf", 120, release)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conda_cache_plus",
            "clean",
            "--unused",
            "-y",
            "--lock-timeout=120",
            "--grace=0",
        ],
        env={**os.environ, **world.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    try:
        # release only once clean says it waits: a fixed hold time (or a pause after it opened
        # the lock file) races its first try at the lock on a loaded machine
        for line in proc.stdout:
            lines.append(line)
            if "waiting for the lock" in line:
                break
    finally:
        open(release, "w").close()
        holder.wait()
    out, err = proc.communicate(timeout=300)
    out = "".join(lines) + out
    assert proc.returncode == 0, err
    assert "waiting for the lock" in out
    assert len(world.caches.records()) == 3


def test_partial_held_by_condas_byte_lock_is_kept(world):
    busy = os.path.join(world.pkgs, "busy-1.0-0.conda.partial")
    stale = os.path.join(world.pkgs, "stale-1.0-0.conda.partial")
    with open(stale, "wb") as fh:
        fh.write(b"y" * 100)
    holder = hold(busy, "byte21", 30)
    try:
        data = json.loads(cli(world, "clean", "--temp", "-y", "--json", check=True).stdout)
    finally:
        holder.kill()
        holder.wait()
    assert [i["name"] for i in data["items"]] == ["stale-1.0-0.conda.partial"]
    assert data["skipped"][0]["name"] == "busy-1.0-0.conda.partial"
    assert "byte-range lock" in data["skipped"][0]["reason"]
    assert os.path.exists(busy) and not os.path.exists(stale)


def test_remove_refuses_entries_in_use(world):
    proc = cli(world, "remove", "beta", "alpha", "-y", "--json")
    assert proc.returncode == 0  # keeping what is in use is the policy, not an error
    data = json.loads(proc.stdout)
    assert_schema(data, "remove")
    assert [i["name"] for i in data["items"]] == ["alpha-1.0-0"]
    refused = {s["name"]: s["used_by"] for s in data["skipped"]}
    assert refused == {"alpha-2.0-0": [world.env_hard], "beta-1.0-0": [world.env_soft]}
    with open(os.path.join(world.pkgs, "urls.txt")) as fh:
        urls = fh.read()
    assert "alpha-1.0-0" not in urls and "alpha-2.0-0" in urls


def test_remove_force_in_use(world):
    data = json.loads(
        cli(world, "remove", "gamma", "--force-in-use", "-y", "--json", check=True).stdout
    )
    (item,) = data["items"]
    assert "--force-in-use" in item["reasons"][-1]
    assert not os.path.exists(os.path.join(world.pkgs, "gamma-1.0-0"))
    # the copied env keeps working
    assert os.path.isfile(os.path.join(world.env_copy, "share", "gamma", "README"))


def test_remove_nothing_matches(world):
    proc = cli(world, "remove", "nosuch", "-y")
    assert proc.returncode == 0
    assert "no cached package matches nosuch" in proc.stdout


def test_usage_cli_both_ways(world):
    data = json.loads(cli(world, "usage", "--json", "--sizes", check=True).stdout)
    assert data["mode"] == "entries"
    assert_schema(data, "usage")
    by = {e["entry"]: e for e in data["entries"]}
    assert [u["prefix"] for u in by["beta-1.0-0"]["used_by"]] == [world.env_soft]
    assert by["beta-1.0-0"]["used_by"][0]["evidence"] == ["record", "symlink"]
    assert by["beta-1.0-0"]["used_by"][0]["link_type"] == "softlink"
    assert by["eps-1.0-0"]["in_history_of"] == [world.env_hist]
    assert data["totals"] == {
        "entries": 6,
        "in_use": 3,
        "maybe": 0,
        "unused": 3,
        "disk": sum(e["sizes"]["disk"] for e in data["entries"]),
        "shared": sum(e["sizes"]["shared"] for e in data["entries"]),
        "reclaimable": sum(e["sizes"]["reclaimable"] for e in data["entries"]),
    }
    assert by["alpha-2.0-0"]["sizes"]["shared"] > 0
    text = cli(world, "usage", "alpha", check=True).stdout
    assert "alpha" in text and "beta" not in text.split("Name", 1)[1]

    os.unlink(os.path.join(world.pkgs, "gamma-1.0-0.conda"))
    import shutil

    shutil.rmtree(os.path.join(world.pkgs, "gamma-1.0-0"))
    data = json.loads(
        cli(world, "usage", "--env", world.env_copy, "--env", world.env_hard, "--json").stdout
    )
    assert data["mode"] == "environments"
    assert_schema(data, "usage")
    envs = {e["prefix"]: e for e in data["environments"]}
    assert envs[world.env_copy]["missing"] == ["gamma-1.0-0"]
    assert envs[world.env_hard]["packages"][0]["cache_entries"] == [
        os.path.join(world.pkgs, "alpha-2.0-0")
    ]
    assert "MISSING" in cli(world, "usage", "--env", world.env_copy).stdout


def test_usage_env_that_is_not_an_environment(world, tmp_path):
    proc = cli(world, "usage", "--env", str(tmp_path / "nope"))
    assert proc.returncode == 1
    assert "not a conda environment" in proc.stdout


def test_list_and_info_show_usage_and_reclaimable_bytes(world):
    data = json.loads(cli(world, "list", "--usage", "--json", check=True).stdout)
    by = {p["entry"]: p for p in data["packages"]}
    assert by["alpha-2.0-0"]["used_by"] == [world.env_hard]
    assert by["delta-1.0-0"]["used_by"] == []
    hard = by["alpha-2.0-0"]
    assert hard["shared"] > 0 and hard["reclaimable"] == hard["disk"] - hard["shared"]
    assert by["delta-1.0-0"]["reclaimable"] == by["delta-1.0-0"]["disk"]
    assert "Reclaimable" in cli(world, "list", "--usage", check=True).stdout
    assert "used_by" not in json.loads(cli(world, "list", "--json").stdout)["packages"][0]

    info = json.loads(cli(world, "info", "--json", check=True).stdout)
    sizes = info["caches"][0]["sizes"]
    # only alpha-2.0's two payload files are hard-linked into an environment
    payload = [
        os.path.join(world.pkgs, "alpha-2.0-0", "share", "alpha", n) for n in ("README", "data.bin")
    ]
    assert sizes["linked_outside"] == sum(os.stat(p).st_blocks * 512 for p in payload)
    assert sizes["reclaimable"] == sizes["disk"] - sizes["linked_outside"]
    assert info["totals"]["reclaimable"] == sizes["reclaimable"]
    assert "reclaimable" in cli(world, "info", check=True).stdout


def test_clean_all_removes_every_safe_thing_and_breaks_no_environment(world):
    """`clean --all`: unused entries whole, the archives of the entries environments use,
    leftovers and the index cache; every environment still has its files afterwards."""
    os.makedirs(os.path.join(world.pkgs, "cache"))
    with open(os.path.join(world.pkgs, "cache", "abc.json"), "w") as fh:
        fh.write("{}")
    with open(os.path.join(world.pkgs, "zeta-1-0.conda.partial"), "wb") as fh:
        fh.write(b"x" * 10)
    # at an 80-column terminal (piped output is never cut)
    at80 = {**world.env, "COLUMNS": "80"}
    dry = run_cli("clean", "--all", "--dry-run", "--grace", "0", env=at80, check=True).stdout
    assert "Would remove" in dry
    assert all(len(line) <= 80 for line in dry.splitlines() if "# in cache at" not in line)
    data = json.loads(cli(world, "clean", "--all", "--yes", "--json", check=True).stdout)
    assert data["policy"]["all"] is True
    kinds = {(i["kind"], i["name"]) for i in data["items"]}
    # in use (hard, soft, copy): the entry stays, its archive goes
    for used in ("alpha-2.0-0", "beta-1.0-0", "gamma-1.0-0"):
        assert ("archive", used) in kinds and ("package", used) not in kinds
        assert os.path.isdir(os.path.join(world.pkgs, used))
        assert not os.path.exists(os.path.join(world.pkgs, used + ".conda"))
    for unused in ("alpha-1.0-0", "delta-1.0-0"):
        assert ("package", unused) in kinds and ("archive", unused) not in kinds
        assert not os.path.exists(os.path.join(world.pkgs, unused))
    assert not os.path.exists(os.path.join(world.pkgs, "cache"))
    assert not os.path.exists(os.path.join(world.pkgs, "zeta-1-0.conda.partial"))
    for env in (world.env_hard, world.env_soft, world.env_copy):
        meta = [f for f in os.listdir(os.path.join(env, "conda-meta")) if f.endswith(".json")]
        with open(os.path.join(env, "conda-meta", meta[0])) as fh:
            for rel in json.load(fh)["files"]:
                assert os.path.exists(os.path.join(env, rel)), rel
    again = cli(world, "clean", "--all", "--dry-run", check=True).stdout
    assert "Nothing to clean" in again


def test_clean_all_refuses_other_package_policies(world):
    proc = cli(world, "clean", "--all", "--keep-latest", "1")
    assert proc.returncode == 2 and "--keep-latest" in proc.stderr
