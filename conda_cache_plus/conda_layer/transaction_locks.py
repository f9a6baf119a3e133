"""Per-entry reader/writer locks around a conda transaction, so that parallel installs on one
package cache never break each other (issue 27).

conda takes no lock on its package cache (``conda/gateways/disk/lock.py`` locks only ``.partial``
downloads): ``ExtractPackageAction`` deletes an entry before it extracts it again,
``CacheUrlAction`` moves an archive aside while it fetches it again, and a process whose view of the
cache is older than another's re-extracts what that other one is linking from. The locks are the
files ``conda cache fetch`` and ``clean`` already use
(``<pkgs>/.conda-cache-plus/locks/<entry>.lock``, POSIX record locks):

- an install that links from an entry holds it *shared*, from the end of its solve until its
  link is done;
- an install that downloads or extracts an entry holds it *exclusively* from the end of its
  solve until its extractions are done (the pre-transaction action), then shared.

Which of the two an entry needs is conda's own decision
(``ProgressiveFetchExtract.make_actions_for_record``), taken while the lock is held and after
conda's in-memory view of the entry was brought up to date with the disk: an install that waited
for another one reuses what that one has just completed. Locks are taken in one order (cache,
then entry name), so no two installs wait for each other in a circle, and every wait is bounded:
after the timeout the install goes on as conda without this plugin would, and says so. A process
killed with ``kill -9`` loses its locks with it (the kernel drops record locks).
"""

from __future__ import annotations

import atexit
import functools
import json
import logging
import os
import sys
import threading

TIMEOUT_ENV = "CONDA_CACHE_PLUS_LOCK_TIMEOUT"
DEFAULT_TIMEOUT = 600.0  # seconds: another install may be downloading a large package
SAY_AFTER = 1.0  # seconds of waiting before an install says what it waits for
_SCAN_LOGGER = "conda.core.package_cache_data"


def lock_timeout() -> float:
    try:
        return max(0.0, float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT)))
    except ValueError:
        return DEFAULT_TIMEOUT


class Hold:
    """What this process holds on one entry for its transaction."""

    def __init__(self, lock, prec, entry_dir: str):
        self.lock = lock  # a FileLock, or None when the install goes on unprotected
        self.prec = prec
        self.entry_dir = entry_dir

    @property
    def exclusive(self) -> bool:
        return self.lock is not None and not self.lock.shared

    def write_record(self, tree: str) -> None:
        """``info/repodata_record.json`` into the complete temporary tree, before it is renamed
        into place: another process's cache scan never sees the entry without its record (and
        would then write one without sha256). conda then writes the same record again, by
        truncating and rewriting the file; cache scans are kept out until it has (the record
        carries a mark conda's does not), so none reads it half written."""
        try:
            from conda.models.records import PackageRecord

            with open(os.path.join(tree, "info", "index.json"), "rb") as fh:
                index = json.loads(fh.read())
            record = PackageRecord.from_objects(self.prec, index).dump()
            record[PENDING_MARK] = True
            with open(os.path.join(tree, "info", "repodata_record.json"), "w") as fh:
                json.dump(record, fh)
        except Exception:  # conda writes it anyway; this only narrows a window
            return
        _keep_scans_out_until_rewritten(self.entry_dir)


PENDING_MARK = "_conda_cache_plus_pending"  # conda's own record never has it
REWRITE_WAIT = 60.0  # seconds; conda rewrites the record right after the extraction


def _keep_scans_out_until_rewritten(entry_dir: str) -> None:
    from ..gateways.locks import FileLock

    pkgs_dir = os.path.dirname(entry_dir)
    try:
        lock = FileLock(_scan_lock_path(pkgs_dir), timeout=lock_timeout()).acquire()
    except Exception:
        return
    record = os.path.join(entry_dir, "info", "repodata_record.json")
    threading.Thread(target=_release_when_rewritten, args=(lock, record), daemon=True).start()


def _release_when_rewritten(lock, record: str) -> None:
    import time

    deadline = time.monotonic() + REWRITE_WAIT
    try:
        while time.monotonic() < deadline:
            try:
                with open(record, "rb") as fh:
                    data = json.loads(fh.read())
                if isinstance(data, dict) and PENDING_MARK not in data:
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.005)
    finally:
        lock.release()


def _scan_lock_path(pkgs_dir: str) -> str:
    from ..model.cache_paths import CacheLayout

    return os.path.join(CacheLayout(pkgs_dir).private, "scan.lock")


_holds: dict[str, Hold] = {}
_others: list = []  # mamba's pkgs.lock, taken shared
_fetching: list = []  # the scan lock, exclusive while extracting in place
_mutex = threading.RLock()


def _key(path: str) -> str:
    return os.path.normpath(os.path.abspath(os.fspath(path)))


def entry_hold(entry_dir) -> Hold | None:
    """This process's hold on ``entry_dir`` for its transaction: with its lock, or without one
    when the transaction gave up waiting for it (then nothing here waits for it again)."""
    with _mutex:
        return _holds.get(_key(entry_dir))


def release_all() -> None:
    with _mutex:
        holds = list(_holds.values())
        _holds.clear()
        others = list(_others) + list(_fetching)
        _others.clear()
        _fetching.clear()
    for hold in holds:
        if hold.lock is not None:
            hold.lock.release()
    for lock in others:
        lock.release()


def downgrade_all() -> None:
    """The extractions are done: let other installs reuse the entries (and read them)."""
    with _mutex:
        holds = list(_holds.values())
        fetching = list(_fetching)
        _fetching.clear()
    for lock in fetching:
        lock.release()
    for hold in holds:
        if hold.exclusive:
            try:
                hold.lock.downgrade()
            except OSError:
                pass


def _say(text: str) -> None:
    try:
        sys.stderr.write(f"conda-cache-plus: {text}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


class EntryBusy(Exception):
    """Raised to conda's cache scan for an entry another install is writing right now."""


def refuse_busy_in_scan(package: str) -> None:
    """Called by our extractor when the entry is locked by another process. Inside conda's
    cache scan (``PackageCacheData._make_single_record``) it refuses at once: the scan skips
    the entry (and this plugin brings it in later, under its lock); waiting there would hold
    up the scan, and the record the scan writes afterwards would lack the sha256. Anywhere
    else (an explicit install) it returns, and the extractor waits for the lock as before."""
    if _in_scan():
        raise _busy_error()(
            f"conda-cache-plus: {package} is being written by another process; "
            "it is used once that one is done"
        )


def refuse_present_in_scan(package: str, dest: str) -> None:
    """Our extractor, called by conda's cache scan, found a complete entry where the scan saw
    none a moment before (another install has just renamed it there): the scan skips it rather
    than extract over it and write a record without sha256; this plugin brings it in later."""
    if _in_scan():
        raise _busy_error()(
            f"conda-cache-plus: {package} has just been installed by another process"
        )


def _in_scan() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_name == "_make_single_record":
            return True
        frame = frame.f_back
    return False


@functools.cache
def _busy_error() -> type:
    from conda.auxlib.exceptions import ValidationError

    class EntryBusyError(EntryBusy, ValidationError):
        def __init__(self, msg: str):
            Exception.__init__(self, msg)
            self.msg = msg

        def __str__(self) -> str:
            return self.msg

    _quiet_scan_warnings()
    return EntryBusyError


class _DropBusy(logging.Filter):
    # conda's scan logs a WARNING for every record it cannot make; ours is not a problem
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(isinstance(a, EntryBusy) for a in (record.args or ()))


@functools.cache
def _release_at_exit() -> None:
    atexit.register(release_all)


@functools.cache
def _quiet_scan_warnings() -> None:
    logging.getLogger(_SCAN_LOGGER).addFilter(_DropBusy())


# -- the hooks --------------------------------------------------------------------------------


def post_solve(repodata_fn, unlink_precs, link_precs) -> None:
    """``conda_post_solves``: lock every entry the transaction will link from."""
    release_all()  # a new solve is a new transaction
    try:
        from conda.base.context import context

        if context.dry_run or getattr(context, "no_lock", False) or not link_precs:
            return
    except Exception:
        return
    _quiet_scan_warnings()
    _release_at_exit()
    try:
        _acquire(link_precs)
    except Exception as exc:  # a lock problem must never fail an install conda can do
        _say(f"going on without cache locks ({type(exc).__name__}: {exc})")


def _acquire(link_precs) -> None:
    from conda.common.path import strip_pkg_extension
    from conda.core.package_cache_data import PackageCacheData

    from ..model.cache_paths import CacheLayout

    try:
        cache = PackageCacheData.first_writable()
    except Exception:
        return  # conda says itself that no cache is writable
    pkgs_dir = cache.pkgs_dir
    if not os.path.isdir(pkgs_dir) or not hasattr(cache, "_make_single_record"):
        return
    layout = CacheLayout(pkgs_dir)
    timeout = lock_timeout()
    scan_lock_path = _scan_lock_path(pkgs_dir)
    # conda scans the caches on first use, and its scan deletes and re-extracts an entry it
    # finds half there: scan now, while this process holds no entry lock (a scan that meets an
    # entry another install is writing never waits while holding one), and while no install
    # that extracts in place (conda's own extractor) is in its fetch phase
    scan_lock = _lock(scan_lock_path, "the cache", True, timeout)
    try:
        for pcd in PackageCacheData.writable_caches():
            try:
                for _rec in pcd.iter_records():
                    break
            except Exception:
                # an entry another install is changing; each entry of this transaction is
                # looked at again under its lock
                pass
    finally:
        if scan_lock is not None:
            scan_lock.release()
    wanted: dict[str, tuple] = {}
    for prec in link_precs:
        url = prec.get("url", None) or ""
        basename = os.path.basename(url.split("#", 1)[0]) or prec.get("fn", None) or ""
        entry = strip_pkg_extension(basename)[0] if basename else ""
        if entry and entry not in (".", "..") and os.sep not in entry and "/" not in entry:
            wanted.setdefault(entry, (prec, basename))
    if os.path.exists(layout.mamba_lock):
        lock = _lock(layout.mamba_lock, "the cache (mamba holds pkgs.lock)", True, timeout)
        if lock is not None:
            with _mutex:
                _others.append(lock)
    writes = False
    for entry in sorted(wanted):
        prec, basename = wanted[entry]
        entry_dir = os.path.join(pkgs_dir, entry)
        hold = Hold(_take(cache, layout, entry, prec, basename, timeout), prec, entry_dir)
        writes = writes or hold.exclusive
        with _mutex:
            _holds[_key(entry_dir)] = hold
    if writes and not _atomic_extractor():
        # conda's own extractor writes into the entry in place, where another install's cache
        # scan would take it for a broken one: no scan while this install fetches (last in the
        # order; scans hold it only while scanning, never waiting for anything else)
        lock = _lock(
            scan_lock_path, "the cache (another install extracts in place)", False, timeout
        )
        if lock is not None:
            with _mutex:
                _fetching.append(lock)


def _atomic_extractor() -> bool:
    """Whether this conda extracts with our extractor (atomic: tmp tree, then rename)."""
    # by the module of its function: the extractor module imports this one, not the reverse
    ours = f"{__package__}.extractor"
    try:
        from conda.base.context import context

        manager = context.plugin_manager
        return all(
            getattr(manager.get_package_extractor(f"x{ext}").extract, "__module__", "") == ours
            for ext in (".conda", ".tar.bz2")
        )
    except Exception:  # conda < 26.1: no extractor plugins, cph extracts in place
        return False


def _lock(path: str, what: str, shared: bool, timeout: float):
    from ..exceptions import LockTimeoutError, LockUnavailableError, UnsafePathError
    from ..gateways.locks import FileLock

    timer = None

    def waiting(_msg: str) -> None:
        # said only when the wait is long enough to notice
        nonlocal timer
        timer = threading.Timer(
            SAY_AFTER, _say, [f"waiting for {what} (another install is writing it) ..."]
        )
        timer.daemon = True
        timer.start()

    try:
        return FileLock(path, shared=shared, timeout=timeout, on_wait=waiting).acquire()
    except LockTimeoutError as exc:
        _say(
            f"gave up waiting for {what} after {exc.waited:.0f} s; going on without its lock, "
            f"as conda without conda-cache-plus would ({TIMEOUT_ENV} sets the wait)"
        )
    except (LockUnavailableError, UnsafePathError, OSError):
        pass  # another user's private directory in a shared cache: conda's behaviour
    finally:
        if timer is not None:
            timer.cancel()
    return None


def _take(cache, layout, entry: str, prec, basename: str, timeout: float):
    try:
        path = layout.entry_lock(entry)
    except Exception:  # a name our layout refuses (hostile): conda's behaviour
        return None
    lock = _lock(path, entry, True, timeout)
    if lock is None:
        return None
    if _reusable(cache, prec, entry, basename):
        return lock
    lock.release()
    lock = _lock(path, entry, False, timeout)
    if lock is not None and _reusable(cache, prec, entry, basename):
        lock.downgrade()  # completed by another install while this one waited
    return lock


def _complete(entry_dir: str) -> bool:
    try:
        with open(os.path.join(entry_dir, "info", "repodata_record.json"), "rb") as fh:
            record = json.loads(fh.read())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and os.path.isfile(
        os.path.join(entry_dir, "info", "index.json")
    )


def _conda_reuses(prec) -> bool:
    from conda.core.package_cache_data import ProgressiveFetchExtract

    cache_action, extract_action = ProgressiveFetchExtract.make_actions_for_record(prec)
    return cache_action is None and extract_action is None


def _reusable(cache, prec, entry: str, basename: str) -> bool:
    """Whether conda will link ``prec`` from what is in the cache now, without writing it.
    When conda's in-memory view predates an entry another install has completed since, the
    entry is added to that view first (conda would otherwise fetch and extract it again,
    deleting it under that install)."""
    if _conda_reuses(prec):
        return True
    entry_dir = os.path.join(cache.pkgs_dir, entry)
    if not _complete(entry_dir):
        return False
    name = basename if os.path.isfile(os.path.join(cache.pkgs_dir, basename)) else entry
    try:
        record = cache._make_single_record(name)  # reads the entry's repodata_record.json
    except Exception:
        return False
    if record is None:
        return False
    cache._package_cache_records[record] = record
    return _conda_reuses(prec)


@functools.cache
def transaction_action_classes() -> tuple[type, type]:
    """conda ``Action`` classes for ``conda_pre/post_transaction_actions`` (conda >= 26.1)."""
    from conda.core.path_actions import Action

    class _LockAction(Action):
        def verify(self):
            self._verified = True
            return None

        def reverse(self):
            pass

        def cleanup(self):
            pass

    class DowngradeCacheLocks(_LockAction):
        def execute(self):
            downgrade_all()

    class ReleaseCacheLocks(_LockAction):
        def execute(self):
            release_all()

    return DowngradeCacheLocks, ReleaseCacheLocks
