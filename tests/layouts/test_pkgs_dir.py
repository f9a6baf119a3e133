"""The scanner: layouts, bad input, never writing, and the remembered index."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest
from conftest import populate
from scan_helpers import age, snapshot

from conda_cache_plus.layouts import scan_index
from conda_cache_plus.layouts.caches import PackageCacheData
from conda_cache_plus.layouts.kinds import scan, writability
from conda_cache_plus.model.records import SOURCE_FILENAME, SOURCE_INDEX, SOURCE_RECORD


def by_name(result):
    return {r.name: r for r in result.records}


def test_flat_layout_both_formats(cache):
    res = scan(str(cache))
    recs = by_name(res)
    assert set(recs) == {"alpha", "beta", "gamma"}
    alpha = recs["alpha"]
    assert alpha.formats == [".conda", ".tar.bz2", "dir"]  # both archives stay visible
    assert alpha.source == SOURCE_RECORD and alpha.is_complete
    assert alpha.is_extracted and alpha.is_fetched
    assert alpha.channel == "https://conda.example.org/demo"
    assert alpha.sha256 and alpha.md5 and alpha.url.endswith("alpha-1.0-0.conda")
    assert alpha.key == ("https://conda.example.org/demo", "noarch", "alpha", "1.0", 0, "0")
    gamma = recs["gamma"]
    assert gamma.formats == [".tar.bz2"] and not gamma.is_extracted
    assert gamma.source == SOURCE_FILENAME
    assert gamma.url.endswith("gamma-0.5-0.tar.bz2") and gamma.subdir == "noarch"
    assert res.broken == [] and res.leftovers == []


def test_scan_never_writes(cache):
    # Damage it in every way a scan must survive, then check nothing changed.
    alpha = cache / "alpha-1.0-0"
    (alpha / "info" / "repodata_record.json").write_text("{ truncated")
    (cache / "beta-2.1-h1" / "info" / "repodata_record.json").unlink()
    (cache / "junk-1-0").mkdir()
    (cache / "gamma-0.5-0.tar.bz2").write_bytes(b"not an archive")
    (cache / "x-1-0.conda.partial").write_bytes(b"half")
    before = snapshot(cache)
    scan(str(cache))
    scan(str(cache))
    assert snapshot(cache) == before


def test_index_json_fallback_is_incomplete(cache):
    (cache / "beta-2.1-h1" / "info" / "repodata_record.json").unlink()
    beta = by_name(scan(str(cache)))["beta"]
    assert beta.source == SOURCE_INDEX and not beta.is_complete
    with open(cache / "beta-2.1-h1.conda", "rb") as fh:
        assert beta.md5 == hashlib.md5(fh.read()).hexdigest()
    assert beta.size == os.path.getsize(cache / "beta-2.1-h1.conda")
    assert beta.url.endswith("beta-2.1-h1.conda")  # from urls.txt
    assert beta.sha256 is None  # conda does not compute it either


@pytest.mark.parametrize(
    "damage, expect",
    [
        (b"{ truncated", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid UTF-8"),
        (b'{"name": 5, "version": "1.0"}', "expected a string"),
        (b'["a", "list"]', "not an object"),
    ],
)
def test_bad_record_json_falls_back_with_a_clear_problem(cache, damage, expect):
    (cache / "alpha-1.0-0" / "info" / "repodata_record.json").write_bytes(damage)
    alpha = by_name(scan(str(cache)))["alpha"]
    assert alpha.source == SOURCE_INDEX
    assert any(expect in p for p in alpha.problems), alpha.problems


def test_wrong_field_types_are_dropped_not_fatal(cache):
    path = cache / "alpha-1.0-0" / "info" / "repodata_record.json"
    data = json.loads(path.read_text())
    data.update(size="big", depends="alpha", build_number="3")
    path.write_text(json.dumps(data))
    alpha = by_name(scan(str(cache)))["alpha"]
    assert alpha.source == SOURCE_RECORD
    assert alpha.size is None and alpha.build_number == 3
    assert any("size" in p for p in alpha.problems)


def test_dirs_that_are_not_packages(cache):
    (cache / "nothing-1-0").mkdir()  # no info/
    (cache / "noindex-1-0" / "info").mkdir(parents=True)  # info/ but no index.json
    shutil.rmtree(cache / "beta-2.1-h1" / "info")  # archive present, dir broken
    res = scan(str(cache))
    broken = {b.rel: b.reason for b in res.broken}
    assert broken["nothing-1-0"] == "a directory without info/"
    assert "index.json" in broken["noindex-1-0"]
    beta = by_name(res)["beta"]
    assert beta.is_broken and not beta.is_extracted and beta.is_fetched
    assert any("unusable" in p for p in beta.problems)


def test_leftovers_are_not_packages(cache):
    (cache / "alpha-1.0-0.conda.partial").write_bytes(b"x" * 10)
    (cache / "old-1-0.c~").mkdir()
    (cache / "beta-2.1-h1.conda_trash").write_bytes(b"")
    (cache / ".zeta-1.0-0abcd").mkdir()  # rattler-style temp dir
    (cache / ".conda-cache-plus" / "tmp" / "alpha-1.0-0.xyz").mkdir(parents=True)
    res = scan(str(cache))
    kinds = sorted(lo.kind for lo in res.leftovers)
    assert kinds == ["hold", "partial", "tmp", "tmp", "trash"]
    assert {r.name for r in res.records} == {"alpha", "beta", "gamma"}


def test_symlink_loop_and_symlinked_entries_are_ignored(cache):
    os.symlink("loop", cache / "loop")
    os.symlink(str(cache / "alpha-1.0-0"), cache / "alias-1.0-0")
    res = scan(str(cache))
    assert any("symlink" in o for o in res.others)
    assert {r.name for r in res.records} == {"alpha", "beta", "gamma"}


def test_junk_lines_in_urls_txt(cache):
    with open(cache / "urls.txt", "ab") as fh:
        fh.write(b"\xff\xfe not utf8\nrandom words\n\n")
    res = scan(str(cache))
    assert any("2 line(s)" in p for p in res.problems)
    assert by_name(res)["gamma"].url


def test_missing_pkgs_dir(tmp_path):
    res = scan(str(tmp_path / "nope"))
    assert not res.exists and res.problems == ["does not exist"]
    assert writability(str(tmp_path / "nope")) == (None, "does not exist")


def test_writability(tmp_path, cache):
    assert writability(str(cache)) == (True, "writable")
    # conda's rule: a writable directory without urls.txt is writable (conda makes the file)
    (tmp_path / "bare").mkdir()
    assert writability(str(tmp_path / "bare"))[0] is True
    assert writability(str(tmp_path / "absent"))[0] is None


def test_nested_mamba_layout(tmp_path, build):
    pkgs = tmp_path / "pkgs"
    a = build("nest", "1.0", "0")
    b = build("flat", "1.0", "0")
    populate(pkgs / "https" / "conda.anaconda.org" / "conda-forge" / "noarch", [a])
    populate(pkgs, [b])
    # mamba's fallback when there is no URL: <channel>/<subdir>/<pkg>
    c = build("fallback", "3.0", "0")
    populate(pkgs / "local-chan" / "linux-64", [c])
    res = scan(str(pkgs))
    recs = by_name(res)
    assert set(recs) == {"nest", "flat", "fallback"}
    assert recs["nest"].entry == "https/conda.anaconda.org/conda-forge/noarch/nest-1.0-0"
    assert recs["nest"].is_extracted
    assert recs["fallback"].entry == "local-chan/linux-64/fallback-3.0-0"
    assert res.nested and res.broken == []


def test_index_is_reused_and_never_trusted_over_files(cache, monkeypatch):
    age(cache)
    first = scan(str(cache))
    assert os.path.exists(scan_index.index_path(str(cache)))
    calls = []
    import conda_cache_plus.layouts.conda_pkgs as mod

    real = mod.read_json
    monkeypatch.setattr(mod, "read_json", lambda p, *fd: calls.append(p) or real(p, *fd))
    second = scan(str(cache))
    assert calls == []  # nothing re-read
    assert [r.to_json() for r in second.records] == [r.to_json() for r in first.records]
    # Rewrite one record: only that one is read again, and its new content wins.
    path = cache / "alpha-1.0-0" / "info" / "repodata_record.json"
    data = json.loads(path.read_text())
    data["license"] = "changed"
    path.write_text(json.dumps(data))
    third = scan(str(cache))  # changed just now: read (and not remembered: racy)
    assert [os.path.basename(os.path.dirname(os.path.dirname(c))) for c in calls] == ["alpha-1.0-0"]
    assert by_name(third)["alpha"].data["license"] == "changed"


def test_freshly_written_records_are_read_again(cache, monkeypatch):
    import conda_cache_plus.layouts.conda_pkgs as mod

    scan(str(cache))  # everything was written just now
    calls = []
    real = mod.read_json
    monkeypatch.setattr(mod, "read_json", lambda p, *fd: calls.append(p) or real(p, *fd))
    scan(str(cache))
    assert len(calls) >= 2  # alpha and beta records re-read: their fingerprints are racy


def test_corrupt_index_is_ignored(cache):
    age(cache)
    scan(str(cache))
    with open(scan_index.index_path(str(cache)), "wb") as fh:
        fh.write(b"\x00garbage")
    assert {r.name for r in scan(str(cache)).records} == {"alpha", "beta", "gamma"}


def test_package_cache_data_api(cache):
    pcd = PackageCacheData(str(cache))
    assert pcd.is_writable is True
    assert pcd.get("alpha-1.0-0").name == "alpha"
    assert [r.name for r in pcd.query("beta")] == ["beta"]


NOBODY = 65534


@pytest.fixture
def shared_dir():
    """A 0755 directory 'nobody' can enter, outside pytest's temp root: every pytest session
    starting on the machine makes /tmp/pytest-of-root private again (0700), even mid-test."""
    path = tempfile.mkdtemp(prefix="cpx-nobody-", dir="/tmp")
    os.chmod(path, 0o755)
    yield pathlib.Path(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a scan as another user")
def test_unreadable_and_read_only_as_another_user(shared_dir, build):
    # Root reads everything, so the scan runs as 'nobody' in a real subprocess.
    base = shared_dir
    pkgs = base / "pkgs"
    populate(pkgs, [build("alpha", "1.0", "0"), build("beta", "1.0", "0")])
    os.chmod(pkgs / "beta-1.0-0" / "info", 0o700)  # unreadable for nobody
    for dirpath, _dirnames, filenames in os.walk(pkgs):
        if not dirpath.endswith("beta-1.0-0/info"):
            os.chmod(dirpath, 0o755)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o644)
    code = (
        "import json,sys; from conda_cache_plus.layouts.kinds import scan, writability;"
        f"r=scan({str(pkgs)!r}, use_index=False);"
        "print(json.dumps({'w': writability(%r), 'recs': {x.name: [x.is_extracted, x.problems] "
        "for x in r.records}, 'broken': [b.reason for b in r.broken]}))" % str(pkgs)
    )
    # Root's own Python may sit in a directory 'nobody' cannot enter: use a copy of our package
    # and whichever Python 'nobody' can run.
    src = base / "src"
    shutil.copytree(
        os.path.dirname(os.path.dirname(os.path.abspath(__import__("conda_cache_plus").__file__)))
        + "/conda_cache_plus",
        src / "conda_cache_plus",
    )
    for dirpath, _dirs, files in os.walk(src):
        os.chmod(dirpath, 0o755)
        for f in files:
            os.chmod(os.path.join(dirpath, f), 0o644)
    python = None
    for cand in (sys.executable, "/usr/bin/python3"):
        try:
            if (
                subprocess.run(
                    [cand, "-c", "import sys; assert sys.version_info >= (3, 10)"],
                    user=NOBODY,
                    capture_output=True,
                ).returncode
                == 0
            ):
                python = cand
                break
        except OSError:
            continue
    if python is None:
        pytest.skip("no Python here can be run by another user")
    proc = subprocess.run(
        [python, "-c", code],
        capture_output=True,
        text=True,
        user=NOBODY,
        cwd=str(src),
        env={
            "PATH": "/usr/bin:/bin",
            "XDG_CACHE_HOME": str(base / "nobody-cache"),
            "HOME": str(base),
            "PYTHONPATH": str(src),
            "CONDA_CACHE_PLUS_NO_CONDA": "1",
        },
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["w"] == [False, "no write permission"]
    assert out["recs"]["alpha"][0] is True
    # beta's info/ cannot be read: the archive is still there, so it is a record with a problem.
    assert out["recs"]["beta"][0] is False
    assert any("Permission denied" in p for p in out["recs"]["beta"][1])


def test_listing_is_reused_only_while_the_directory_is_unchanged(cache, build, monkeypatch):
    import time

    import conda_cache_plus.layouts.conda_pkgs as mod

    old = time.time() - 100
    os.utime(cache, (old, old))
    scan(str(cache))  # remembers the listing: the dir changed long before it was taken
    listed = []
    real = os.scandir
    monkeypatch.setattr(mod.os, "scandir", lambda p: listed.append(p) or real(p))
    assert {r.name for r in scan(str(cache)).records} == {"alpha", "beta", "gamma"}
    assert str(cache) not in listed
    populate(cache, [build("delta", "1.0", "0")])  # changes the directory's mtime
    assert "delta" in {r.name for r in scan(str(cache)).records}
    assert str(cache) in listed


def test_racy_listing_is_not_trusted(cache, build, monkeypatch):
    import conda_cache_plus.layouts.conda_pkgs as mod

    scan(str(cache))  # the dir was just written: its listing is racy
    listed = []
    real = os.scandir
    monkeypatch.setattr(mod.os, "scandir", lambda p: listed.append(p) or real(p))
    scan(str(cache))
    assert str(cache) in listed


def test_read_only_mount(tmpfs, build):
    pkgs = tmpfs / "pkgs"
    populate(pkgs, [build("alpha", "1.0", "0")])
    assert writability(str(pkgs)) == (True, "writable")
    proc = subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert writability(str(pkgs)) == (False, "read-only file system")
    res = scan(str(pkgs))  # and a scan works there, writing nothing
    assert [r.name for r in res.records] == ["alpha"] and res.records[0].is_extracted
