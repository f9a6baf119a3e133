"""The fetch engine: parsing references, planning against caches, running the pipeline."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import extract_by_hand
from fetch_helpers import entry_problems, read_only, serve_packages  # noqa: F401

from conda_cache_plus.exceptions import InvalidSpecError, NoWritableCacheError
from conda_cache_plus.fetch import pipeline as fetch_pipeline
from conda_cache_plus.fetch import plan as fetch_plan
from conda_cache_plus.fetch import refs as fetch_refs
from conda_cache_plus.gateways.download import path_to_url
from conda_cache_plus.layouts.caches import PackageCaches
from conda_cache_plus.ui.output import Run

SHA = "a" * 64
MD5 = "b" * 32


# -- references -----------------------------------------------------------------------------------
def test_parse_explicit_all_checksum_forms(tmp_path):
    text = (
        "# This file may be used to create an environment using:\n"
        "# platform: linux-64\n"
        "@EXPLICIT\n"
        f"https://conda.anaconda.org/conda-forge/linux-64/zlib-1.3-h0.conda#{MD5}\n"
        f"https://conda.anaconda.org/conda-forge/noarch/six-1.16-pyh_0.tar.bz2#{SHA}\n"
        f"https://repo.example/ch/linux-64/a-1-0.conda#sha256:{SHA.upper()}\n"
        f"https://repo.example/ch/linux-64/b-1-0.conda#md5={MD5}\n"
        "https://repo.example/ch/linux-64/c-1-0.conda\n"
        "\n"
    )
    path = tmp_path / "env.txt"
    path.write_text(text)
    refs = fetch_refs.parse_explicit(str(path))
    assert refs == fetch_refs.parse_explicit(text)
    assert [r.fn for r in refs] == [
        "zlib-1.3-h0.conda",
        "six-1.16-pyh_0.tar.bz2",
        "a-1-0.conda",
        "b-1-0.conda",
        "c-1-0.conda",
    ]
    assert (refs[0].md5, refs[0].sha256) == (MD5, None)
    assert (refs[1].md5, refs[1].sha256) == (None, SHA)
    assert refs[2].sha256 == SHA  # lower-cased
    assert refs[3].md5 == MD5
    assert refs[4].md5 is None and refs[4].sha256 is None
    assert refs[0].url == "https://conda.anaconda.org/conda-forge/linux-64/zlib-1.3-h0.conda"


def test_parse_explicit_local_paths_and_errors(tmp_path):
    ref = fetch_refs.ref_from_url(str(tmp_path / "x-1-0.tar.bz2"))
    assert ref.url == path_to_url(str(tmp_path / "x-1-0.tar.bz2")) and ref.dist == "x-1-0"
    with pytest.raises(InvalidSpecError, match="checksum"):
        fetch_refs.ref_from_url("https://h/c/noarch/x-1-0.conda#notahash")
    with pytest.raises(InvalidSpecError, match="not a package URL"):
        fetch_refs.ref_from_url("https://h/c/noarch/repodata.json")


def test_refs_from_repodata():
    repodata = {
        "info": {"subdir": "linux-64"},
        "packages": {"a-1-0.tar.bz2": {"name": "a", "version": "1", "md5": MD5, "size": 3}},
        "packages.conda": {
            "a-1-0.conda": {"name": "a", "version": "1", "sha256": SHA, "size": 5},
            "b-2-0.conda": {"name": "b", "version": "2", "depends": ["a"]},
        },
    }
    refs = fetch_refs.refs_from_repodata(repodata, "http://h/ch/linux-64", ["a"])
    assert [r.fn for r in refs] == ["a-1-0.conda"]  # one format per package, .conda first
    (b,) = fetch_refs.refs_from_repodata(repodata, "http://h/ch/linux-64", ["b-2-*"])
    assert b.url == "http://h/ch/linux-64/b-2-0.conda"
    assert b.extra["depends"] == ["a"] and b.extra["subdir"] == "linux-64"
    with pytest.raises(InvalidSpecError, match="matches no package"):
        fetch_refs.refs_from_repodata(repodata, "http://h/ch/linux-64", ["zzz"])


def _repodata_both_formats():
    def rec(name, version, deps=()):
        return {
            "name": name,
            "version": version,
            "build": "0",
            "build_number": 0,
            "depends": list(deps),
            "sha256": SHA,
            "size": 5,
            "subdir": "noarch",
        }

    return {
        "info": {"subdir": "noarch"},
        "packages": {f"demo-lib-{v}-0.tar.bz2": rec("demo-lib", v) for v in ("1.0", "1.1", "1.10")},
        "packages.conda": {
            **{f"demo-lib-{v}-0.conda": rec("demo-lib", v) for v in ("1.0", "1.1")},
            "demo-tool-2.0-0.conda": rec("demo-tool", "2.0", ["demo-lib >=1.0"]),
        },
    }


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        (["demo-lib"], ["demo-lib-1.0-0.conda", "demo-lib-1.1-0.conda", "demo-lib-1.10-0.tar.bz2"]),
        (["demo-lib>=1.1"], ["demo-lib-1.1-0.conda", "demo-lib-1.10-0.tar.bz2"]),
        (["demo-lib 1.1.*"], ["demo-lib-1.1-0.conda"]),
        (["demo-lib==1.0", "demo-lib-1.0-0"], ["demo-lib-1.0-0.conda"]),
        (
            ["demo-*"],
            [
                "demo-lib-1.0-0.conda",
                "demo-lib-1.1-0.conda",
                "demo-lib-1.10-0.tar.bz2",
                "demo-tool-2.0-0.conda",
            ],
        ),
        # an archive named by its file name is that archive; never both formats of one package
        (["demo-lib-1.0-0.tar.bz2"], ["demo-lib-1.0-0.tar.bz2"]),
        (
            ["demo-lib-1.0-0.tar.bz2", "demo-lib"],
            ["demo-lib-1.0-0.tar.bz2", "demo-lib-1.1-0.conda", "demo-lib-1.10-0.tar.bz2"],
        ),
    ],
)
def test_repodata_selection_one_format_per_package_and_matchspecs(patterns, expected):
    refs = fetch_refs.refs_from_repodata(_repodata_both_formats(), "http://h/ch/noarch", patterns)
    assert sorted(r.fn for r in refs) == expected
    dists = [r.fn.rsplit(".conda", 1)[0].rsplit(".tar.bz2", 1)[0] for r in refs]
    assert len(dists) == len(set(dists))


@pytest.mark.parametrize("pattern", ["demo-lib>=9", "demo-lib-1.10-0.conda", "nope"])
def test_repodata_selection_matching_nothing_is_an_error(pattern):
    with pytest.raises(InvalidSpecError, match="matches no package"):
        fetch_refs.refs_from_repodata(_repodata_both_formats(), "http://h/ch/noarch", [pattern])


# -- planning -------------------------------------------------------------------------------------
def ref_of(pkg, srv=None, **kw):
    url = srv.url(f"{pkg.subdir}/{pkg.fn}") if srv else f"https://h/ch/{pkg.subdir}/{pkg.fn}"
    return fetch_refs.PackageRef(url, pkg.fn, md5=pkg.md5, sha256=pkg.sha256, size=pkg.size, **kw)


def install_by_hand(pkgs_dir, pkg, url, *, archive=True, extract=True, **record):
    os.makedirs(pkgs_dir, exist_ok=True)
    with open(os.path.join(pkgs_dir, "urls.txt"), "a") as fh:
        fh.write(url + "\n")
    if archive:
        shutil.copyfile(pkg.path, os.path.join(pkgs_dir, pkg.fn))
    if extract:
        dest = os.path.join(pkgs_dir, pkg.dist)
        extract_by_hand(pkg.path, dest)
        rec = pkg.repodata_entry()
        rec.update(fn=pkg.fn, url=url, channel=url.rsplit("/", 1)[0])
        rec.update(record)
        with open(os.path.join(dest, "info", "repodata_record.json"), "w") as fh:
            json.dump(rec, fh)


def test_plan_decides_like_conda_but_checks_sha256(tmp_path, build):
    pkgs = str(tmp_path / "pkgs")
    done = build("done", "1", fmt=".conda")
    stale = build("stale", "1", fmt=".conda")
    arch = build("arch", "1", fmt=".conda")
    broken = build("broken", "1", fmt=".conda")
    new = build("new", "1", fmt=".conda")
    install_by_hand(pkgs, done, f"https://h/ch/noarch/{done.fn}")
    # Same name, but its record's sha256 disagrees with what is asked: not reused.
    install_by_hand(pkgs, stale, f"https://h/ch/noarch/{stale.fn}", archive=False, sha256=SHA)
    install_by_hand(pkgs, arch, f"https://h/ch/noarch/{arch.fn}", extract=False)
    install_by_hand(pkgs, broken, f"https://h/ch/noarch/{broken.fn}", extract=False)
    with open(os.path.join(pkgs, broken.fn), "r+b") as fh:
        fh.seek(100)
        fh.write(b"garbage!")
    refs = [ref_of(p) for p in (done, stale, arch, broken, new)]
    p = fetch_plan.plan(refs, PackageCaches([pkgs]))
    actions = {i.ref.fn: (i.action, i.pkgs_dir) for i in p.items}
    assert actions == {
        done.fn: ("none", pkgs),
        stale.fn: ("download", pkgs),
        arch.fn: ("extract", pkgs),
        broken.fn: ("download", pkgs),
        new.fn: ("download", pkgs),
    }
    assert p.target == pkgs and not p.create_target
    sizes = [i.ref.size for i in p.items]
    assert sizes == sorted(sizes, reverse=True)  # largest first
    forced = fetch_plan.plan(refs, PackageCaches([pkgs]), force={done.fn})
    assert {i.ref.fn: i.action for i in forced.items}[done.fn] == "download"


def test_plan_without_checksums_trusts_the_cache_record(tmp_path, build):
    pkgs = str(tmp_path / "pkgs")
    arch = build("arch", "1", fmt=".conda")
    install_by_hand(pkgs, arch, f"https://h/ch/noarch/{arch.fn}", extract=False)
    ref = fetch_refs.PackageRef(f"https://h/ch/noarch/{arch.fn}", arch.fn)
    (item,) = fetch_plan.plan([ref], PackageCaches([pkgs])).items
    assert item.action == "extract"


def test_plan_other_format_is_not_the_same_package(tmp_path, build):
    pkgs = str(tmp_path / "pkgs")
    conda_fmt = build("two", "1", fmt=".conda")
    bz2 = build("two", "1", fmt=".tar.bz2")
    install_by_hand(pkgs, conda_fmt, f"https://h/ch/noarch/{conda_fmt.fn}")
    (item,) = fetch_plan.plan([ref_of(bz2)], PackageCaches([pkgs])).items
    assert item.action == "download"


def test_plan_read_only_cache(tmp_path, build, read_only):  # noqa: F811
    ro_src = str(tmp_path / "ro")
    done = build("done", "1")
    arch = build("arch", "1")
    install_by_hand(ro_src, done, "https://h/ch/noarch/" + done.fn)
    install_by_hand(ro_src, arch, "https://h/ch/noarch/" + arch.fn, extract=False)
    ro = read_only(ro_src)
    rw = str(tmp_path / "new" / "pkgs")  # not a cache yet: created when needed
    caches = PackageCaches([ro, rw])
    assert caches.caches[0].is_writable is False
    p = fetch_plan.plan([ref_of(done), ref_of(arch)], caches)
    actions = {i.ref.fn: (i.action, i.pkgs_dir) for i in p.items}
    assert actions == {done.fn: ("none", ro), arch.fn: ("copy", rw)}
    assert p.target == rw and p.create_target
    assert not os.path.exists(rw)  # planning changes nothing


def test_plan_needs_a_writable_cache(tmp_path, build, read_only):  # noqa: F811
    ro_src = str(tmp_path / "ro")
    install_by_hand(ro_src, build("x", "1"), "https://h/ch/noarch/x-1-0.conda", extract=False)
    ro = read_only(ro_src)
    new = build("y", "1")
    with pytest.raises(NoWritableCacheError):
        fetch_plan.plan([ref_of(new)], PackageCaches([ro]))


# -- execution -------------------------------------------------------------------------------------
def test_execute_downloads_extracts_and_then_reuses(tmp_path, http_server):
    served = serve_packages(http_server, [("big", "1", 200), ("mid", "1", 50), ("small", "1", 3)])
    pkgs = str(tmp_path / "pkgs")
    refs = [ref_of(p, http_server) for p in served]
    run = Run(pkgs_dirs=[pkgs], quiet=True)
    summary = fetch_pipeline.execute(fetch_plan.plan(refs, PackageCaches([pkgs])), run)
    assert summary.count("downloaded") == 3 and summary.extractions == 3
    assert summary.failures == [] and not summary.interrupted
    assert summary.bytes_downloaded == sum(p.size for p in served)
    for p in served:
        assert entry_problems(pkgs, p.dist) == []
        with open(os.path.join(pkgs, p.dist, "info", "repodata_record.json")) as fh:
            rec = json.load(fh)
        assert (rec["sha256"], rec["md5"], rec["size"]) == (p.sha256, p.md5, p.size)
        assert rec["url"] == http_server.url(f"noarch/{p.fn}")
        assert rec["channel"] == http_server.url("noarch")
    with open(os.path.join(pkgs, "urls.txt")) as fh:
        assert sorted(fh.read().split()) == sorted(r.url for r in refs)
    assert os.path.isfile(os.path.join(pkgs, "CACHEDIR.TAG"))

    n = len(http_server.requests)
    again = fetch_pipeline.execute(fetch_plan.plan(refs, PackageCaches([pkgs])), run)
    assert again.count("reused") == 3 and again.extractions == 0
    assert len(http_server.requests) == n


def test_execute_copies_from_read_only_cache(tmp_path, http_server, build, read_only):  # noqa: F811
    (pkg,) = serve_packages(http_server, [("shared", "1", 20)])
    ro_src = str(tmp_path / "ro")
    origin = "https://origin.example/ch/noarch/" + pkg.fn
    install_by_hand(ro_src, pkg, origin, extract=False)
    ro = read_only(ro_src)
    rw = str(tmp_path / "rw")
    run = Run(pkgs_dirs=[ro, rw], quiet=True)
    p = fetch_plan.plan([ref_of(pkg, http_server)], PackageCaches([ro, rw]))
    summary = fetch_pipeline.execute(p, run)
    assert [i.outcome for i in summary.items] == ["copied"]
    assert http_server.requests == []  # nothing downloaded
    assert entry_problems(rw, pkg.dist) == []
    with open(os.path.join(rw, pkg.dist, "info", "repodata_record.json")) as fh:
        assert json.load(fh)["url"] == origin  # where the package really came from
    with open(os.path.join(rw, "urls.txt")) as fh:
        assert fh.read() == origin + "\n"
    assert sorted(os.listdir(ro)) == sorted(os.listdir(ro_src))


def test_execute_extract_only(tmp_path, build):
    pkgs = str(tmp_path / "pkgs")
    pkg = build("arch", "1", fmt=".tar.bz2")
    install_by_hand(pkgs, pkg, "https://h/ch/noarch/" + pkg.fn, extract=False)
    run = Run(pkgs_dirs=[pkgs], quiet=True, offline=True)  # offline: must not matter
    summary = fetch_pipeline.execute(fetch_plan.plan([ref_of(pkg)], PackageCaches([pkgs])), run)
    assert [i.outcome for i in summary.items] == ["extracted"]
    assert entry_problems(pkgs, pkg.dist) == []


def test_execute_extracts_several_in_worker_processes(tmp_path, build):
    pkgs = str(tmp_path / "pkgs")
    built = [build(f"multi{i}", "1", fmt=fmt) for i, fmt in enumerate([".conda", ".tar.bz2"] * 2)]
    for pkg in built:
        install_by_hand(pkgs, pkg, "https://h/ch/noarch/" + pkg.fn, extract=False)
    refs = [ref_of(pkg) for pkg in built]
    summary = fetch_pipeline.execute(fetch_plan.plan(refs, PackageCaches([pkgs])), Run(quiet=True))
    assert [i.outcome for i in summary.items] == ["extracted"] * 4
    for pkg in built:
        assert entry_problems(pkgs, pkg.dist) == []


@pytest.mark.skipif(not fetch_pipeline._FORK_OK, reason="extraction processes are Linux-only")
def test_extraction_processes_return_results_and_whole_errors(tmp_path, build):
    import threading

    from conda_cache_plus.exceptions import ArchiveError
    from conda_cache_plus.gateways.extract import install_entry
    from conda_cache_plus.model.cache_paths import CacheLayout

    if threading.active_count() > 1:
        # Earlier tests left threads behind, and fetch never forks a threaded process: run this
        # test alone in a fresh interpreter instead of skipping it.
        if os.environ.get("CCP_ALONE"):
            pytest.skip("threads are running even in a fresh interpreter")
        import subprocess
        import sys

        node = f"{__file__}::test_extraction_processes_return_results_and_whole_errors"
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", node],
            capture_output=True,
            text=True,
            env={**os.environ, "CCP_ALONE": "1"},
            timeout=300,
        )
        assert proc.returncode == 0 and " passed" in proc.stdout, proc.stdout + proc.stderr
        return
    pool = fetch_pipeline._extract_processes(2, 2)
    assert pool is not None
    try:
        assert pool.submit(os.getpid).result() != os.getpid()
        layout = CacheLayout(str(tmp_path / "pkgs"))
        in_child = fetch_pipeline._in_process(pool, install_entry)
        good = build("good", "1")
        record = {"url": "https://h/ch/noarch/" + good.fn}
        assert in_child(layout, good.dist, good.path, record) == layout.extracted(good.dist)
        assert entry_problems(layout.root, good.dist) == []
        broken = tmp_path / "broken-1-0.conda"
        broken.write_bytes(Path(good.path).read_bytes()[:200])
        with pytest.raises(ArchiveError) as info:
            in_child(layout, "broken-1-0", str(broken), None)
        # the error crossed the process boundary with its fields, not just its message
        assert info.value.path == str(broken) and info.value.reason
        assert not os.path.exists(layout.extracted("broken-1-0"))
    finally:
        pool.shutdown()


def test_execute_failures_are_listed_and_others_complete(tmp_path, http_server):
    good, bad, gone = serve_packages(
        http_server, [("good", "1", 5), ("bad", "1", 5), ("gone", "1", 5)]
    )
    os.unlink(os.path.join(http_server.directory, "noarch", gone.fn))
    pkgs = str(tmp_path / "pkgs")
    refs = [ref_of(good, http_server), ref_of(bad, http_server), ref_of(gone, http_server)]
    refs[1].sha256 = "0" * 64
    summary = fetch_pipeline.execute(fetch_plan.plan(refs, PackageCaches([pkgs])), Run(quiet=True))
    outcome = {i.fn: (i.outcome, i.error_type) for i in summary.items}
    assert outcome == {
        good.fn: ("downloaded", None),
        bad.fn: ("failed", "ChecksumMismatchError"),
        gone.fn: ("failed", "DownloadError"),
    }
    assert "404" in next(i.error for i in summary.items if i.fn == gone.fn)
    listing = set(os.listdir(pkgs))
    assert good.fn in listing and good.dist in listing
    assert not {bad.fn, bad.dist, gone.fn, gone.dist, bad.fn + ".partial"} & listing
    with open(os.path.join(pkgs, "urls.txt")) as fh:
        assert fh.read() == refs[0].url + "\n"


def test_execute_replaces_a_stale_entry(tmp_path, http_server):
    (pkg,) = serve_packages(http_server, [("p", "1", 5)])
    pkgs = str(tmp_path / "pkgs")
    install_by_hand(pkgs, pkg, "https://old.example/noarch/" + pkg.fn, archive=False, md5=MD5)
    with open(os.path.join(pkgs, pkg.dist, "stray.txt"), "w") as fh:
        fh.write("from the old entry")
    summary = fetch_pipeline.execute(
        fetch_plan.plan([ref_of(pkg, http_server)], PackageCaches([pkgs])), Run(quiet=True)
    )
    assert [i.outcome for i in summary.items] == ["downloaded"]
    assert entry_problems(pkgs, pkg.dist) == []
    assert not os.path.exists(os.path.join(pkgs, pkg.dist, "stray.txt"))
