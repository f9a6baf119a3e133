"""install_entry: records, atomic replacement, crash safety, two processes on one entry."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conda_cache_plus.exceptions import ArchiveError, ChecksumMismatchError, HostileArchiveError
from conda_cache_plus.gateways.cachedir import ensure_cache_dir
from conda_cache_plus.gateways.extract import install_entry
from conda_cache_plus.layouts.kinds import scan
from conda_cache_plus.model.cache_paths import CacheLayout
from conda_cache_plus.model.filenames import CACHEDIR_TAG_CONTENT

URL = "https://conda.example.org/demo/noarch"


def _record(pkg, **kw):
    rec = pkg.repodata_entry()
    rec.update(url=f"{URL}/{pkg.fn}", fn=pkg.fn)
    rec.update(kw)
    return rec


def _read_record(path):
    with open(os.path.join(path, "info", "repodata_record.json")) as fh:
        return json.load(fh)


def test_installs_with_a_record_that_wins_over_index_json(build, tmp_path):
    pkg = build("demo", "1.0", "0", fmt=".conda", depends=["python"])
    layout = CacheLayout(str(tmp_path / "pkgs"))
    path = install_entry(layout, pkg.dist, pkg.path, _record(pkg, depends=["python >=3.8"]))
    assert path == layout.extracted(pkg.dist)
    rec = _read_record(path)
    assert rec["depends"] == ["python >=3.8"]
    assert rec["url"] == f"{URL}/{pkg.fn}"
    assert rec["channel"] == URL  # conda writes the channel with its subdir
    assert (rec["md5"], rec["sha256"], rec["size"], rec["fn"]) == (
        pkg.md5,
        pkg.sha256,
        pkg.size,
        pkg.fn,
    )
    assert _no_temp_trees(layout)
    assert os.stat(path).st_mode & 0o755 == 0o755  # not mkdtemp's 0700


def test_without_record_hashes_are_computed_and_url_comes_from_urls_txt(build, tmp_path):
    pkg = build("demo", fmt=".tar.bz2")
    layout = CacheLayout(str(tmp_path / "pkgs"))
    ensure_cache_dir(layout)
    with open(layout.urls_txt, "a") as fh:
        fh.write(f"{URL}/{pkg.fn}\n")
    rec = _read_record(install_entry(layout, pkg.dist, pkg.path))
    assert (rec["md5"], rec["sha256"], rec["size"]) == (pkg.md5, pkg.sha256, pkg.size)
    assert rec["url"] == f"{URL}/{pkg.fn}" and rec["name"] == "demo"
    [record] = scan(layout.root, use_index=False).records
    assert record.sha256 == pkg.sha256 and record.url == rec["url"]


def test_a_wrong_md5_in_the_record_is_caught(build, tmp_path):
    pkg = build("demo")
    layout = CacheLayout(str(tmp_path / "pkgs"))
    rec = _record(pkg, md5="0" * 32)
    del rec["sha256"]
    with pytest.raises(ChecksumMismatchError):
        install_entry(layout, pkg.dist, pkg.path, rec)
    assert not os.path.exists(layout.extracted(pkg.dist))
    assert _no_temp_trees(layout)


def test_replaces_a_broken_entry_and_leaves_no_leftovers(build, tmp_path):
    pkg = build("demo")
    layout = CacheLayout(str(tmp_path / "pkgs"))
    broken = layout.extracted(pkg.dist)
    os.makedirs(os.path.join(broken, "info"))
    with open(os.path.join(broken, "info", "index.json"), "w") as fh:
        fh.write("{")
    install_entry(layout, pkg.dist, pkg.path, _record(pkg))
    assert _read_record(broken)["sha256"] == pkg.sha256
    assert _no_temp_trees(layout)
    result = scan(layout.root, use_index=False)
    assert [r.entry for r in result.records] == [pkg.dist] and not result.leftovers


def _no_temp_trees(layout) -> bool:
    names = os.listdir(layout.root)
    legacy = os.listdir(layout.tmp_dir) if os.path.isdir(layout.tmp_dir) else []
    return not legacy and not [n for n in names if n.startswith(".cpx-tmp-")]


def test_a_hostile_archive_changes_nothing_in_the_cache(build, tmp_path):
    import tarfile

    ti = tarfile.TarInfo("share/out")
    ti.type, ti.linkname = tarfile.SYMTYPE, "/etc"
    through = tarfile.TarInfo("share/out/cpx-evil")
    through.size = 1
    good = build("demo")
    evil = build("demo", "2.0", extra_members=[(ti, None), (through, b"x")])
    layout = CacheLayout(str(tmp_path / "pkgs"))
    install_entry(layout, good.dist, good.path, _record(good))
    with pytest.raises(HostileArchiveError):
        install_entry(layout, good.dist, evil.path)
    assert _read_record(layout.extracted(good.dist))["sha256"] == good.sha256
    assert _no_temp_trees(layout)


def test_package_without_index_json_is_refused(tmp_path):
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:bz2") as tar:
        ti = tarfile.TarInfo("share/x")
        ti.size = 1
        tar.addfile(ti, io.BytesIO(b"x"))
    path = tmp_path / "noindex-1-0.tar.bz2"
    path.write_bytes(buf.getvalue())
    layout = CacheLayout(str(tmp_path / "pkgs"))
    with pytest.raises(ArchiveError, match=r"index\.json"):
        install_entry(layout, "noindex-1-0", str(path))
    assert not os.path.exists(layout.extracted("noindex-1-0"))


def test_ensure_cache_dir_is_idempotent(tmp_path):
    layout = CacheLayout(str(tmp_path / "new" / "pkgs"))
    assert ensure_cache_dir(layout) is True
    with open(layout.urls_txt, "a") as fh:
        fh.write("https://x/noarch/a-1-0.conda\n")
    assert ensure_cache_dir(layout) is False
    assert Path(layout.urls_txt).read_text() == "https://x/noarch/a-1-0.conda\n"
    assert Path(layout.cachedir_tag).read_text() == CACHEDIR_TAG_CONTENT
    assert os.path.isfile(layout.legacy_urls) and os.path.isdir(layout.tmp_dir)
    # an existing conda cache gets no tag: we did not create it
    conda_made = CacheLayout(str(tmp_path / "conda-pkgs"))
    os.makedirs(conda_made.root)
    open(conda_made.urls_txt, "w").close()
    assert ensure_cache_dir(conda_made) is False
    assert not os.path.exists(conda_made.cachedir_tag)


# -- real processes -----------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys, os, time
    from conda_cache_plus.gateways.extract import install_entry
    from conda_cache_plus.model.cache_paths import CacheLayout
    pkgs, entry, archive, gate = sys.argv[1:5]
    print("ready", flush=True)
    while gate != "-" and not os.path.exists(gate):
        time.sleep(0.002)
    print(install_entry(CacheLayout(pkgs), entry, archive), flush=True)
    """
)


def _child(pkgs, entry, archive, gate="-"):
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, pkgs, entry, archive, gate],
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def big_package(build):
    files = {f"lib/python3/site-packages/m{i // 100}/f{i}.py": b"x = %d\n" % i for i in range(1500)}
    files["share/blob.bin"] = os.urandom(4_000_000)
    return build("big", "1.0", "0", files=files)


def _entry_is_complete(path: str) -> bool:
    with open(os.path.join(path, "info", "paths.json")) as fh:
        paths = json.load(fh)["paths"]
    return all(
        os.path.getsize(os.path.join(path, p["_path"])) == p["size_in_bytes"]
        for p in paths
        if p["path_type"] == "hardlink"
    )


def test_kill_9_at_random_moments_never_leaves_a_half_entry(big_package, tmp_path):
    layout = CacheLayout(str(tmp_path / "pkgs"))
    rng = random.Random(1234)
    entry = big_package.dist
    # ascending delays: the first kills hit the first install, the later ones a replacement
    for delay in sorted(rng.uniform(0.0, 0.3) for _ in range(5)):
        proc = _child(layout.root, entry, big_package.path)
        assert proc.stdout.readline().strip() == "ready"
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        for record in scan(layout.root, use_index=False).records:
            if record.is_extracted:
                assert record.source == "repodata_record"
                assert _entry_is_complete(record.extracted_package_dir)
    # a re-run installs correctly and clears what the killed runs left in the tmp area
    install_entry(layout, entry, big_package.path)
    assert _entry_is_complete(layout.extracted(entry))
    assert _no_temp_trees(layout)


def test_two_processes_installing_one_entry(big_package, tmp_path):
    layout = CacheLayout(str(tmp_path / "pkgs"))
    gate = str(tmp_path / "go")
    procs = [_child(layout.root, big_package.dist, big_package.path, gate) for _ in range(2)]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready"
    open(gate, "w").close()
    outs = [proc.communicate(timeout=120)[0].strip() for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0]
    assert outs == [layout.extracted(big_package.dist)] * 2
    assert _entry_is_complete(outs[0])
    assert _read_record(outs[0])["sha256"] == big_package.sha256
    assert _no_temp_trees(layout)
    [record] = scan(layout.root, use_index=False).records
    assert record.is_extracted
