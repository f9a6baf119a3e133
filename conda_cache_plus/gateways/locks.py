"""Cross-process locks that interoperate with conda, mamba and rattler, and hold across hosts.

- conda: ``fcntl.lockf`` on one byte at offset 21 of a ``.partial`` download (mamba interop).
- mamba: a POSIX record lock on ``<pkgs>/pkgs.lock`` for a whole transaction.
- rattler: ``flock`` on ``<pkgs>/.cache.lock`` (rattler uses fs4's ``flock``; kept as is).
- ours: POSIX record locks (``fcntl`` ``F_SETLK`` on the whole file) on files under
  ``<pkgs>/.conda-cache-plus/``: an exclusive ``cache.lock`` while removing, a shared one while
  fetching, one file per entry while extracting. Record locks are what NFS carries between
  hosts (NLM for v3, built into v4); ``flock`` on NFS is either local to one client or (Linux
  since 2.6.12) emulated with the same record locks anyway.

POSIX record locks belong to the *process*: two holds on one file in one process do not exclude
each other (a second lock just converts the first), and closing *any* descriptor of the file
drops all of them. So every lock file of this process is opened once, in a process-wide registry
that also orders the threads of this process (a readers-writer lock per file); the OS lock is
taken when the first holder arrives and released when the last one leaves; probes reuse the
registry's descriptor instead of opening (and closing) the file again.

Lock files carry no data. In a cache shared by a group (a group-writable, setgid directory) they
are created group-writable, so no member's lock file ever shuts the others out.
"""

from __future__ import annotations

import _thread
import contextvars
import errno
import fcntl
import os
import stat
import struct
import sys
import time
from contextlib import contextmanager

from ..exceptions import CachePlusError, LockTimeoutError, LockUnavailableError, UnsafePathError
from .safefs import NOFOLLOW, open_nofollow, open_private_dir, shared_bits, split_private

CONDA_LOCK_BYTE = 21
FLOCK = "flock"
RECORD = "record"


def _open_lock_file(path: str) -> int:
    """Open (creating) a lock file without following links: inside our private area every
    directory is opened relative to the verified one above it (see :mod:`.safefs`). A new lock
    file gets the write bits of its directory (group-writable in a group's shared cache), and
    someone else's that we may not write is opened read-only (shared locks still work).
    A lock that cannot be opened at all is a LockUnavailableError, never a silent skip."""
    try:
        where = split_private(path)
        if where is None:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            return _open_in(path, None)
        root, parts, name = where
        dir_fd = open_private_dir(root, parts)
        try:
            return _open_in(name, dir_fd)
        finally:
            os.close(dir_fd)
    except CachePlusError:
        raise
    except OSError as exc:
        raise LockUnavailableError(path, exc.strerror or str(exc)) from None


def _open_in(name: str, dir_fd: int | None) -> int:
    try:
        fd = open_nofollow(name, os.O_RDWR | os.O_CREAT | os.O_EXCL, dir_fd=dir_fd)
    except FileExistsError:
        try:
            return open_nofollow(name, os.O_RDWR, dir_fd=dir_fd)
        except PermissionError:
            return open_nofollow(name, os.O_RDONLY | os.O_NONBLOCK, dir_fd=dir_fd)
    try:
        parent = os.fstat(dir_fd) if dir_fd is not None else os.stat(os.path.dirname(name) or ".")
        extra = shared_bits(parent.st_mode, directory=False)
        if extra:
            os.fchmod(fd, stat.S_IMODE(os.fstat(fd).st_mode) | extra)
    except OSError:
        pass
    return fd


def _busy(exc: OSError) -> bool:
    return exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)


class _Held:
    """One lock file of this process: its descriptor, the OS lock on it, the threads in it."""

    def __init__(self, path: str, kind: str):
        self.path = path
        self.kind = kind
        import threading  # only where a lock is taken: a `list` imports this module, takes none

        self.cond = threading.Condition(threading.Lock())
        self.readers = 0
        self.writer = False
        self.fd: int | None = None
        self.os_mode: str | None = None  # "sh" | "ex" while the OS lock is held
        self.users = 0  # holders plus waiters: the entry leaves the registry at 0


_registry: dict[str, _Held] = {}
_registry_lock = _thread.allocate_lock()  # what threading.Lock() returns


def _key(path: str) -> str:
    return os.path.realpath(path)


def _lookup(path: str) -> _Held | None:
    """The registry's entry for ``path`` (the caller holds ``_registry_lock``). ``realpath``
    costs an ``lstat`` per path component, and ``clean`` asks about every entry it plans to
    remove: skip it when no lock of this process has ``path``'s file name, which its real path
    keeps unless that last component is itself a symlink (then look it up in full)."""
    if not _registry:
        return None
    base = os.path.basename(path)
    if (
        base not in ("", ".", "..")
        and not any(k.endswith(os.sep + base) for k in _registry)
        and not os.path.islink(path)
    ):
        return None
    return _registry.get(_key(path))


def _os_try(held: _Held, exclusive: bool) -> bool:
    """One non-blocking attempt at the OS lock in the given mode."""
    fd = held.fd
    if held.kind == FLOCK:
        op = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(fd, op | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if _busy(exc):
                return False
            raise
    op = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    try:
        fcntl.lockf(fd, op | fcntl.LOCK_NB)  # whole file, from offset 0
        return True
    except OSError as exc:
        if _busy(exc) and exc.errno != errno.EBADF:
            return False
        if exc.errno == errno.EBADF:  # a read-only descriptor cannot hold a write lock
            raise PermissionError(
                errno.EACCES,
                f"{held.path} is not writable by this user (ask its owner to "
                "make the cache group-writable: chmod -R g+w, setgid directories)",
            ) from None
        raise


class FileLock:
    """A lock on ``path`` (created if needed), exclusive or shared, with a timeout.

    ``timeout=0`` tries once; ``None`` waits forever. ``on_wait`` is called once with a message
    when the lock is busy, so a verb can say what it waits for. ``kind`` is ``"record"`` (POSIX
    record lock, the default: ours and mamba's) or ``"flock"`` (rattler's ``.cache.lock``).
    Threads of one process exclude each other like processes do.
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
        kind: str = RECORD,
    ):
        if layout is not None and not path.startswith(layout.locks_dir):
            # Lock files of our own always live in the private locks dir.
            base = name or os.path.basename(path)
            path = os.path.join(layout.locks_dir, base + ".lock")
        self.path = path
        self.shared = shared
        self.timeout = timeout
        self.on_wait = on_wait
        self.kind = kind
        self._held: _Held | None = None

    @property
    def fd(self) -> int | None:
        return self._held.fd if self._held is not None else None

    def acquire(self) -> FileLock:
        if self._held is not None:
            raise RuntimeError(f"{self.path}: this FileLock is already held")
        key = _key(self.path)
        with _registry_lock:
            held = _registry.get(key)
            if held is None:
                held = _registry[key] = _Held(self.path, self.kind)
            held.users += 1
        try:
            self._acquire(held)
        except BaseException:
            self._leave(key, held)
            raise
        self._held = held
        return self

    def _acquire(self, held: _Held) -> None:
        start = time.monotonic()
        told = False
        delay = 0.01
        exclusive = not self.shared
        with held.cond:
            while True:
                # first the other threads of this process, then the other processes
                if not held.writer and (not exclusive or held.readers == 0):
                    if held.fd is not None and not held.readers and not _same_file(held):
                        # removed (with its entry) since it was opened: lock the new file
                        _close(held)
                    if held.fd is None:
                        held.fd = _open_lock_file(held.path)
                    want = "ex" if exclusive else "sh"
                    if held.os_mode == want or (held.os_mode == "ex" and not exclusive):
                        break
                    if _os_try(held, exclusive):
                        held.os_mode = want
                        if _same_file(held):
                            break
                        _close(held)  # removed while we waited for it
                        continue
                waited = time.monotonic() - start
                if self.timeout is not None and waited >= self.timeout:
                    holder = (
                        "another thread of this process"
                        if held.writer or (exclusive and held.readers)
                        else "another process"
                    )
                    raise LockTimeoutError(self.path, holder, waited)
                if not told and self.on_wait is not None:
                    self.on_wait(f"waiting for the lock on {self.path} ...")
                    told = True
                # woken early by a release in this process; polls the OS lock meanwhile
                held.cond.wait(delay)
                delay = min(delay * 2, 0.25)
            if exclusive:
                held.writer = True
            else:
                held.readers += 1

    def _leave(self, key: str, held: _Held) -> None:
        with _registry_lock:
            held.users -= 1
            if held.users > 0:
                return
            _registry.pop(key, None)
            with held.cond:
                _close(held)

    def release(self) -> None:
        held = self._held
        if held is None:
            return
        self._held = None
        with held.cond:
            if self.shared:
                held.readers -= 1
            else:
                held.writer = False
            if held.readers and held.os_mode == "ex" and held.kind == RECORD:
                # readers remain: downgrade, so other processes' readers get in
                try:
                    fcntl.lockf(held.fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    held.os_mode = "sh"
                except OSError:
                    pass
            held.cond.notify_all()
        self._leave(_key(self.path), held)

    def downgrade(self) -> None:
        """Exclusive to shared in place: no other writer can get in between (a POSIX record
        lock converts atomically), while readers of other processes may now join."""
        held = self._held
        if held is None or self.shared:
            return
        with held.cond:
            if held.os_mode == "ex" and held.kind == RECORD:
                fcntl.lockf(held.fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                held.os_mode = "sh"
            held.writer = False
            held.readers += 1
            self.shared = True
            held.cond.notify_all()

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _close(held: _Held) -> None:
    """Drop the OS lock and the descriptor (call with ``held.cond`` held)."""
    if held.fd is None:
        return
    fd, held.fd, held.os_mode = held.fd, None, None
    try:
        if held.kind == FLOCK:
            fcntl.flock(fd, fcntl.LOCK_UN)
        else:
            fcntl.lockf(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _same_file(held: _Held) -> bool:
    """Whether the descriptor is still the file at the path (lock files go with their entry)."""
    try:
        here, there = os.fstat(held.fd), os.lstat(held.path)
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


def _registered_fd(path: str) -> int | None:
    with _registry_lock:
        held = _lookup(path)
        return held.fd if held is not None else None


def lock_conda_byte(fd: int, timeout: float | None = 10.0) -> None:
    """Take conda's lock on a ``.partial`` file: byte 21, exclusive, as
    ``conda/gateways/disk/lock.py``."""
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


def lock_held(path: str) -> bool:
    """Whether anyone holds one of our locks on ``path`` (an entry or cache lock): a thread of
    this process (the registry knows) or another process, on this host or another (F_GETLK)."""
    with _registry_lock:
        held = _lookup(path)
        if held is not None and (held.writer or held.readers):
            return True
    return _probe_record_lock(path, 0, 0)


def flock_held(path: str) -> bool:
    """Whether another process holds an ``flock`` on ``path`` (rattler's ``.cache.lock``)."""
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


def entry_busy(base: str) -> str | None:
    """Why another tool is writing the cache entry at ``base`` (its path without extension)
    right now, if one is: conda's byte lock on a ``.partial`` download, mamba's record lock or an
    ``flock`` (rattler's) on a ``.lock`` beside it. clean, remove and repair all ask this."""
    for ext in (".conda", ".tar.bz2"):
        partial = base + ext + ".partial"
        if os.path.lexists(partial) and conda_byte_locked(partial):
            return f"being downloaded (conda's lock on {os.path.basename(partial)} is held)"
    for lock in (base + ".lock", *(base + ext + ".lock" for ext in (".conda", ".tar.bz2"))):
        if os.path.lexists(lock) and (mamba_locked(lock) or flock_held(lock)):
            return f"being written (another tool holds {os.path.basename(lock)})"
    return None


def _probe_record_lock(path: str, length: int, start: int) -> bool:
    # F_GETLK reports a conflicting lock held by *another* process without taking one. It runs
    # on the registry's descriptor when this process has the file open: opening and closing a
    # second descriptor would drop this process's own record locks on it.
    own = _registered_fd(path)
    if own is not None:
        return _getlk(own, length, start)
    try:
        fd = os.open(path, os.O_RDONLY | NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        return _getlk(fd, length, start)
    finally:
        os.close(fd)


def _getlk(fd: int, length: int, start: int) -> bool:
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


# A verb's --lock-timeout, for the locks taken deep below it by helpers that choose their own
# wait (repair re-extracts and removes through them): set for the verb's run, read by the
# helpers where they would otherwise use their default.
_LOCK_TIMEOUT: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "conda_cache_plus_lock_timeout", default=None
)
# "the verb's --lock-timeout, else my own default": what a helper's timeout defaults to
DEFAULT_WAIT = object()


@contextmanager
def lock_timeout(seconds: float | None):
    """Within this block, helpers wait at most ``seconds`` for a busy cache lock (None: their
    own default)."""
    token = _LOCK_TIMEOUT.set(seconds)
    try:
        yield
    finally:
        _LOCK_TIMEOUT.reset(token)


def wait_limit(default: float | None) -> float | None:
    """How long a helper waits for a busy lock: the verb's --lock-timeout, else ``default``."""
    chosen = _LOCK_TIMEOUT.get()
    return default if chosen is None else chosen


@contextmanager
def cache_write_lock(layout, *, timeout=DEFAULT_WAIT, on_wait=None):
    """Exclusive hold on a whole pkgs dir while removing: ours, plus mamba's and rattler's locks
    when those files exist, so a concurrent mamba/pixi waits for us and we wait for them.
    ``timeout`` (seconds, None for ever): by default the verb's --lock-timeout, else 60."""
    if timeout is DEFAULT_WAIT:
        timeout = wait_limit(60.0)
    held: list[FileLock] = []
    try:
        try:
            held.append(FileLock(layout.cache_lock, timeout=timeout, on_wait=on_wait).acquire())
        except UnsafePathError:
            # A link planted in place of our private dir or lock file: no fetch of ours can run
            # on this cache (each refuses the same link), so there is nobody to exclude, and
            # `clean --temp` must still be able to remove the link.
            pass
        if os.path.exists(layout.rattler_lock):
            held.append(
                FileLock(
                    layout.rattler_lock, timeout=timeout, on_wait=on_wait, kind=FLOCK
                ).acquire()
            )
        if os.path.exists(layout.mamba_lock):
            try:
                held.append(FileLock(layout.mamba_lock, timeout=timeout).acquire())
            except LockTimeoutError as exc:
                raise LockTimeoutError(layout.mamba_lock, "mamba", exc.waited) from None
        yield
    finally:
        for lock in reversed(held):
            lock.release()
