"""Never remove what an environment may use (issue 11 items 5 and 6, issue 12): environments we
cannot read fully, environments we do not know (hard links from outside), installs running now
(the grace period, other tools' locks). Through the command line, in real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from conftest import populate, run_cli
from envtools import make_env

from conda_cache_plus.gateways.locks import CONDA_LOCK_BYTE


def cli(world, *args, env=None):
    return run_cli(*args, env={**world.env, **(env or {})})


def clean(world, *args, env=None):
    proc = cli(world, "clean", "--json", *args, env=env)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def removed(data) -> set[str]:
    return {i["name"] for i in data["items"]}


def kept(data) -> dict[str, str]:
    return {s["name"]: s["reason"] for s in data["skipped"]}


def exists(world, entry) -> bool:
    return os.path.isdir(os.path.join(world.pkgs, entry))


# --- item 5: an environment we cannot read fully ------------------------------------------------
def break_record(prefix, dist, how="invalid"):
    path = os.path.join(prefix, "conda-meta", dist + ".json")
    if how == "invalid":
        with open(path, "w") as fh:
            fh.write("{not json")
    elif how == "not-a-dict":
        with open(path, "w") as fh:
            fh.write("[1, 2]")
    return path


@pytest.mark.parametrize("how", ["invalid", "not-a-dict"])
def test_clean_keeps_what_an_unreadable_record_may_use(world, how):
    # the environment uses alpha-2.0 by hard links, but its record cannot be read
    break_record(world.env_hard, "alpha-2.0-0", how)
    data = clean(world, "--unused", "--grace", "0", "-y")
    assert "alpha-2.0-0" not in removed(data)
    assert kept(data)["alpha-2.0-0"].startswith("may be in use"), kept(data)
    assert "alpha-2.0-0.json" in kept(data)["alpha-2.0-0"]
    assert exists(world, "alpha-2.0-0")
    assert any(world.env_hard in n for n in data["notes"]), data["notes"]
    # the truly unused ones still go
    assert {"alpha-1.0-0", "delta-1.0-0"} <= removed(data)


def test_clean_force_unsure_removes_it(world):
    break_record(world.env_hard, "alpha-2.0-0")
    # a record we cannot read, and the hard links are then "from outside": forced, both go
    data = clean(world, "--unused", "--grace", "0", "--force-unsure", "-y")
    assert "alpha-2.0-0" in removed(data)
    assert not exists(world, "alpha-2.0-0")


def test_remove_keeps_it_and_says_so(world):
    break_record(world.env_hard, "alpha-2.0-0")
    proc = cli(world, "remove", "alpha", "-y")
    assert proc.returncode == 0, proc.stdout + proc.stderr  # refusing is the policy (README)
    assert "may be in use" in " ".join(proc.stdout.split())  # (wrapped at 80 columns)
    assert "--force-in-use" in proc.stderr
    assert exists(world, "alpha-2.0-0")
    assert not exists(world, "alpha-1.0-0")  # nobody may use this one
    proc = cli(world, "remove", "alpha", "-y", "--force-in-use")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not exists(world, "alpha-2.0-0")


def test_usage_names_the_maybe_users(world):
    break_record(world.env_hard, "alpha-2.0-0")
    data = json.loads(cli(world, "usage", "--json").stdout)
    entry = next(e for e in data["entries"] if e["entry"] == "alpha-2.0-0")
    assert [m["prefix"] for m in entry["maybe_used_by"]] == [world.env_hard]
    text = " ".join(cli(world, "usage", "-v").stdout.split())
    assert f"alpha-2.0-0 <- maybe {world.env_hard}" in text


def test_record_named_like_no_package_protects_everything(world):
    with open(os.path.join(world.env_copy, "conda-meta", "garbage.json"), "w") as fh:
        fh.write("\0\0")
    data = clean(world, "--unused", "--grace", "0", "-y")
    assert removed(data) == set()
    assert all(r.startswith("may be in use") for n, r in kept(data).items() if n != "eps-1.0-0")


# --- issue 12: environments we do not know ------------------------------------------------------
def test_unknown_hard_linked_env_keeps_its_packages(world, tmp_path):
    unknown = make_env(tmp_path / "elsewhere" / "env", [world.rec["delta-1.0-0"]])
    data = clean(world, "--unused", "--grace", "0", "-y")
    assert "delta-1.0-0" not in removed(data)
    assert "linked from outside the known environments" in kept(data)["delta-1.0-0"]
    assert "alpha-1.0-0" in removed(data)
    with open(os.path.join(unknown, "share", "delta", "README")) as fh:
        assert fh.read()
    # forced, it goes (the environment keeps its own hard links)
    data = clean(world, "--unused", "--grace", "0", "-y", "--force-unsure")
    assert "delta-1.0-0" in removed(data)


def test_unknown_softlinked_env_is_invisible_but_warned_about(world, tmp_path):
    """What the README says cannot be seen: symlinks from an environment nobody registered."""
    unknown = make_env(tmp_path / "elsewhere" / "soft", [world.rec["delta-1.0-0"]], mode="softlink")
    env = {"CONDA_REGISTER_ENVS": "false"}
    data = clean(world, "--unused", "--grace", "0", "--dry-run", env=env)
    assert "delta-1.0-0" in removed(data)  # nothing in the cache shows the symlinks
    assert any("register_envs is off" in n for n in data["notes"]), data["notes"]
    # named, it is known, and its entry stays
    data = clean(world, "--unused", "--grace", "0", "-y", "--env", unknown, env=env)
    assert "delta-1.0-0" not in removed(data)
    with open(os.path.join(unknown, "share", "delta", "README")) as fh:
        assert fh.read()


def test_self_hard_linked_package_is_not_outside(world):
    d = os.path.join(world.pkgs, "delta-1.0-0", "share", "delta")
    os.unlink(os.path.join(d, "README"))
    os.link(os.path.join(d, "data.bin"), os.path.join(d, "README"))
    assert "delta-1.0-0" in removed(clean(world, "--unused", "--grace", "0", "--dry-run"))


def test_a_copy_of_the_cache_is_not_outside(world, tmp_path):
    """The same package hard-linked into a second cache (cp -al) is not an environment."""
    second = str(tmp_path / "pkgs2")
    os.makedirs(second)
    subprocess.run(["cp", "-al", os.path.join(world.pkgs, "delta-1.0-0"), second], check=True)
    with open(os.path.join(second, "urls.txt"), "w"):
        pass
    env = {"CONDA_PKGS_DIRS": f"{world.pkgs},{second}"}
    data = clean(world, "--unused", "--grace", "0", "--dry-run", env=env)
    assert {i["pkgs_dir"] for i in data["items"] if i["name"] == "delta-1.0-0"} == {
        world.pkgs,
        second,
    }


def test_invisible_environments_are_warned_about(world):
    os.unlink(os.path.join(world.home, ".conda", "environments.txt"))
    data = clean(world, "--unused", "--grace", "0", "--dry-run")
    assert any("environments.txt does not exist" in n for n in data["notes"]), data["notes"]
    data = clean(world, "--unused", "--grace", "0", "--dry-run", env={"CONDA_REGISTER_ENVS": "0"})
    assert any("register_envs is off" in n for n in data["notes"]), data["notes"]
    text = cli(world, "clean", "--unused", "--grace", "0", "--dry-run").stdout
    assert "softlinked or reflinked ones are not" in " ".join(text.split())


# --- item 6: an install running now -------------------------------------------------------------
def test_grace_period_keeps_what_just_changed(world):
    # every file of the fixture was just written (ctime is now), whatever its mtime says
    data = clean(world, "--unused", "-y", env={"CONDA_CACHE_PLUS_GRACE": ""})  # the default
    assert removed(data) == set()
    assert "within the grace period" in kept(data)["alpha-1.0-0"]
    assert data["policy"]["grace_seconds"] == 3600
    assert removed(clean(world, "--unused", "--grace", "0", "--dry-run")) >= {"alpha-1.0-0"}
    data = clean(world, "--unused", "--dry-run", env={"CONDA_CACHE_PLUS_GRACE": "2h"})
    assert data["policy"]["grace_seconds"] == 7200 and removed(data) == set()


def test_a_new_hard_link_counts_as_use(world):
    """conda links before it writes the record: a fresh link to an old file is a use."""
    data = clean(world, "--unused", "--grace", "1s", "--dry-run")
    assert "alpha-1.0-0" in removed(data) or "alpha-1.0-0" in kept(data)
    time.sleep(1.2)
    src = os.path.join(world.pkgs, "alpha-1.0-0", "share", "alpha", "README")
    os.link(src, os.path.join(world.tmp, "linking-right-now"))
    os.unlink(os.path.join(world.tmp, "linking-right-now"))  # gone again: only ctime tells
    data = clean(world, "--unused", "--grace", "1h", "--dry-run")
    assert "alpha-1.0-0" in kept(data)


def test_explicit_remove_has_no_grace_period(world):
    proc = cli(world, "remove", "delta", "-y")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not exists(world, "delta-1.0-0")


def _hold(path, how):
    code = (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({path!r}, os.O_RDWR | os.O_CREAT)\n"
        + (
            f"fcntl.lockf(fd, fcntl.LOCK_EX, 1, {CONDA_LOCK_BYTE})\n"
            if how == "conda"
            else "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            if how == "flock"
            else "fcntl.lockf(fd, fcntl.LOCK_EX)\n"
        )
        + "print('held', flush=True)\ntime.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.parametrize(
    "lock,how",
    [
        ("delta-1.0-0.conda.partial", "conda"),
        ("delta-1.0-0.tar.bz2.partial", "conda"),
        ("delta-1.0-0.lock", "mamba"),
        ("delta-1.0-0.conda.lock", "mamba"),
        ("delta-1.0-0.tar.bz2.lock", "mamba"),
        ("delta-1.0-0.lock", "flock"),  # rattler's
    ],
)
def test_entry_another_tool_is_writing_is_kept(world, lock, how):
    holder = _hold(os.path.join(world.pkgs, lock), how)
    try:
        # the plan says so (a dry run), and the removal itself checks again
        why = kept(clean(world, "--unused", "--grace", "0", "--dry-run")).get("delta-1.0-0", "")
        assert why.startswith("being "), why
        data = clean(world, "--unused", "--grace", "0", "-y")
        assert "delta-1.0-0" in kept(data), data
        assert exists(world, "delta-1.0-0")
    finally:
        holder.kill()
        holder.wait()
    data = clean(world, "--unused", "--grace", "0", "-y")
    assert "delta-1.0-0" in removed(data)


def test_mamba_cache_lock_is_taken_while_removing(world):
    """With mamba's pkgs.lock present and held, clean waits and then gives up."""
    lock = os.path.join(world.pkgs, "pkgs.lock")
    holder = _hold(lock, "mamba")
    try:
        proc = cli(world, "clean", "--unused", "--grace", "0", "-y", "--lock-timeout", "0.5")
        assert proc.returncode == 3, proc.stdout + proc.stderr
        assert exists(world, "alpha-1.0-0")
    finally:
        holder.kill()
        holder.wait()


# --- item 5 as a real non-root user: chmod 000 ------------------------------------------------
@pytest.mark.parametrize("what", ["record", "conda-meta"])
def test_unreadable_for_real(what, build):
    from as_user import World as UserWorld

    from conda_cache_plus.layouts.caches import PackageCaches

    w = UserWorld()
    try:
        pkgs = populate(
            os.path.join(w.path, "pkgs"), [build("alpha", "1.0", "0"), build("beta", "1.0", "0")]
        )
        recs = {r.basename: r for r in PackageCaches([pkgs]).records()}
        env = make_env(os.path.join(w.path, "envs", "one"), [recs["alpha-1.0-0"]])
        os.makedirs(os.path.join(w.path, ".conda"))
        open(os.path.join(w.path, ".conda", "environments.txt"), "w").close()
        meta = os.path.join(env, "conda-meta")
        os.chmod(os.path.join(meta, "alpha-1.0-0.json") if what == "record" else meta, 0)
        w.hand_over()
        environ = {
            "CONDA_ENVS_DIRS": os.path.join(w.path, "envs"),
            "CONDA_ROOT": os.path.join(w.path, "no-root"),
            "CONDA_CACHE_PLUS_NO_CONDA": "1",
        }
        proc = w.cli(
            "clean", "--pkgs-dir", pkgs, "--unused", "--grace", "0", "-y", "--json", env=environ
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        data = json.loads(proc.stdout)
        assert "alpha-1.0-0" in kept(data), data
        assert kept(data)["alpha-1.0-0"].startswith("may be in use")
        assert os.path.isdir(os.path.join(pkgs, "alpha-1.0-0"))
        if what == "record":
            assert removed(data) == {"beta-1.0-0"}
        else:  # nothing tells what it uses: everything stays
            assert removed(data) == set()
    finally:
        w.cleanup()
