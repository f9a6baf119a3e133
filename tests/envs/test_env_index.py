"""The remembered usage scan: reused only while the files are unchanged, never trusted over them."""

from __future__ import annotations

import json
import os
import shutil

from conftest import populate
from envtools import make_env

from conda_cache_plus.envs import env_index
from conda_cache_plus.envs.discovery import Environment
from conda_cache_plus.layouts.caches import PackageCaches
from conda_cache_plus.usage.graph import scan_usage


def users(report, dist):
    for u in report.entries.values():
        if u.record.basename == dist:
            return {os.path.basename(p): kinds for p, kinds in u.users.items()}
    raise KeyError(dist)


def meta_json(prefix, dist):
    return os.path.join(prefix, "conda-meta", dist + ".json")


def rewrite(path, **changes):
    with open(path) as fh:
        data = json.load(fh)
    data.update(changes)
    with open(path, "w") as fh:
        json.dump(data, fh)


def test_unchanged_records_come_from_the_index(world, no_racy_window):
    first = scan_usage(world.caches.records(), world.environments())
    remembered = env_index.load(world.env_hard)
    assert set(remembered["records"]) == {"alpha-2.0-0.json"}
    assert remembered["history"][1] == ["alpha-2.0-0"]
    # Prove the index is what the next scan reads: plant a different name in the remembered
    # record while its fingerprint still matches the file.
    slot = remembered["records"]["alpha-2.0-0.json"]
    slot[1] = ("planted", *slot[1][1:])
    env_index.save(world.env_hard, remembered)
    again = scan_usage(world.caches.records(), world.environments())
    pkg = next(s for s in again.envs if s.env.prefix == world.env_hard).packages[0]
    assert pkg.name == "planted"
    assert users(again, "alpha-2.0-0") == users(first, "alpha-2.0-0")


def test_a_changed_record_is_read_again(world, no_racy_window):
    scan_usage(world.caches.records(), world.environments())
    # the environment now says it was linked from alpha-1.0 (as after `conda install alpha=1`)
    a1 = world.rec["alpha-1.0-0"]
    rewrite(
        meta_json(world.env_hard, "alpha-2.0-0"),
        name="alpha",
        version="1.0",
        url=a1.url,
        fn=a1.fn,
        link={"source": a1.extracted_package_dir, "type": 1},
        extracted_package_dir=a1.extracted_package_dir,
    )
    report = scan_usage(world.caches.records(), world.environments())
    assert users(report, "alpha-1.0-0") == {"hard": {"record"}}
    # the sampled file is compared with entries of the record's own dist only (module docstring)
    assert users(report, "alpha-2.0-0") == {}


def test_added_and_removed_records_are_seen(world, no_racy_window):
    scan_usage(world.caches.records(), world.environments())
    make_env(world.env_copy, [world.rec["delta-1.0-0"]], mode="copy")
    report = scan_usage(world.caches.records(), world.environments())
    assert users(report, "delta-1.0-0") == {"copy": {"record"}}
    assert set(env_index.load(world.env_copy)["records"]) == {
        "gamma-1.0-0.json",
        "delta-1.0-0.json",
    }

    os.unlink(meta_json(world.env_copy, "gamma-1.0-0"))
    report = scan_usage(world.caches.records(), world.environments())
    assert users(report, "gamma-1.0-0") == {}
    assert set(env_index.load(world.env_copy)["records"]) == {"delta-1.0-0.json"}


def test_a_racy_record_is_not_remembered_and_is_read_again(world):
    """Written within the racy window: a same-size rewrite in the same clock tick would keep the
    fingerprint, so it must not be remembered at all."""
    path = meta_json(world.env_copy, "gamma-1.0-0")
    scan_usage(world.caches.records(), world.environments())
    assert "gamma-1.0-0.json" not in env_index.load(world.env_copy).get("records", {})
    # Same size, same mtime: only a re-read can see the change.
    st = os.stat(path)
    with open(path) as fh:
        text = fh.read()
    assert '"gamma"' in text
    with open(path, "w") as fh:
        fh.write(text.replace('"gamma"', '"gammb"', 1))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size
    report = scan_usage(world.caches.records(), world.environments())
    state = next(s for s in report.envs if s.env.prefix == world.env_copy)
    assert [p.name for p in state.packages] == ["gammb"]


def test_a_replaced_file_drops_the_remembered_link_evidence(world, no_racy_window):
    first = scan_usage(world.caches.records(), world.environments())
    assert users(first, "alpha-2.0-0") == {"hard": {"record", "hardlink"}}
    assert users(first, "beta-1.0-0") == {"soft": {"record", "symlink"}}
    # pip (or a user) replaced the sampled hard-linked file by a copy, and the symlink by a copy
    sampled = [
        (s.env.prefix, rel)
        for s in first.envs
        if s.env.prefix in (world.env_hard, world.env_soft)
        for p in s.packages
        for rel in p.samples
    ]
    assert len(sampled) == 2
    for prefix, rel in sampled:
        path = os.path.join(prefix, rel)
        tmp = path + ".new"
        shutil.copyfile(path, tmp)
        os.replace(tmp, path)
    report = scan_usage(world.caches.records(), world.environments())
    assert users(report, "alpha-2.0-0") == {"hard": {"record"}}
    assert users(report, "beta-1.0-0") == {"soft": {"record"}}


def test_a_cache_added_later_is_checked_for_hard_links(tmp_path, build, no_racy_window):
    """The remembered sample only covers the entries it was compared with."""
    pkg = build("zeta", "1.0", "0")
    a = populate(tmp_path / "a", [pkg])
    b = populate(tmp_path / "b", [pkg])
    rec_b = next(iter(PackageCaches([b]).records()))
    env = make_env(tmp_path / "env", [rec_b])
    rewrite(
        meta_json(env, "zeta-1.0-0"),
        link={"source": os.path.join(a, "zeta-1.0-0"), "type": 1},
        extracted_package_dir=os.path.join(a, "zeta-1.0-0"),
    )
    envs = [Environment(env, ["--env"])]
    only_a = scan_usage(PackageCaches([a]).records(), envs)
    assert {u.record.pkgs_dir: u.users.get(env) for u in only_a.entries.values()} == {a: {"record"}}
    both = scan_usage(PackageCaches([a, b]).records(), envs)
    got = {u.record.pkgs_dir: u.users.get(env) for u in both.entries.values()}
    assert got == {a: {"record"}, b: {"hardlink"}}


def test_without_the_index_nothing_is_written(world, no_racy_window):
    scan_usage(world.caches.records(), world.environments(), use_index=False)
    assert env_index.load(world.env_hard) == {}
    assert not os.path.exists(env_index.index_path(world.env_hard))


def test_a_damaged_index_is_ignored(world, no_racy_window):
    first = scan_usage(world.caches.records(), world.environments())
    path = env_index.index_path(world.env_hard)
    with open(path, "wb") as fh:
        fh.write(b"\x00garbage")
    again = scan_usage(world.caches.records(), world.environments())
    assert users(again, "alpha-2.0-0") == users(first, "alpha-2.0-0")
    assert "alpha-2.0-0.json" in env_index.load(world.env_hard)["records"]
