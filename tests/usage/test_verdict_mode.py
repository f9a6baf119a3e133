"""The usage scan's verdict mode (``scan_usage(detail=False)``, what ``clean --unused`` uses):
the same users, maybe-users, history and last link of every entry as the full scan, on the first
scan and on remembered ones, whatever changed on disk in between."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from envtools import make_env, uninstall

from conda_cache_plus.envs import env_index
from conda_cache_plus.layouts.caches import PackageCaches
from conda_cache_plus.usage.graph import scan_usage


def verdicts(report) -> dict:
    return {
        path: (sorted(u.users), dict(u.maybe), sorted(u.history), u.last_used)
        for path, u in report.entries.items()
    }


def forget(world) -> None:
    for env in world.environments():
        env_index.forget(env.prefix)


def agree(world, caches=None, *, remembered=False) -> dict:
    """Both scans' verdicts, which must be equal; ``remembered``: the verdict mode's from what
    an earlier verdict-mode scan (``fill``) left in the index, the full one's from the disk."""
    caches = caches or world.caches
    envs = world.environments()
    full = scan_usage(caches.records(), envs, use_index=False)
    quick = scan_usage(caches.records(), envs, use_index=remembered, detail=False)
    assert verdicts(quick) == verdicts(full)
    return verdicts(quick)


def fill(world, caches=None):
    return scan_usage((caches or world.caches).records(), world.environments(), detail=False)


def users_of(found: dict, dist: str) -> list[str]:
    hits = [v[0] for path, v in found.items() if os.path.basename(path) == dist]
    assert len(hits) == 1, found
    return [os.path.basename(p) for p in hits[0]]


def meta_json(prefix, dist):
    return os.path.join(prefix, "conda-meta", dist + ".json")


def test_the_world_every_way_linked(world):
    found = agree(world)
    assert users_of(found, "alpha-2.0-0") == ["hard"]
    assert users_of(found, "beta-1.0-0") == ["soft"]
    assert users_of(found, "gamma-1.0-0") == ["copy"]
    assert users_of(found, "alpha-1.0-0") == []
    # the shortcut was taken: records matched by their names, no package matched in full
    quick = scan_usage(world.caches.records(), world.environments(), detail=False)
    assert all(s.named and not s.packages for s in quick.envs if s.env.prefix != world.env_hist)


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", ""])
def test_an_unreadable_record_is_maybe(world, content):
    with open(meta_json(world.env_hard, "alpha-2.0-0"), "w") as fh:
        fh.write(content)
    found = agree(world)
    (maybe,) = [v[1] for p, v in found.items() if p.endswith("alpha-2.0-0")]
    assert list(maybe) == [world.env_hard]


def test_a_record_named_after_another_package_is_matched_in_full(world):
    """conda names a record after its package; one that is not (renamed by hand) is matched by
    what it says, as the full scan does."""
    os.rename(meta_json(world.env_copy, "gamma-1.0-0"), meta_json(world.env_copy, "zeta-1.0-0"))
    found = agree(world)
    assert users_of(found, "gamma-1.0-0") == ["copy"]


@pytest.mark.parametrize("field", ["url", "fn", "source", "name"])
def test_a_record_pointing_at_another_entry_is_matched_in_full(world, field):
    """gamma's record says, in one field, that it came from delta's entry."""
    path = meta_json(world.env_copy, "gamma-1.0-0")
    with open(path) as fh:
        data = json.load(fh)
    other = world.rec["delta-1.0-0"]
    if field == "source":
        data["link"]["source"] = data["extracted_package_dir"] = other.extracted_package_dir
    elif field == "name":
        data.update(name="delta", build="0", version="1.0", url=None, fn=None)
        data["link"]["source"] = data["extracted_package_dir"] = None
    else:
        data.update(url=other.url if field == "url" else None, fn=other.fn)
        data["link"]["source"] = data["extracted_package_dir"] = "/elsewhere/gamma-1.0-0"
    with open(path, "w") as fh:
        json.dump(data, fh)
    found = agree(world)
    assert users_of(found, "delta-1.0-0") == ["copy"]


def test_an_entry_not_named_after_its_package_turns_the_shortcut_off(world):
    """A record of any name might point at such an entry: every record is matched in full."""
    d = world.rec["delta-1.0-0"].extracted_package_dir
    renamed = os.path.join(world.pkgs, "delta-renamed")
    os.rename(d, renamed)
    make_env(world.env_copy, [renamed], mode="copy")
    # the record names its package consistently, and was linked from a cache not scanned: its
    # URL is what matches the renamed entry
    path = meta_json(world.env_copy, "delta-1.0-0")
    with open(path) as fh:
        data = json.load(fh)
    data["link"]["source"] = data["extracted_package_dir"] = "/elsewhere/delta-1.0-0"
    with open(path, "w") as fh:
        json.dump(data, fh)
    found = agree(world)
    assert users_of(found, "delta-renamed") == ["copy"]
    quick = scan_usage(world.caches.records(), world.environments(), detail=False)
    assert not any(s.named for s in quick.envs)


@pytest.mark.parametrize("how", ["cp", "cp -l"])
def test_several_copies_are_told_apart_by_the_record(world, tmp_path, how):
    """The record's link source names one copy; the other is used only if hard-linked."""
    second = str(tmp_path / "pkgs2")
    os.makedirs(second)
    args = ["cp", "-a"] + (["-l"] if how == "cp -l" else [])
    subprocess.run([*args, world.rec["alpha-2.0-0"].extracted_package_dir, second], check=True)
    with open(os.path.join(second, "urls.txt"), "w"):
        pass
    caches = PackageCaches([world.pkgs, second], use_index=False)
    found = agree(world, caches)
    used = {p: v[0] for p, v in found.items() if p.endswith("alpha-2.0-0")}
    assert used[world.rec["alpha-2.0-0"].extracted_package_dir] == [world.env_hard]
    assert used[os.path.join(second, "alpha-2.0-0")] == ([world.env_hard] if "-l" in how else [])


# --- remembered: what changed between two runs changes the verdict ----------------------------
def test_remembered_unchanged(world, no_racy_window):
    fill(world)
    assert env_index.load(world.env_hard)["records"]["alpha-2.0-0.json"][1] is None
    agree(world, remembered=True)


def test_remembered_record_added(world, no_racy_window):
    fill(world)
    make_env(world.env_copy, [world.rec["delta-1.0-0"]], mode="copy")
    found = agree(world, remembered=True)
    assert users_of(found, "delta-1.0-0") == ["copy"]


def test_remembered_record_removed(world, no_racy_window):
    fill(world)
    uninstall(world.env_hard, "alpha-2.0-0")
    found = agree(world, remembered=True)
    assert users_of(found, "alpha-2.0-0") == []


@pytest.mark.parametrize("how", ["invalid", "other package", "same size"])
def test_remembered_record_rewritten_in_place(world, no_racy_window, how):
    """Rewritten where it is (no create, delete or rename in conda-meta): its own fingerprint
    says so, the listing's cannot."""
    fill(world)
    path = meta_json(world.env_copy, "gamma-1.0-0")
    with open(path) as fh:
        text = fh.read()
    if how == "invalid":
        text = "{not json"
    elif how == "other package":
        data = json.loads(text)
        delta = world.rec["delta-1.0-0"].extracted_package_dir
        data["link"]["source"] = data["extracted_package_dir"] = delta
        text = json.dumps(data)
    else:  # a same-size edit: only the mtime/ctime tell
        text = text.replace('"gamma"', '"gammb"', 1)
    before = os.stat(path)
    with open(path, "r+") as fh:  # in place: the same inode
        fh.write(text)
        fh.truncate()
    if os.stat(path).st_mtime_ns == before.st_mtime_ns:  # the same coarse clock tick
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))
    found = agree(world, remembered=True)
    if how == "other package":
        assert users_of(found, "delta-1.0-0") == ["copy"]
    elif how == "invalid":
        assert users_of(found, "gamma-1.0-0") == []
    else:  # no longer named after its package: matched in full, by its link source
        assert users_of(found, "gamma-1.0-0") == ["copy"]


def test_remembered_by_a_full_scan_serves_the_verdict_mode_and_back(world, no_racy_window):
    scan_usage(world.caches.records(), world.environments())  # usage: the full index
    full = env_index.load(world.env_hard)["records"]["alpha-2.0-0.json"]
    assert full[1] is not None
    agree(world, remembered=True)
    # the verdict mode keeps what the full scan remembered (a later usage reuses it)
    assert env_index.load(world.env_hard)["records"]["alpha-2.0-0.json"] == full
    # and a full scan never takes a names-only slot for a reduced record
    forget(world)
    fill(world)
    report = scan_usage(world.caches.records(), world.environments())
    state = next(s for s in report.envs if s.env.prefix == world.env_hard)
    assert [p.name for p in state.packages] == ["alpha"]
    assert env_index.load(world.env_hard)["records"]["alpha-2.0-0.json"][1] is not None


def test_remembered_cache_gains_a_second_copy(world, tmp_path, no_racy_window):
    """A dist cached once when remembered, twice now: its records are matched in full."""
    fill(world)
    second = str(tmp_path / "pkgs2")
    os.makedirs(second)
    shutil.copytree(world.rec["alpha-2.0-0"].extracted_package_dir, second + "/alpha-2.0-0")
    with open(os.path.join(second, "urls.txt"), "w"):
        pass
    caches = PackageCaches([world.pkgs, second], use_index=False)
    found = agree(world, caches, remembered=True)
    assert found[os.path.join(second, "alpha-2.0-0")][0] == []


# --- without history (clean without --keep-history) ---------------------------------------------
def test_without_history_only_history_is_left_out(world):
    envs = world.environments()
    full = scan_usage(world.caches.records(), envs, use_index=False)
    bare = scan_usage(world.caches.records(), envs, use_index=False, detail=False, history=False)
    assert {p: v[:2] + v[3:] for p, v in verdicts(bare).items()} == {
        p: v[:2] + v[3:] for p, v in verdicts(full).items()
    }
    assert any(u.history for u in full.entries.values())
    assert not any(u.history for u in bare.entries.values())
    assert not any(s.history_dists for s in bare.envs)


def test_history_remembered_then_skipped_then_changed_is_read_again(world, no_racy_window):
    """A scan without history keeps what the index remembers of it, unchecked; the next scan
    that asks for it checks it against the file, which changed meanwhile."""
    scan_usage(world.caches.records(), world.environments())
    remembered = env_index.load(world.env_hist)["history"]
    fill_bare = scan_usage(
        world.caches.records(), world.environments(), detail=False, history=False
    )
    assert not any(u.history for u in fill_bare.entries.values())
    assert env_index.load(world.env_hist)["history"] == remembered
    path = os.path.join(world.env_hist, "conda-meta", "history")
    with open(path, "a") as fh:  # in place: the same inode, a new revision
        fh.write("==> 2026-12-07 00:00:00 <==\n+defaults/noarch::delta-1.0-0\n")
    found = agree(world, remembered=True)
    (hist,) = [v[2] for p, v in found.items() if p.endswith("delta-1.0-0")]
    assert hist == [world.env_hist]
