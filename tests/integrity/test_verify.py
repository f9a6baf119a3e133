"""verify: real extracted packages damaged in every way, each found at the right level."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from builders import BIG, make_files
from conftest import populate

from conda_cache_plus.integrity import verify_store
from conda_cache_plus.integrity.findings import (
    CORRUPT,
    FAST,
    FULL,
    INCOMPLETE,
    MISSING_METADATA,
    OK,
)
from conda_cache_plus.integrity.verify import verify_caches
from conda_cache_plus.layouts.caches import PackageCaches


@pytest.fixture
def pkgs(tmp_path, build):
    a = build("alpha", "1.0", "0", files=make_files("alpha"), fmt=".conda")
    b = build("beta", "2.0", "0", files=make_files("beta"), fmt=".tar.bz2")
    return populate(tmp_path / "pkgs", [a, b])


def run(pkgs_dir, level=FAST, **kw):
    return verify_caches(PackageCaches([str(pkgs_dir)]), None, level, **kw)


def entry(report, name):
    return next(e for e in report.entries if e.name == name or e.entry.startswith(name))


def kinds(e):
    return sorted({p.kind for p in e.problems})


def test_clean_cache_is_ok_at_both_levels(pkgs):
    for level in (FAST, FULL):
        rep = run(pkgs, level)
        assert [e.status for e in rep.entries] == [OK, OK]
        assert not rep.bad
    rep = run(pkgs, FULL, use_store=False)
    alpha = entry(rep, "alpha")
    assert alpha.metadata == "paths.json" and alpha.files == 6
    assert alpha.hashed >= 5  # 4 files (the link's target counted) + the archive
    assert alpha.archives[0]["checked"] == "sha256" and alpha.archives[0]["ok"]


def test_truncate_found_by_fast(pkgs):
    with open(os.path.join(pkgs, "alpha-1.0-0", "share/alpha/data.bin"), "r+b") as fh:
        fh.truncate(1000)
    e = entry(run(pkgs), "alpha")
    assert e.status == CORRUPT
    p = next(p for p in e.problems if p.path == "share/alpha/data.bin")
    assert (p.kind, p.expected, p.actual) == ("wrong_size", len(BIG), 1000)


def test_flipped_byte_only_full_finds_it(pkgs):
    path = os.path.join(pkgs, "alpha-1.0-0", "share/alpha/data.bin")
    with open(path, "r+b") as fh:
        fh.seek(123456)
        fh.write(b"\xff")
    assert entry(run(pkgs, FAST), "alpha").status == OK  # same size: fast cannot see it
    e = entry(run(pkgs, FULL), "alpha")
    assert e.status == CORRUPT and kinds(e) == ["wrong_hash"]


def test_flipped_byte_in_placeholder_file(pkgs):
    # The sha256 in paths.json is of the file as packaged, placeholder and all.
    path = os.path.join(pkgs, "beta-2.0-0", "etc/beta.conf")
    data = Path(path).read_bytes()
    assert b"/opt/anaconda1anaconda2anaconda3" in data
    Path(path).write_bytes(data.replace(b"anaconda1", b"anaconda9"))
    assert entry(run(pkgs, FAST), "beta").status == OK
    e = entry(run(pkgs, FULL), "beta")
    assert [(p.kind, p.path) for p in e.problems] == [("wrong_hash", "etc/beta.conf")]


def test_deleted_file_is_missing(pkgs):
    os.unlink(os.path.join(pkgs, "alpha-1.0-0", "share/alpha/other"))
    e = entry(run(pkgs), "alpha")
    assert e.status == INCOMPLETE
    assert [(p.kind, p.path) for p in e.problems] == [("missing_file", "share/alpha/other")]


def test_file_replaced_by_directory(pkgs):
    path = os.path.join(pkgs, "alpha-1.0-0", "share/alpha/other")
    os.unlink(path)
    os.mkdir(path)
    for level in (FAST, FULL):
        e = entry(run(pkgs, level), "alpha")
        p = e.problems[0]
        assert (p.kind, p.expected, p.actual) == ("wrong_type", "file", "directory")


def test_file_replaced_by_symlink_is_not_followed(pkgs, tmp_path):
    outside = tmp_path / "outside"
    outside.write_bytes(BIG)  # same size and content: only the type gives it away
    path = os.path.join(pkgs, "alpha-1.0-0", "share/alpha/data.bin")
    os.unlink(path)
    os.symlink(outside, path)
    for level in (FAST, FULL):
        e = entry(run(pkgs, level), "alpha")
        assert e.status == CORRUPT and kinds(e) == ["wrong_type"]


def test_broken_symlink(pkgs):
    # The link's own target (one of the package's paths) is gone.
    os.unlink(os.path.join(pkgs, "alpha-1.0-0", "share/alpha/README"))
    e = entry(run(pkgs), "alpha")
    assert ("broken_link", "share/alpha/latest") in [(p.kind, p.path) for p in e.problems]
    assert e.status == CORRUPT


def test_retargeted_symlink(pkgs):
    link = os.path.join(pkgs, "alpha-1.0-0", "share/alpha/latest")
    os.unlink(link)
    os.symlink("other", link)  # another file of the package, of another size
    e = entry(run(pkgs), "alpha")
    assert [(p.kind, p.path) for p in e.problems] == [("wrong_size", "share/alpha/latest")]


def test_symlink_escaping_the_entry(pkgs, tmp_path):
    link = os.path.join(pkgs, "alpha-1.0-0", "share/alpha/latest")
    os.unlink(link)
    os.symlink("../../../../outside", link)
    (tmp_path / "outside").write_text("alpha readme\n")
    e = entry(run(pkgs, FULL), "alpha")
    assert [(p.kind, p.path) for p in e.problems] == [("link_escapes", "share/alpha/latest")]
    os.unlink(link)
    os.symlink(str(tmp_path / "outside"), link)  # absolute
    assert kinds(entry(run(pkgs), "alpha")) == ["link_escapes"]


def test_directory_replaced_by_symlink_is_not_followed(pkgs, tmp_path):
    share = os.path.join(pkgs, "alpha-1.0-0", "share", "alpha")
    moved = tmp_path / "moved"
    shutil.move(share, moved)
    os.symlink(moved, share)
    e = entry(run(pkgs, FULL), "alpha")
    assert ("wrong_type", "share/alpha") in [(p.kind, p.path) for p in e.problems]


def test_paths_json_deleted(pkgs):
    for dist in ("alpha-1.0-0", "beta-2.0-0"):
        os.unlink(os.path.join(pkgs, dist, "info", "paths.json"))
    rep = run(pkgs)
    for name in ("alpha", "beta"):
        e = entry(rep, name)
        assert e.status == MISSING_METADATA
        assert e.problems[0].path == "info/paths.json"
        assert e.metadata == "info/files"


def test_legacy_package_without_paths_json_is_checked_by_existence(tmp_path, build):
    files = make_files("old")
    old = build("old", "0.1", "0", files=files, fmt=".tar.bz2", with_paths_json=False)
    pkgs = populate(tmp_path / "pkgs", [old])
    e = entry(run(pkgs, FULL), "old")
    assert e.status == OK and e.metadata == "info/files"
    os.unlink(os.path.join(pkgs, "old-0.1-0", "etc/old.conf"))  # listed in info/has_prefix too
    e = entry(run(pkgs, FULL), "old")
    assert [(p.kind, p.path) for p in e.problems] == [("missing_file", "etc/old.conf")]


def test_repodata_record_broken(pkgs):
    rr = os.path.join(pkgs, "alpha-1.0-0", "info", "repodata_record.json")
    Path(rr).write_text("{ not json")
    e = entry(run(pkgs), "alpha-1.0-0")
    assert e.status == MISSING_METADATA
    assert [(p.kind, p.path) for p in e.problems] == [
        ("invalid_metadata", "info/repodata_record.json")
    ]


def test_repodata_record_inconsistent_with_index(pkgs):
    rr = os.path.join(pkgs, "alpha-1.0-0", "info", "repodata_record.json")
    data = json.loads(Path(rr).read_text())
    data["build_number"] = 7
    Path(rr).write_text(json.dumps(data))
    e = entry(run(pkgs), "alpha")
    p = e.problems[0]
    assert (p.kind, p.expected, p.actual) == ("invalid_metadata", 0, 7)


def test_extraction_cut_short(tmp_path, build):
    # A dir with info/ but without the package files: what a killed in-place extraction leaves.
    a = build("alpha", "1.0", "0", files=make_files("alpha"))
    pkgs = populate(tmp_path / "pkgs", [a])
    shutil.rmtree(os.path.join(pkgs, "alpha-1.0-0", "share"))
    shutil.rmtree(os.path.join(pkgs, "alpha-1.0-0", "etc"))
    e = entry(run(pkgs), "alpha")
    assert e.status == INCOMPLETE
    assert {p.kind for p in e.problems} == {"missing_file"} and len(e.problems) == 6


def test_archive_checks(pkgs):
    archive = os.path.join(pkgs, "alpha-1.0-0.conda")
    data = bytearray(Path(archive).read_bytes())
    data[-10] ^= 0xFF
    Path(archive).write_bytes(bytes(data))
    assert entry(run(pkgs, FAST), "alpha").status == OK
    e = entry(run(pkgs, FULL), "alpha")
    assert kinds(e) == ["archive_checksum_mismatch"]
    Path(archive).write_bytes(bytes(data) + b"x")
    assert kinds(entry(run(pkgs, FAST), "alpha")) == ["archive_size_mismatch"]


def test_leftovers_are_reported(pkgs):
    Path(pkgs, "gamma-1-0.conda.partial").write_bytes(b"half")
    os.makedirs(os.path.join(pkgs, "beta-2.0-0.c~"))
    rep = run(pkgs)
    assert sorted(p.kind for p in rep.leftovers) == ["orphan_temp", "partial_download"]
    assert not rep.bad


def test_incremental_second_full_run_hashes_nothing(pkgs):
    first = run(pkgs, FULL)
    assert sum(e.bytes_hashed for e in first.entries) > 2 * len(BIG)
    second = run(pkgs, FULL)
    # Only the symlinks are looked at again (their targets may change without them changing).
    assert sum(e.bytes_hashed for e in second.entries) < 1000
    assert sum(e.skipped for e in second.entries) >= 8
    # A touched file is re-hashed (and still fine); a modified one is caught.
    data = os.path.join(pkgs, "alpha-1.0-0", "share/alpha/data.bin")
    os.utime(data, ns=(1, 1))
    third = run(pkgs, FULL)
    assert entry(third, "alpha").bytes_hashed >= len(BIG) and not third.bad
    assert run(pkgs, FULL).entries[0].bytes_hashed < 1000
    with open(data, "r+b") as fh:
        fh.write(b"\xff\xfe")  # same size, same mtime restored below: ctime still changes
    st = os.stat(data)
    os.utime(data, ns=(st.st_atime_ns, 1))
    assert kinds(entry(run(pkgs, FULL), "alpha")) == ["wrong_hash"]
    # --rehash ignores what was remembered
    assert sum(e.bytes_hashed for e in run(pkgs, FULL, use_store=False).entries) > len(BIG)


def test_store_is_the_users_never_in_the_cache(pkgs, tmp_path):
    """Writable or not, the cache gets nothing of verify's state: it is the user's (issue 24: in
    a shared cache, one user's results must never make another's check skip a file)."""
    run(pkgs, FULL)
    private = os.path.join(pkgs, ".conda-cache-plus")
    assert not any(n == verify_store.STATE_NAME for _, _, fs in os.walk(private) for n in fs)
    user = os.path.join(os.environ["XDG_CACHE_HOME"], "conda-cache-plus")
    assert any(n == verify_store.STATE_NAME for _, _, fs in os.walk(user) for n in fs)
    # a second run hashes nothing new: the user's state is used
    assert run(pkgs, FULL).totals()["bytes_hashed"] == 0


@pytest.mark.parametrize("executor", ["serial", "thread", "process"])
def test_executors_agree_and_big_entries_split(pkgs, executor):
    os.unlink(os.path.join(pkgs, "alpha-1.0-0", "share/alpha/other"))
    with open(os.path.join(pkgs, "beta-2.0-0", "share/beta/data.bin"), "r+b") as fh:
        fh.write(b"zz")
    rep = run(pkgs, FULL, workers=4, executor=executor, use_store=False)
    assert {e.name: e.status for e in rep.entries} == {"alpha": INCOMPLETE, "beta": CORRUPT}
    assert len(rep.entries) == 2


def test_specs_select_entries(pkgs):
    from conda_cache_plus.model.match import SpecMatcher

    rep = verify_caches(PackageCaches([str(pkgs)]), [SpecMatcher("beta", use_conda=False)])
    assert [e.name for e in rep.entries] == ["beta"]


# --- what a re-run remembers, and that it never stands in for the files ----------------------


def count_parses(monkeypatch):
    """Counts metadata parses; the real parser still runs."""
    from conda_cache_plus.integrity import metadata as verify_metadata

    calls = []
    real = verify_metadata.parse_metadata

    def spy(root, efd, f):
        calls.append(root)
        return real(root, efd, f)

    from conda_cache_plus.integrity import tree as verify_tree

    monkeypatch.setattr(verify_tree, "parse_metadata", spy)
    return calls


def test_rerun_hashes_nothing_and_parses_nothing(pkgs, monkeypatch):
    run(pkgs, FULL)
    parses = count_parses(monkeypatch)
    again = run(pkgs, FULL)
    assert not again.bad and parses == []
    totals = again.totals()
    assert totals["bytes_hashed"] == 0 and totals["hashed"] == 0
    # 4 files, the symlink's target and the archive unchanged since they passed; the link
    # itself and the directory are looked at again (an lstat each)
    assert totals["skipped"] == 2 * (4 + 1 + 1) and totals["checked"] == 2 * 2
    fast = run(pkgs, FAST)
    assert not fast.bad and parses == []


def test_fast_run_remembers_for_the_next_fast_run(pkgs, monkeypatch):
    first = run(pkgs, FAST)
    assert first.totals()["skipped"] == 0
    parses = count_parses(monkeypatch)
    second = run(pkgs, FAST)
    assert parses == [] and second.totals()["skipped"] == 2 * 4
    # A fast pass never stands in for a hash: the next full run still hashes every file.
    assert run(pkgs, FULL).totals()["bytes_hashed"] > 2 * len(BIG)


def _same_size_edit(path: str, keep_mtime: bool = True) -> None:
    st = os.stat(path)
    with open(path, "r+b") as fh:
        fh.write(b"\xff\xfe")  # differs from the start of every test file
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_edit_with_restored_mtime_is_rechecked_through_a_fast_run(pkgs):
    run(pkgs, FULL)
    data = os.path.join(pkgs, "alpha-1.0-0", "share/alpha/data.bin")
    _same_size_edit(data)  # size and mtime as before; only ctime tells
    assert entry(run(pkgs, FAST), "alpha").status == OK  # fast cannot see contents...
    e = entry(run(pkgs, FULL), "alpha")  # ...and its pass did not make full trust the file
    assert [(p.kind, p.path) for p in e.problems] == [("wrong_hash", "share/alpha/data.bin")]
    assert kinds(entry(run(pkgs, FULL), "alpha")) == ["wrong_hash"]  # and stays found


def test_replaced_file_is_rechecked(pkgs, tmp_path):
    run(pkgs, FULL)
    data = os.path.join(pkgs, "alpha-1.0-0", "share/alpha/data.bin")
    st = os.stat(data)
    other = os.path.join(pkgs, "alpha-1.0-0", "share/alpha/.new")
    Path(other).write_bytes(b"\xff" * st.st_size)
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(other, data)  # a new inode with the old size and mtime
    assert kinds(entry(run(pkgs, FULL), "alpha")) == ["wrong_hash"]


def test_link_target_edit_is_rechecked(pkgs):
    run(pkgs, FULL)
    readme = os.path.join(pkgs, "alpha-1.0-0", "share/alpha/README")
    _same_size_edit(readme)
    e = entry(run(pkgs, FULL), "alpha")
    assert sorted(p.path for p in e.problems) == ["share/alpha/README", "share/alpha/latest"]


def test_remembered_paths_json_is_reparsed_when_it_changes(pkgs, monkeypatch):
    run(pkgs, FULL)
    pj = os.path.join(pkgs, "alpha-1.0-0", "info", "paths.json")
    data = json.loads(Path(pj).read_text())
    item = next(p for p in data["paths"] if p["_path"] == "share/alpha/other")
    item["size_in_bytes"] += 1
    Path(pj).write_text(json.dumps(data))
    parses = count_parses(monkeypatch)
    e = entry(run(pkgs, FAST), "alpha")
    assert len(parses) == 1 and parses[0].endswith("alpha-1.0-0")
    assert [(p.kind, p.path) for p in e.problems] == [("wrong_size", "share/alpha/other")]
    os.unlink(pj)
    assert entry(run(pkgs, FAST), "alpha").status == MISSING_METADATA


def test_remembered_entry_with_a_directory_turned_symlink(pkgs, tmp_path):
    run(pkgs, FULL)
    share = os.path.join(pkgs, "alpha-1.0-0", "share", "alpha")
    moved = tmp_path / "moved"
    shutil.move(share, moved)  # same inodes, same fingerprints for the files inside
    os.symlink(moved, share)
    for level in (FAST, FULL):
        e = entry(run(pkgs, level), "alpha")
        assert ("wrong_type", "share/alpha") in [(p.kind, p.path) for p in e.problems]


def test_state_drops_removed_entries_and_survives_garbage(pkgs):
    run(pkgs, FULL)
    sdir = verify_store.store_dir(str(pkgs), True)
    assert set(verify_store.load(sdir, str(pkgs))) == {"alpha-1.0-0", "beta-2.0-0"}
    shutil.rmtree(os.path.join(pkgs, "beta-2.0-0"))
    os.unlink(os.path.join(pkgs, "beta-2.0-0.tar.bz2"))
    run(pkgs, FAST)
    assert set(verify_store.load(sdir, str(pkgs))) == {"alpha-1.0-0"}
    Path(verify_store.state_path(sdir)).write_bytes(b"\x00garbage")
    rep = run(pkgs, FULL)
    assert not rep.bad and rep.totals()["bytes_hashed"] > len(BIG)


def test_write_store_false_leaves_no_state(pkgs):
    run(pkgs, FAST, write_store=False)
    assert not os.path.exists(verify_store.state_path(verify_store.store_dir(str(pkgs), True)))


def test_paths_json_with_a_path_leaving_the_entry(pkgs):
    pj = os.path.join(pkgs, "alpha-1.0-0", "info", "paths.json")
    data = json.loads(Path(pj).read_text())
    data["paths"].append({"_path": "../beta-2.0-0/etc/beta.conf", "path_type": "hardlink"})
    Path(pj).write_text(json.dumps(data))
    e = entry(run(pkgs, FULL), "alpha")
    assert e.status == MISSING_METADATA
    assert [(p.kind, p.path) for p in e.problems] == [("invalid_metadata", "info/paths.json")]
    assert "bad path" in e.problems[0].detail and e.files == 6  # the others still checked


def test_a_file_written_moments_ago_is_hashed_again(pkgs):
    # Same content, fresh mtime: a second same-size write within the same clock tick would keep
    # this fingerprint, so its good hash is not remembered (the racy-timestamp rule).
    data = os.path.join(pkgs, "alpha-1.0-0", "share/alpha/data.bin")
    with open(data, "r+b") as fh:
        fh.write(BIG[:16])
    assert not run(pkgs, FULL).bad
    assert entry(run(pkgs, FULL), "alpha").bytes_hashed >= len(BIG)
    old = os.stat(data).st_mtime - 100
    os.utime(data, (old, old))
    run(pkgs, FULL)
    assert entry(run(pkgs, FULL), "alpha").bytes_hashed < 1000
