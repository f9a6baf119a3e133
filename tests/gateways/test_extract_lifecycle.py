"""Temporary trees over their life: beside the destination, locked while alive, removed at once
when dead (kill -9), removed on Ctrl-C; the umask; a cache shared by a group; the inflation
limit. Timing-sensitive steps poll with generous timeouts; nothing asserts on durations."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest
from builders import bomb
from conftest import REPO, TESTS, run_cli

from conda_cache_plus import pkgbuild
from conda_cache_plus.exceptions import HostileArchiveError
from conda_cache_plus.gateways import tmptree
from conda_cache_plus.gateways.extract import InflateLimit, extract_archive, extract_atomic

HERE = TESTS
ROOT = REPO


def _trees(parent) -> list[str]:
    try:
        return sorted(n for n in os.listdir(parent) if tmptree.is_tmp_name(n))
    except FileNotFoundError:
        return []


def _tree_bytes(parent) -> int:
    total = 0
    for n in _trees(parent):
        for dirpath, _dirs, files in os.walk(os.path.join(parent, n)):
            for f in files:
                try:
                    total += os.lstat(os.path.join(dirpath, f)).st_size
                except OSError:
                    pass
    return total


def _wait_for(cond, timeout=120.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _env(slow_writes=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    if slow_writes:  # tests/slowdisk: a starved test must not let a bomb fill the disk
        env["PYTHONPATH"] = os.path.join(TESTS, "slowdisk") + os.pathsep + env["PYTHONPATH"]
        env["CPX_TEST_SLOW_WRITES"] = str(slow_writes)
    return env


EXTRACT_SCRIPT = textwrap.dedent(
    """
    import sys
    from conda_cache_plus.gateways.extract import extract_atomic
    extract_atomic(sys.argv[1], sys.argv[2])
    """
)


def _start_extraction(archive, dest, slow_writes=None):
    return subprocess.Popen(
        [sys.executable, "-c", EXTRACT_SCRIPT, archive, dest],
        env=_env(slow_writes),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _extracting(tmp_path, gib=8, written=0, cache=False):
    """A process extracting a bomb into ``tmp_path/pkgs``, once it has written ``written``."""
    pkgs = tmp_path / "pkgs"
    pkgs.mkdir()
    if cache:
        (pkgs / "urls.txt").write_text("")
    big = bomb(str(tmp_path / "src"), gib=gib)
    brake = tmp_path / "slow-writes-on"
    proc = _start_extraction(big.path, str(pkgs / "cpx-bomb-1.0-0"), slow_writes=brake)
    _wait_for(lambda: _tree_bytes(pkgs) > written, what="bytes in the temporary tree")
    assert brake.exists(), "the extraction no longer writes through os.write: see tests/slowdisk"
    return pkgs, proc


def test_the_temporary_tree_sits_beside_the_destination_and_goes(build, tmp_path):
    pkgs, proc = _extracting(tmp_path)
    try:
        (name,) = _trees(pkgs)
        assert name.startswith(".cpx-tmp-cpx-bomb-1.0-0-")
        assert tmptree.probe(str(pkgs / name)) == tmptree.LIVE
        assert not tmptree.remove_dead(str(pkgs / name))
        # the outer directory is private while the tree is built
        assert stat.S_IMODE(os.stat(pkgs / name).st_mode) == 0o700
    finally:
        proc.kill()
        proc.wait()
    assert tmptree.probe(str(pkgs / name)) == tmptree.DEAD


def test_kill_9_leaves_a_dead_tree_the_next_extraction_removes(build, tmp_path):
    pkgs, proc = _extracting(tmp_path, written=1 << 20)
    proc.kill()  # SIGKILL
    proc.wait()
    assert len(_trees(pkgs)) == 1
    assert not (pkgs / "cpx-bomb-1.0-0").exists()
    small = build("demo")
    subprocess.run(
        [sys.executable, "-c", EXTRACT_SCRIPT, small.path, str(pkgs / "demo-1.0-0")],
        env=_env(),
        check=True,
        timeout=300,
    )
    assert _trees(pkgs) == []
    assert (pkgs / "demo-1.0-0" / "info" / "index.json").is_file()


def test_kill_9_tree_is_counted_by_info_and_removed_by_clean_temp(tmp_path):
    pkgs, proc = _extracting(tmp_path, written=4 << 20, cache=True)
    proc.kill()
    proc.wait()
    written = _tree_bytes(pkgs)
    info = run_cli("info", "--pkgs-dir", str(pkgs), "--json", check=True)
    assert _leftover_bytes(json.loads(info.stdout)) >= written
    res = run_cli("clean", "--temp", "-y", "--pkgs-dir", str(pkgs), check=True)
    assert _trees(pkgs) == [], res.stdout + res.stderr


def _leftover_bytes(doc) -> int:
    """The leftover bytes ``info --json`` reports, wherever its schema puts them."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "leftovers" and isinstance(v, int):
                    found.append(v)
                elif k == "leftovers" and isinstance(v, list):
                    found.append(sum(x.get("size", 0) for x in v if isinstance(x, dict)))
                else:
                    walk(v)
        elif isinstance(node, list):
            for x in node:
                walk(x)

    walk(doc)
    return max(found, default=0)


def test_clean_temp_keeps_a_live_tree(tmp_path):
    pkgs, proc = _extracting(tmp_path, cache=True)
    try:
        run_cli("clean", "--temp", "-y", "--pkgs-dir", str(pkgs), check=True)
        assert len(_trees(pkgs)) == 1
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_ctrl_c_stops_the_extraction_and_removes_the_tree(tmp_path):
    pkgs, proc = _extracting(tmp_path, gib=64, written=1 << 20)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    print(f"stopped {time.monotonic() - sent:.2f}s after SIGINT")
    assert "KeyboardInterrupt" in proc.stderr.read()
    assert _trees(pkgs) == []
    assert not (pkgs / "cpx-bomb-1.0-0").exists()


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_modes_follow_the_umask(build, tmp_path, umask):
    files = {
        "bin/tool": b"#!/bin/sh\n",
        "share/readonly.txt": b"r",
        "share/d/x": b"x",
        "share/empty": pkgbuild.Directory(),
    }
    pkg = build("modes", files=files)
    dest = tmp_path / "dest"
    script = (
        "import os, sys; os.umask(int(sys.argv[3], 8)); "
        "from conda_cache_plus.gateways.extract import extract_atomic; "
        "extract_atomic(sys.argv[1], sys.argv[2])"
    )
    subprocess.run(
        [sys.executable, "-c", script, pkg.path, str(dest), oct(umask)],
        env=_env(),
        check=True,
        timeout=120,
    )

    def mode(rel):
        return stat.S_IMODE(os.lstat(dest / rel).st_mode)

    assert mode("bin/tool") == (0o755 & ~umask) | 0o600
    assert mode("share/readonly.txt") == (0o644 & ~umask) | 0o600
    for d in ("", "share", "share/d", "share/empty", "info"):
        assert mode(d) == 0o777 & ~umask, d


def test_inflation_beyond_what_paths_json_declares_is_refused(tmp_path):
    pkg = bomb(str(tmp_path / "src"), size=(256 << 20) + (64 << 20), paths_json=True)
    with pytest.raises(HostileArchiveError) as info:
        extract_archive(pkg.path, str(tmp_path / "x"))
    assert "share/zeros" in str(info.value) and "paths.json declares 1000 bytes" in str(info.value)
    assert not (tmp_path / "x").exists()
    # the setting turns the derived limit off, or caps every package
    stats = extract_archive(pkg.path, str(tmp_path / "y"), limit=InflateLimit.parse("off"))
    assert stats.bytes > (320 << 20)
    with pytest.raises(HostileArchiveError, match="more than 1048576 bytes"):
        extract_archive(pkg.path, str(tmp_path / "z"), limit=InflateLimit.parse("1M"))


def test_limit_setting_values():
    assert InflateLimit.parse(None) == InflateLimit()
    assert InflateLimit.parse("auto") == InflateLimit()
    assert InflateLimit.parse("off") == InflateLimit(declared=False)
    assert InflateLimit.parse("50G") == InflateLimit(max_bytes=50 << 30)
    with pytest.raises(ValueError):
        InflateLimit.parse("lots")


def test_extract_atomic_outside_a_cache_takes_no_lock(build, tmp_path):
    pkg = build("demo")
    extract_atomic(pkg.path, str(tmp_path / "out"))
    assert ".conda-cache-plus" not in os.listdir(tmp_path)
    assert _trees(tmp_path) == []


# -- a cache shared by a group ------------------------------------------------------------------

# per process: test runs of several worktrees at once must not add and delete the same users
GROUP, USERS = f"cpxg{os.getpid()}", (f"cpxa{os.getpid()}", f"cpxb{os.getpid()}")


def _have(cmd: str) -> bool:
    import shutil

    return shutil.which(cmd) is not None


@pytest.fixture(scope="module")
def group_users():
    """Two users in one group (created for the test, removed after); needs root."""
    if os.geteuid() != 0:
        pytest.skip("creating users needs root")
    if not all(_have(c) for c in ("useradd", "groupadd", "userdel", "groupdel", "setpriv")):
        pytest.skip("useradd/groupadd/setpriv are not available")
    import grp
    import pwd

    created = []
    try:
        grp.getgrnam(GROUP)
    except KeyError:
        subprocess.run(["groupadd", GROUP], check=True)
        created.append(("groupdel", GROUP))
    for user in USERS:
        try:
            pwd.getpwnam(user)
        except KeyError:
            subprocess.run(["useradd", "-M", "-N", "-g", GROUP, user], check=True)
            created.insert(0, ("userdel", user))
    yield GROUP, USERS
    for cmd, name in created:
        subprocess.run([cmd, name], check=False)


def _as_user(user: str, group: str, home: str, script: str, *args: str):
    """Run ``script`` as ``user`` under umask 002. The interpreter may sit in root's home, so
    the process keeps CAP_DAC_READ_SEARCH (read and traverse anything) but not
    CAP_DAC_OVERRIDE: every write is checked against the user's permissions, as for a user."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,
        "PYTHONPATH": ROOT,
        "CONDA_SOLVER": "classic",
        "CONDA_REGISTER_ENVS": "false",
    }
    caps = ("--inh-caps", "+dac_read_search", "--ambient-caps", "+dac_read_search")
    return subprocess.run(
        [
            *("setpriv", "--reuid", user, "--regid", group, "--init-groups", *caps, "--"),
            *("sh", "-c", f"umask 002; exec {script}", "sh", *args),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_two_users_of_a_group_share_a_cache(group_users, build):
    """umask 002, a setgid pkgs dir: each user extracts into it, and each can replace what the
    other extracted (directories must be group-writable for that)."""
    import grp
    import shutil
    import tempfile

    group, (u1, u2) = group_users
    gid = grp.getgrnam(group).gr_gid
    base = tempfile.mkdtemp(prefix="cpx-shared-", dir="/tmp")
    try:
        os.chmod(base, 0o775)
        os.chown(base, 0, gid)
        pkgs = os.path.join(base, "pkgs")
        os.mkdir(pkgs)
        os.chown(pkgs, 0, gid)
        os.chmod(pkgs, 0o2775)
        src = os.path.join(base, "src")
        shutil.copytree(os.path.dirname(build("alpha").path), src)
        build_b = build("beta", files={"share/beta/deep/er/x.txt": b"b\n"})
        shutil.copy(build_b.path, src)
        os.chmod(src, 0o755)
        for n in os.listdir(src):
            os.chmod(os.path.join(src, n), 0o644)
        homes = {}
        for u in (u1, u2):
            homes[u] = os.path.join(base, f"home-{u}")
            os.mkdir(homes[u])
            shutil.chown(homes[u], u, group)
        py = sys.executable
        extract = (
            f'{py} -c "import sys; from conda_cache_plus.gateways.extract import extract_atomic; '
            'extract_atomic(sys.argv[1], sys.argv[2])" "$1" "$2"'
        )
        alpha = os.path.join(src, "alpha-1.0-0.conda")
        beta = os.path.join(src, "beta-1.0-0.conda")
        steps = [
            (u1, alpha, "alpha-1.0-0"),  # the first user creates what the cache needs
            (u2, beta, "beta-1.0-0"),  # the second extracts beside it
            (u2, alpha, "alpha-1.0-0"),  # and replaces the first user's entry
            (u1, beta, "beta-1.0-0"),  # and the other way round
        ]
        for user, archive, entry in steps:
            res = _as_user(user, group, homes[user], extract, archive, os.path.join(pkgs, entry))
            assert res.returncode == 0, f"{user} {entry}: {res.stderr}"
            assert os.path.isfile(os.path.join(pkgs, entry, "info", "index.json"))
        deep = os.path.join(pkgs, "beta-1.0-0", "share", "beta", "deep")
        assert stat.S_IMODE(os.stat(deep).st_mode) & 0o070 == 0o070
        assert _trees(pkgs) == []
        if _conda_has_extractors():
            _two_users_conda_create(base, pkgs, src, homes, group, (u1, u2))
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _conda_has_extractors() -> bool:
    try:
        from conda.plugins import types
    except ImportError:
        return False
    return hasattr(types, "CondaPackageExtractor")


def _two_users_conda_create(base, pkgs, src, homes, group, users):
    """Through real conda, both users under umask 002: our private directories made by someone
    else without group write (here root, umask 022) do not stop anyone's extractions (the
    entry lock is skipped where it cannot be taken; the extraction is atomic without it)."""
    import hashlib
    import shutil

    u1, u2 = users
    for name in ("alpha-1.0-0", "beta-1.0-0", ".conda-cache-plus"):
        shutil.rmtree(os.path.join(pkgs, name), ignore_errors=True)
    locks = os.path.join(pkgs, ".conda-cache-plus", "locks")
    os.makedirs(locks)
    for path in (locks, os.path.dirname(locks)):
        os.chmod(path, 0o755)
    channel = os.path.join(base, "channel")
    entries = {}
    for fn in ("alpha-1.0-0.conda", "beta-1.0-0.conda"):
        os.makedirs(os.path.join(channel, "noarch"), mode=0o755, exist_ok=True)
        shutil.copy(os.path.join(src, fn), os.path.join(channel, "noarch", fn))
        with open(os.path.join(src, fn), "rb") as fh:
            blob = fh.read()
        entries[fn] = {
            **{"name": fn.split("-")[0], "version": "1.0", "build": "0", "build_number": 0},
            **{"depends": [], "subdir": "noarch", "noarch": "generic", "size": len(blob)},
            "sha256": hashlib.sha256(blob).hexdigest(),
        }
    for subdir, pkgs_conda in (("noarch", entries), ("linux-64", {})):
        os.makedirs(os.path.join(channel, subdir), mode=0o755, exist_ok=True)
        with open(os.path.join(channel, subdir, "repodata.json"), "w") as fh:
            json.dump({"info": {"subdir": subdir}, "packages.conda": pkgs_conda}, fh)
    for root, _dirs, files in os.walk(channel):
        os.chmod(root, 0o755)
        for n in files:
            os.chmod(os.path.join(root, n), 0o644)
    for n in ("urls.txt", "urls"):  # conda's magic file, group-writable as in a shared cache
        with open(os.path.join(pkgs, n), "a"):
            pass
        os.chmod(os.path.join(pkgs, n), 0o664)
    envs = os.path.join(base, "envs")
    os.mkdir(envs)
    os.chmod(envs, 0o777)
    conda = (
        f"env CONDA_PKGS_DIRS={pkgs} {sys.executable} -m conda create --offline --yes "
        f'--override-channels -c file://{channel} -p "$1" "$2"'
    )
    for user, pkg in ((u1, "alpha"), (u2, "beta")):
        res = _as_user(user, group, homes[user], conda, f"{envs}/{user}", pkg)
        assert res.returncode == 0, f"{user}: {res.stdout}{res.stderr}"
        assert os.path.isfile(os.path.join(pkgs, f"{pkg}-1.0-0", "info", "repodata_record.json"))
    assert _trees(pkgs) == []


def test_other_extractions_never_remove_a_live_tree(build, tmp_path):
    """What removed a concurrent conda extraction's directory before (fetch's stale-temp
    cleanup) now goes by the tree's lock: a live tree is left alone."""
    from conda_cache_plus.gateways.extract import install_entry
    from conda_cache_plus.model.cache_paths import CacheLayout

    pkgs, proc = _extracting(tmp_path, written=1 << 20, cache=True)
    try:
        (live,) = _trees(pkgs)
        other = build("other")
        install_entry(CacheLayout(str(pkgs)), other.dist, other.path)
        assert tmptree.sweep(str(pkgs)) == []
        assert _trees(pkgs) == [live]
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_a_tree_killed_before_its_lock_is_dead_at_once(tmp_path):
    """kill -9 between mkdtemp and taking the tree's lock leaves a tree without a lock file:
    when its creator (named in the tree's name) is a process of this host that is gone, it is
    dead at once; while the creator lives it is being created."""
    import subprocess
    import sys

    from conda_cache_plus.gateways import tmptree

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = tmp_path / f"{tmptree.PREFIX}pkg-1.0-0-{gone.pid}@{tmptree._HOST}-abc123"
    starting = tmp_path / f"{tmptree.PREFIX}pkg-1.0-0-{os.getpid()}@{tmptree._HOST}-def456"
    elsewhere = tmp_path / f"{tmptree.PREFIX}pkg-1.0-0-{gone.pid}@0000other-ghi789"
    for d in (dead, starting, elsewhere):
        d.mkdir()
    assert tmptree.probe(str(dead)) == tmptree.DEAD
    assert tmptree.probe(str(starting)) == tmptree.YOUNG
    assert tmptree.probe(str(elsewhere)) == tmptree.YOUNG  # another host: only age tells
    assert tmptree.sweep(str(tmp_path)) == [str(dead)]
