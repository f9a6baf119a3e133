"""Locks against real second processes: ours (flock), conda's byte 21, mamba's pkgs.lock."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from conda_cache_plus import locks
from conda_cache_plus.exceptions import LockTimeoutError
from conda_cache_plus.layout import CacheLayout

HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
kind = sys.argv[2]
if kind == "flock":
    fcntl.flock(fd, fcntl.LOCK_EX)
elif kind == "byte21":
    fcntl.lockf(fd, fcntl.LOCK_EX, 1, 21)
else:
    fcntl.lockf(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(float(sys.argv[3]))
"""


def hold(path, kind, seconds=30):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), kind, str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_probes_see_other_processes(tmp_path):
    part = tmp_path / "x.conda.partial"
    part.write_bytes(b"\0" * 64)
    assert not locks.conda_byte_locked(str(part))
    p = hold(part, "byte21")
    try:
        assert locks.conda_byte_locked(str(part))
    finally:
        p.kill()
        p.wait()
    assert not locks.conda_byte_locked(str(part))
    lock = tmp_path / ".cache.lock"
    p = hold(lock, "flock")
    try:
        assert locks.flock_held(str(lock))
    finally:
        p.kill()
        p.wait()
    assert not locks.flock_held(str(lock))


def test_file_lock_waits_then_times_out(tmp_path):
    path = tmp_path / "l.lock"
    p = hold(path, "flock", 30)
    messages = []
    try:
        t0 = time.monotonic()
        with pytest.raises(LockTimeoutError) as err:
            locks.FileLock(str(path), timeout=0.3, on_wait=messages.append).acquire()
        assert time.monotonic() - t0 >= 0.3
        assert "locked by" in str(err.value) and messages
    finally:
        p.kill()
        p.wait()
    with locks.FileLock(str(path), timeout=0):
        pass


def test_shared_locks_coexist_and_exclude_writers(tmp_path):
    path = str(tmp_path / "cache.lock")
    with locks.FileLock(path, shared=True), locks.FileLock(path, shared=True, timeout=0):
        code = (
            "import sys; from conda_cache_plus.locks import FileLock;"
            "FileLock(sys.argv[1], timeout=0).acquire()"
        )
        proc = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True)
        assert proc.returncode != 0 and "LockTimeoutError" in proc.stderr


def test_cache_write_lock_respects_mamba(tmp_path):
    layout = CacheLayout(str(tmp_path))
    (tmp_path / "pkgs.lock").write_text("")
    p = hold(tmp_path / "pkgs.lock", "record")
    try:
        with pytest.raises(LockTimeoutError) as err, locks.cache_write_lock(layout, timeout=0.3):
            pass
        assert "mamba" in str(err.value)
    finally:
        p.kill()
        p.wait()
    with locks.cache_write_lock(layout, timeout=1):
        # flock belongs to an open file: any other opener, in any process, sees it held.
        assert locks.flock_held(layout.cache_lock) is True
    assert locks.flock_held(layout.cache_lock) is False


def test_lock_files_go_only_when_nobody_holds_them(tmp_path):
    path = tmp_path / "entry.lock"
    path.touch()
    p = hold(path, "flock")
    try:
        assert not locks.remove_lock_file(str(path)) and path.exists()
    finally:
        p.kill()
        p.wait()
    assert locks.remove_lock_file(str(path)) and not path.exists()
    # a lock taken on a file that was removed meanwhile locks the new file, not the old inode
    held = locks.FileLock(str(path), timeout=0).acquire()
    try:
        assert locks.flock_held(str(path))
    finally:
        held.release()


def test_removed_entries_take_their_lock_files(tmp_path, build):
    import os

    from conftest import populate, run_cli

    pkgs = tmp_path / "pkgs"
    populate(pkgs, [build("alpha", "1.0", "0"), build("beta", "1.0", "0")])
    layout = CacheLayout(str(pkgs))
    for name in ("alpha-1.0-0", "alpha-1.0-0.conda", "beta-1.0-0", "beta-1.0-0.conda"):
        locks.FileLock(layout.entry_lock(name), timeout=0).acquire().release()
    env = {"CONDA_CACHE_PLUS_NO_CONDA": "1", "CONDA_PKGS_DIRS": str(pkgs)}
    run_cli("remove", "alpha", "--yes", env=env, check=True)
    left = sorted(os.listdir(layout.locks_dir))
    assert "alpha-1.0-0.lock" not in left and "alpha-1.0-0.conda.lock" not in left
    assert "beta-1.0-0.lock" in left and "beta-1.0-0.conda.lock" in left
    run_cli("clean", "--tarballs", "--yes", env=env, check=True)
    assert "beta-1.0-0.conda.lock" not in os.listdir(layout.locks_dir)
