"""The torture suite (issue 11): hostile names, planted links, locks that cannot be taken,
damaged inputs and refused archives, each run through the command line as a user would.

For every case it asserts: a one-line error (never a traceback), the documented exit code,
nothing written or removed outside the pkgs dir, and nothing good lost inside it. The cases are
listed in CASES-style parametrisations so the README's table can name them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile

import pytest
from conftest import requires_conda, run_cli

from conda_cache_plus.exceptions import EXIT_ERROR, EXIT_PROBLEMS_FOUND, EXIT_USAGE
from conda_cache_plus.model.names import check_package_fn, hostile_entry_problem, package_fn_problem

PLAIN = {"CONDA_CONSOLE": "plain"}


# -- helpers ----------------------------------------------------------------------------------
def snapshot(top: str, skip: str) -> dict:
    """Every path under ``top`` except ``skip`` (the pkgs dir): type, size and content hash."""
    out = {}
    for root, dirs, files in os.walk(top):
        if os.path.abspath(root) == os.path.abspath(skip):
            dirs[:] = []
            continue
        dirs[:] = [d for d in dirs if os.path.join(root, d) != skip]
        for name in dirs + files:
            p = os.path.join(root, name)
            if os.path.abspath(p) == os.path.abspath(skip):
                continue
            st = os.lstat(p)
            if os.path.islink(p):
                out[p] = ("link", os.readlink(p))
            elif os.path.isdir(p):
                out[p] = ("dir",)
            else:
                with open(p, "rb") as fh:
                    out[p] = ("file", st.st_size, hashlib.sha256(fh.read()).hexdigest())
    return out


def one_line_error(proc) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert errors, proc.stderr
    return errors[0]


class World:
    """A pkgs dir inside a directory full of things that must never change."""

    def __init__(self, tmp_path):
        self.top = str(tmp_path / "world")
        self.pkgs = os.path.join(self.top, "pkgs")
        self.outside = os.path.join(self.top, "precious")
        os.makedirs(self.pkgs)
        os.makedirs(os.path.join(self.outside, "sub"))
        with open(os.path.join(self.top, "sentinel.txt"), "w") as fh:
            fh.write("outside the cache\n")
        with open(os.path.join(self.outside, "sub", "data.txt"), "w") as fh:
            fh.write("precious\n")
        open(os.path.join(self.pkgs, "urls.txt"), "w").close()
        self.before = snapshot(self.top, self.pkgs)

    def assert_outside_unchanged(self):
        assert snapshot(self.top, self.pkgs) == self.before

    def cli(self, *args, env=None):
        return run_cli(*args, "--pkgs-dir", self.pkgs, env={**PLAIN, **(env or {})})

    def names(self) -> set[str]:
        return set(os.listdir(self.pkgs))


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


@pytest.fixture
def good(build):
    return build("alpha", "1.0", "0", fmt=".conda")


def serve(http_server, pkg, name=None) -> str:
    dest = os.path.join(http_server.directory, "noarch", name or pkg.fn)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    shutil.copyfile(pkg.path, dest)
    return http_server.url("noarch/" + urlquote(name or pkg.fn))


def urlquote(name: str) -> str:
    import urllib.parse

    return urllib.parse.quote(name, safe="")


HOSTILE_FNS = [
    "...conda",
    "..tar.bz2",
    ".conda",
    "a/b-1-0.conda",
    "a\\b-1-0.conda",
    "a\x00b-1-0.conda",
    "a\nb-1-0.conda",
    "a\x1bb-1-0.tar.bz2",
    "x" * 250 + ".conda",
    ".conda-cache-plus.conda",
    "cache.tar.bz2",
    ".trash.conda",
]


# -- 1. names ---------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", HOSTILE_FNS)
def test_names_module_refuses(fn):
    assert package_fn_problem(fn)
    with pytest.raises(ValueError):
        check_package_fn(fn)


@pytest.mark.parametrize("fn", ["zlib-1.2.13-h5eee18b_1.conda", "a_b.c-1!2.0+x-py_0.tar.bz2"])
def test_names_module_accepts_real_names(fn):
    assert check_package_fn(fn) == fn
    assert hostile_entry_problem(fn) is None


@pytest.mark.parametrize("fn", HOSTILE_FNS)
def test_fetch_hostile_url_from_command_line(world, http_server, good, fn):
    url = http_server.url("noarch/" + urlquote(fn))
    proc = world.cli("fetch", "-y", url)
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert "refused the package name" in one_line_error(proc)
    assert http_server.requests == []  # not a byte asked for, none written
    assert world.names() == {"urls.txt"}
    world.assert_outside_unchanged()


def test_fetch_hostile_explicit_file(world, http_server, good, tmp_path):
    good_url = serve(http_server, good)
    for fn in ("...conda", "..tar.bz2", "a%2Fb-1-0.conda"):
        explicit = tmp_path / "env.txt"
        explicit.write_text(f"@EXPLICIT\n{good_url}\n{http_server.url('noarch/' + fn)}\n")
        proc = world.cli("fetch", "-y", str(explicit))
        assert proc.returncode == EXIT_USAGE, proc.stderr
        line = one_line_error(proc)
        assert "refused the package name" in line and str(explicit) in line
        assert world.names() == {"urls.txt"}  # the whole file is refused before any write
    assert http_server.requests == []
    world.assert_outside_unchanged()


def test_fetch_hostile_repodata_over_http(world, http_server, good):
    serve(http_server, good)
    for fn in ("...conda", "..tar.bz2"):
        serve(http_server, good, fn)
    entry = good.repodata_entry()
    repodata = {
        "info": {"subdir": "noarch"},
        "packages.conda": {
            good.fn: entry,
            "...conda": entry,
            "a/b-1-0.conda": entry,
            "c-1-0.conda": {**entry, "sha256": 5},
        },
        "packages": {"..tar.bz2": entry},
    }
    with open(os.path.join(http_server.directory, "noarch", "repodata.json"), "w") as fh:
        json.dump(repodata, fh)
    proc = world.cli(
        "fetch", "-y", "--json", "--repodata", http_server.url("noarch/repodata.json"), "*"
    )
    assert proc.returncode == EXIT_ERROR, proc.stderr
    assert "Traceback" not in proc.stderr
    data = json.loads(proc.stdout)
    failed = {f["fn"]: f["error"] for f in data["failures"]}
    assert set(failed) == {"...conda", "..tar.bz2", "a/b-1-0.conda", "c-1-0.conda"}
    assert all(e.startswith("refused") for e in failed.values())
    assert "sha256" in failed["c-1-0.conda"]
    # the good package was still fetched; nothing was asked for the others
    assert data["summary"]["counts"]["downloaded"] == 1
    assert [r["path"] for r in http_server.requests if r["path"].endswith("conda")] == [
        "/noarch/" + good.fn
    ]
    assert {"...conda", "..tar.bz2"}.isdisjoint(world.names())
    assert good.dist in world.names()
    world.assert_outside_unchanged()


@pytest.mark.parametrize("fn", ["...conda", "..tar.bz2", "x\x01y-1-0.conda", "bad\\n-1-0.conda"])
def test_planted_hostile_entries_are_findings_and_clean_removes_them(world, good, fn):
    pkgbuild_copy = os.path.join(world.pkgs, fn)
    shutil.copyfile(good.path, pkgbuild_copy)
    shutil.copyfile(good.path, os.path.join(world.pkgs, good.fn))  # a good neighbour
    for verb in (
        ["list"],
        ["info"],
        ["usage"],
        ["repair", "-y"],
        ["verify"],
        ["clean", "-d", "--keep-latest", "0"],
    ):
        proc = world.cli(*verb)
        assert "Traceback" not in proc.stderr, (verb, proc.stderr)
        assert proc.returncode in (0, 1), (verb, proc.returncode, proc.stderr)
    proc = world.cli("verify", "--full", "--json")
    assert proc.returncode == EXIT_PROBLEMS_FOUND, proc.stderr
    kinds = [p["kind"] for p in json.loads(proc.stdout)["leftovers"]]
    assert kinds == ["hostile_entry"]
    proc = world.cli("list", "--json")
    assert fn not in proc.stdout
    proc = world.cli("clean", "--temp", "-y")
    assert proc.returncode == 0, proc.stderr
    assert fn not in world.names()
    assert good.fn in world.names()
    world.assert_outside_unchanged()


def test_doctor_check_reports_hostile_entries(world, good):
    from conda_cache_plus.conda_layer import doctor

    shutil.copyfile(good.path, os.path.join(world.pkgs, "...conda"))
    text = doctor.render(doctor.find([world.pkgs]), world.top, False)
    assert "intact" not in text
    assert "...conda" in text and "clean --temp" in text
    world.assert_outside_unchanged()


# -- 2. links in our own places ------------------------------------------------------------------
def test_planted_partial_symlink_is_not_written_through(world, http_server, good):
    url = serve(http_server, good)
    victim = os.path.join(world.outside, "victim.bin")
    with open(victim, "wb") as fh:
        fh.write(b"not yours")
    world.before = snapshot(world.top, world.pkgs)
    os.symlink(victim, os.path.join(world.pkgs, good.fn + ".partial"))
    proc = world.cli("fetch", "-y", url + "#sha256:" + good.sha256)
    assert proc.returncode == EXIT_ERROR, proc.stderr
    assert "symbolic link" in proc.stderr and "Traceback" not in proc.stderr
    world.assert_outside_unchanged()
    proc = world.cli("verify", "--json")
    assert proc.returncode == EXIT_PROBLEMS_FOUND
    assert [p["kind"] for p in json.loads(proc.stdout)["leftovers"]] == ["hostile_entry"]
    proc = world.cli("clean", "--temp", "-y")
    assert proc.returncode == 0, proc.stderr
    assert not os.path.lexists(os.path.join(world.pkgs, good.fn + ".partial"))
    world.assert_outside_unchanged()
    proc = world.cli("fetch", "-y", url)  # and afterwards it works
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "where", [".conda-cache-plus", ".conda-cache-plus/tmp", ".conda-cache-plus/locks"]
)
def test_planted_private_dir_link(world, http_server, good, where):
    url = serve(http_server, good)
    target = os.path.join(world.outside, "sub")
    link = os.path.join(world.pkgs, where)
    os.makedirs(os.path.dirname(link), exist_ok=True)
    if where.endswith("tmp"):
        os.makedirs(os.path.join(os.path.dirname(link), "locks"), exist_ok=True)
    os.symlink(target, link)
    proc = world.cli("fetch", "-y", url)
    assert proc.returncode == EXIT_ERROR, proc.stderr
    assert "symbolic link" in proc.stderr and "Traceback" not in proc.stderr
    world.assert_outside_unchanged()
    proc = world.cli("verify", "--json")
    assert proc.returncode == EXIT_PROBLEMS_FOUND
    assert [p["kind"] for p in json.loads(proc.stdout)["leftovers"]] == ["hostile_entry"]
    proc = world.cli("clean", "--temp", "-y")
    assert proc.returncode == 0, proc.stderr
    assert not os.path.islink(link)
    world.assert_outside_unchanged()
    proc = world.cli("fetch", "-y", url)
    assert proc.returncode == 0, proc.stderr
    world.assert_outside_unchanged()


def test_planted_lock_file_link(world, http_server, good):
    url = serve(http_server, good)
    victim = os.path.join(world.outside, "victim.lock")
    with open(victim, "w") as fh:
        fh.write("not yours")
    world.before = snapshot(world.top, world.pkgs)
    locks = os.path.join(world.pkgs, ".conda-cache-plus", "locks")
    os.makedirs(locks)
    os.symlink(victim, os.path.join(locks, good.fn + ".lock"))
    proc = world.cli("fetch", "-y", url)
    assert proc.returncode == EXIT_ERROR, proc.stderr
    assert "symbolic link" in proc.stderr and "Traceback" not in proc.stderr
    proc = world.cli("clean", "--temp", "-y")
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(locks) == [] or not os.path.islink(os.path.join(locks, good.fn + ".lock"))
    proc = world.cli("fetch", "-y", url)
    assert proc.returncode == 0, proc.stderr
    world.assert_outside_unchanged()


def test_planted_temp_tree_link(world, http_server, good):
    # a link named like an extraction's temporary tree beside the entries
    url = serve(http_server, good)
    link = os.path.join(world.pkgs, f".cpx-tmp-{good.dist}-abc123")
    os.symlink(world.outside, link)
    os.utime(link, (1, 1), follow_symlinks=False)
    proc = world.cli("fetch", "-y", url)
    assert proc.returncode == 0, proc.stderr
    world.assert_outside_unchanged()
    proc = world.cli("clean", "--temp", "-y")
    assert proc.returncode == 0, proc.stderr
    assert not os.path.lexists(link)
    world.assert_outside_unchanged()


@requires_conda
@pytest.mark.parametrize("dist", ["..", "."])
def test_conda_extractor_refuses_a_dot_destination(world, good, dist):
    from conda import CondaError

    from conda_cache_plus.conda_layer.extractor import extract

    with pytest.raises(CondaError, match="refused"):
        extract(good.path, os.path.join(world.pkgs, dist))
    assert os.path.isfile(good.path)
    world.assert_outside_unchanged()
    assert world.names() == {"urls.txt"}


@pytest.mark.parametrize("verb", [["remove", "-y", "alpha"], ["clean", "-y", "--keep-latest", "0"]])
def test_removal_never_moves_into_a_tmp_link(world, good, verb):
    from conftest import populate

    populate(world.pkgs, [good])
    os.makedirs(os.path.join(world.pkgs, ".conda-cache-plus"))
    os.symlink(world.outside, os.path.join(world.pkgs, ".conda-cache-plus", "tmp"))
    proc = world.cli(*verb)
    assert proc.returncode == 0, proc.stderr
    assert good.dist not in world.names()
    world.assert_outside_unchanged()


def test_clean_temp_never_deletes_through_a_tmp_link(world, good):
    # leftovers "in" the tmp dir are the link target's files: clean removes the link only
    os.makedirs(os.path.join(world.pkgs, ".conda-cache-plus"))
    os.symlink(world.outside, os.path.join(world.pkgs, ".conda-cache-plus", "tmp"))
    old = os.path.join(world.outside, "stale.abc")
    os.makedirs(old)
    os.utime(old, (1, 1))
    world.before = snapshot(world.top, world.pkgs)
    proc = world.cli("clean", "--temp", "-y")
    assert proc.returncode == 0, proc.stderr
    world.assert_outside_unchanged()


# -- 3. locks that cannot be taken -------------------------------------------------------------
def test_fetch_with_locks_dir_unusable_fails_with_reason(world, http_server, good):
    url = serve(http_server, good)
    os.makedirs(os.path.join(world.pkgs, ".conda-cache-plus"))
    # a file where the locks dir should be: creating lock files fails (as in an unwritable dir)
    with open(os.path.join(world.pkgs, ".conda-cache-plus", "locks"), "w") as fh:
        fh.write("x")
    proc = world.cli("fetch", "-y", "--json", url)
    assert proc.returncode == EXIT_ERROR, proc.stderr
    data = json.loads(proc.stdout)
    assert data["summary"]["counts"]["cancelled"] == 0
    assert [f["fn"] for f in data["failures"]] == [good.fn]
    assert data["failures"][0]["error"]
    assert "not done (interrupted)" not in proc.stderr + proc.stdout
    world.assert_outside_unchanged()


def test_fetch_with_unwritable_locks_dir_as_a_user(good):
    from as_user import World as UserWorld

    user = UserWorld()  # skips, with the reason, where no non-root user can run the CLI
    try:
        src = os.path.join(user.path, good.fn)
        shutil.copyfile(good.path, src)
        pkgs = os.path.join(user.path, "pkgs")
        locks = os.path.join(pkgs, ".conda-cache-plus", "locks")
        os.makedirs(locks)
        open(os.path.join(pkgs, "urls.txt"), "w").close()
        user.hand_over()
        os.chmod(locks, 0o555)
        proc = user.cli("fetch", "-y", "--json", "--pkgs-dir", pkgs, src)
        assert proc.returncode == EXIT_ERROR, proc.stderr
        assert "Traceback" not in proc.stderr
        data = json.loads(proc.stdout)
        assert data["summary"]["counts"]["cancelled"] == 0
        assert [f["fn"] for f in data["failures"]] == [good.fn]
        assert "Permission denied" in data["failures"][0]["error"]
        assert good.dist not in os.listdir(pkgs)
    finally:
        user.cleanup()


# -- 7. damaged inputs ---------------------------------------------------------------------------
def test_bad_inputs_give_one_line_errors(world, http_server, good, tmp_path):
    cases = []
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"@EXPLICIT\n\xff\xfe\n")
    cases.append((["fetch", "-y", str(bad)], EXIT_USAGE, str(bad)))
    missing = str(tmp_path / "nope.json")
    cases.append((["fetch", "-y", "--repodata", missing, "alpha"], EXIT_USAGE, missing))
    ipv6 = "http://[::1/noarch/x-1-0.conda"
    cases.append((["fetch", "-y", ipv6], EXIT_USAGE, ipv6))
    cases.append((["clean", "-y", "--max-size", "1e999"], EXIT_USAGE, "1e999"))
    cases.append((["clean", "-y", "--older-than", "9" * 400 + "d"], EXIT_USAGE, "999"))
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100000 + "]" * 100000)
    cases.append((["fetch", "-y", "--repodata", str(deep), "alpha"], EXIT_USAGE, str(deep)))
    for args, code, named in cases:
        proc = world.cli(*args)
        assert proc.returncode == code, (args, proc.stderr)
        assert named in one_line_error(proc), (args, proc.stderr)
    world.assert_outside_unchanged()


def _write_record(pkgs, pkg, **override):
    from conftest import populate

    populate(pkgs, [pkg])
    path = os.path.join(pkgs, pkg.dist, "info", "repodata_record.json")
    with open(path) as fh:
        rec = json.load(fh)
    rec.update(override)
    with open(path, "w") as fh:
        json.dump(rec, fh)
    return path


def test_repair_never_follows_a_hostile_record(world, http_server, build):
    broken = build("broken", "1.0", "0")
    serve(http_server, broken, "...conda")
    _write_record(
        world.pkgs,
        broken,
        fn="../../precious/evil.conda",
        url=http_server.url("noarch/...conda"),
    )
    os.unlink(os.path.join(world.pkgs, broken.fn))  # no archive: repair would re-download
    os.unlink(os.path.join(world.pkgs, broken.dist, "share", "broken", "README"))
    proc = world.cli("repair", "-y")
    assert "Traceback" not in proc.stderr
    assert proc.returncode in (0, 1, 3), proc.stderr
    assert not any(r["path"].endswith("...conda") for r in http_server.requests)
    assert "...conda" not in world.names()
    world.assert_outside_unchanged()


def test_damaged_records_never_crash_a_verb(world, build):
    ok = build("good", "1.0", "0")
    url_int = build("urlint", "1.0", "0")
    deep = build("deep", "1.0", "0")
    evil_fn = build("evilfn", "1.0", "0")
    from conftest import populate

    populate(world.pkgs, [ok])
    _write_record(world.pkgs, url_int, url=5, sha256=7)
    _write_record(world.pkgs, evil_fn, fn="../../../precious/x.conda")
    path = _write_record(world.pkgs, deep)
    with open(path, "w") as fh:
        fh.write("[" * 200000 + "]" * 200000)
    for verb in (
        ["list"],
        ["info"],
        ["usage"],
        ["verify"],
        ["verify", "--full"],
        ["repair", "-y"],
        ["repair", "-y", "--full"],
        ["clean", "-d", "--keep-latest", "0"],
        ["remove", "-d", "good"],
    ):
        proc = world.cli(*verb)
        assert "Traceback" not in proc.stderr, (verb, proc.stderr)
        assert proc.returncode in (0, 1), (verb, proc.returncode, proc.stderr)
    # the rest of the cache is still processed: the good entry verifies ok
    proc = world.cli("verify", "--json", "good")
    assert proc.returncode == 0, proc.stdout
    assert os.path.isdir(os.path.join(world.pkgs, ok.dist))
    world.assert_outside_unchanged()


# -- 8. refused archives ------------------------------------------------------------------------
def _hostile_package(build):
    ti = tarfile.TarInfo("../../escape.txt")
    ti.size = 4
    return build("evil", "1.0", "0", fmt=".tar.bz2", extra_members=[(ti, b"evil")])


def test_refused_archive_is_removed_and_says_refused(world, http_server, build):
    evil = _hostile_package(build)
    url = serve(http_server, evil)
    proc = world.cli("fetch", "-y", url + "#sha256:" + evil.sha256)
    assert proc.returncode == EXIT_ERROR, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{evil.dist}: refused" in proc.stderr
    assert f"{evil.dist}: done" not in proc.stderr
    assert evil.fn not in world.names() and evil.dist not in world.names()
    with open(os.path.join(world.pkgs, "urls.txt")) as fh:
        assert evil.fn not in fh.read()
    proc = world.cli("verify", "--full", "--json")
    assert json.loads(proc.stdout)["summary"]["entries"] == 0
    world.assert_outside_unchanged()


def test_verify_full_never_counts_a_refused_archive_ok(world, build):
    evil = _hostile_package(build)
    shutil.copyfile(evil.path, os.path.join(world.pkgs, evil.fn))  # put there by another tool
    proc = world.cli("verify", "--full", "--json")
    assert proc.returncode == EXIT_PROBLEMS_FOUND, proc.stderr
    entry = json.loads(proc.stdout)["entries"][0]
    assert entry["status"] == "corrupt"
    assert [p["kind"] for p in entry["problems"]] == ["archive_refused"]
    proc = world.cli("repair", "--full", "-y")
    assert proc.returncode == 0, proc.stderr
    assert evil.fn not in world.names()
    world.assert_outside_unchanged()


def test_refused_archive_already_in_cache(world, build):
    evil = _hostile_package(build)
    shutil.copyfile(evil.path, os.path.join(world.pkgs, evil.fn))
    proc = world.cli("fetch", "-y", evil.path)
    assert proc.returncode == EXIT_ERROR, proc.stderr
    assert evil.fn not in world.names()
    world.assert_outside_unchanged()
