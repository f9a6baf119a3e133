"""One judgement of each entry, shared by every verb (issue 23), driven as a user drives it.

A table of damages: for each kind of finding verify can report, make the damage in a real cache,
run ``verify`` (fast and ``--full``), run the remedy it printed *verbatim* (the command as printed,
through ``conda-cache`` and, where conda is importable, ``conda cache``), then verify again at the
same level: clean, or the finding says why no remedy exists (the package's own defect, a read-only
cache).

Each verify entry in ``--json`` carries ``verdict`` (``ok``, ``damaged``: the cache's fault, repair
fixes it; ``defective``: the archive disagrees with its own metadata) and ``remedy``
(``{"action": "re-extract" | "re-download" | "remove" | "none", "command": str | None,
"reason": str}``); the text output prints the same command after the action
(``re-extract: conda-cache repair ...``), or ``no fix:`` with the reason.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass

import pytest
from conftest import HAVE_CONDA, populate

from conda_cache_plus import pkgbuild
from conda_cache_plus.pkgbuild import Symlink

FRONTENDS = ["conda-cache", "conda cache"] if HAVE_CONDA else ["conda-cache"]


def _argv(frontend: str) -> list[str]:
    if frontend == "conda cache":
        return [sys.executable, "-m", "conda", "cache"]
    return [sys.executable, "-m", "conda_cache_plus"]


def cli(frontend: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*_argv(frontend), *args],
        capture_output=True,
        text=True,
        input=input,
        timeout=600,
        env=dict(os.environ),
    )


def run_printed(command: str, input: str = "y\n") -> subprocess.CompletedProcess:
    """Run a command exactly as a remedy printed it (``conda-cache ...`` or ``conda cache ...``)."""
    words = shlex.split(command)
    if words[0] == "conda-cache":
        argv = [sys.executable, "-m", "conda_cache_plus", *words[1:]]
    else:
        assert words[:2] == ["conda", "cache"], command
        argv = [sys.executable, "-m", "conda", "cache", *words[2:]]
    return subprocess.run(
        argv, capture_output=True, text=True, input=input, timeout=600, env=dict(os.environ)
    )


def verify_json(frontend: str, pkgs_dir: str, level: str) -> tuple[int, dict, str]:
    extra = ["--full"] if level == "full" else []
    proc = cli(frontend, "verify", "--pkgs-dir", pkgs_dir, *extra, "--json")
    text = cli(frontend, "verify", "--pkgs-dir", pkgs_dir, *extra)
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"not JSON (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.returncode, data, text.stdout + text.stderr


# --- packages and damages ----------------------------------------------------------------------


def _zlib_like(out: str, fmt: str) -> pkgbuild.BuiltPackage:
    """Like conda's test-data zlib .tar.bz2: paths.json says two softlinks, the archive has them
    as empty regular files (the archive contradicts its own paths.json)."""
    lib = b"\x7fELF" + b"z" * 500
    pkg = pkgbuild.build_package(
        out,
        "zlibish",
        "1.2.11",
        "0",
        fmt=fmt,
        files={"lib/libz.so.1.2.11": lib, "lib/libz.so": b"", "lib/libz.so.1": b""},
        paths_edit=lambda paths: [
            dict(p, path_type="softlink", size_in_bytes=len(lib), sha256=_sha(lib))
            if p["_path"] in ("lib/libz.so", "lib/libz.so.1")
            else p
            for p in paths
        ],
    )
    return pkg


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _duplicate_member(out: str, fmt: str) -> pkgbuild.BuiltPackage:
    """A payload member stored twice with different contents (the last one wins on extraction)."""
    ti = tarfile.TarInfo("share/dup/README")
    ti.size = 3
    return pkgbuild.build_package(
        out, "dup", fmt=fmt, files={"share/dup/README": b"one"}, extra_members=[(ti, b"two")]
    )


def _softlink_size0(out: str, fmt: str) -> pkgbuild.BuiltPackage:
    """A softlink whose paths.json size is 0 (and no sha256), as some builders write it."""
    return pkgbuild.build_package(
        out,
        "soft0",
        fmt=fmt,
        files={"lib/a": b"abc", "lib/b": Symlink("a")},
        paths_edit=lambda paths: [
            {"_path": p["_path"], "path_type": "softlink", "size_in_bytes": 0}
            if p["_path"] == "lib/b"
            else p
            for p in paths
        ],
    )


def _plain(out: str, fmt: str) -> pkgbuild.BuiltPackage:
    return pkgbuild.build_package(out, "alpha", fmt=fmt)


def _same_size_change(pkgs_dir, pkg):
    path = os.path.join(pkgs_dir, pkg.dist, "share", "alpha", "README")
    size = os.path.getsize(path)
    with open(path, "wb") as fh:
        fh.write(b"X" * size)


def _missing_file(pkgs_dir, pkg):
    os.unlink(os.path.join(pkgs_dir, pkg.dist, "share", "alpha", "data.bin"))


def _truncated(pkgs_dir, pkg):
    with open(os.path.join(pkgs_dir, pkg.dist, "share", "alpha", "data.bin"), "r+b") as fh:
        fh.truncate(10)


def _lost_record(pkgs_dir, pkg):
    os.unlink(os.path.join(pkgs_dir, pkg.dist, "info", "repodata_record.json"))


def _lost_paths_json(pkgs_dir, pkg):
    os.unlink(os.path.join(pkgs_dir, pkg.dist, "info", "paths.json"))


def _damaged_archive(pkgs_dir, pkg):
    path = os.path.join(pkgs_dir, pkg.fn)
    size = os.path.getsize(path)
    with open(path, "r+b") as fh:  # same size: only a checksum can tell
        fh.seek(size // 2)
        fh.write(b"garbage!")


def _damaged_archive_and_dir(pkgs_dir, pkg):
    _damaged_archive(pkgs_dir, pkg)
    _missing_file(pkgs_dir, pkg)


def _no_archive_and_changed(pkgs_dir, pkg):
    os.unlink(os.path.join(pkgs_dir, pkg.fn))
    _same_size_change(pkgs_dir, pkg)


def _entry_symlinked_elsewhere(pkgs_dir, pkg):
    entry = os.path.join(pkgs_dir, pkg.dist)
    elsewhere = tempfile.mkdtemp(dir=os.path.dirname(pkgs_dir), prefix="elsewhere-")
    os.rmdir(elsewhere)
    os.rename(entry, elsewhere)
    os.symlink(elsewhere, entry)
    path = os.path.join(elsewhere, "share", "alpha", "README")
    with open(path, "wb") as fh:
        fh.write(b"X" * os.path.getsize(path))


def _planted_link(pkgs_dir, pkg):
    path = os.path.join(pkgs_dir, pkg.dist, "share", "alpha", "README")
    os.unlink(path)
    os.symlink("/etc/hostname", path)


def _no_urls_txt(pkgs_dir, pkg):
    os.unlink(os.path.join(pkgs_dir, "urls.txt"))
    _same_size_change(pkgs_dir, pkg)


def _nothing(pkgs_dir, pkg):
    pass


@dataclass
class Case:
    name: str
    make: object  # (out, fmt) -> BuiltPackage
    damage: object  # (pkgs_dir, pkg) -> None
    levels: tuple  # levels at which verify must find it (the others may too, or say ok)
    action: str  # the one remedy: re-extract | re-download | remove | none
    verdict: str = "damaged"  # damaged | defective


CASES = [
    Case("same-size content change", _plain, _same_size_change, ("full",), "re-extract"),
    Case("missing file", _plain, _missing_file, ("fast", "full"), "re-extract"),
    Case("truncated file", _plain, _truncated, ("fast", "full"), "re-extract"),
    Case("lost repodata_record.json", _plain, _lost_record, ("fast", "full"), "re-extract"),
    Case("lost paths.json", _plain, _lost_paths_json, ("fast", "full"), "re-extract"),
    Case("damaged archive", _plain, _damaged_archive, ("full",), "re-download"),
    Case(
        "damaged archive and dir", _plain, _damaged_archive_and_dir, ("fast", "full"), "re-download"
    ),
    Case("no archive, changed file", _plain, _no_archive_and_changed, ("full",), "re-download"),
    Case(
        "entry symlinked elsewhere",
        _plain,
        _entry_symlinked_elsewhere,
        ("fast", "full"),
        "re-extract",
    ),
    Case("planted link out", _plain, _planted_link, ("fast", "full"), "re-extract"),
    Case("writable cache without urls.txt", _plain, _no_urls_txt, ("full",), "re-extract"),
    Case(
        "archive contradicts paths.json",
        _zlib_like,
        _nothing,
        ("fast", "full"),
        "none",
        "defective",
    ),
    Case("duplicate member", _duplicate_member, _nothing, ("full",), "none", "defective"),
]


# what does not work yet (issue 23), strict: a fix makes the test say so
NOT_YET: dict[str, str] = {}


def params(cases):
    return [
        pytest.param(
            c,
            id=c.name,
            marks=[pytest.mark.xfail(reason=NOT_YET[c.name], strict=True)]
            if c.name in NOT_YET
            else [],
        )
        for c in cases
    ]


def _served_cache(tmp_path, http_server, case: Case, fmt: str):
    www = tmp_path / "www"
    pkg = case.make(str(www / "noarch"), fmt)
    pkgs_dir = str(tmp_path / "pkgs")
    populate(pkgs_dir, [pkg], channel_url=http_server.base_url)
    case.damage(pkgs_dir, pkg)
    return pkgs_dir, pkg


@pytest.mark.parametrize("frontend", FRONTENDS)
@pytest.mark.parametrize("case", params(CASES))
def test_every_finding_has_one_remedy_that_works(tmp_path, http_server, case, frontend):
    pkgs_dir, pkg = _served_cache(tmp_path, http_server, case, ".tar.bz2")
    for level in ("fast", "full"):
        rc, data, text = verify_json(frontend, pkgs_dir, level)
        bad = [e for e in data["entries"] if e["status"] != "ok"]
        if level not in case.levels and not bad:
            continue  # not visible at this level (and nothing remembered yet)
        assert rc == 1 and len(bad) == 1, (level, text)
        (entry,) = bad
        assert entry["verdict"] == case.verdict, (level, entry)
        remedy = entry["remedy"]
        assert remedy["action"] == case.action, (level, remedy)
        if case.action == "none":
            assert remedy["command"] is None and remedy["reason"], remedy
            assert f"no fix: {remedy['reason']}" in text.replace("\n    ", " "), text
            # no repair loop: repair leaves a defective package alone and says why
            cmd = f"{frontend} repair --pkgs-dir {shlex.quote(pkgs_dir)} -y"
            if level == "full":
                cmd += " --full"
            proc = run_printed(cmd)
            assert "re-extract" not in proc.stdout.split("Repair plan:")[-1].split("\n\n")[0] or (
                "skip" in proc.stdout
            ), proc.stdout
            continue
        command = remedy["command"]
        assert command.startswith(frontend + " "), command
        assert f"{remedy['action']}: {command}" in text, text
        assert shlex.quote(pkgs_dir) in command, command  # the same cache, not the configured one
        assert ("--full" in shlex.split(command)) == (level == "full"), command
        proc = run_printed(command)
        assert proc.returncode == 0, (command, proc.stdout, proc.stderr)
        rc, data, text = verify_json(frontend, pkgs_dir, level)
        assert rc == 0, (level, "after the remedy", text)
        # the damage is set again for the next level
        case.damage(pkgs_dir, pkg)


@pytest.mark.parametrize(
    "case",
    params([c for c in CASES if c.levels == ("full",) and c.verdict == "damaged"]),
)
def test_a_full_finding_is_remembered_until_the_entry_changes(tmp_path, http_server, case):
    """After ``verify --full`` found it, the fast level, plain repair and doctor know it too."""
    pkgs_dir, _pkg = _served_cache(tmp_path, http_server, case, ".conda")
    rc, data, _ = verify_json("conda-cache", pkgs_dir, "full")
    assert rc == 1
    rc, data, text = verify_json("conda-cache", pkgs_dir, "fast")
    assert rc == 1, text
    (entry,) = [e for e in data["entries"] if e["status"] != "ok"]
    assert entry["level"] == "full", entry  # the deepest level known
    proc = run_printed(f"conda-cache repair --pkgs-dir {shlex.quote(pkgs_dir)} -y")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Nothing to repair" not in proc.stdout
    rc, _, text = verify_json("conda-cache", pkgs_dir, "full")
    assert rc == 0, text


def test_a_read_only_cache_has_no_repair_remedy(tmp_path, tmpfs):
    """On a truly read-only cache repair can only skip: verify says so, and what works instead."""
    pkg = _plain(str(tmp_path / "built"), ".conda")
    pkgs_dir = str(tmpfs / "pkgs")
    populate(pkgs_dir, [pkg])
    _missing_file(pkgs_dir, pkg)
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    rc, data, text = verify_json("conda-cache", pkgs_dir, "fast")
    assert rc == 1
    (entry,) = [e for e in data["entries"] if e["status"] != "ok"]
    assert entry["remedy"]["action"] == "none", entry["remedy"]
    assert "read-only" in entry["remedy"]["reason"]
    assert "repair" not in text.split("no fix:")[0].split("\n")[-1]
    assert "Run `conda-cache repair`" not in text


@pytest.mark.parametrize("fmt", [".conda", ".tar.bz2"])
@pytest.mark.parametrize(
    "make", [_zlib_like, _duplicate_member, _softlink_size0], ids=["zlib-like", "dup", "soft0"]
)
def test_a_fresh_extraction_is_ok_or_the_archives_own_defect(tmp_path, make, fmt):
    """The invariant over the unusual packages: never 'damaged' (a repair loop), at any level,
    and the same verdict whichever code path checks (fetch's own check included)."""
    from conda_cache_plus.gateways.extract import install_entry
    from conda_cache_plus.model.cache_paths import CacheLayout

    pkg = make(str(tmp_path / "built"), fmt)
    pkgs_dir = str(tmp_path / "pkgs")
    os.makedirs(pkgs_dir)
    archive = os.path.join(pkgs_dir, pkg.fn)
    with open(pkg.path, "rb") as src, open(archive, "wb") as dst:
        dst.write(src.read())
    open(os.path.join(pkgs_dir, "urls.txt"), "w").close()
    record = pkg.repodata_entry()
    record.update(fn=pkg.fn, url=f"https://conda.example.org/demo/noarch/{pkg.fn}")
    install_entry(CacheLayout(pkgs_dir), pkg.dist, archive, record)
    verdicts = {}
    for level in ("fast", "full", "fast"):
        _rc, data, text = verify_json("conda-cache", pkgs_dir, level)
        (entry,) = data["entries"]
        assert entry["verdict"] in ("ok", "defective"), (level, text)
        assert entry["status"] == "ok" or entry["remedy"]["action"] == "none", entry
        verdicts.setdefault(level, []).append(entry["verdict"])
    # the fast level may not see what only hashes show; once --full knew, fast remembers it
    assert verdicts["fast"][-1] == verdicts["full"][0], verdicts


@pytest.mark.skipif(not HAVE_CONDA, reason="conda doctor needs conda")
@pytest.mark.parametrize(
    "case",
    [
        c
        for c in CASES
        if c.name in ("same-size content change", "missing file", "duplicate member")
    ],
    ids=lambda c: c.name,
)
def test_doctor_says_what_verify_says(tmp_path, http_server, case):
    """``conda doctor package-cache`` reads the same judgement: after ``verify --full`` found a
    same-size change it is not "intact"; a defective package is named as such."""
    from conftest import requires_conda_at_least

    from conda_cache_plus.conda_layer.compat import conda_version_tuple

    if conda_version_tuple() < (26, 1):
        pytest.skip("conda doctor NAME arrived in conda 26.1")
    del requires_conda_at_least
    pkgs_dir, _pkg = _served_cache(tmp_path, http_server, case, ".conda")
    env = tmp_path / "env"
    (env / "conda-meta").mkdir(parents=True)
    (env / "conda-meta" / "history").write_text("")
    environ = dict(os.environ, CONDA_PKGS_DIRS=pkgs_dir, CONDA_REGISTER_ENVS="false")
    for level in ("fast", "full"):
        rc, data, text = verify_json("conda-cache", pkgs_dir, level)
    proc = subprocess.run(
        [sys.executable, "-m", "conda", "doctor", "-p", str(env), "package-cache", "-v"],
        capture_output=True,
        text=True,
        env=environ,
        timeout=600,
    )
    intact = "The package caches are intact" in proc.stdout
    assert intact == (rc == 0), (proc.stdout, text)
    (entry,) = data["entries"]
    if entry["verdict"] == "defective":
        assert "defective:" in proc.stdout, proc.stdout
        assert "1 defective as published" in proc.stdout, proc.stdout
        assert "Fix with" not in proc.stdout, proc.stdout


def test_repair_honours_an_entry_lock_as_remove_does(tmp_path):
    """Another tool writing the entry (rattler's ``<entry>.lock`` held with flock) makes repair
    wait up to --lock-timeout, then skip it and say why; released, the printed remedy works."""
    import fcntl

    pkg = _plain(str(tmp_path / "built"), ".conda")
    pkgs_dir = str(tmp_path / "pkgs")
    populate(pkgs_dir, [pkg])
    _missing_file(pkgs_dir, pkg)
    lock = os.path.join(pkgs_dir, pkg.dist + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _rc, data, _text = verify_json("conda-cache", pkgs_dir, "fast")
        (entry,) = [e for e in data["entries"] if e["status"] != "ok"]
        command = entry["remedy"]["command"]
        proc = run_printed(command + " --lock-timeout 0.2")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "being written (another tool holds" in proc.stdout, proc.stdout
        assert not os.path.exists(os.path.join(pkgs_dir, pkg.dist, "share/alpha/data.bin"))
    finally:
        os.close(fd)
    proc = run_printed(command)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rc, _data, text = verify_json("conda-cache", pkgs_dir, "fast")
    assert rc == 0, text


@pytest.mark.parametrize("fmt", [".conda", ".tar.bz2"])
def test_fetch_says_at_once_when_a_package_is_defective_as_published(tmp_path, http_server, fmt):
    """fetch checks what it extracted with verify's judgement: the same verdict, at once."""
    pkg = _zlib_like(str(tmp_path / "www" / "noarch"), fmt)
    pkgs_dir = str(tmp_path / "pkgs")
    url = f"{http_server.base_url}/noarch/{pkg.fn}#{pkg.sha256}"
    proc = cli("conda-cache", "fetch", "--pkgs-dir", pkgs_dir, url, "--json")
    data = json.loads(proc.stdout)
    (item,) = data["packages"]
    assert item["note"].startswith("defective as published"), item
    text = cli("conda-cache", "verify", "--pkgs-dir", pkgs_dir)
    assert "defective" in text.stdout and "no fix:" in text.stdout, text.stdout


def test_fetch_checks_in_its_extraction_workers(tmp_path, http_server):
    """With several packages fetch extracts in forked workers and checks each entry there: the
    defective one gets its note, the plain one none, as when the check followed the run."""
    www = str(tmp_path / "www" / "noarch")
    bad, good = _zlib_like(www, ".conda"), _plain(www, ".conda")
    pkgs_dir = str(tmp_path / "pkgs")
    urls = [f"{http_server.base_url}/noarch/{p.fn}#{p.sha256}" for p in (bad, good)]
    proc = cli("conda-cache", "fetch", "--pkgs-dir", pkgs_dir, *urls, "--json")
    notes = {i["fn"]: i["note"] for i in json.loads(proc.stdout)["packages"]}
    assert notes[bad.fn].startswith("defective as published"), notes
    assert notes[good.fn] is None, notes
