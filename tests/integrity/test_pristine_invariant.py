"""No false verdict: an entry identical to a fresh extraction of its archive verifies ok, or is
reported as the archive's own defect (never as damage a repair would loop on).

Over every kind of package the suite builds (the demo channel, legacy packages without
info/paths.json, packages with no file list at all, symlinks with an empty target as real 2018
packages have, directories, placeholders, link chains), in both formats: extract (with our
extractor, and with the standard library as a reference), then verify fast and full, then
``repair`` finds nothing to do.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
from conftest import extract_by_hand

from conda_cache_plus import pkgbuild
from conda_cache_plus.integrity.findings import FAST, FULL, OK
from conda_cache_plus.integrity.verify import verify_entry
from conda_cache_plus.model.cache_paths import CacheLayout
from conda_cache_plus.pkgbuild import Directory, PlaceholderFile, Symlink

FORMATS = (".conda", ".tar.bz2")


def corpus(out: str) -> list[pkgbuild.BuiltPackage]:
    """Every package shape the suite knows how to build, in both formats."""
    pkgs = list(pkgbuild.demo_channel(os.path.join(out, "demo")))
    shapes = {
        "plain-files": {},
        "legacy-files-list": {"with_paths_json": False},
        "no-file-list": {"with_paths_json": False, "with_files_list": False},
        "no-file-list-empty": {
            "with_paths_json": False,
            "with_files_list": False,
            "files": {},
        },
        "no-files": {"files": {}},
        "empty-link": {
            "files": {
                "lib/libz.so.1.2.11": b"\x7fELF" + b"z" * 300,
                "lib/libz.so.1": Symlink(""),
                "lib/libz.so": Symlink(""),
            }
        },
        "odd-tree": {
            "files": {
                "share/odd/empty-dir": Directory(),
                "share/odd/a.txt": b"a\n",
                "share/odd/link-to-a": Symlink("a.txt"),
                "share/odd/link-to-link": Symlink("link-to-a"),
                "share/odd/link-to-dir": Symlink("../odd"),
                "share/odd/dangling-to-other-pkg": Symlink("../other/file"),
                "etc/odd.conf": PlaceholderFile(b"prefix=/opt/anaconda1anaconda2anaconda3\n"),
                "bin/odd": b"#!/bin/sh\necho odd\n",
                "share/odd/empty-file": b"",
                "share/odd/name with spaces and ünïcode": b"x",
            }
        },
    }
    for name, kw in shapes.items():
        for fmt in FORMATS:
            pkgs.append(pkgbuild.build_package(os.path.join(out, "shapes"), name, fmt=fmt, **kw))
    return pkgs


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    return corpus(str(tmp_path_factory.mktemp("corpus")))


def _ids(pkgs):
    return [p.fn for p in pkgs]


def _entry(pkgs_dir: str, pkg, how: str) -> str:
    os.makedirs(pkgs_dir, exist_ok=True)
    archive = os.path.join(pkgs_dir, pkg.fn)
    shutil.copyfile(pkg.path, archive)
    record = pkg.repodata_entry()
    record.update(fn=pkg.fn, url=f"https://conda.example.org/demo/noarch/{pkg.fn}")
    if how == "ours":
        from conda_cache_plus.gateways.extract import install_entry

        install_entry(CacheLayout(pkgs_dir), pkg.dist, archive, record)
    else:
        dest = os.path.join(pkgs_dir, pkg.dist)
        extract_by_hand(archive, dest)
        with open(os.path.join(dest, "info", "repodata_record.json"), "w") as fh:
            json.dump(record, fh)
    return pkg.dist


def verdict(f, level: str) -> str:
    """The judgement every verb reads: ok, damaged or defective (integrity/judgement.py)."""
    from conda_cache_plus.integrity.findings import VerifyReport
    from conda_cache_plus.integrity.judgement import judge

    if f.status == OK:
        return "ok"
    f.writable = True
    judge(VerifyReport(level=level, entries=[f]), remember=False)
    return f.verdict


# conda refuses to link these (a symlink with an empty target cannot be made): their own defect
DEFECTIVE_AS_PUBLISHED = {"empty-link"}


def _all_packages():
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return [p.fn for p in corpus(tmp)]


PACKAGE_FNS = _all_packages()


@pytest.mark.parametrize("how", ["ours", "stdlib"])
@pytest.mark.parametrize("fn", PACKAGE_FNS)
def test_fresh_extraction_verifies_ok(tmp_path, packages, fn, how):
    (pkg,) = [p for p in packages if p.fn == fn]
    pkgs_dir = str(tmp_path / "pkgs")
    entry = _entry(pkgs_dir, pkg, how)
    want = "defective" if pkg.name in DEFECTIVE_AS_PUBLISHED else "ok"
    for level in (FAST, FULL):
        f = verify_entry(pkgs_dir, entry, level, use_store=False)
        assert verdict(f, level) == want, (level, [p.describe() for p in f.problems])
    # and once more without the archive beside it (conda clean --tarballs)
    os.unlink(os.path.join(pkgs_dir, pkg.fn))
    for level in (FAST, FULL):
        f = verify_entry(pkgs_dir, entry, level, use_store=False)
        if pkg.name in ("empty-link", "no-file-list"):
            continue  # only the archive can vouch for what is absent or unlisted
        assert f.status == OK, (level, "no archive", [p.describe() for p in f.problems])


@pytest.mark.parametrize("fn", [f for f in PACKAGE_FNS if f.startswith("legacy-files-list")])
def test_a_lost_file_list_is_still_found(tmp_path, packages, fn):
    """The other side of the invariant: an entry whose archive has a list it lost is damaged."""
    (pkg,) = [p for p in packages if p.fn == fn]
    pkgs_dir = str(tmp_path / "pkgs")
    entry = _entry(pkgs_dir, pkg, "ours")
    os.unlink(os.path.join(pkgs_dir, entry, "info", "files"))
    f = verify_entry(pkgs_dir, entry, FAST, use_store=False)
    assert f.status != OK
    assert "info/files" in f.problems[0].describe()


def test_a_deleted_link_is_still_found(tmp_path, packages):
    """Empty-target links are excused by the archive; a real link that vanished is not."""
    (pkg,) = [p for p in packages if p.fn == "odd-tree-1.0-0.conda"]
    pkgs_dir = str(tmp_path / "pkgs")
    entry = _entry(pkgs_dir, pkg, "ours")
    os.unlink(os.path.join(pkgs_dir, entry, "share", "odd", "link-to-a"))
    f = verify_entry(pkgs_dir, entry, FAST, use_store=False)
    assert "share/odd/link-to-a" in [p.path for p in f.problems]


def test_whole_corpus_cache_is_clean_for_verify_doctor_and_repair(tmp_path, packages):
    """All of them in one cache: verify (both levels) finds nothing but the packages defective as
    published, the doctor check says the same, repair has nothing to do but say so."""
    from conftest import run_cli

    from conda_cache_plus.conda_layer import doctor

    pkgs_dir = str(tmp_path / "pkgs")
    for pkg in packages:
        _entry(pkgs_dir, pkg, "ours")
    defective = {p.dist for p in packages if p.name in DEFECTIVE_AS_PUBLISHED}
    for extra in ([], ["--full"]):
        proc = run_cli("verify", "--pkgs-dir", pkgs_dir, *extra, "--json")
        data = json.loads(proc.stdout)
        bad = {e["entry"]: e["verdict"] for e in data["entries"] if e["status"] != "ok"}
        assert bad == dict.fromkeys(defective, "defective"), proc.stdout
    report = doctor.find([pkgs_dir])
    assert {f.entry for f in report.bad} == defective
    assert {f.verdict for f in report.bad} == {"defective"}
    proc = run_cli("repair", "--pkgs-dir", pkgs_dir, "--full", "-y", "--json")
    plan = json.loads(proc.stdout)
    assert plan["counts"] == {"re-extract": 0, "re-download": 0, "remove": 0, "skip": 1}, plan
    assert "the package itself is defective" in plan["actions"][0]["reason"], plan


def _unusual_entries(tmp_path_factory):
    import unusual_corpus

    channel = str(tmp_path_factory.mktemp("unusual"))
    return channel, unusual_corpus.build_all(channel)


@pytest.fixture(scope="module")
def unusual(tmp_path_factory):
    return _unusual_entries(tmp_path_factory)


def test_unusual_corpus_extractions_verify_ok(tmp_path, unusual):
    """wt-ext's corpus of legitimate but unusual packages (tests/unusual_corpus.py): whatever
    our extractor accepts verifies ok, fast and full."""
    from conda_cache_plus.exceptions import ArchiveError
    from conda_cache_plus.gateways.extract import install_entry

    channel, entries = unusual
    pkgs_dir = str(tmp_path / "pkgs")
    bad = {}
    checked = 0
    for e in entries:
        src = os.path.join(channel, "noarch", e["fn"])
        os.makedirs(pkgs_dir, exist_ok=True)
        archive = os.path.join(pkgs_dir, e["fn"])
        shutil.copyfile(src, archive)
        dist = e["fn"].rsplit(".conda", 1)[0].rsplit(".tar.bz2", 1)[0]
        record = {k: v for k, v in e.items()}
        record["url"] = f"https://conda.example.org/x/noarch/{e['fn']}"
        try:
            install_entry(CacheLayout(pkgs_dir), dist, archive, record)
        except ArchiveError:
            os.unlink(archive)
            continue  # refused on purpose (README "Differences from conda's extractor")
        for level in (FAST, FULL):
            f = verify_entry(pkgs_dir, dist, level, use_store=False)
            if verdict(f, level) == "damaged":
                bad[(e["fn"], level)] = [p.describe() for p in f.problems]
        checked += 1
        shutil.rmtree(os.path.join(pkgs_dir, dist))
        os.unlink(archive)
    assert checked
    assert not bad, bad
