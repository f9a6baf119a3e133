"""The hashing stage of verify --full: jobs batched across entries, run serially, in threads or
in processes by size, and their results applied to each entry's findings."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from dataclasses import dataclass

from ..gateways.statefile import RACY_SECONDS
from .archive_facts import _BUF, _OPEN_FLAGS, _fp, _kind, _lstat, _packaged_symlink_here, sha256_fd
from .findings import (
    ARCHIVE_CHECKSUM,
    FULL,
    MISSING_FILE,
    UNREADABLE,
    WRONG_HASH,
    WRONG_SIZE,
    WRONG_TYPE,
    EntryFindings,
)
from .metadata import _Plan


@dataclass
class _HashJob:
    entry: int  # index into the run's entry list
    what: str  # "file" or "archive"
    key: object  # index into plan.files, or the archive's fn
    path: str
    size: int | None
    expected: str
    algorithm: str = "sha256"


class _EntryRun:
    """One entry in one run: its findings, its new remembered state, its pending hash jobs."""

    __slots__ = ("archives", "f", "fps", "hashed", "keep", "links", "meta", "plan", "root")

    def __init__(self, f: EntryFindings, root: str):
        self.f = f
        self.root = root
        self.plan: _Plan | None = None
        self.meta: tuple | None = None
        self.fps: list = []
        self.hashed: list = []
        self.links: dict = {}
        self.archives: dict = {}
        self.keep = False  # whether the state is worth remembering (clean metadata)

    def now(self) -> float:
        """Now on the entry's file system clock (the scan probed it; fsclock.py)."""
        from ..model import fsclock

        return fsclock.now(self.root)

    def state(self) -> tuple | None:
        if not self.keep or self.plan is None:
            return None
        return (
            self.meta,
            self.plan.to_state(),
            self.fps,
            self.hashed,
            self.links,
            self.archives,
        )


def _hash_one(path: str, size: int | None, algorithm: str):
    """(problem kind or None, detail, fingerprint, digest, bytes read), never following a link."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        return MISSING_FILE, None, None, None, 0
    except OSError:
        st = _lstat(path)
        if st is not None and not stat.S_ISREG(st.st_mode):
            return WRONG_TYPE, _kind(st.st_mode), None, None, 0
        return UNREADABLE, "cannot open", None, None, 0
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return WRONG_TYPE, _kind(st.st_mode), None, None, 0
        if size is not None and st.st_size != size:
            return WRONG_SIZE, st.st_size, None, None, 0
        try:
            if algorithm == "sha256":
                digest, n = sha256_fd(fd, st.st_size)
            else:
                h = hashlib.new(algorithm)
                n = 0
                with open(fd, "rb", buffering=0, closefd=False) as fh:
                    while chunk := fh.read(_BUF):
                        h.update(chunk)
                        n += len(chunk)
                digest = h.hexdigest()
        except OSError as exc:
            return UNREADABLE, exc.strerror or str(exc), None, None, 0
        return None, None, _fp(st), digest, n
    finally:
        os.close(fd)


def _hash_batch(batch: list[tuple]) -> list[tuple]:
    return [_hash_one(path, size, algo) for path, size, algo in batch]


# Below this much work, a pool costs more than it saves.
_SERIAL_BYTES = 8 << 20


_SERIAL_FILES = 256


# A batch for a worker: enough that small files do not cost a round trip each, small enough
# that the workers finish together.
_BATCH_BYTES = 4 << 20


_BATCH_FILES = 256


_OPEN_COST = 4096  # opening a file costs about as much as hashing 4 KiB


def choose_executor(level: str, nbytes: int, njobs: int, workers: int) -> str:
    """serial for little work; processes for much (the per-file Python work holds the GIL, the
    digests scale with cores); threads when fork is unsafe (this process runs other threads)."""
    if level != FULL or workers < 2 or (nbytes < _SERIAL_BYTES and njobs < _SERIAL_FILES):
        return "serial"
    if threading.active_count() > 1 or not hasattr(os, "fork"):
        return "thread"
    return "process"


class _Hasher:
    """Hashes the queued jobs while the entries are still being checked: batches go to the
    pool as soon as they fill, so the stat and parse work of the main process overlaps the
    hashing. The pool starts only once there is enough to hash (a re-run of an unchanged cache
    never starts one)."""

    def __init__(self, jobs: list[_HashJob], level: str, workers: int, executor: str | None):
        self.jobs = jobs
        self.level = level
        self.workers = workers
        self.executor = executor
        self.results: list = []
        self.fed = 0  # jobs looked at
        self.batch: list[int] = []
        self.batch_bytes = 0
        self.seen_bytes = 0
        self.pool = None
        self.futures: dict = {}
        self.serial: list[list[int]] = []  # batches kept for this process

    def _cost(self, i: int) -> int:
        return (self.jobs[i].size or 0) + _OPEN_COST

    def feed(self) -> None:
        """Take the jobs queued since the last call."""
        jobs = self.jobs
        while self.fed < len(jobs):
            i = self.fed
            self.fed += 1
            self.results.append(None)
            self.batch.append(i)
            cost = self._cost(i)
            self.batch_bytes += cost
            self.seen_bytes += cost
            if self.batch_bytes >= _BATCH_BYTES or len(self.batch) >= _BATCH_FILES:
                self._flush()

    def _start_pool(self) -> bool:
        if self.pool is not None:
            return True
        kind = self.executor or choose_executor(self.level, self.seen_bytes, self.fed, self.workers)
        if kind == "serial" or self.workers < 2:
            self.executor = "serial"  # it will not pay later either
            return False
        if kind == "process":
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self.pool = ProcessPoolExecutor(self.workers, multiprocessing.get_context("fork"))
        else:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(self.workers)
        self.executor = kind
        # What was held back while it was not clear a pool would pay goes first.
        held, self.serial = self.serial, []
        for batch in held:
            self._submit(batch)
        return True

    def _submit(self, batch: list[int]) -> None:
        jobs = self.jobs
        payload = [(jobs[i].path, jobs[i].size, jobs[i].algorithm) for i in batch]
        self.futures[self.pool.submit(_hash_batch, payload)] = batch

    def _flush(self) -> None:
        batch, self.batch, self.batch_bytes = self.batch, [], 0
        if not batch:
            return
        wanted = self.pool is not None or (self.executor != "serial" and self._pool_pays())
        if wanted and self._start_pool():
            self._submit(batch)
            return
        self.serial.append(batch)

    def _pool_pays(self) -> bool:
        if self.executor in ("thread", "process"):
            return True
        return self.seen_bytes >= _SERIAL_BYTES or self.fed >= _SERIAL_FILES

    def finish(self, progress=None) -> list:
        self._flush()
        if self.serial and self.pool is None and self.executor in ("thread", "process"):
            self._start_pool()
        total = sum(self._cost(i) for i in range(self.fed)) or 1
        done = 0
        jobs = self.jobs
        for batch in self.serial:
            payload = [(jobs[i].path, jobs[i].size, jobs[i].algorithm) for i in batch]
            for i, res in zip(batch, _hash_batch(payload), strict=True):
                self.results[i] = res
                done += self._cost(i)
            if progress:
                progress(done / total)
        self.serial = []
        if self.pool is not None:
            from concurrent.futures import as_completed

            with self.pool:
                for fut in as_completed(self.futures):
                    batch = self.futures[fut]
                    for i, res in zip(batch, fut.result(), strict=True):
                        self.results[i] = res
                        done += self._cost(i)
                    if progress:
                        progress(done / total)
        if self.executor is None:
            self.executor = "serial"
        return self.results


def _apply_hash(run: _EntryRun, job: _HashJob, res) -> None:
    f = run.f
    kind, detail, fp, digest, n = res
    if job.what == "archive":
        info = next(a for a in f.archives if a["fn"] == job.key)
        if kind is not None:
            f.add(UNREADABLE, job.key, detail=str(detail or kind))
            return
        f.hashed += 1
        f.bytes_hashed += n
        if digest != job.expected:
            f.add(ARCHIVE_CHECKSUM, job.key, job.expected, digest, job.algorithm)
            info.update(checked=job.algorithm, ok=False)
        else:
            info.update(checked=job.algorithm, ok=True)
            run.archives[job.key] = (fp, job.algorithm)
        return
    rel = run.plan.files[job.key]
    if kind == MISSING_FILE:
        f.add(MISSING_FILE, rel, "file", None)
    elif kind == WRONG_TYPE:
        if not (detail == "symlink" and _packaged_symlink_here(run.root, rel)):
            f.add(WRONG_TYPE, rel, "file", detail)
    elif kind == WRONG_SIZE:
        f.add(WRONG_SIZE, rel, job.size, detail)
    elif kind is not None:
        f.add(UNREADABLE, rel, detail=str(detail))
    else:
        f.hashed += 1
        f.bytes_hashed += n
        if digest != job.expected:
            f.add(WRONG_HASH, rel, job.expected, digest)
        elif fp[2] / 1e9 > run.now() - RACY_SECONDS:
            # Written moments ago: a second write in the same coarse clock tick would keep this
            # fingerprint, so the hash is not remembered (the racy-git rule, as in pkgs_dir).
            run.fps[job.key], run.hashed[job.key] = fp, False
        else:
            run.fps[job.key], run.hashed[job.key] = fp, True
