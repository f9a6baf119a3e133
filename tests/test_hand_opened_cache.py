"""Another user's cache opened by hand (issue 24): two real Unix users, no shared group.

Alice fills a cache with her default umask (022), then opens it to everyone by hand
(``chmod -R a+rwX``), leaving its lock files as they were. Bob then runs every verb on it. What
he may do works; what he may not do (take the cache's lock, remove what needs it) ends with the
README's exit code, a one-line reason and, with ``--json``, the items listed; never a
traceback. Whatever one of them remembers of a ``verify --full`` never makes the other's check
hash less. Needs root (to create the users, removed at the end of the session); skipped
otherwise, with the reason.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile

import pytest
from as_user import ensure_user, interpreter_as, session_name
from fetch_helpers import serve_packages

ALICE, BOB = session_name("cpx-owner"), session_name("cpx-guest")


class Person:
    def __init__(self, name: str, world: str):
        pw = pwd.getpwnam(name)
        got = interpreter_as(pw.pw_uid, pw.pw_gid, (), name)
        if isinstance(got, str):
            pytest.skip(got)
        self.prefix, self.env = got
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        self.home = os.path.join(world, f"home-{name}")
        os.makedirs(self.home)
        os.chown(self.home, pw.pw_uid, pw.pw_gid)

    def cli(self, *args) -> subprocess.CompletedProcess:
        boot = (
            "import os, runpy, sys; os.umask(0o022); sys.argv[0] = 'conda-cache'; "
            "runpy.run_module('conda_cache_plus', run_name='__main__', alter_sys=True)"
        )
        return subprocess.run(
            [*self.prefix, "-c", boot, *args],
            capture_output=True,
            text=True,
            env={
                **os.environ,
                **self.env,
                "HOME": self.home,
                "XDG_CACHE_HOME": os.path.join(self.home, ".cache"),
                "CONDA_CACHE_PLUS_GRACE": "0",
                "CONDA_CACHE_PLUS_NO_CONDA": "1",
            },
            cwd=self.home,
            timeout=300,
        )


@pytest.fixture
def two_users():
    if os.geteuid() != 0:
        pytest.skip("creating two users needs root")
    for name in (ALICE, BOB):
        why = ensure_user(name)
        if why:
            pytest.skip(why)
    world = tempfile.mkdtemp(prefix="cpx-opened-", dir="/tmp")
    os.chmod(world, 0o755)
    try:
        yield world, Person(ALICE, world), Person(BOB, world)
    finally:
        shutil.rmtree(world, ignore_errors=True)


def open_by_hand(pkgs: str) -> list[str]:
    """What a user typing ``chmod -R a+rwX pkgs`` (then fixing back the lock files) leaves;
    the lock files, as they were."""
    locks = []
    for root, dirs, files in os.walk(pkgs):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777)
        for name in files:
            path = os.path.join(root, name)
            if name.endswith(".lock"):
                locks.append(path)
            elif not os.path.islink(path):
                mode = os.stat(path).st_mode
                os.chmod(path, 0o777 if mode & stat.S_IXUSR else 0o666)
    os.chmod(pkgs, 0o777)
    return locks


def no_traceback(proc) -> subprocess.CompletedProcess:
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_a_cache_opened_by_hand_to_another_user(two_users, http_server):
    world, alice, bob = two_users
    served = serve_packages(http_server, [("mine-a", "1.0", 4), ("mine-b", "1.0", 4)])
    explicit = os.path.join(world, "env.txt")
    with open(explicit, "w") as fh:
        fh.write("@EXPLICIT\n")
        for p in served:
            fh.write(f"{http_server.url(f'{p.subdir}/{p.fn}')}#sha256:{p.sha256}\n")
    os.chmod(explicit, 0o644)
    pkgs = os.path.join(world, "pkgs")
    at = ["--pkgs-dir", pkgs]
    os.mkdir(pkgs)
    os.chown(pkgs, alice.uid, alice.gid)

    proc = no_traceback(alice.cli("fetch", "--json", explicit, *at))
    assert proc.returncode == 0, proc.stderr
    first = json.loads(no_traceback(alice.cli("verify", "--full", "--json", *at)).stdout)
    assert first["summary"]["ok"] == 2 and first["summary"]["hashed"] > 0
    locks = open_by_hand(pkgs)
    assert locks, "a cache our fetch filled has lock files"
    for path in locks:
        assert os.stat(path).st_uid == alice.uid and not os.stat(path).st_mode & 0o002

    # bob reads all of it, and his first full check hashes as much as alice's first did
    for verb in (["list"], ["info"], ["usage"], ["dir"]):
        proc = no_traceback(bob.cli(*verb, *at))
        assert proc.returncode == 0, (verb, proc.stderr)
    theirs = json.loads(no_traceback(bob.cli("verify", "--full", "--json", *at)).stdout)
    assert theirs["summary"]["ok"] == 2
    assert theirs["summary"]["hashed"] == first["summary"]["hashed"], theirs["summary"]

    # what needs the cache's lock: exit 3, the reason in one line, each item listed
    for verb in (["remove", "mine-a", "-y"], ["clean", "--all", "-y"]):
        proc = no_traceback(bob.cli(*verb, *at))
        print(proc.stdout, proc.stderr)
        assert proc.returncode == 3, (verb, proc.stdout, proc.stderr)
        assert [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")], proc.stderr
        assert "Could not remove" in proc.stdout
        proc = no_traceback(bob.cli(*verb, "--json", *at))
        assert proc.returncode == 3, (verb, proc.stdout, proc.stderr)
        data = json.loads(proc.stdout)
        assert data.get("error") or data.get("failures"), data
    # nothing was lost, and alice still works on her cache
    for p in served:
        assert os.path.isdir(os.path.join(pkgs, p.dist)) and os.path.isfile(
            os.path.join(pkgs, p.fn)
        )
    again = json.loads(no_traceback(alice.cli("verify", "--full", "--json", *at)).stdout)
    assert again["summary"]["ok"] == 2

    # a fetch bob cannot complete says what would help, not "run the same command again"
    shutil.rmtree(os.path.join(pkgs, served[0].dist))
    proc = no_traceback(bob.cli("fetch", explicit, *at))
    if proc.returncode != 0:
        assert proc.returncode == 3, proc.stderr
        assert "run the same command again" not in proc.stderr + proc.stdout
