"""The remembered scan index (format 7): what a repeated scan makes from it is what a scan
without it reads, and a remembered entry is trusted only while its fingerprint holds."""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import pytest
from conftest import populate
from scan_helpers import age

import conda_cache_plus.layouts.conda_pkgs as conda_pkgs
from conda_cache_plus.layouts import scan_index
from conda_cache_plus.layouts.kinds import scan
from conda_cache_plus.model.records import (
    SOURCE_RECORD,
    PackageCacheRecord,
    pack_payload,
    unpack_payload,
)


def _record_path(pkgs, dist):
    return os.path.join(str(pkgs), dist, "info", "repodata_record.json")


def _entries(pkgs):
    return {k: v for k, v in scan_index.load(str(pkgs)).items() if not k.startswith("\0")}


@pytest.fixture
def mixed(tmp_path, build):
    """Complete records with and without an archive beside, one whose record lacks its url
    (urls.txt fills it), one with only index.json, an extra field kept in the record."""
    pkgs = tmp_path / "pkgs"
    plain = build("plain", "1.0", "0", fmt=".conda")
    beside = build("beside", "2.0", "h1", fmt=".conda", depends=["plain >=1"])
    nourl = build("nourl", "3.0", "0", fmt=".conda")
    bare = build("bare", "4.0", "0", fmt=".conda")
    populate(pkgs, [plain, nourl], keep_archive=False)
    populate(pkgs, [beside])
    populate(pkgs, [bare], record=False, keep_archive=False)
    path = _record_path(pkgs, "nourl-3.0-0")
    with open(path) as fh:
        data = json.load(fh)
    del data["url"]
    data["extra_field"] = {"kept": [1, 2]}
    with open(path, "w") as fh:
        json.dump(data, fh)
    age(pkgs)
    return pkgs


def test_repeated_scan_makes_the_records_a_fresh_read_makes(mixed, monkeypatch):
    fresh = {r.entry: r for r in scan(str(mixed), use_index=False).records}
    scan(str(mixed))  # remembers
    reads = []
    real = conda_pkgs.read_json
    monkeypatch.setattr(conda_pkgs, "read_json", lambda p, *fd: reads.append(p) or real(p, *fd))
    again = {r.entry: r for r in scan(str(mixed)).records}
    # everything came from the index (an entry without a record has its index.json read again,
    # as before format 7)
    assert [os.path.relpath(p, str(mixed)) for p in reads] == ["bare-4.0-0/info/index.json"]
    assert set(again) == set(fresh) == {"plain-1.0-0", "beside-2.0-h1", "nourl-3.0-0", "bare-4.0-0"}
    for entry, rec in again.items():
        assert rec.to_json() == fresh[entry].to_json(), entry
        assert rec.data == fresh[entry].data, entry
    assert again["nourl-3.0-0"].url.endswith("/nourl-3.0-0.conda")  # from urls.txt
    assert again["nourl-3.0-0"].data["extra_field"] == {"kept": [1, 2]}
    assert again["beside-2.0-h1"].archives == fresh["beside-2.0-h1"].archives != {}


def test_index_keeps_complete_records_with_a_packed_fingerprint(mixed):
    scan(str(mixed))
    entries = _entries(mixed)
    # complete with a url: packed (the one-stat fast path), with or without an archive beside
    assert type(entries["plain-1.0-0"][0]) is bytes
    assert type(entries["beside-2.0-h1"][0]) is bytes
    # a record without its url is filled from urls.txt on every scan: never the fast path
    assert entries["nourl-3.0-0"][0][0] == "r"
    assert entries["bare-4.0-0"][0][0] == "i"
    # a record file's mtime is not kept: the stat that proves the fingerprint gives it
    assert entries["plain-1.0-0"][5] is None
    assert entries["bare-4.0-0"][5] is not None


def test_a_records_data_is_decoded_only_when_asked_for(mixed):
    scan(str(mixed))
    rec = next(r for r in scan(str(mixed)).records if r.entry == "plain-1.0-0")
    assert rec._payload is not None and rec._core is None  # nothing decoded yet
    assert rec.is_complete and rec.is_extracted and rec.archives == {}
    assert rec.name == "plain"
    assert rec._payload is None and rec._core is not None  # decoded once, the bytes let go
    assert rec.data["name"] == "plain"


@pytest.mark.parametrize("keep_mtime", [True, False])
def test_in_place_rewrite_of_the_same_size_is_read_again(mixed, keep_mtime):
    scan(str(mixed))
    path = _record_path(mixed, "plain-1.0-0")
    st = os.stat(path)
    with open(path, "rb") as fh:
        raw = fh.read()
    new = raw.replace(b'"plain"', b'"plaim"')
    assert len(new) == len(raw) and new != raw
    with open(path, "r+b") as fh:  # same inode, same size
        fh.write(new)
    if keep_mtime:  # and the same mtime: only the ctime tells
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    names = {r.entry: r.name for r in scan(str(mixed)).records}
    assert names["plain-1.0-0"] == "plaim"


def test_replaced_record_is_read_again(mixed):
    scan(str(mixed))
    path = _record_path(mixed, "beside-2.0-h1")
    with open(path) as fh:
        data = json.load(fh)
    data["license"] = "changed"
    st = os.stat(path)
    with open(path + ".new", "w") as fh:
        json.dump(data, fh)
    os.utime(path + ".new", ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(path + ".new", path)  # another inode
    rec = next(r for r in scan(str(mixed)).records if r.entry == "beside-2.0-h1")
    assert rec.data["license"] == "changed"


@pytest.fixture
def far_past_dir(tmp_path):
    """A directory whose file system keeps an mtime before 1677 (ext4 clamps it to 1901;
    tmpfs keeps it): tmp_path, else a temp dir on /dev/shm removed afterwards."""
    far = -(10**19)
    candidates = [str(tmp_path)]
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        candidates.append(tempfile.mkdtemp(prefix="cpx-test-", dir="/dev/shm"))
    try:
        for base in candidates:
            probe = os.path.join(base, "probe")
            open(probe, "w").close()
            try:
                os.utime(probe, ns=(far, far))
                kept = os.stat(probe).st_mtime_ns == far
            except (OSError, OverflowError):
                kept = False
            os.unlink(probe)
            if kept:
                yield base
                break
        else:
            pytest.skip("no file system here keeps an mtime before 1677")
    finally:
        for base in candidates[1:]:
            shutil.rmtree(base, ignore_errors=True)


def test_a_timestamp_a_packed_fingerprint_cannot_hold(far_past_dir, build, monkeypatch):
    """Before 1677 a nanosecond mtime does not fit 64 bits: that entry is remembered as a
    tuple, still one stat per scan, and still read again when it changes."""
    pkgs = os.path.join(far_past_dir, "pkgs")
    populate(pkgs, [build("old", "1.0", "0", fmt=".conda")], keep_archive=False)
    age(pkgs)
    path = _record_path(pkgs, "old-1.0-0")
    far = -(10**19)
    os.utime(path, ns=(far, far))
    first = scan(str(pkgs))
    entries = _entries(pkgs)
    assert entries["old-1.0-0"][0][0] == "r"  # not packed
    reads = []
    real = conda_pkgs.read_json
    monkeypatch.setattr(conda_pkgs, "read_json", lambda p, *fd: reads.append(p) or real(p, *fd))
    again = scan(str(pkgs))
    assert reads == []
    assert [r.to_json() for r in again.records] == [r.to_json() for r in first.records]
    with open(path, "r+b") as fh:
        raw = fh.read()
        fh.seek(0)
        fh.write(raw.replace(b'"old"', b'"olx"'))
    os.utime(path, ns=(far, far))
    assert [r.name for r in scan(str(pkgs)).records] == ["olx"]


def test_payload_round_trip():
    data = {
        "name": "a",
        "version": "1",
        "build": "0",
        "build_number": 0,
        "url": "https://x/linux-64/a-1-0.conda",
        "depends": ["b"],
        "odd": {"nested": [1, None]},
    }
    core, _blob = unpack_payload(pack_payload(data))
    rec = PackageCacheRecord.remembered(
        "/p", "a-1-0", {}, pack_payload(data), SOURCE_RECORD, (), True, 1.0
    )
    assert rec.data == data
    assert core[0] == "a" and rec.url == data["url"] and rec.problems == []
    # missing core fields stay missing (not None) in the decoded data
    assert "sha256" not in rec.data


def test_an_index_with_one_entry_changed_keeps_the_others(mixed, monkeypatch):
    scan(str(mixed))
    before = _entries(mixed)
    path = _record_path(mixed, "plain-1.0-0")
    with open(path) as fh:
        data = json.load(fh)
    data["license"] = "changed"
    with open(path, "w") as fh:
        json.dump(data, fh)
    old = os.stat(os.path.join(str(mixed), "plain-1.0-0")).st_mtime
    os.utime(path, (old, old))  # the change is old enough to be remembered
    scan(str(mixed))  # reads plain again, carries the others over
    after = _entries(mixed)
    assert set(after) == set(before)
    assert after["plain-1.0-0"] != before["plain-1.0-0"]
    assert {k: v for k, v in after.items() if k != "plain-1.0-0"} == {
        k: v for k, v in before.items() if k != "plain-1.0-0"
    }
    reads = []
    real = conda_pkgs.read_json
    monkeypatch.setattr(conda_pkgs, "read_json", lambda p, *fd: reads.append(p) or real(p, *fd))
    recs = {r.entry: r for r in scan(str(mixed)).records}
    assert [os.path.relpath(p, str(mixed)) for p in reads] == ["bare-4.0-0/info/index.json"]
    assert recs["plain-1.0-0"].data["license"] == "changed"


def test_an_unchanged_cache_writes_no_index(mixed, monkeypatch):
    scan(str(mixed))
    saved = []
    monkeypatch.setattr(scan_index, "save", lambda *a: saved.append(a))
    scan(str(mixed))
    assert saved == []
    os.unlink(_record_path(mixed, "beside-2.0-h1"))  # an entry carried over no more
    scan(str(mixed))
    assert len(saved) == 1 and "beside-2.0-h1" in {
        k for k, v in saved[0][1].items() if v[2] == "index_json"
    }


def test_a_payload_decoded_by_another_thread_meanwhile(mixed):
    """Two threads may ask a remembered record for a field at once: the one that finds the
    payload gone takes the other's decoded fields."""
    scan(str(mixed))
    rec = next(r for r in scan(str(mixed)).records if r.entry == "plain-1.0-0")
    assert rec._core is None
    rec._unpack()  # the other thread, having decoded it
    assert rec._payload is None
    assert rec._unpack()[0] == "plain"  # this thread, which had seen no core yet
    assert rec.name == "plain" and rec.data["name"] == "plain"
