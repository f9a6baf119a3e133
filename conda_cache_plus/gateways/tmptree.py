"""Temporary extraction trees: beside their destination, each under a lock held for its life.

An extraction into ``<parent>/<entry>`` builds ``<parent>/.cpx-tmp-<entry>-<random>/pkg`` and
renames ``pkg`` onto the destination, so the rename never crosses a file system and no shared
private directory has to be writable by every user of a group-shared cache: whoever may write
the destination's directory may create a temporary tree there. The outer directory is ``0700``
while the tree is built (nobody else can plant a link in it); the tree gets the umask's modes.

The outer directory holds ``lock``, locked (:class:`~conda_cache_plus.gateways.locks.FileLock`) from
just after the directory is created until it is removed. A tree whose lock is free belongs to a
process that died (kill -9, power loss): the next extraction in that directory, ``clean --temp``
and ``info`` see it as dead at once, not after an age threshold. A tree without its lock file
is in the moment between ``mkdtemp`` and the lock, unless its creator (the process id and
host named in the tree's name) is gone, or it is older than ``BIRTH_GRACE`` seconds (a creator
on another host, whose process we cannot ask).

conda's cache scan only takes directories holding ``info/index.json`` for packages; the tree
sits one level down, so conda never mistakes a temporary tree for an entry.
"""

from __future__ import annotations

import _thread
import os
import time

from ..exceptions import CachePlusError

# A scan only asks is_tmp_name() and, for leftovers, probe(): the lock machinery, tempfile,
# socket and hashlib are imported where a tree is made or probed (a `list` needs none of them).

PREFIX = ".cpx-tmp-"


def _rmtree(path: str) -> None:
    import shutil  # here: it loads bz2, lzma and fnmatch, and a scan only asks is_tmp_name()

    shutil.rmtree(path, ignore_errors=True)


LOCK_NAME = "lock"
TREE_NAME = "pkg"
BIRTH_GRACE = 60.0

LIVE = "live"
DEAD = "dead"
YOUNG = "young"  # no lock file yet, and recent: being created
FOREIGN = "foreign"  # another user's tree we cannot look into

# Trees of this process: never probed (a probe of a POSIX record lock from the process holding
# it would succeed, and closing the probe would drop the holder's lock).
_live: set[str] = set()
_swept: set[str] = set()
_mutex = _thread.allocate_lock()  # threading.Lock, without importing threading


def is_tmp_name(name: str) -> bool:
    return name.startswith(PREFIX)


# "<pid>@<host hash>" in a tree's name says who made it: a tree without its lock file whose
# creator is a process of this host that no longer exists was killed before it took its lock
_host_tag: str | None = None


def _host() -> str:
    global _host_tag
    if _host_tag is None:
        import hashlib
        import socket

        _host_tag = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
    return _host_tag


def __getattr__(name: str):
    if name == "_HOST":  # computed when first asked
        return _host()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _owner_tag() -> str:
    return f"{os.getpid()}@{_host()}"


def _creator_gone(path: str) -> bool:
    parts = os.path.basename(path).rsplit("-", 2)
    pid, _, host = parts[1].partition("@") if len(parts) == 3 else ("", "", "")
    if host != _host() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # exists (another user's process)
    return False


class TempTree:
    """A temporary tree beside ``dest``; :attr:`tree` does not exist yet (the extractor makes
    it, so its mode follows the umask). Use as a context manager, or call :meth:`remove`."""

    def __init__(self, dest: str):
        import tempfile

        from .locks import FileLock

        parent, entry = os.path.split(os.path.abspath(dest))
        # keep the name well under NAME_MAX whatever the entry's length
        self.path = tempfile.mkdtemp(prefix=f"{PREFIX}{entry[:100]}-{_owner_tag()}-", dir=parent)
        with _mutex:
            _live.add(self.path)
        self._lock = FileLock(os.path.join(self.path, LOCK_NAME), timeout=0)
        try:
            self._lock.acquire()
        except BaseException:
            self._forget()
            _rmtree(self.path)
            raise
        self.tree = os.path.join(self.path, TREE_NAME)

    def _forget(self) -> None:
        with _mutex:
            _live.discard(self.path)

    def scratch(self, name: str) -> str:
        """A path inside the outer directory (e.g. to move an old entry aside)."""
        return os.path.join(self.path, name)

    def remove(self) -> None:
        try:
            _rmtree(self.path)
        finally:
            self._lock.release()
            self._forget()

    def __enter__(self) -> TempTree:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def probe(path: str, now: float | None = None) -> str:
    """:data:`LIVE`, :data:`DEAD`, :data:`YOUNG` or :data:`FOREIGN` for the tree at ``path``."""
    from .locks import FileLock

    with _mutex:
        if path in _live:
            return LIVE
    lock = os.path.join(path, LOCK_NAME)
    try:
        os.lstat(lock)
    except FileNotFoundError:
        try:
            age = (time.time() if now is None else now) - os.lstat(path).st_mtime
        except OSError:
            return DEAD
        return YOUNG if age < BIRTH_GRACE and not _creator_gone(path) else DEAD
    except PermissionError:
        return FOREIGN
    except OSError:
        return DEAD
    try:
        held = FileLock(lock, timeout=0).acquire()
    except CachePlusError:
        return LIVE
    except PermissionError:
        return FOREIGN
    except OSError:
        return DEAD
    held.release()
    return DEAD


def remove_dead(path: str) -> bool:
    """Remove the tree at ``path`` if its owner is gone; True if it was removed."""
    from .locks import FileLock

    with _mutex:
        if path in _live:
            return False
    lock = os.path.join(path, LOCK_NAME)
    if not os.path.lexists(lock):
        if probe(path) != DEAD:
            return False
        _rmtree(path)
        return not os.path.lexists(path)
    try:
        held = FileLock(lock, timeout=0).acquire()
    except (CachePlusError, OSError):
        return False
    try:
        _rmtree(path)
    finally:
        held.release()
    return not os.path.lexists(path)


def sweep(parent: str) -> list[str]:
    """Remove the dead trees directly under ``parent``; returns their paths."""
    removed = []
    try:
        with os.scandir(parent) as it:
            names = [de.name for de in it if de.name.startswith(PREFIX)]
    except OSError:
        return removed
    for name in names:
        path = os.path.join(parent, name)
        if probe(path) == DEAD and remove_dead(path):
            removed.append(path)
    return removed


def sweep_once(parent: str) -> None:
    """:func:`sweep` the first time this process extracts into ``parent``: a tree left by a
    crash is removed by the next extraction, at the cost of one listing per directory."""
    with _mutex:
        if parent in _swept:
            return
        _swept.add(parent)
    sweep(parent)
