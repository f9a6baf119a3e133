"""Locks against real second processes: ours (record locks), conda's byte 21, mamba's pkgs.lock,
rattler's flock; and between the threads of one process (POSIX record locks do not do that)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from conda_cache_plus.exceptions import LockTimeoutError
from conda_cache_plus.gateways import locks
from conda_cache_plus.model.cache_paths import CacheLayout

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
    p = hold(path, "record", 30)
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
            "import sys; from conda_cache_plus.gateways.locks import FileLock;"
            "FileLock(sys.argv[1], timeout=0).acquire()"
        )
        proc = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True)
        assert proc.returncode != 0 and "LockTimeoutError" in proc.stderr


TRY = (
    "import sys; from conda_cache_plus.gateways.locks import FileLock;"
    "FileLock(sys.argv[1], shared=sys.argv[2] == 'shared', timeout=0).acquire()"
)


def _other_process_gets(path: str, mode: str) -> bool:
    proc = subprocess.run([sys.executable, "-c", TRY, path, mode], capture_output=True, text=True)
    assert proc.returncode == 0 or "LockTimeoutError" in proc.stderr, proc.stderr
    return proc.returncode == 0


def test_downgrade_lets_readers_in_and_keeps_writers_out(tmp_path):
    """An install that has extracted an entry turns its write lock into a read lock in place:
    other installs may now read (link from) the entry, none may rewrite it meanwhile."""
    path = str(tmp_path / "entry.lock")
    lock = locks.FileLock(path).acquire()
    try:
        assert not _other_process_gets(path, "shared")
        lock.downgrade()
        assert lock.shared
        assert _other_process_gets(path, "shared")
        assert not _other_process_gets(path, "exclusive")
        # threads of this process see it as shared too
        with locks.FileLock(path, shared=True, timeout=0):
            pass
    finally:
        lock.release()
    assert _other_process_gets(path, "exclusive")


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
    probe = (
        "import sys; from conda_cache_plus.gateways.locks import lock_held, mamba_locked;"
        "print(lock_held(sys.argv[1]), mamba_locked(sys.argv[2]))"
    )

    def seen() -> str:
        return subprocess.run(
            [sys.executable, "-c", probe, layout.cache_lock, layout.mamba_lock],
            capture_output=True,
            text=True,
        ).stdout.strip()

    with locks.cache_write_lock(layout, timeout=1):
        assert seen() == "True True"  # ours and mamba's, as another process sees them
        assert locks.lock_held(layout.cache_lock)  # and this process, through the registry
    assert seen() == "False False"
    assert not locks.lock_held(layout.cache_lock)


def test_our_locks_are_record_locks_that_mamba_style_lockf_sees(tmp_path):
    path = str(tmp_path / "entry.lock")
    with locks.FileLock(path):
        code = (
            "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR)\n"
            "try:\n    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); print('free')\n"
            "except OSError: print('busy')"
        )
        out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True)
        assert out.stdout.strip() == "busy"
        # a probe in this process must not drop the lock (closing any fd would, for lockf)
        assert locks.lock_held(path)
        out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True)
        assert out.stdout.strip() == "busy"


def test_threads_of_one_process_exclude_each_other(tmp_path):
    import threading

    path = str(tmp_path / "t.lock")
    inside = []
    overlap = []

    def worker(i):
        for _ in range(20):
            with locks.FileLock(path, timeout=30):
                inside.append(i)
                if len(inside) > 1:
                    overlap.append(list(inside))
                time.sleep(0.001)
                inside.remove(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not overlap
    # shared holders coexist; an exclusive one in the same process waits for them
    with locks.FileLock(path, shared=True), locks.FileLock(path, shared=True):
        with pytest.raises(LockTimeoutError) as err:
            locks.FileLock(path, timeout=0.2).acquire()
        assert "this process" in str(err.value)
    with locks.FileLock(path, timeout=0):
        pass


def test_releasing_one_holder_keeps_the_others_lock(tmp_path):
    path = str(tmp_path / "s.lock")
    code = (
        "import sys; from conda_cache_plus.gateways.locks import FileLock;"
        "FileLock(sys.argv[1], timeout=0).acquire()"
    )
    a = locks.FileLock(path, shared=True).acquire()
    b = locks.FileLock(path, shared=True).acquire()
    a.release()  # with bare lockf, closing a's descriptor would have dropped b's lock too
    proc = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True)
    assert proc.returncode != 0 and "LockTimeoutError" in proc.stderr
    b.release()
    proc = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_rattler_lock_stays_flock(tmp_path):
    layout = CacheLayout(str(tmp_path))
    (tmp_path / ".cache.lock").write_text("")
    p = hold(tmp_path / ".cache.lock", "flock")
    try:
        with pytest.raises(LockTimeoutError), locks.cache_write_lock(layout, timeout=0.3):
            pass
    finally:
        p.kill()
        p.wait()


def test_lock_files_and_private_dirs_are_group_writable_in_a_group_cache(tmp_path):
    import stat

    cache = tmp_path / "shared"
    cache.mkdir()
    os.chmod(cache, 0o2775)
    old = os.umask(0o022)  # a member whose umask would make private files 0644
    try:
        from conda_cache_plus.gateways.cachedir import ensure_cache_dir

        layout = CacheLayout(str(cache))
        ensure_cache_dir(layout)
        with locks.FileLock(layout.entry_lock("x-1-0")):
            pass
    finally:
        os.umask(old)
    for path in (layout.private, layout.tmp_dir, layout.locks_dir):
        mode = os.stat(path).st_mode
        assert mode & stat.S_IWGRP and mode & stat.S_ISGID, (path, oct(mode))
    assert os.stat(layout.entry_lock("x-1-0")).st_mode & stat.S_IWGRP


def test_lock_files_go_only_when_nobody_holds_them(tmp_path):
    path = tmp_path / "entry.lock"
    path.touch()
    p = hold(path, "record")
    try:
        assert not locks.remove_lock_file(str(path)) and path.exists()
    finally:
        p.kill()
        p.wait()
    assert locks.remove_lock_file(str(path)) and not path.exists()
    # a lock taken on a file that was removed meanwhile locks the new file, not the old inode
    held = locks.FileLock(str(path), timeout=0).acquire()
    try:
        assert locks.lock_held(str(path))
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
