"""The fetch engine: our ``ProgressiveFetchExtract`` (conda's is in
``conda/core/package_cache_data.py``).

:func:`plan` decides, for each package reference, what the caches need, like conda but checking
sha256 where it is known:

- ``none``: an extracted entry in some cache agrees with the reference (size, md5, sha256 where
  both sides know them; the file name; a URL is recorded);
- ``extract``: a writable cache holds the archive and it verifies → extract it there;
- ``copy``: a read-only cache holds the archive and it verifies → hard-link (or copy) it into the
  first writable cache, then extract;
- ``download``: anything else, into the first writable cache (resuming a partial).

:func:`execute` runs the plan: downloads and extractions overlap in two pools, both largest
first (an archive waiting for extraction goes before the smaller ones queued earlier: the big
packages are the longest jobs, and one started last is the run's tail);
each package is worked on under a per-archive lock and re-checked once the lock is held, so
several processes fetching the same package do the work once and all succeed; the whole run
holds a shared lock on each cache it writes (``conda cache clean`` takes it exclusively).
Ctrl-C cancels what has not started, stops transfers (their partials stay resumable) and lets
running extractions finish (they are atomic either way).

On Linux the extractions run in a small pool of forked worker processes (forked before any
thread or lock of the run exists), elsewhere in threads. Extraction is many small syscalls with
Python work between them; in threads sharing one GIL each syscall hands the GIL over and waits
to get it back (measured: ~360,000 futex calls for 15,000 files), while processes keep every
core busy without that traffic (docs/benchmarks.md, "Fetch end to end").
"""

from __future__ import annotations

import concurrent.futures as cf
import heapq
import itertools
import json
import os
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

from ..exceptions import (
    ArchiveError,
    CachePlusError,
    ChecksumMismatchError,
    DownloadCancelled,
    LockTimeoutError,
    LockUnavailableError,
    RefusedArchiveError,
    SizeMismatchError,
)
from ..gateways.download import (
    copy_or_link,
    download,
    expected_checksum,
    strip_fragment,
)
from ..gateways.locks import FileLock
from ..model.cache_paths import CacheLayout
from ..model.filenames import is_subdir_name
from ..model.names import check_package_fn
from ..model.sizes import human_bytes
from .plan import COPY, EXTRACT, NONE, FetchPlan, PlanItem, _agrees, _archive_ok, archive_digests
from .refs import PackageRef

# Outcomes, one per package; they add up to the number of packages.
REUSED = "reused"


DOWNLOADED = "downloaded"


COPIED = "copied"


EXTRACTED = "extracted"


FAILED = "failed"


CANCELLED = "cancelled"


OUTCOMES = (REUSED, DOWNLOADED, COPIED, EXTRACTED, FAILED, CANCELLED)


# -- execution -------------------------------------------------------------------------------------
@dataclass
class ItemResult:
    fn: str
    url: str
    action: str
    outcome: str = CANCELLED
    pkgs_dir: str = ""
    extracted_dir: str | None = None
    transferred: int = 0
    resumed_from: int = 0
    extracted: bool = False
    error: str | None = None
    error_type: str | None = None
    note: str | None = None

    def to_json(self) -> dict:
        return {
            "fn": self.fn,
            "url": self.url,
            "action": self.action,
            "outcome": self.outcome,
            "pkgs_dir": self.pkgs_dir,
            "extracted_dir": self.extracted_dir,
            "bytes_downloaded": self.transferred,
            "bytes_resumed": self.resumed_from,
            "extracted": self.extracted,
            "error": self.error,
            "error_type": self.error_type,
            "note": self.note,
        }


@dataclass
class FetchSummary:
    items: list[ItemResult] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    def count(self, outcome: str) -> int:
        return sum(1 for i in self.items if i.outcome == outcome)

    @property
    def failures(self) -> list[ItemResult]:
        return [i for i in self.items if i.outcome == FAILED]

    @property
    def bytes_downloaded(self) -> int:
        return sum(i.transferred for i in self.items)

    @property
    def bytes_resumed(self) -> int:
        return sum(i.resumed_from for i in self.items)

    @property
    def extractions(self) -> int:
        return sum(1 for i in self.items if i.extracted)

    def to_json(self) -> dict:
        return {
            "counts": {o: self.count(o) for o in OUTCOMES},
            "total": len(self.items),
            "extractions": self.extractions,
            "bytes_downloaded": self.bytes_downloaded,
            "bytes_resumed": self.bytes_resumed,
            "seconds": round(self.seconds, 3),
            "interrupted": self.interrupted,
        }


def record_for(ref: PackageRef, url: str, digests: tuple[int, str, str]) -> dict:
    """The fields that go into ``info/repodata_record.json`` on top of ``info/index.json``."""
    rec = dict(ref.extra or {})
    size, sha, md5 = digests
    base = url.rsplit("/", 1)[0]
    rec.update(fn=ref.fn, url=url, md5=md5, sha256=sha, size=size)
    # conda records a URL-fetched package's channel as the URL's directory (subdir included).
    rec.setdefault("channel", base)
    subdir = base.rsplit("/", 1)[-1]
    if is_subdir_name(subdir):
        rec.setdefault("subdir", subdir)
    return rec


def _entry_agrees(layout: CacheLayout, ref: PackageRef) -> bool:
    """After taking the lock: did another process already put this package here?"""
    try:
        with open(layout.record_json(ref.dist), "rb") as fh:
            data = json.load(fh)
    except (OSError, ValueError, RecursionError):
        return False
    if not isinstance(data, dict) or not data.get("url"):
        return False
    if not os.path.isfile(layout.index_json(ref.dist)):
        return False
    if not expected_checksum(ref.sha256, ref.md5) and ref.size is None:
        return data.get("fn") == ref.fn
    return _agrees(ref, data)


class _Progress:
    """Per-package bars plus one overall bar, through the run's reporter."""

    def __init__(self, run, items: list[PlanItem]):
        self.run = run
        self.lock = threading.Lock()
        self.total = sum(i.ref.size or 0 for i in items if i.action != NONE) or 1
        self.count = sum(1 for i in items if i.action != NONE)
        self.parts: dict[str, float] = {}
        self.cm = None
        self._cm_owner = None
        self.overall = None
        self.enabled = not (run.json or run.quiet or run.verbose)

    def __enter__(self):
        if self.run.conda or self.run.out.live:
            self._cm_owner = self.run.out.progress_group()
            self.cm = self._cm_owner.__enter__()
            expect = getattr(self.cm, "expect", None)
            if expect is not None:  # the live overall line: "3 of 20, 1.2 MiB of 40.0 MiB"
                expect(self.count, self.total if self.total > 1 else None)
        return self

    def __exit__(self, *exc):
        if self.overall is not None:
            self.overall.close()
        if self._cm_owner is not None:
            self._cm_owner.__exit__(*exc)

    def bar(self, item: PlanItem):
        ref = item.ref
        name = ref.dist
        size = human_bytes(ref.size) if ref.size is not None else ""
        desc = f"{name:<20.20} | " + (f"{size:<9} | " if size else "")
        kwargs = {"position": None, "leave": False}
        if ref.size is not None:
            kwargs["size"] = ref.size  # exact bytes for plain's totals; other backends ignore it
        if self.cm is not None:
            kwargs["context_manager"] = self.cm
        if not self.enabled:
            kwargs["enabled"] = False
        if self.run.out.live:
            kwargs["label"] = name  # the whole name: the live line fits it to the terminal
        return self.run.out.progress_bar(desc, **kwargs)

    def start_overall(self):
        # the plain backend sums up every bar itself; a "Total" bar there would count as a package
        # and the live renderer draws its own overall line
        if (
            self.overall is None
            and self.total > 1
            and self.run.console != "plain"
            and not self.run.out.live
        ):
            kwargs = {"position": None, "leave": False}
            if self.cm is not None:
                kwargs["context_manager"] = self.cm
            if not self.enabled:
                kwargs["enabled"] = False
            self.overall = self.run.out.progress_bar(f"{'Total':<20} | {'':<9} | ", **kwargs)

    def update(self, fn: str, weight: int, fraction: float) -> None:
        with self.lock:
            self.parts[fn] = weight * fraction
            if self.overall is not None:
                self.overall.update_to(min(sum(self.parts.values()) / self.total, 1.0))


def _acquire(path: str, cancel: threading.Event) -> FileLock:
    """Our per-archive lock, waiting as long as needed but giving up on Ctrl-C. Only a busy
    lock is waited for: one that cannot be taken at all (an unwritable locks dir, a name the
    file system refuses, a planted link) fails the package with its reason."""
    while True:
        if cancel.is_set():
            raise DownloadCancelled(path)
        try:
            return FileLock(path, timeout=0.5).acquire()
        except LockTimeoutError:
            continue


def _close_bar(bar, refused: bool) -> None:
    if bar is None:
        return
    if refused:
        getattr(bar, "fail", bar.close)("refused")
    else:
        bar.close()


def _remove_refused(layout: CacheLayout, ref: PackageRef, archive: str) -> bool:
    """Remove an archive fetch refused (hostile or unreadable), with its urls.txt line, so it
    neither stays in the cache nor gets counted by a later verify. Only files of this cache."""
    if os.path.dirname(os.path.abspath(archive)) != os.path.abspath(layout.root):
        return False
    try:
        os.unlink(archive)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    try:
        from ..gateways.urls import remove_urls

        remove_urls(layout, [ref.fn])
    except (OSError, CachePlusError):
        pass
    return True


def execute(
    fetch_plan: FetchPlan,
    run,
    *,
    download_workers: int | None = None,
    extract_workers: int | None = None,
    cancel: threading.Event | None = None,
    check=None,
) -> FetchSummary:
    """Run ``fetch_plan``. ``check(pkgs_dir, extracted_dir)``, when given, is called on every
    entry right after its extraction, in the worker that extracted it (so the checks overlap
    the rest of the run instead of following it); what it returns, when not None, becomes the
    package's note. It must be picklable (a module-level function, or a partial of one)."""
    import functools

    from ..gateways.cachedir import ensure_cache_dir
    from ..gateways.extract import install_entry

    started = time.monotonic()
    cancel = cancel or threading.Event()
    items = fetch_plan.items
    results = {
        i.ref.fn: ItemResult(i.ref.fn, strip_fragment(i.ref.url), i.action, pkgs_dir=i.pkgs_dir)
        for i in items
    }
    summary = FetchSummary(items=[results[i.ref.fn] for i in items])
    for item in items:
        if item.action == NONE:
            res = results[item.ref.fn]
            res.outcome = REUSED
            res.extracted_dir = item.layout.extracted(item.ref.dist)
    work = [i for i in items if i.action != NONE]
    if not work:
        summary.seconds = time.monotonic() - started
        return summary

    n_ex = max(1, extract_workers or default_extract_workers())
    # Before any lock or thread of this run: the children get neither.
    procs = _extract_processes(n_ex, sum(1 for i in work))
    install = functools.partial(install_and_check, install_entry, check)
    if procs is not None:
        install = _in_process(procs, install)
    cache_locks: list[FileLock] = []
    try:
        for pkgs_dir in dict.fromkeys(i.pkgs_dir for i in work):
            layout = CacheLayout(pkgs_dir)
            try:
                ensure_cache_dir(layout)
                cache_locks.append(
                    FileLock(
                        layout.cache_lock,
                        shared=True,
                        timeout=None,
                        on_wait=run.out.message,
                    ).acquire()
                )
            except (OSError, CachePlusError) as exc:
                # this cache cannot be written safely: each of its packages fails with the reason
                if isinstance(exc, OSError):
                    exc = LockUnavailableError(pkgs_dir, exc.strerror or str(exc))
                for item in work:
                    if item.pkgs_dir == pkgs_dir:
                        res = results[item.ref.fn]
                        res.outcome = FAILED
                        res.error = str(exc)
                        res.error_type = type(exc).__name__
                work = [i for i in work if i.pkgs_dir != pkgs_dir]
        if work:
            _run_pipeline(work, results, run, cancel, install, download_workers, n_ex, summary)
    finally:
        if procs is not None:
            procs.shutdown(wait=True, cancel_futures=True)
        for lock in reversed(cache_locks):
            lock.release()
    if not summary.interrupted:
        # "not done" is only ever the answer to Ctrl-C: anything else left undone is a failure
        for res in summary.items:
            if res.outcome == CANCELLED:
                res.outcome = FAILED
                res.error = res.error or "not done (stopped without a reason; please report this)"
                res.error_type = res.error_type or "InternalError"
    summary.seconds = time.monotonic() - started
    return summary


def install_and_check(install_entry, check, layout: CacheLayout, entry: str, archive: str, record):
    """``install_entry``, then ``check`` of the new entry: (its path, the check's note)."""
    path = install_entry(layout, entry, archive, record)
    return path, (check(layout.root, path) if check is not None else None)


def default_extract_workers() -> int:
    """Parallel extractions: one process per CPU plus one (a worker waiting on the disk leaves
    its CPU to another), or 4 threads per CPU, at most 8, where there are no processes."""
    cpus = os.cpu_count() or 1
    return min(cpus + 1, 8) if _FORK_OK else min(8, 4 * cpus)


_FORK_OK = sys.platform.startswith("linux")


def _child_init() -> None:
    # Ctrl-C reaches the whole process group: the parent decides (it lets a running extraction
    # finish, as the thread pool did). And a child must not outlive a parent that was killed.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _ready() -> int:
    return os.getpid()


def _extract_processes(n: int, jobs: int) -> cf.ProcessPoolExecutor | None:
    """Forked extraction workers, all started now; None where threads must do the work."""
    if not _FORK_OK or jobs < 2 or n < 2 or threading.active_count() > 1:
        # One package is not worth a fork; and forking a process that runs other threads
        # (an embedding application's) could copy a lock one of them holds.
        return None
    import multiprocessing

    try:
        pool = cf.ProcessPoolExecutor(
            min(n, jobs), mp_context=multiprocessing.get_context("fork"), initializer=_child_init
        )
        # With "fork" every worker is forked by the first submit, before it returns and so
        # before this run's threads. Nobody waits for the workers to answer: the downloads
        # start meanwhile (a pool that broke is met by the extractions, which then run in
        # their threads).
        pool.submit(_ready)
    except (OSError, cf.process.BrokenProcessPool):
        return None
    return pool


def _in_process(pool: cf.ProcessPoolExecutor, install_entry):
    def run_in_child(layout: CacheLayout, entry: str, archive: str, record: dict | None):
        try:
            future = pool.submit(install_entry, layout, entry, archive, record)
        except cf.BrokenExecutor:
            # A worker died before (it never came up, or was killed): the packages not yet
            # handed over are extracted in this thread. The ones the pool held fail with it.
            return install_entry(layout, entry, archive, record)
        return future.result()

    return run_in_child


def _run_pipeline(work, results, run, cancel, install_entry, n_dl, n_ex, summary) -> None:
    n_dl = max(1, n_dl or run.fetch_threads or 5)
    extract_q: queue.Queue = queue.Queue()  # futures of extractions, handed to the main loop
    progress = _Progress(run, work)

    def fail(item: PlanItem, exc: BaseException) -> None:
        res = results[item.ref.fn]
        if isinstance(exc, DownloadCancelled):
            res.outcome = CANCELLED
            return
        res.outcome = FAILED
        res.error = str(exc)
        res.error_type = type(exc).__name__

    def extract_job(item: PlanItem, lock: FileLock, archive: str, url: str, digests, bar, done):
        refused = False
        try:
            if cancel.is_set():
                raise DownloadCancelled(archive)
            record = record_for(item.ref, url, digests)
            try:
                path, note = install_entry(item.layout, item.ref.dist, archive, record)
            except ArchiveError as exc:
                refused = True
                removed = _remove_refused(item.layout, item.ref, archive)
                raise RefusedArchiveError(archive, exc.reason, removed) from None
            res = results[item.ref.fn]
            res.extracted = True
            res.extracted_dir = path
            res.outcome = done
            if note is not None:
                res.note = note
            progress.update(item.ref.fn, item.ref.size or 0, 1.0)
            bar.update_to(1.0)
        except Exception as exc:
            fail(item, exc)
        finally:
            lock.release()
            _close_bar(bar, refused)

    # Archives ready for extraction, largest first: each submitted task runs the largest one
    # waiting when a worker takes it, so every archive is extracted once, the big ones first.
    ready: list = []
    ready_lock = threading.Lock()
    order = itertools.count()

    def extract_next() -> None:
        with ready_lock:
            args = heapq.heappop(ready)[2]
        extract_job(*args)

    def queue_extraction(item: PlanItem, *args) -> None:
        size = args[3][0]  # the archive's size, known once it is here and checked
        with ready_lock:
            heapq.heappush(ready, (-size, next(order), (item, *args)))
        extract_q.put(pool_ex.submit(extract_next))

    def fetch_job(item: PlanItem):
        ref = item.ref
        layout = item.layout
        res = results[ref.fn]
        lock = None
        bar = None
        try:
            check_package_fn(ref.fn, ref.url)  # also for references built by API callers
            lock = _acquire(layout.entry_lock(ref.fn), cancel)
            if not item.forced and _entry_agrees(layout, ref):
                res.outcome = REUSED
                res.note = "completed meanwhile by another process"
                res.extracted_dir = layout.extracted(ref.dist)
                progress.update(ref.fn, ref.size or 0, 1.0)
                lock.release()
                return None
            bar = progress.bar(item)
            archive = layout.archive(ref.fn)
            url = strip_fragment(ref.url)
            outcome = EXTRACTED
            digests = None
            if item.action == EXTRACT:
                archive = item.source or archive
                digests = item.digests or archive_digests(archive)
            else:
                if (
                    not item.forced
                    and os.path.isfile(archive)
                    and expected_checksum(ref.sha256, ref.md5)
                ):
                    # Another process (conda, mamba, ours) put it there after we planned.
                    digests = _archive_ok(ref, archive, {})
                if digests is None and item.action == COPY:
                    url = item.source_url or url
                    copy_or_link(item.source, archive)
                    digests = archive_digests(archive)
                    try:
                        _check(ref, archive, digests)
                    except CachePlusError:
                        os.unlink(archive)
                        raise
                    from ..gateways.urls import append_urls

                    append_urls(layout, [url])
                    outcome = COPIED
                elif digests is None:

                    def on_progress(fraction: float, _bar=bar, _ref=ref) -> None:
                        # 100% means in the cache: extraction is the last tenth
                        _bar.update_to(fraction * 0.9)
                        progress.update(_ref.fn, _ref.size or 0, fraction * 0.9)

                    # live bars show bytes; without a size in the input, the server says it
                    on_progress.total_known = getattr(bar, "set_size", None)

                    got = download(
                        url,
                        archive,
                        size=ref.size,
                        sha256=ref.sha256,
                        md5=ref.md5,
                        progress=on_progress,
                        run=run,
                        cancel=cancel,
                    )
                    digests = (got.size, got.sha256, got.md5)
                    res.transferred = got.transferred
                    res.resumed_from = got.resumed_from
                    outcome = DOWNLOADED
                    if got.reused:
                        res.note = "downloaded meanwhile by another process"
                        outcome = EXTRACTED
            queue_extraction(item, lock, archive, url, digests, bar, outcome)
            return None
        except BaseException as exc:
            if lock is not None:
                lock.release()
            if bar is not None:
                bar.close()
            fail(item, exc)
            return None

    interrupted = False
    with progress:
        progress.start_overall()
        pool_dl = cf.ThreadPoolExecutor(n_dl, thread_name_prefix="cpx-fetch")
        pool_ex = cf.ThreadPoolExecutor(n_ex, thread_name_prefix="cpx-extract")
        pending: set[cf.Future] = set()
        try:
            # Extract-only work first: it needs no network and keeps the extractors busy while
            # the first downloads arrive. Downloads largest first (the plan is sorted so).
            for item in sorted(work, key=lambda i: i.action != EXTRACT):
                pending.add(pool_dl.submit(fetch_job, item))
            while pending or not extract_q.empty():
                while not extract_q.empty():
                    pending.add(extract_q.get_nowait())
                if not pending:
                    continue
                _done, pending = cf.wait(pending, timeout=0.2, return_when=cf.FIRST_COMPLETED)
        except KeyboardInterrupt:
            interrupted = True
            cancel.set()
            # Transfers stop at their next chunk (partials stay resumable); fetch jobs not yet
            # started are dropped. Queued extractions still run but see the flag and only release
            # their locks; a running extraction finishes (it is atomic either way).
            pool_dl.shutdown(wait=True, cancel_futures=True)
        finally:
            pool_dl.shutdown(wait=True)
            pool_ex.shutdown(wait=True)
    summary.interrupted = interrupted or cancel.is_set()


def _check(ref: PackageRef, path: str, digests: tuple[int, str, str]) -> None:
    size, sha, md5 = digests
    want = expected_checksum(ref.sha256, ref.md5)
    if want is not None:
        actual = sha if want[0] == "sha256" else md5
        if actual != want[1]:
            raise ChecksumMismatchError(ref.url, path, want[0], want[1], actual)
    if ref.size is not None and size != ref.size:
        raise SizeMismatchError(ref.url, path, ref.size, size)
