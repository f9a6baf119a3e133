"""repair: every kind of damage restored from the archive, the network, or by removal."""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import threading
from pathlib import Path

import pytest
from builders import make_files
from conftest import extract_by_hand, populate

from conda_cache_plus.integrity.findings import FULL, OK
from conda_cache_plus.integrity.repair import (
    REDOWNLOAD,
    REEXTRACT,
    REMOVE,
    SKIP,
    execute_plan,
    plan_repair,
)
from conda_cache_plus.integrity.verify import verify_caches
from conda_cache_plus.layouts.caches import PackageCaches
from conda_cache_plus.ui.output import Run


def garble(path) -> None:
    with open(path, "r+b") as fh:
        fh.write(b"garbage")


def tree(root) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            if rel.startswith("info"):
                continue
            if os.path.islink(p):
                out[rel] = ("link", os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", Path(p).read_bytes())
    return out


@pytest.fixture
def served(tmp_path, build):
    """Two packages in a channel served over real HTTP on 127.0.0.1, and a cache holding them."""
    a = build("alpha", "1.0", "0", files=make_files("alpha"), fmt=".conda")
    b = build("beta", "2.0", "0", files=make_files("beta"), fmt=".tar.bz2")
    channel = os.path.dirname(os.path.dirname(a.path))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=channel)
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    pkgs = populate(tmp_path / "pkgs", [a, b], channel_url=url)
    yield pkgs, {"alpha": a, "beta": b}
    server.shutdown()


def repair(pkgs, *, offline=False, allow_remove=True):
    report = verify_caches(PackageCaches([pkgs]), None, FULL)
    plan = plan_repair(report, offline=offline)
    stats = execute_plan(
        plan, Run(quiet=True, yes=True, pkgs_dirs=[pkgs]), allow_remove=allow_remove
    )
    return plan, stats


def assert_restored(pkgs, built):
    report = verify_caches(PackageCaches([pkgs]), None, FULL, use_store=False)
    assert [(e.entry, e.status) for e in report.entries if e.status != OK] == []
    for pkg in built.values():
        ref = os.path.join(os.path.dirname(pkgs), "ref-" + pkg.dist)
        extract_by_hand(pkg.path, ref)
        assert tree(os.path.join(pkgs, pkg.dist)) == tree(ref)
        rec = json.loads(Path(pkgs, pkg.dist, "info", "repodata_record.json").read_text())
        assert rec["sha256"] == pkg.sha256 and rec["fn"] == pkg.fn


def damage_all(pkgs, tmp_path):
    a = os.path.join(pkgs, "alpha-1.0-0")
    b = os.path.join(pkgs, "beta-2.0-0")
    with open(f"{a}/share/alpha/data.bin", "r+b") as fh:
        fh.truncate(10)
    with open(f"{b}/share/beta/data.bin", "r+b") as fh:
        fh.seek(5000)
        fh.write(b"\xee")
    os.unlink(f"{a}/share/alpha/other")
    os.mkdir(f"{a}/share/alpha/other")
    os.unlink(f"{b}/share/beta/latest")
    os.symlink("/etc/hostname", f"{b}/share/beta/latest")
    os.unlink(f"{a}/etc/alpha.conf")


@pytest.mark.parametrize(
    "damage",
    [
        "truncate",
        "flip",
        "delete",
        "file_to_dir",
        "broken_link",
        "retarget_link",
        "escaping_link",
        "paths_json",
        "record",
        "cut_short",
        "all",
    ],
)
def test_reextract_restores(served, tmp_path, damage):
    pkgs, built = served
    a = os.path.join(pkgs, "alpha-1.0-0")
    if damage == "truncate":
        os.truncate(f"{a}/share/alpha/data.bin", 3)
    elif damage == "flip":
        with open(f"{a}/etc/alpha.conf", "r+b") as fh:
            fh.write(b"X")
    elif damage == "delete":
        os.unlink(f"{a}/share/alpha/README")
    elif damage == "file_to_dir":
        os.unlink(f"{a}/share/alpha/other")
        os.mkdir(f"{a}/share/alpha/other")
    elif damage == "broken_link":
        os.unlink(f"{a}/share/alpha/README")
    elif damage == "retarget_link":
        os.unlink(f"{a}/share/alpha/latest")
        os.symlink("other", f"{a}/share/alpha/latest")
    elif damage == "escaping_link":
        os.unlink(f"{a}/share/alpha/latest")
        os.symlink("../../../README", f"{a}/share/alpha/latest")
    elif damage == "paths_json":
        os.unlink(f"{a}/info/paths.json")
    elif damage == "record":
        Path(f"{a}/info/repodata_record.json").write_text("{")
    elif damage == "cut_short":
        shutil.rmtree(f"{a}/share")
    else:
        damage_all(pkgs, tmp_path)
    plan, stats = repair(pkgs)
    assert plan.actions and {x.action for x in plan.actions} == {REEXTRACT}
    assert stats["failed"] == 0 and stats["re-extracted"] == len(plan.actions)
    assert all(x.status_after == OK for x in plan.actions)
    if damage == "record":
        # Nothing to check the archive against: it is used as is, and the plan says so.
        assert "cannot be checked" in plan.actions[0].reason
        assert_restored(pkgs, {"alpha": built["alpha"]})
    else:
        assert_restored(pkgs, built)


def test_bad_archive_is_downloaded_again(served):
    pkgs, built = served
    archive = os.path.join(pkgs, "beta-2.0-0.tar.bz2")
    garble(archive)
    os.unlink(os.path.join(pkgs, "beta-2.0-0", "share/beta/README"))
    plan, stats = repair(pkgs)
    assert [(x.label, x.action) for x in plan.actions] == [("beta-2.0-0", REDOWNLOAD)]
    assert stats["re-downloaded"] == 1 and stats["failed"] == 0, plan.actions[0].detail
    assert Path(archive).read_bytes() == Path(built["beta"].path).read_bytes()
    assert_restored(pkgs, built)


def test_missing_archive_is_downloaded_again(served):
    pkgs, built = served
    os.unlink(os.path.join(pkgs, "alpha-1.0-0.conda"))
    with open(os.path.join(pkgs, "alpha-1.0-0", "share/alpha/data.bin"), "r+b") as fh:
        fh.write(b"zzz")
    plan, stats = repair(pkgs)
    assert [x.action for x in plan.actions] == [REDOWNLOAD]
    assert stats["re-downloaded"] == 1, plan.actions[0].detail
    assert_restored(pkgs, built)


def test_offline_without_good_archive_removes_entry(served):
    pkgs, _ = served
    garble(os.path.join(pkgs, "alpha-1.0-0.conda"))
    os.unlink(os.path.join(pkgs, "alpha-1.0-0", "share/alpha/README"))
    # Not allowed to remove: kept, and said so.
    plan, stats = repair(pkgs, offline=True, allow_remove=False)
    assert [x.action for x in plan.actions] == [REMOVE]
    assert stats["skipped"] == 1 and os.path.isdir(os.path.join(pkgs, "alpha-1.0-0"))
    plan, stats = repair(pkgs, offline=True)
    assert stats["removed"] == 1 and stats["bytes_removed"] > 0
    assert not os.path.exists(os.path.join(pkgs, "alpha-1.0-0"))
    assert not os.path.exists(os.path.join(pkgs, "alpha-1.0-0.conda"))
    urls = Path(pkgs, "urls.txt").read_text()
    assert "alpha-1.0-0.conda" not in urls and "beta-2.0-0.tar.bz2" in urls
    report = verify_caches(PackageCaches([pkgs]), None, FULL)
    assert [e.name for e in report.entries] == ["beta"] and not report.bad


def test_read_only_cache_is_only_reported(served):
    pkgs, _ = served
    os.unlink(os.path.join(pkgs, "alpha-1.0-0", "share/alpha/README"))
    # not writable even as root: a magic file that is no file (conda could not write it either;
    # a writable directory whose urls.txt is merely gone is writable, as for conda)
    os.unlink(os.path.join(pkgs, "urls.txt"))
    os.mkdir(os.path.join(pkgs, "urls.txt"))
    plan, stats = repair(pkgs)
    assert [x.action for x in plan.actions] == [SKIP] and "read-only" in plan.actions[0].reason
    assert stats["skipped"] == 1
    assert not os.path.exists(os.path.join(pkgs, "alpha-1.0-0", "share/alpha/README"))
