"""One package cache shared by a group: two real Unix users, one group, umask 002, setgid dirs.

Both users fetch, extract, verify, repair and clean the same cache, also at the same time; every
entry, private directory and lock file stays usable by the other, and ``info`` names what the
current user could not repair. Needs root (to create the users); skipped otherwise, with the
reason.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile

import pytest
from as_user import ensure_group, ensure_user, interpreter_as, session_name
from fetch_helpers import serve_packages

# this session's (removed when it ends: tests/as_user.py)
TEAM = session_name("cpx-team")
USERS = (session_name("cpx-alice"), session_name("cpx-bob"))


class Member:
    def __init__(self, name: str, world: str):
        pw = pwd.getpwnam(name)
        team = grp.getgrnam(TEAM).gr_gid
        got = interpreter_as(pw.pw_uid, pw.pw_gid, (team,), name)
        if isinstance(got, str):
            pytest.skip(got)
        self.prefix, self.env = got
        self.name = name
        self.uid = pw.pw_uid
        self.home = os.path.join(world, f"home-{name}")
        os.makedirs(self.home, exist_ok=True)
        os.chown(self.home, pw.pw_uid, pw.pw_gid)

    def _argv(self, *args):
        # a member of a group sharing a cache works with umask 002 (the documented setup)
        boot = (
            "import os, runpy, sys; os.umask(0o002); sys.argv[0] = 'conda-cache'; "
            "runpy.run_module('conda_cache_plus', run_name='__main__', alter_sys=True)"
        )
        return [*self.prefix, "-c", boot, *args]

    def _environ(self):
        return {
            **os.environ,
            **self.env,
            "HOME": self.home,
            "XDG_CACHE_HOME": os.path.join(self.home, ".cache"),
            "CONDA_CACHE_PLUS_GRACE": "0",
            "CONDA_CACHE_PLUS_NO_CONDA": "1",
        }

    def cli(self, *args):
        return subprocess.run(
            self._argv(*args),
            capture_output=True,
            text=True,
            env=self._environ(),
            cwd=self.home,
            timeout=300,
        )

    def start(self, *args):
        return subprocess.Popen(
            self._argv(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self._environ(),
            cwd=self.home,
        )


@pytest.fixture
def team():
    if os.geteuid() != 0:
        pytest.skip("creating two users in one group needs root")
    why = ensure_group(TEAM)
    for user in USERS:
        why = why or ensure_user(user, (TEAM,))
    if why:
        pytest.skip(why)
    world = tempfile.mkdtemp(prefix="cpx-team-", dir="/tmp")
    os.chmod(world, 0o755)
    pkgs = os.path.join(world, "pkgs")
    os.mkdir(pkgs)
    os.chown(pkgs, 0, grp.getgrnam(TEAM).gr_gid)
    os.chmod(pkgs, 0o2775)  # group-writable, setgid: what a group's shared cache looks like
    try:
        yield world, pkgs, [Member(u, world) for u in USERS]
    finally:
        shutil.rmtree(world, ignore_errors=True)


def explicit(path, srv, pkgs):
    with open(path, "w") as fh:
        fh.write("@EXPLICIT\n")
        for p in pkgs:
            fh.write(f"{srv.url(f'{p.subdir}/{p.fn}')}#sha256:{p.sha256}\n")
    os.chmod(path, 0o644)
    return str(path)


def ok(proc):
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_two_users_share_one_cache(team, http_server):
    world, pkgs, (alice, bob) = team
    a, b, c = serve_packages(
        http_server, [("team-a", "1.0", 4), ("team-b", "1.0", 4), ("team-c", "1.0", 4)]
    )
    ab = explicit(os.path.join(world, "ab.txt"), http_server, [a, b])
    bc = explicit(os.path.join(world, "bc.txt"), http_server, [b, c])
    abc = explicit(os.path.join(world, "abc.txt"), http_server, [a, b, c])
    at = ["--pkgs-dir", pkgs]

    ok(alice.cli("fetch", ab, *at))
    # everything alice made is the group's: dirs group-writable and setgid, files group-readable
    for root, dirs, files in os.walk(pkgs):
        for d in dirs:
            mode = os.lstat(os.path.join(root, d)).st_mode
            assert mode & stat.S_IWGRP and mode & stat.S_ISGID, (os.path.join(root, d), oct(mode))
        for f in files:
            st = os.lstat(os.path.join(root, f))
            if not stat.S_ISLNK(st.st_mode):
                assert st.st_mode & stat.S_IRGRP, (os.path.join(root, f), oct(st.st_mode))

    data = json.loads(ok(bob.cli("verify", "--full", "--json", *at)).stdout)
    assert data["summary"]["ok"] == 2
    out = json.loads(ok(bob.cli("fetch", bc, "--json", *at)).stdout)
    assert {p["fn"]: p["outcome"] for p in out["packages"]} == {b.fn: "reused", c.fn: "downloaded"}

    # bob repairs an entry alice extracted (re-extraction replaces her directory)
    victim = os.path.join(pkgs, a.dist, "share", "team-a", "README")
    with open(victim, "w") as fh:
        fh.write("damaged\n")
    assert bob.cli("verify", *at).returncode == 1
    ok(bob.cli("repair", "--yes", *at))
    assert json.loads(ok(bob.cli("verify", "--json", *at)).stdout)["summary"]["ok"] == 3

    # alice cleans everything, bob's entry included
    ok(alice.cli("clean", "--unused", "--yes", *at))
    assert not any(os.path.isdir(os.path.join(pkgs, p.dist)) for p in (a, b, c))

    # both fetch the same packages at the same time: locks exclude, nobody is locked out
    procs = [m.start("fetch", abc, *at) for m in (alice, bob)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, out + err
    assert json.loads(ok(alice.cli("verify", "--json", *at)).stdout)["summary"]["ok"] == 3
    for root, dirs, files in os.walk(os.path.join(pkgs, ".conda-cache-plus")):
        for n in dirs + files:
            mode = os.lstat(os.path.join(root, n)).st_mode
            assert mode & stat.S_IWGRP, (os.path.join(root, n), oct(mode))

    # info: nothing bob could not repair; then a member with umask 022 leaves an entry behind
    info = json.loads(ok(bob.cli("info", "--json", "--counts-only", *at)).stdout)
    assert info["caches"][0]["not_repairable"] == []
    for root, dirs, _files in os.walk(os.path.join(pkgs, c.dist)):
        for d in [root, *(os.path.join(root, x) for x in dirs)]:
            os.chmod(d, 0o755)
            os.chown(d, alice.uid, -1)
    info = json.loads(ok(bob.cli("info", "--json", "--counts-only", *at)).stdout)
    [item] = info["caches"][0]["not_repairable"]
    assert item["entry"] == c.dist and item["owner"] == USERS[0]
    assert "not writable by you" in item["reason"]
    text = ok(bob.cli("info", "--counts-only", *at)).stdout
    assert f"you could not repair {c.dist}" in text
    assert (
        json.loads(ok(alice.cli("info", "--json", "--counts-only", *at)).stdout)["caches"][0][
            "not_repairable"
        ]
        == []
    )
