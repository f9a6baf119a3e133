"""Cross-process locks that interoperate with conda, mamba and rattler.

- conda: ``fcntl.lockf`` on one byte at offset 21 of a ``.partial`` download (mamba interop).
- mamba: a POSIX record lock on ``<pkgs>/pkgs.lock`` for a whole transaction.
- rattler: ``flock`` on ``<pkgs>/.cache.lock``.
- ours: ``flock`` on files under ``<pkgs>/.conda-cache-plus/locks/``; an exclusive
  ``cache.lock`` while removing, a shared one while fetching, one file per entry while extracting.

POSIX record locks are per process and dropped when *any* descriptor of the file closes, so they
are only ever taken on a descriptor we keep open for the whole hold.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sys
import time
from contextlib import contextmanager

from .exceptions import CachePlusError, LockTimeoutError, LockUnavailableError, UnsafePathError
from .safefs import NOFOLLOW, open_nofollow, open_private_dir, split_private

CONDA_LOCK_BYTE = 21


def _open_lock_file(path: str) -> int:
    """Open (creating) a lock file without following links: inside our private area every
    directory is opened relative to the verified one above it (see :mod:`.safefs`).
    A lock that cannot be opened at all is a LockUnavailableError, never a silent skip."""
    try:
        where = split_private(path)
        if where is None:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            return open_nofollow(path, os.O_RDWR | os.O_CREAT)
        root, parts, name = where
        dir_fd = open_private_dir(root, parts)
        try:
            return open_nofollow(name, os.O_RDWR | os.O_CREAT, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
    except CachePlusError:
        raise
    except OSError as exc:
        raise LockUnavailableError(path, exc.strerror or str(exc)) from None


class FileLock:
    """An ``flock`` on ``path`` (created if needed), exclusive or shared, with a timeout.

    ``timeout=0`` tries once; ``None`` waits forever. ``on_wait`` is called once with a message
    when the lock is busy, so a verb can say what it waits for.
    """

    def __init__(
        self,
        path: str,
        *,
        shared: bool = False,
        timeout: float | None = 60.0,
        layout=None,
        name: str = "",
        on_wait=None,
    ):
        if layout is not None and not path.startswith(layout.locks_dir):
            # Lock files of our own always live in the private locks dir.
            base = name or os.path.basename(path)
            path = os.path.join(layout.locks_dir, base + ".lock")
        self.path = path
        self.shared = shared
        self.timeout = timeout
        self.on_wait = on_wait
        self.fd: int | None = None

    def acquire(self) -> FileLock:
        fd = _open_lock_file(self.path)
        op = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        start = time.monotonic()
        told = False
        delay = 0.01
        while True:
            try:
                fcntl.flock(fd, op | fcntl.LOCK_NB)
                if _same_file(fd, self.path):
                    break
                # the file was removed (with its entry) while we waited: lock the new one
                os.close(fd)
                fd = _open_lock_file(self.path)
                continue
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    os.close(fd)
                    raise
            waited = time.monotonic() - start
            if self.timeout is not None and waited >= self.timeout:
                os.close(fd)
                raise LockTimeoutError(self.path, "another process", waited)
            if not told and self.on_wait is not None:
                self.on_wait(f"waiting for the lock on {self.path} ...")
                told = True
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _same_file(fd: int, path: str) -> bool:
    """Whether ``fd`` is still the file at ``path`` (lock files are removed with their entry)."""
    try:
        here, there = os.fstat(fd), os.lstat(path)
    except OSError:
        return False
    return (here.st_ino, here.st_dev) == (there.st_ino, there.st_dev)


def remove_lock_file(path: str) -> bool:
    """Remove a lock file nobody holds; True if it is gone. Taken first, then unlinked while held:
    whoever opened it meanwhile sees it was replaced (:func:`_same_file`) and locks the new one."""
    if not os.path.lexists(path):
        return True
    try:
        lock = FileLock(path, timeout=0).acquire()
    except (CachePlusError, OSError):
        return False
    try:
        os.unlink(path)
        return True
    except OSError:
        return False
    finally:
        lock.release()


def lock_conda_byte(fd: int, timeout: float | None = 10.0) -> None:
    """Take conda's lock on a ``.partial`` file: byte 21, exclusive (conda-facts §4.8)."""
    start = time.monotonic()
    while True:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, CONDA_LOCK_BYTE)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        waited = time.monotonic() - start
        if timeout is not None and waited >= timeout:
            raise LockTimeoutError(
                f"/proc/self/fd/{fd}", "conda or mamba (byte-range lock)", waited
            )
        time.sleep(0.05)


def conda_byte_locked(path: str) -> bool:
    """Whether another process holds conda's byte-21 lock on ``path`` (a ``.partial``)."""
    return _probe_record_lock(path, 1, CONDA_LOCK_BYTE)


def mamba_locked(path: str) -> bool:
    """Whether another process holds mamba's record lock on ``pkgs.lock``."""
    return _probe_record_lock(path, 0, 0)


def flock_held(path: str) -> bool:
    """Whether another process holds an ``flock`` on ``path`` (rattler's ``.cache.lock``, ours)."""
    try:
        # never through a link, never blocking on a planted FIFO
        fd = os.open(path, os.O_RDONLY | NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the probe lock
    return False


def _probe_record_lock(path: str, length: int, start: int) -> bool:
    # F_GETLK reports a conflicting lock held by *another* process without taking one, so the
    # probe never disturbs a lock this process holds on the same file.
    import struct

    try:
        fd = os.open(path, os.O_RDONLY | NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        if sys.platform == "darwin":
            fmt, fields = "qqihh", (start, length, 0, fcntl.F_WRLCK, os.SEEK_SET)
            type_index = 3
        else:  # Linux and the BSDs' glibc-like layout
            fmt, fields = "hhqqi4x", (fcntl.F_WRLCK, os.SEEK_SET, start, length, 0)
            type_index = 0
        try:
            res = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack(fmt, *fields))
            return struct.unpack(fmt, res)[type_index] != fcntl.F_UNLCK
        except (OSError, struct.error):
            return False
    finally:
        os.close(fd)


@contextmanager
def cache_write_lock(layout, *, timeout: float | None = 60.0, on_wait=None):
    """Exclusive hold on a whole pkgs dir while removing: ours, plus mamba's and rattler's locks
    when those files exist, so a concurrent mamba/pixi waits for us and we wait for them."""
    held: list = []
    fds: list[int] = []
    try:
        try:
            held.append(FileLock(layout.cache_lock, timeout=timeout, on_wait=on_wait).acquire())
        except UnsafePathError:
            # A link planted in place of our private dir or lock file: no fetch of ours can run
            # on this cache (each refuses the same link), so there is nobody to exclude, and
            # `clean --temp` must still be able to remove the link.
            pass
        if os.path.exists(layout.rattler_lock):
            held.append(FileLock(layout.rattler_lock, timeout=timeout, on_wait=on_wait).acquire())
        if os.path.exists(layout.mamba_lock):
            fd = os.open(layout.mamba_lock, os.O_RDWR)
            fds.append(fd)
            start = time.monotonic()
            while True:
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError:
                    waited = time.monotonic() - start
                    if timeout is not None and waited >= timeout:
                        raise LockTimeoutError(layout.mamba_lock, "mamba", waited) from None
                    time.sleep(0.1)
        yield
    finally:
        for fd in fds:
            os.close(fd)
        for lock in reversed(held):
            lock.release()
