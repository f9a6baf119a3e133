"""rattler's (pixi's) package-cache layout: detection, scan, verify, usage, clean, the global lock.

The end-to-end tests fill the cache with py-rattler itself (the pixi/rattler client) from a
channel served over HTTP on 127.0.0.1; they skip, with the reason, where py-rattler is not
importable. The others build a rattler cache by hand, byte for byte as rattler writes it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from conftest import REPO, TESTS, extract_by_hand, run_cli
from schema_check import validate

from conda_cache_plus.layouts import kinds as layouts_kinds
from conda_cache_plus.layouts import pixi, rattler_cache
from conda_cache_plus.layouts.caches import PackageCacheData
from conda_cache_plus.pkgbuild import PlaceholderFile, build_package, write_channel

HERE = TESTS
SCHEMAS = os.path.join(REPO, "docs", "schemas")
INSTALL = os.path.join(HERE, "rattler_install.py")

try:
    import rattler  # noqa: F401

    HAVE_RATTLER = True
except Exception:
    HAVE_RATTLER = False

requires_rattler = pytest.mark.skipif(
    not HAVE_RATTLER, reason="py-rattler is not importable here (pip install py-rattler)"
)


def assert_schema(data, verb):
    with open(os.path.join(SCHEMAS, verb + ".json")) as fh:
        assert validate(data, json.load(fh)) == []


def rattler_entry(pkgs_dir, pkg, *, revision=1, sha=True, origin=None):
    """An entry as rattler leaves it: extracted dir, sidecar (revision + sha256), global lock."""
    os.makedirs(pkgs_dir, exist_ok=True)
    name = pkg.dist + (f"-{origin}" if origin else "")
    dest = os.path.join(pkgs_dir, name)
    extract_by_hand(pkg.path, dest)
    rattler_cache.write_sidecar(dest + ".lock", revision, pkg.sha256 if sha else None)
    open(os.path.join(pkgs_dir, ".cache.lock"), "a").close()
    return dest


# --- the layout, by hand ----------------------------------------------------------------------
def test_sidecar_round_trip_and_short_files(tmp_path):
    path = str(tmp_path / "x.lock")
    rattler_cache.write_sidecar(path, 7, "ab" * 32)
    with open(path, "rb") as fh:
        raw = fh.read()
    assert raw[:8] == (7).to_bytes(8, "big") and raw[8:] == bytes.fromhex("ab" * 32)
    assert rattler_cache.read_sidecar(path) == rattler_cache.Sidecar(7, "ab" * 32)
    rattler_cache.write_sidecar(path, 8, None)  # truncated to the revision, like rattler
    assert os.path.getsize(path) == 8
    assert rattler_cache.read_sidecar(path) == rattler_cache.Sidecar(8, None)
    open(path, "wb").close()  # rattler reads an empty file as revision 0
    assert rattler_cache.read_sidecar(path) == rattler_cache.Sidecar(0, None)


def test_detect_each_kind(tmp_path, build):
    pkg = build("liba", "1.0", "0")
    rat = str(tmp_path / "rat")
    rattler_entry(rat, pkg)
    assert layouts_kinds.detect(rat).name == "rattler"
    os.remove(os.path.join(rat, ".cache.lock"))  # the sidecars alone tell it too
    assert layouts_kinds.detect(rat).name == "rattler"
    conda = tmp_path / "conda"
    conda.mkdir()
    (conda / "urls.txt").write_text("")
    assert layouts_kinds.detect(str(conda)).name == "conda"
    assert layouts_kinds.detect(str(tmp_path / "missing")).name == "conda"
    root = tmp_path / "root"
    rattler_entry(str(root / "pkgs"), pkg)
    assert layouts_kinds.resolve_cache_dir(str(root))[0] == str(root / "pkgs")


def test_scan_reads_index_and_sidecar(tmp_path, build):
    a = build("liba", "1.0", "h1", files={"share/a": b"a\n", "etc/a.conf": PlaceholderFile(b"x")})
    b = build("libb", "2.0", "0", fmt=".tar.bz2")
    pkgs = str(tmp_path / "pkgs")
    rattler_entry(pkgs, a, revision=3)
    rattler_entry(pkgs, b, origin="f" * 64)
    with open(os.path.join(pkgs, "gone-1-0.lock"), "wb") as fh:  # a removed entry's sidecar
        fh.write((1).to_bytes(8, "big"))
    os.mkdir(os.path.join(pkgs, ".liba-1.0-h1Xy12z"))  # an interrupted re-fetch
    cache = PackageCacheData(pkgs)
    res = cache.load()
    assert res.layout == "rattler"
    assert cache.is_writable is True
    recs = {r.name: r for r in res.records}
    assert set(recs) == {"liba", "libb"}
    assert recs["liba"].sha256 == a.sha256 and recs["liba"].data["revision"] == 3
    assert recs["libb"].data["origin_hash"] == "f" * 64
    assert all(r.is_complete and not r.problems for r in recs.values())
    kinds = sorted((lo.rel, lo.kind) for lo in res.leftovers)
    assert kinds == [(".liba-1.0-h1Xy12z", "tmp"), ("gone-1-0.lock", "sidecar")]
    assert res.broken == [] and res.others == []


def test_cli_list_info_verify_on_a_rattler_cache(tmp_path, build):
    pkgs = str(tmp_path / "pkgs")
    for pkg in (build("liba", "1.0", "0"), build("libb", "2.0", "0", fmt=".tar.bz2")):
        rattler_entry(pkgs, pkg)
    info = run_cli("info", "--json", "--pkgs-dir", pkgs, check=True)
    data = json.loads(info.stdout)
    assert_schema(data, "info")
    (c,) = data["caches"]
    assert c["layout"] == "rattler" and c["writable"] is True
    assert c["counts"]["incomplete"] == 0 and c["counts"]["leftovers"] == 0
    text = run_cli("info", "--pkgs-dir", pkgs, check=True).stdout
    assert "rattler layout" in text and "not initialised" not in text
    listed = json.loads(run_cli("list", "--json", "--pkgs-dir", pkgs, check=True).stdout)
    assert_schema(listed, "list")
    assert sorted(p["name"] for p in listed["packages"]) == ["liba", "libb"]
    for level in ([], ["--full"]):
        proc = run_cli("verify", "--json", "--pkgs-dir", pkgs, *level)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        report = json.loads(proc.stdout)
        assert_schema(report, "verify")
        assert {e["status"] for e in report["entries"]} == {"ok"}
    # verify keeps its state out of a cache pixi owns
    assert sorted(os.listdir(pkgs)) == [
        ".cache.lock",
        "liba-1.0-0",
        "liba-1.0-0.lock",
        "libb-2.0-0",
        "libb-2.0-0.lock",
    ]


def test_verify_finds_a_damaged_rattler_entry(tmp_path, build):
    pkgs = str(tmp_path / "pkgs")
    dest = rattler_entry(pkgs, build("liba", "1.0", "0"))
    victim = os.path.join(dest, "share", "liba", "README")
    with open(victim, "w") as fh:
        fh.write("tampered, same length?\n")
    proc = run_cli("verify", "--full", "--json", "--pkgs-dir", pkgs)
    assert proc.returncode == 1
    (entry,) = json.loads(proc.stdout)["entries"]
    assert entry["status"] == "corrupt"


def test_unnamed_hardlinks_keep_an_entry_in_use(tmp_path, build):
    pkgs = str(tmp_path / "pkgs")
    used = rattler_entry(pkgs, build("liba", "1.0", "0"))
    rattler_entry(pkgs, build("libb", "1.0", "0"))
    env = tmp_path / "somewhere" / "env"
    env.mkdir(parents=True)
    os.link(os.path.join(used, "share", "liba", "README"), env / "README")
    proc = run_cli("clean", "--unused", "-y", "--json", "--pkgs-dir", pkgs, check=True)
    data = json.loads(proc.stdout)
    assert_schema(data, "clean")
    assert [i["name"] for i in data["items"]] == ["libb-1.0-0"]
    assert sorted(os.listdir(pkgs)) == [".cache.lock", "liba-1.0-0", "liba-1.0-0.lock"]


def test_clean_waits_for_rattlers_global_lock(tmp_path, build):
    pkgs = str(tmp_path / "pkgs")
    rattler_entry(pkgs, build("liba", "1.0", "0"))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "time.sleep(120)\n",
            os.path.join(pkgs, ".cache.lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = run_cli("clean", "--unused", "-y", "--lock-timeout", "1", "--pkgs-dir", pkgs)
        assert proc.returncode == 3, proc.stdout + proc.stderr
        assert "rattler" in proc.stderr
        assert os.path.isdir(os.path.join(pkgs, "liba-1.0-0"))  # nothing removed
    finally:
        holder.kill()
        holder.wait()
    run_cli("clean", "--unused", "-y", "--pkgs-dir", pkgs, check=True)
    assert os.listdir(pkgs) == [".cache.lock"]


def test_discovery_order(tmp_path):
    env = {
        "PIXI_CACHE_DIR": str(tmp_path / "p"),
        "RATTLER_CACHE_DIR": str(tmp_path / "r"),
        "XDG_CACHE_HOME": str(tmp_path / "x"),
        "HOME": str(tmp_path / "home"),
    }
    os.makedirs(tmp_path / "x" / "pixi")
    found = [(c.root, c.source) for c in pixi.cache_dirs(env)]
    assert [s for _, s in found][:2] == ["PIXI_CACHE_DIR", "RATTLER_CACHE_DIR"]
    assert found[2][0] == str(tmp_path / "x" / "pixi")
    if sys.platform.startswith("linux"):
        assert found[3][0] == str(tmp_path / "x" / "rattler" / "cache")


def test_workspace_and_global_environments_are_found(tmp_path):
    from conda_cache_plus.envs.discovery import known_environments

    ws = tmp_path / "code" / "proj" / ".pixi" / "envs" / "default" / "conda-meta"
    ws.mkdir(parents=True)
    (ws / "history").write_text("")
    glob = tmp_path / "home" / ".pixi" / "envs" / "tool" / "conda-meta"
    glob.mkdir(parents=True)
    (glob / "history").write_text("")
    env = {"HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    found = {
        e.prefix: e.sources
        for e in known_environments(environ=env, workspaces=[str(tmp_path / "code")])
    }
    assert found[str(ws.parent)] == ["pixi workspace"]
    assert found[str(glob.parent)] == ["pixi global"]


# --- end to end, with py-rattler ------------------------------------------------------------
def rattler_install(channel, prefix, cache, *specs, env):
    proc = subprocess.run(
        [sys.executable, INSTALL, channel, str(prefix), str(cache), *specs],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.split()


@pytest.fixture
def rattler_world(tmp_path, http_server):
    """A channel served over HTTP, a fresh rattler cache root, two pixi workspaces."""
    www = http_server.directory
    out = os.path.join(www, "channel", "noarch")
    pkgs = [
        build_package(out, "shared", "1.0", "0"),
        build_package(out, "only-one", "1.0", "0", fmt=".tar.bz2", depends=["shared"]),
        build_package(
            out,
            "only-two",
            "2.0",
            "0",
            depends=["shared"],
            files={
                "share/two/data": b"two\n" * 100,
                "etc/two.conf": PlaceholderFile(b"prefix=/opt/anaconda1anaconda2anaconda3\n"),
            },
        ),
    ]
    write_channel(os.path.join(www, "channel"), pkgs)
    root = tmp_path / "rattler-cache"
    env = dict(os.environ)
    env.update(RATTLER_CACHE_DIR=str(root), HOME=str(tmp_path / "home"))
    return {
        "channel": http_server.url("channel"),
        "server": http_server,
        "cache": root / "pkgs",
        "root": root,
        "ws": tmp_path / "code",
        "env": env,
        "pkgs": {p.name: p for p in pkgs},
    }


def archive_requests(server):
    return sorted(
        r["path"].rsplit("/", 1)[-1]
        for r in server.requests
        if r["path"].endswith((".conda", ".tar.bz2"))
    )


@requires_rattler
def test_py_rattler_cache_end_to_end(rattler_world):
    w = rattler_world
    env, cache = w["env"], str(w["cache"])
    ws = w["ws"]
    one = ws / "one" / ".pixi" / "envs" / "default"
    two = ws / "two" / ".pixi" / "envs" / "default"
    assert rattler_install(w["channel"], one, cache, "only-one", env=env) == [
        "only-one-1.0-0",
        "shared-1.0-0",
    ]
    rattler_install(w["channel"], two, cache, "only-two", env=env)
    assert archive_requests(w["server"]) == [
        "only-one-1.0-0.tar.bz2",
        "only-two-2.0-0.conda",
        "shared-1.0-0.conda",
    ]

    # list: every entry, with the sha256 rattler recorded in the sidecar
    listed = json.loads(run_cli("list", "--json", "--pkgs-dir", cache, env=env, check=True).stdout)
    assert_schema(listed, "list")
    got = {p["name"]: p for p in listed["packages"]}
    assert set(got) == {"shared", "only-one", "only-two"}
    for name, p in got.items():
        assert p["sha256"] == w["pkgs"][name].sha256 and p["source"] == "rattler"
    # the cache root names the same cache, and info says which layout it found
    info = json.loads(run_cli("info", "--json", "--pkgs-dir", w["root"], env=env).stdout)
    assert info["caches"][0]["path"] == cache and info["caches"][0]["layout"] == "rattler"
    found = info["rattler_caches"]
    assert any(c["path"] == cache and c["source"] == "RATTLER_CACHE_DIR" for c in found)

    # verify: all ok, both levels
    for level in ([], ["--full"]):
        proc = run_cli("verify", "--json", "--pkgs-dir", cache, *level, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert {e["status"] for e in json.loads(proc.stdout)["entries"]} == {"ok"}

    # one workspace's environment goes away
    shutil.rmtree(one)
    usage = json.loads(
        run_cli(
            "usage", "--json", "--pkgs-dir", cache, "--workspaces", str(ws), env=env, check=True
        ).stdout
    )
    assert_schema(usage, "usage")
    users = {e["name"]: e["used_by"] for e in usage["entries"]}
    assert users["only-one"] == []
    assert [u["prefix"] for u in users["shared"]] == [str(two)]
    assert [u["prefix"] for u in users["only-two"]] == [str(two)]

    # without naming the workspace, rattler's hard links still show what is in use
    blind = json.loads(run_cli("usage", "--json", "--pkgs-dir", cache, env=env).stdout)
    blind_users = {e["name"]: [u["evidence"] for u in e["used_by"]] for e in blind["entries"]}
    assert blind_users["only-one"] == [] and blind_users["shared"] == [["nlink"]]

    # clean --unused removes exactly the entry no environment uses, with its sidecar
    before = {
        n: os.stat(os.path.join(cache, n)).st_ino
        for n in os.listdir(cache)
        if not n.startswith("only-one")
    }
    proc = run_cli(
        "clean", "--unused", "-y", "--json", "--pkgs-dir", cache, "--workspaces", str(ws), env=env
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cleaned = json.loads(proc.stdout)
    assert_schema(cleaned, "clean")
    assert [i["name"] for i in cleaned["items"]] == ["only-one-1.0-0"]
    assert {n: os.stat(os.path.join(cache, n)).st_ino for n in os.listdir(cache)} == before

    # py-rattler installs from the cleaned cache: only what was removed is downloaded again
    w["server"].requests.clear()
    three = ws / "three" / ".pixi" / "envs" / "default"
    rattler_install(w["channel"], three, cache, "only-one", "only-two", env=env)
    assert archive_requests(w["server"]) == ["only-one-1.0-0.tar.bz2"]
    assert os.path.isfile(three / "share" / "only-two" / "data") or os.path.isfile(
        three / "share" / "two" / "data"
    )
    with open(os.path.join(cache, "shared-1.0-0.lock"), "rb") as fh:
        assert int.from_bytes(fh.read(8), "big") == 1  # never re-fetched
    proc = run_cli("verify", "--full", "--pkgs-dir", cache, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def install_two(w):
    """py-rattler installs ``only-two`` into workspace ``two``: (env vars, cache, prefix)."""
    two = w["ws"] / "two" / ".pixi" / "envs" / "default"
    rattler_install(w["channel"], two, str(w["cache"]), "only-two", env=w["env"])
    return w["env"], str(w["cache"]), two


@requires_rattler
def test_every_policy_on_a_py_rattler_cache(rattler_world):
    env, cache, two = install_two(rattler_world)
    # the environment is gone; its hard links with it
    shutil.rmtree(two)
    old = time.time() - 90 * 86400
    for name in os.listdir(cache):
        os.utime(os.path.join(cache, name), (old, old))
    for policy in (
        ["--older-than", "30d"],
        ["--keep-latest", "0"],
        ["--max-size", "1"],
        ["--unused", "--older-than", "30d"],
    ):
        proc = run_cli("clean", *policy, "--dry-run", "--json", "--pkgs-dir", cache, env=env)
        assert proc.returncode == 0, policy
        names = sorted(i["name"] for i in json.loads(proc.stdout)["items"])
        assert names == ["only-two-2.0-0", "shared-1.0-0"], policy
    run_cli("clean", "--older-than", "30d", "-y", "--pkgs-dir", cache, env=env, check=True)
    assert os.listdir(cache) == [".cache.lock"]


def test_repair_removes_a_damaged_entry_when_no_url_is_known(tmp_path, build):
    pkgs = str(tmp_path / "pkgs")
    dest = rattler_entry(pkgs, build("liba", "1.0", "0"))
    rattler_entry(pkgs, build("libb", "1.0", "0"))
    os.remove(os.path.join(dest, "share", "liba", "README"))
    dry = run_cli("repair", "--dry-run", "--json", "--pkgs-dir", pkgs)
    (action,) = json.loads(dry.stdout)["actions"]
    assert action["action"] == "remove" and "rattler fetch it again" in action["reason"]
    proc = run_cli("repair", "-y", "--json", "--pkgs-dir", pkgs)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert_schema(json.loads(proc.stdout), "repair")
    assert sorted(os.listdir(pkgs)) == [".cache.lock", "libb-1.0-0", "libb-1.0-0.lock"]


@requires_rattler
def test_repair_refetches_a_py_rattler_entry_from_its_environments_url(rattler_world):
    w = rattler_world
    env, cache, _two = install_two(w)
    entry = os.path.join(cache, "only-two-2.0-0")
    with open(os.path.join(entry, "share", "two", "data"), "r+b") as fh:
        fh.write(b"X")  # same size: only the full level sees it
    assert run_cli("verify", "--pkgs-dir", cache, env=env).returncode == 0
    assert run_cli("verify", "--full", "--pkgs-dir", cache, env=env).returncode == 1
    w["server"].requests.clear()
    proc = run_cli(
        "repair",
        "--full",
        "-y",
        "--json",
        "--pkgs-dir",
        cache,
        "--workspaces",
        str(w["ws"]),
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (action,) = json.loads(proc.stdout)["actions"]
    assert action["action"] == "re-download" and action["outcome"] == "done"
    assert archive_requests(w["server"]) == ["only-two-2.0-0.conda"]
    side = rattler_cache.read_sidecar(entry + ".lock")
    assert side == rattler_cache.Sidecar(2, w["pkgs"]["only-two"].sha256)  # rattler re-validates
    assert run_cli("verify", "--full", "--pkgs-dir", cache, env=env).returncode == 0
    assert not [n for n in os.listdir(cache) if n.startswith(".only")]  # no temp dir left
    # and py-rattler still installs from it without fetching
    w["server"].requests.clear()
    rattler_install(w["channel"], w["ws"] / "again", cache, "only-two", env=env)
    assert archive_requests(w["server"]) == []


def test_dir_shows_pixi_and_rattler_caches_with_their_source(tmp_path, build):
    root = tmp_path / "pixi-cache"
    rattler_entry(str(root / "pkgs"), build("liba", "1.0", "0"))
    env = {"PIXI_CACHE_DIR": str(root), "CONDA_PKGS_DIRS": str(tmp_path / "conda-pkgs")}
    data = json.loads(run_cli("dir", "--json", env=env, check=True).stdout)
    assert_schema(data, "dir")
    rows = {d["path"]: d for d in data["dirs"]}
    row = rows[str(root / "pkgs")]
    assert (row["kind"], row["source"], row["exists"]) == ("rattler", "PIXI_CACHE_DIR", True)
    assert run_cli("dir", env=env, check=True).stdout.split() == [
        str(tmp_path / "conda-pkgs"),
        str(root / "pkgs"),
    ]
    named = json.loads(run_cli("dir", "--json", "--pkgs-dir", str(root), check=True).stdout)
    first = named["dirs"][0]
    assert (first["path"], first["kind"]) == (str(root / "pkgs"), "rattler")


def test_fetch_never_writes_conda_files_into_a_rattler_cache(tmp_path, build):
    pkgs = str(tmp_path / "pkgs")
    rattler_entry(pkgs, build("liba", "1.0", "0"))
    new = build("libn", "1.0", "0")
    before = sorted(os.listdir(pkgs))
    proc = run_cli("fetch", "--pkgs-dir", pkgs, "file://" + new.path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "rattler/pixi package cache" in proc.stderr
    assert sorted(os.listdir(pkgs)) == before


def test_remove_takes_the_entry_and_its_sidecar(tmp_path, build):
    pkgs = str(tmp_path / "pkgs")
    rattler_entry(pkgs, build("liba", "1.0", "0"))
    rattler_entry(pkgs, build("libb", "1.0", "0"))
    proc = run_cli("remove", "liba", "-y", "--json", "--pkgs-dir", pkgs)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert_schema(json.loads(proc.stdout), "remove")
    assert sorted(os.listdir(pkgs)) == [".cache.lock", "libb-1.0-0", "libb-1.0-0.lock"]


def test_policies_leave_a_just_fetched_rattler_entry_alone(tmp_path, build):
    pkgs = str(tmp_path / "pkgs")
    rattler_entry(pkgs, build("liba", "1.0", "0"))
    env = {"CONDA_CACHE_PLUS_GRACE": "1h"}
    proc = run_cli("clean", "--unused", "-y", "--json", "--pkgs-dir", pkgs, env=env, check=True)
    data = json.loads(proc.stdout)
    assert data["items"] == []
    (skip,) = data["skipped"]
    assert "grace period" in skip["reason"]
    assert any("pixi/rattler cache" in n for n in data["notes"])
    assert os.path.isdir(os.path.join(pkgs, "liba-1.0-0"))


def test_rattler_entries_in_a_conda_cache_are_rattlers(tmp_path, build):
    from conftest import populate

    pkgs = str(tmp_path / "pkgs")
    populate(pkgs, [build("condapkg", "1.0", "0")])
    rattler_entry(pkgs, build("pixipkg", "2.0", "0"))
    listed = json.loads(run_cli("list", "--json", "--pkgs-dir", pkgs, check=True).stdout)
    got = {p["name"]: p["source"] for p in listed["packages"]}
    assert got == {"condapkg": "repodata_record", "pixipkg": "rattler"}
    (c,) = json.loads(run_cli("info", "--json", "--pkgs-dir", pkgs, check=True).stdout)["caches"]
    assert c["layout"] == "flat" and c["counts"]["leftovers"] == 0
    assert c["counts"]["incomplete"] == 0
    proc = run_cli("verify", "--full", "--json", "--pkgs-dir", pkgs)
    assert proc.returncode == 0, proc.stdout


def test_a_repeated_scan_reads_only_what_changed(tmp_path, build, monkeypatch):
    from scan_helpers import age

    pkgs = str(tmp_path / "pkgs")
    for name in ("liba", "libb"):
        rattler_entry(pkgs, build(name, "1.0", "0"), revision=2)
    age(pkgs)
    first = PackageCacheData(pkgs).load()
    calls = []
    import conda_cache_plus.layouts.scan_result as scan_result

    real = scan_result.read_json
    monkeypatch.setattr(scan_result, "read_json", lambda p: calls.append(p) or real(p))
    second = PackageCacheData(pkgs).load()
    assert calls == []  # neither index.json read again
    assert [r.to_json() for r in second.records] == [r.to_json() for r in first.records]
    # a re-fetch (rattler bumps the sidecar's revision): that entry is read again, and wins
    rattler_cache.write_sidecar(os.path.join(pkgs, "libb-1.0-0.lock"), 3, None)
    third = {r.name: r for r in PackageCacheData(pkgs).load().records}
    assert [os.path.basename(os.path.dirname(os.path.dirname(c))) for c in calls] == ["libb-1.0-0"]
    assert third["libb"].data["revision"] == 3 and third["liba"].data["revision"] == 2
    # nothing remembered: every entry read, the same records
    calls.clear()
    again = rattler_cache.scan(pkgs, use_index=False)
    assert len(calls) == 2
    assert sorted(r.to_json()["name"] for r in again.records) == ["liba", "libb"]
