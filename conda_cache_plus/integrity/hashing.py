"""The hashing stage of verify --full: jobs batched across entries, run serially, in threads or
in processes by size, and their results applied to each entry's findings.

An entry's files go as blocks (:class:`FileBlock`), not a job per file: on small files the
Python around each hash (an object per file, a digest sent back, a call to apply it, a clock
read) cost more than the open, read and hash themselves."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from dataclasses import dataclass

from ..gateways.statefile import RACY_SECONDS
from .archive_facts import (
    OPEN_FLAGS,
    READ_SIZE,
    file_kind,
    fingerprint,
    lstat_or_none,
    packaged_symlink_here,
    sha256_fd,
)
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
from .metadata import Plan


@dataclass
class ArchiveJob:
    """One archive to hash."""

    entry: int  # index into the run's entry list
    what: str  # "archive"
    key: object  # the archive's fn
    path: str
    size: int | None
    expected: str
    algorithm: str = "sha256"

    @property
    def cost(self) -> int:
        return (self.size or 0) + _OPEN_COST

    @property
    def nfiles(self) -> int:
        return 1

    def payload(self) -> tuple:
        return ("a", self.path, self.size, self.algorithm)


class FileBlock:
    """Files of one entry to hash, as one job: the worker opens them relative to the entry's
    directory and compares each digest itself, so a file that hashed right costs no Python
    object on either side but its fingerprint (a job object, a digest sent back and a call per
    file were most of verify --full's time on small files)."""

    __slots__ = ("cost", "entry", "idxs", "racy_after", "rels", "root", "shas", "sizes")

    what = "files"

    def __init__(self, entry, root, idxs, rels, sizes, shas, racy_after, cost):
        self.entry = entry  # index into the run's entry list
        self.root = root
        self.idxs = idxs  # indices into plan.files
        self.rels, self.sizes, self.shas = rels, sizes, shas
        # A file whose mtime is later than this was written too recently for its hash to be
        # remembered (the racy-git rule: see apply_hash).
        self.racy_after = racy_after
        self.cost = cost

    @property
    def nfiles(self) -> int:
        return len(self.rels)

    def payload(self) -> tuple:
        return ("b", self.root, self.rels, self.sizes, self.shas)


def queue_files(jobs: list, run, index: int, idxs: list, full_plan: bool = False) -> int:
    """Queue the files ``idxs`` of ``run``'s plan for hashing, in blocks a worker can take
    whole (cut so that a big package still spreads over the workers); returns how many.
    ``full_plan``: ``idxs`` is every file of the plan (its lists are used as they are)."""
    plan = run.plan
    if full_plan:
        rels, sizes, shas = plan.files, plan.sizes, plan.shas
    else:
        rels = [plan.files[i] for i in idxs]
        sizes = [plan.sizes[i] for i in idxs]
        shas = [plan.shas[i] for i in idxs]
    # Taken before any of these files is read: an earlier "now" only marks more files as
    # too recent to remember (the racy-git rule), never fewer. One clock read per entry.
    racy_after = run.now() - RACY_SECONDS
    n = len(idxs)
    lo = 0
    while lo < n:
        hi, cost = lo, 0
        while hi < n and hi - lo < _BATCH_FILES and (hi == lo or cost < _BATCH_BYTES):
            cost += (sizes[hi] or 0) + _OPEN_COST
            hi += 1
        if lo == 0 and hi == n:
            part = (idxs, rels, sizes, shas)
        else:
            part = (idxs[lo:hi], rels[lo:hi], sizes[lo:hi], shas[lo:hi])
        jobs.append(FileBlock(index, run.root, *part, racy_after, cost))
        lo = hi
    return n


class EntryRun:
    """One entry in one run: its findings, its new remembered state, its pending hash jobs."""

    __slots__ = ("archives", "f", "fps", "hashed", "keep", "links", "meta", "plan", "root")

    def __init__(self, f: EntryFindings, root: str):
        self.f = f
        self.root = root
        self.plan: Plan | None = None
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
        fd = os.open(path, OPEN_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        return MISSING_FILE, None, None, None, 0
    except OSError:
        st = lstat_or_none(path)
        if st is not None and not stat.S_ISREG(st.st_mode):
            return WRONG_TYPE, file_kind(st.st_mode), None, None, 0
        return UNREADABLE, "cannot open", None, None, 0
    try:
        return _hash_fd(fd, size, algorithm)
    finally:
        os.close(fd)


def _hash_fd(fd: int, size: int | None, algorithm: str):
    """:func:`_hash_one` of a file already open."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        return WRONG_TYPE, file_kind(st.st_mode), None, None, 0
    if size is not None and st.st_size != size:
        return WRONG_SIZE, st.st_size, None, None, 0
    try:
        if algorithm == "sha256":
            digest, n = sha256_fd(fd, st.st_size)
        else:
            h = hashlib.new(algorithm)
            n = 0
            with open(fd, "rb", buffering=0, closefd=False) as fh:
                while chunk := fh.read(READ_SIZE):
                    h.update(chunk)
                    n += len(chunk)
            digest = h.hexdigest()
    except OSError as exc:
        return UNREADABLE, exc.strerror or str(exc), None, None, 0
    return None, None, fingerprint(st), digest, n


_DIR_FLAGS = (
    os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC
)


def _hash_block(root: str, rels: list, sizes: list, shas: list):
    """(fingerprints, odd, bytes): the fingerprint of each file whose sha256 matched (else
    None), and ``[(position, result of _hash_one)]`` for the others. A file that cannot be
    opened relative to the entry's directory is asked again by path, so every odd case is
    classified by :func:`_hash_one` exactly as a job of its own would be."""
    n = len(rels)
    fps: list = [None] * n
    odd = []
    nbytes = 0
    try:
        dfd = os.open(root, _DIR_FLAGS)
    except OSError:
        dfd = None
    flags = OPEN_FLAGS
    fstat, pread, close, sha256 = os.fstat, os.pread, os.close, hashlib.sha256
    try:
        for k in range(n):
            rel = rels[k]
            fd = None
            if dfd is not None:
                try:
                    fd = os.open(rel, flags, dir_fd=dfd)
                except OSError:
                    fd = None
            if fd is None:
                res = _hash_one(root + "/" + rel, sizes[k], "sha256")
            else:
                try:
                    # The usual small file, inline: a regular file of the recorded size, read
                    # whole (pread: the offset stays, so anything else starts afresh below).
                    st = fstat(fd)
                    size = st.st_size
                    if (
                        st.st_mode & 0o170000 == 0o100000
                        and size == sizes[k]
                        and size < READ_SIZE
                        and len(data := pread(fd, size + 1, 0)) == size
                        and sha256(data).hexdigest() == shas[k]
                    ):
                        fps[k] = (st.st_ino, size, st.st_mtime_ns, st.st_ctime_ns)
                        nbytes += size
                        continue
                    res = _hash_fd(fd, sizes[k], "sha256")
                except OSError:
                    res = _hash_fd(fd, sizes[k], "sha256")
                finally:
                    close(fd)
            if res[0] is None and res[3] == shas[k]:
                fps[k] = res[2]
                nbytes += res[4]
            else:
                odd.append((k, res))
    finally:
        if dfd is not None:
            os.close(dfd)
    return fps, odd, nbytes


def _hash_batch(batch: list[tuple]) -> list:
    return [_hash_block(*item[1:]) if item[0] == "b" else _hash_one(*item[1:]) for item in batch]


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


class Hasher:
    """Hashes the queued jobs while the entries are still being checked: batches go to the
    pool as soon as they fill, so the stat and parse work of the main process overlaps the
    hashing. The pool starts only once there is enough to hash (a re-run of an unchanged cache
    never starts one)."""

    def __init__(self, jobs: list, level: str, workers: int, executor: str | None):
        self.jobs = jobs
        self.level = level
        self.workers = workers
        self.executor = executor
        self.results: list = []
        self.fed = 0  # jobs looked at
        self.batch: list[int] = []
        self.batch_bytes = 0
        self.batch_files = 0
        self.seen_bytes = 0
        self.seen_files = 0
        self.pool = None
        self.futures: dict = {}
        self.serial: list[list[int]] = []  # batches kept for this process

    def feed(self) -> None:
        """Take the jobs queued since the last call."""
        jobs = self.jobs
        while self.fed < len(jobs):
            i = self.fed
            self.fed += 1
            self.results.append(None)
            self.batch.append(i)
            job = jobs[i]
            cost, nfiles = job.cost, job.nfiles
            self.batch_bytes += cost
            self.seen_bytes += cost
            self.batch_files += nfiles
            self.seen_files += nfiles
            if self.batch_bytes >= _BATCH_BYTES or self.batch_files >= _BATCH_FILES:
                self._flush()

    def _start_pool(self) -> bool:
        if self.pool is not None:
            return True
        kind = self.executor or choose_executor(
            self.level, self.seen_bytes, self.seen_files, self.workers
        )
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

    def _payload(self, batch: list[int]) -> list[tuple]:
        jobs = self.jobs
        return [jobs[i].payload() for i in batch]

    def _submit(self, batch: list[int]) -> None:
        self.futures[self.pool.submit(_hash_batch, self._payload(batch))] = batch

    def _flush(self) -> None:
        batch, self.batch, self.batch_bytes, self.batch_files = self.batch, [], 0, 0
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
        return self.seen_bytes >= _SERIAL_BYTES or self.seen_files >= _SERIAL_FILES

    def finish(self, progress=None) -> list:
        self._flush()
        if self.serial and self.pool is None and self.executor in ("thread", "process"):
            self._start_pool()
        jobs = self.jobs
        total = sum(jobs[i].cost for i in range(self.fed)) or 1
        done = 0
        for batch in self.serial:
            for i, res in zip(batch, _hash_batch(self._payload(batch)), strict=True):
                self.results[i] = res
                done += jobs[i].cost
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
                        done += jobs[i].cost
                    if progress:
                        progress(done / total)
        if self.executor is None:
            self.executor = "serial"
        return self.results


def apply_hash(run: EntryRun, job, res) -> None:
    f = run.f
    if job.what == "files":
        fps, odd, nbytes = res
        new_fps, new_hashed = run.fps, run.hashed
        racy_after = job.racy_after
        idxs = job.idxs
        ok = 0
        for k, fp in enumerate(fps):
            if fp is not None:
                i = idxs[k]
                # Written moments ago: a second write in the same coarse clock tick would keep
                # this fingerprint, so the hash is not remembered (the racy-git rule, as in
                # pkgs_dir).
                new_fps[i], new_hashed[i] = fp, not fp[2] / 1e9 > racy_after
                ok += 1
        f.hashed += ok
        f.bytes_hashed += nbytes
        for k, one in odd:
            _apply_file(run, idxs[k], job.sizes[k], job.shas[k], job.racy_after, one)
        return
    kind, detail, fp, digest, n = res
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


def _apply_file(run: EntryRun, i: int, size, expected: str, racy_after: float, res) -> None:
    f = run.f
    kind, detail, fp, digest, n = res
    rel = run.plan.files[i]
    if kind == MISSING_FILE:
        f.add(MISSING_FILE, rel, "file", None)
    elif kind == WRONG_TYPE:
        if not (detail == "symlink" and packaged_symlink_here(run.root, rel)):
            f.add(WRONG_TYPE, rel, "file", detail)
    elif kind == WRONG_SIZE:
        f.add(WRONG_SIZE, rel, size, detail)
    elif kind is not None:
        f.add(UNREADABLE, rel, detail=str(detail))
    else:
        f.hashed += 1
        f.bytes_hashed += n
        if digest != expected:
            f.add(WRONG_HASH, rel, expected, digest)
        else:
            run.fps[i], run.hashed[i] = fp, not fp[2] / 1e9 > racy_after
