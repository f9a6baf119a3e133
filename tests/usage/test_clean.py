"""Planning and executing removals: every policy, their combinations, and byte accounting."""

from __future__ import annotations

import os
import time

import pytest
from conftest import populate

from conda_cache_plus.gateways.locks import FileLock
from conda_cache_plus.model.cache_paths import CacheLayout
from conda_cache_plus.model.match import matchers
from conda_cache_plus.usage.footprint import measure
from conda_cache_plus.usage.graph import scan_usage
from conda_cache_plus.usage.policies import (
    PART_EXTRACTED,
    PART_TARBALLS,
    Policy,
    measure_plan,
    merge,
    parse_duration,
    plan_packages,
    plan_temp,
)
from conda_cache_plus.usage.removal import execute_plan

DAY = 86400


def plan_for(world, caches=None, **kw):
    caches = caches or world.caches
    # as clean does: --unused needs only who uses what (the usage scan's verdict mode)
    report = scan_usage(caches.records(), world.environments(), detail=not kw.get("unused"))
    return measure_plan(plan_packages(caches, report, Policy(**kw)))


def names(plan):
    return sorted(i.name for i in plan.items)


def skipped(plan):
    return {s.name: s.reason for s in plan.skipped}


def test_parse_duration():
    assert parse_duration("30d") == 30 * DAY
    assert parse_duration("12h") == 12 * 3600
    assert parse_duration("2w") == 14 * DAY
    assert parse_duration("90m") == 5400
    assert parse_duration("7") == 7 * DAY
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_unused_is_right_for_hardlinks_symlinks_and_copies(world):
    plan = plan_for(world, unused=True)
    # eps is only in history; alpha-1.0 and delta were never installed
    assert names(plan) == ["alpha-1.0-0", "delta-1.0-0", "eps-1.0-0"]
    assert plan.skipped == []  # in-use entries are simply not selected by --unused


def test_keep_history_keeps_what_a_revision_names(world):
    plan = plan_for(world, unused=True, keep_history=True)
    assert names(plan) == ["alpha-1.0-0", "delta-1.0-0"]


def test_older_than_uses_the_newest_link(world):
    plan = plan_for(world, older_than=30 * DAY)
    # beta was linked 90 days ago but is in use (softlinked): kept, and said so
    assert names(plan) == ["alpha-1.0-0", "delta-1.0-0", "eps-1.0-0"]
    assert skipped(plan) == {"beta-1.0-0": "in use"}
    assert plan_for(world, older_than=365 * DAY).items == []


def test_keep_latest_per_name(world, build):
    populate(world.pkgs, [build("alpha", "1.10", "0"), build("alpha", "1.9", "0")])
    plan = plan_for(world, keep_latest=2)
    # versions of alpha by version order: 2.0, 1.10, 1.9, 1.0 → the two oldest go
    assert names(plan) == ["alpha-1.0-0", "alpha-1.9-0"]
    plan = plan_for(world, keep_latest=0)
    assert "alpha-2.0-0" in skipped(plan)  # in use, never removed


def test_policies_combine_with_and(world):
    # unused AND older than 30 days AND not the newest alpha
    plan = plan_for(world, unused=True, older_than=30 * DAY, keep_latest=1)
    assert names(plan) == ["alpha-1.0-0"]
    # touching alpha-1.0 makes it recent: nothing left
    rec = next(r for r in world.caches.records() if r.basename == "alpha-1.0-0")
    os.utime(rec.extracted_package_dir + "/info/repodata_record.json")
    assert plan_for(world, unused=True, older_than=30 * DAY, keep_latest=1).items == []


def test_max_size_removes_least_recently_used_first(world):
    recs = {r.basename: r for r in world.caches.records()}
    now = time.time()
    for i, dist in enumerate(["delta-1.0-0", "eps-1.0-0", "alpha-1.0-0"]):
        t = now - (100 - i) * DAY  # delta oldest
        os.utime(recs[dist].extracted_package_dir + "/info/repodata_record.json", (t, t))
    full = plan_for(world, unused=True)
    sizes = {i.name: i.bytes.disk for i in full.items}
    total = sum(
        measure([r.archive_path(e) for e in r.archives] + [r.extracted_package_dir]).disk
        for r in world.caches.records()
    )
    budget = total - sizes["delta-1.0-0"] - 1  # needs two removals
    plan = plan_for(world, max_size=budget)
    assert names(plan) == ["delta-1.0-0", "eps-1.0-0"]
    assert plan.notes == []
    impossible = plan_for(world, max_size=0)
    assert names(impossible) == ["alpha-1.0-0", "delta-1.0-0", "eps-1.0-0"]
    assert "cannot be met" in impossible.notes[0]


def test_tarballs_and_extracted_parts(world, build):
    only_archive = build("iota", "1.0", "0")
    populate(world.pkgs, [only_archive], extract=False)
    plan = plan_for(world, part=PART_TARBALLS)
    # every archive whose dir is complete, in use or not (environments never link archives)
    assert all(i.kind == "archive" for i in plan.items)
    assert all(p.endswith(".conda") for i in plan.items for p in i.paths)
    assert "iota-1.0-0" not in names(plan)
    assert "alpha-2.0-0" in names(plan)
    plan = plan_for(world, part=PART_EXTRACTED, unused=True)
    assert names(plan) == ["alpha-1.0-0", "delta-1.0-0", "eps-1.0-0"]
    assert all(i.paths == [os.path.join(world.pkgs, i.name)] for i in plan.items)
    plan = plan_for(world, part=PART_EXTRACTED)
    assert skipped(plan)["beta-1.0-0"] == "in use"  # the softlinked env needs the dir


def test_entry_being_written_is_kept(world):
    layout = CacheLayout(world.pkgs)
    with FileLock(layout.entry_lock("delta-1.0-0")):
        # held by this process: the lock registry knows, as F_GETLK would for another process
        plan = plan_for(world, unused=True)
    assert skipped(plan) == {"delta-1.0-0": "being written (locked)"}
    assert "delta-1.0-0" not in names(plan)


def test_read_only_cache_is_reported_and_left_alone(world):
    caches = world.caches
    # we run as root in CI, where permissions cannot make a cache read-only: set the verdict
    caches.caches[0]._writable = (False, "read-only file system")
    plan = plan_for(world, caches=caches, unused=True)
    assert plan.items == []
    assert set(skipped(plan).values()) == {"read-only cache"}
    assert plan.read_only == [world.pkgs]


def test_execute_removes_exactly_the_plan_and_stats_add_up(world):
    plan = plan_for(world, unused=True)
    before = {i.name: i.bytes.to_json() for i in plan.items}
    stats = execute_plan(plan)
    assert [i.status for i in plan.items] == ["removed"] * 3
    for item in plan.items:
        assert not any(os.path.lexists(p) for p in item.paths)
    assert stats.items == 3 and stats.failed == 0
    assert stats.files == sum(b["files"] for b in before.values())
    assert stats.dirs == sum(b["dirs"] for b in before.values())
    assert stats.bytes == sum(b["apparent"] for b in before.values())
    assert stats.urls_lines == 3
    with open(os.path.join(world.pkgs, "urls.txt")) as fh:
        assert not any(n in fh.read() for n in ("alpha-1.0-0", "delta", "eps"))
    # everything else is untouched, and envs still work
    remaining = sorted(r.basename for r in world.caches.records())
    assert remaining == ["alpha-2.0-0", "beta-1.0-0", "gamma-1.0-0"]
    assert os.path.isfile(os.path.join(world.env_soft, "share", "beta", "README"))
    # idempotent: running the same plan again counts not-found as done
    again = execute_plan(plan)
    assert again.items == 3 and again.already_gone == 3 and again.files == 0


def test_freed_counts_shared_inodes_once(world, tmp_path):
    """An archive hard-linked into a second cache frees nothing unless both copies go."""
    from conda_cache_plus.layouts.caches import PackageCaches

    other = tmp_path / "pkgs2"
    other.mkdir()
    (other / "urls.txt").write_text("")
    src = os.path.join(world.pkgs, "delta-1.0-0.conda")
    os.link(src, other / "delta-1.0-0.conda")
    caches = PackageCaches([world.pkgs, str(other)], use_index=False)
    report = scan_usage(caches.records(), world.environments())
    plan = measure_plan(plan_packages(caches, report, Policy(specs=matchers(["delta"]))))
    first, second = plan.items
    blocks = os.stat(src).st_blocks * 512
    assert first.bytes.freed == first.bytes.disk - blocks
    assert second.bytes.freed == blocks
    assert plan.totals()["freed"] == first.bytes.freed + second.bytes.freed
    assert plan.still_linked == 0
    only_one = measure_plan(
        plan_packages(
            PackageCaches([world.pkgs], use_index=False), report, Policy(specs=matchers(["delta"]))
        )
    )
    assert only_one.still_linked == blocks


def test_temp_leftovers_and_index_cache(world):
    pkgs = world.pkgs
    old = time.time() - 3600
    for name in ("x-1-0.conda.partial", "y-1-0.conda.c~", "z.conda_trash"):
        path = os.path.join(pkgs, name)
        with open(path, "wb") as fh:
            fh.write(b"x" * 100)
        os.utime(path, (old, old))
    fresh_hold = os.path.join(pkgs, "w-1-0.conda.c~")
    open(fresh_hold, "wb").close()
    os.makedirs(os.path.join(pkgs, "cache"))
    with open(os.path.join(pkgs, "cache", "abc.json"), "w") as fh:
        fh.write("{}")
    plan = plan_temp(world.caches, temp=True, index_cache=True)
    assert names(plan) == ["cache", "x-1-0.conda.partial", "y-1-0.conda.c~", "z.conda_trash"]
    assert "w-1-0.conda.c~" in skipped(plan)
    assert plan_temp(world.caches, temp=False, index_cache=False).items == []
    merged = merge(plan, plan_for(world, unused=True))
    assert len(merged.items) == 7
