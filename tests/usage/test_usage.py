"""Who uses what: records, hard links, symlinks, copies and history, on real environments."""

from __future__ import annotations

import json
import os

import pytest
from conftest import populate
from envtools import make_env

from conda_cache_plus.envs.discovery import Environment
from conda_cache_plus.layouts.caches import PackageCaches
from conda_cache_plus.usage.env_records import history_dists
from conda_cache_plus.usage.footprint import measure
from conda_cache_plus.usage.graph import scan_usage, usage_map


def users(report, dist):
    for u in report.entries.values():
        if u.record.basename == dist:
            return {os.path.basename(p): kinds for p, kinds in u.users.items()}
    raise KeyError(dist)


def test_every_way_of_linking_is_seen(world):
    report = scan_usage(world.caches.records(), world.environments())
    assert users(report, "alpha-2.0-0") == {"hard": {"record", "hardlink"}}
    assert users(report, "beta-1.0-0") == {"soft": {"record", "symlink"}}
    assert users(report, "gamma-1.0-0") == {"copy": {"record"}}
    for unused in ("alpha-1.0-0", "delta-1.0-0", "eps-1.0-0"):
        assert users(report, unused) == {}
    link_types = {
        u.record.basename: set(u.link_types.values()) for u in report.entries.values() if u.users
    }
    assert link_types == {
        "alpha-2.0-0": {"hardlink"},
        "beta-1.0-0": {"softlink"},
        "gamma-1.0-0": {"copy"},
    }


def test_history_names_uninstalled_packages(world):
    assert history_dists(world.env_hist) == {"eps-1.0-0"}
    report = scan_usage(world.caches.records(), world.environments())
    eps = next(u for u in report.entries.values() if u.record.name == "eps")
    assert not eps.in_use
    assert eps.history == {world.env_hist}


def test_usage_map_shape(world):
    out = usage_map(world.caches, world.environments())
    alpha2 = os.path.join(world.pkgs, "alpha-2.0-0")
    assert out[alpha2] == [world.env_hard]
    assert out[os.path.join(world.pkgs, "delta-1.0-0")] == []


def test_last_used_is_the_newest_link(world):
    report = scan_usage(world.caches.records(), world.environments())
    by = {u.record.basename: u for u in report.entries.values()}
    meta = os.path.join(world.env_hard, "conda-meta", "alpha-2.0-0.json")
    assert by["alpha-2.0-0"].last_used == pytest.approx(os.stat(meta).st_mtime)
    # beta was linked 90 days ago and extracted 90 days ago
    assert by["beta-1.0-0"].last_used < by["alpha-2.0-0"].last_used - 80 * 86400
    # never linked: the entry's own time
    assert by["delta-1.0-0"].last_used == pytest.approx(by["delta-1.0-0"].record.mtime)


def test_hardlink_into_a_second_cache_is_found(tmp_path, build):
    """The env's record points at cache A, its files are hard links into cache B's copy."""
    pkg = build("zeta", "1.0", "0")
    a = populate(tmp_path / "a", [pkg])
    b = populate(tmp_path / "b", [pkg])
    rec_b = next(iter(PackageCaches([b]).records()))
    env = make_env(tmp_path / "env", [rec_b])
    meta = os.path.join(env, "conda-meta", "zeta-1.0-0.json")
    with open(meta) as fh:
        data = json.load(fh)
    data["link"]["source"] = data["extracted_package_dir"] = os.path.join(a, "zeta-1.0-0")
    with open(meta, "w") as fh:
        json.dump(data, fh)
    report = scan_usage(PackageCaches([a, b]).records(), [Environment(env, ["--env"])])
    got = {u.record.pkgs_dir: u.users.get(env) for u in report.entries.values()}
    assert got == {a: {"record"}, b: {"hardlink"}}


def test_fallback_matching_by_url_when_the_source_dir_is_gone(tmp_path, build):
    pkg = build("eta", "1.0", "0")
    old = populate(tmp_path / "old", [pkg])
    rec = next(iter(PackageCaches([old]).records()))
    env = make_env(tmp_path / "env", [rec], mode="copy")
    new = populate(tmp_path / "new", [pkg])
    import shutil

    shutil.rmtree(old)
    report = scan_usage(PackageCaches([new]).records(), [Environment(env, ["--env"])])
    (u,) = report.entries.values()
    assert u.users == {env: {"record"}}
    assert report.missing[env] == []


def test_package_in_no_cache_is_missing(world, tmp_path):
    report = scan_usage(PackageCaches([str(tmp_path / "empty")]).records(), world.environments())
    assert [p.dist for p in report.missing[world.env_hard]] == ["alpha-2.0-0"]


def test_unreadable_record_is_a_problem_not_a_crash(world):
    with open(os.path.join(world.env_copy, "conda-meta", "broken-1-0.json"), "w") as fh:
        fh.write("{not json")
    report = scan_usage(world.caches.records(), world.environments())
    state = next(s for s in report.envs if s.env.prefix == world.env_copy)
    assert any("broken-1-0.json" in p for p in state.problems)


def test_sizes_understand_hard_links(world):
    rec = next(r for r in world.caches.records() if r.basename == "alpha-2.0-0")
    linked = measure([rec.extracted_package_dir])
    # the payload is hard-linked into the env: on disk but not reclaimable
    payload = os.path.join(rec.extracted_package_dir, "share", "alpha", "data.bin")
    assert os.stat(payload).st_nlink == 2
    assert linked.freed < linked.disk
    assert linked.shared >= os.stat(payload).st_blocks * 512
    unused = next(r for r in world.caches.records() if r.basename == "delta-1.0-0")
    alone = measure([unused.extracted_package_dir])
    assert alone.freed == alone.disk and alone.shared == 0


def test_footprint_counts_an_inode_once_at_its_last_link(tmp_path):
    from conda_cache_plus.usage.footprint import Footprint

    a = tmp_path / "a"
    a.write_bytes(b"x" * 10000)
    os.link(a, tmp_path / "b")
    fp = Footprint()
    first = fp.add([str(a)])
    second = fp.add([str(tmp_path / "b")])
    assert first.freed == 0 and first.disk > 0
    assert second.freed == first.disk
    assert first.apparent == second.apparent == 10000
    assert fp.still_linked() == 0
