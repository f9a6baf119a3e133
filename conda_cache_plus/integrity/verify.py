"""Integrity of cache entries: the extracted files against ``info/paths.json``, the metadata
against itself, the archives against ``repodata_record.json``.

Two levels, like rattler's ``ValidationMode``:

- **fast**: every path in ``paths.json`` exists with the right type (checked with ``lstat``; a
  softlink is never followed out of the entry) and size; ``repodata_record.json`` agrees with
  ``index.json``; the archive has the recorded size.
- **full**: also the sha256 of every file, and the archive's sha256 (or md5).

Findings are data (:class:`EntryFindings`, :class:`Problem`); nothing here prints or changes the
cache. What passed is remembered (:mod:`.verify_store`) so a re-run re-checks only what changed:
an unchanged file costs one ``lstat`` (relative to the entry's open directory), an unchanged
entry's metadata is not parsed again. Everything but hashing runs in this process; the files
that need a hash go to a pool of processes (or threads) in batches, and only when there are
enough of them to pay for the pool.
"""

from __future__ import annotations

import gc
import os
import time

from . import verify_store
from .findings import (
    FAST,
    HOSTILE_ENTRY,
    LEVELS,
    OK,
    ORPHAN_TEMP,
    PARTIAL_DOWNLOAD,
    EntryFindings,
    Problem,
    VerifyReport,
)
from .hashing import ArchiveJob, FileBlock, Hasher, apply_hash
from .metadata import ARCHIVE_EXTS
from .tree import check_entry

# the few tuples of archive extensions an entry can have, one object each for every entry
_EXTS: dict[tuple, tuple] = {}


def _verify_entries(
    targets,
    level: str,
    *,
    use_store: bool,
    write_store: bool,
    workers: int,
    executor: str | None,
    progress=None,
) -> tuple[list[EntryFindings], str]:
    """``targets``: [(pkgs_dir, store_dir or None, writable, [(entry, archive exts)],
    all_entries or None)].

    The stat and metadata work runs here, entry by entry: it is a syscall per path, threads
    gain nothing under the GIL, and forked workers lost more sending their findings back than
    they saved (measured on 2 cores). The files that need hashing go to workers in batches
    while the checks go on, and only once there are enough of them to pay for a pool.
    """
    flat: list[tuple] = []  # (pkgs_dir, entry, exts, remembered bytes, writable, its save)
    saves = []
    for pkgs_dir, sdir, writable, entries, all_entries in targets:
        # {entry: encoded state}: each decoded only while its entry is checked (verify_store)
        store = verify_store.load(sdir, pkgs_dir) if sdir else {}
        remembered = store if use_store else {}
        save = [store, False]  # the entries' states, and whether any changed
        if all_entries is not None:  # drop what no longer exists in the cache
            for gone in set(store).difference(all_entries):
                del store[gone]
                save[1] = True
        flat += [(pkgs_dir, e, exts, remembered.get(e), writable, save) for e, exts in entries]
        saves.append((pkgs_dir, sdir, save))
    nentries = len(flat) or 1
    jobs: list[FileBlock | ArchiveJob] = []
    hasher = Hasher(jobs, level, workers, executor)
    # runs waiting for hashes; the others are settled (state encoded, findings kept) at once,
    # so only the findings of every entry live until the end, not its plan and fingerprints
    runs: dict[int, tuple] = {}
    found: list = [None] * len(flat)
    fds: dict[str, int | None] = {}
    try:
        for i, (pkgs_dir, entry, exts, blob, writable, save) in enumerate(flat):
            if pkgs_dir not in fds:
                try:
                    fds[pkgs_dir] = os.open(pkgs_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                except OSError:
                    fds[pkgs_dir] = None
            prev = verify_store.decode(blob) if blob is not None else None
            queued = len(jobs)
            run = check_entry(pkgs_dir, fds[pkgs_dir], entry, exts, level, prev, jobs, i)
            run.f.writable = writable
            found[i] = run.f
            if len(jobs) > queued:
                runs[i] = (run, prev, blob)
            elif write_store:
                _settle(run, prev, blob, save)
            hasher.feed()
            if progress and i % 64 == 63:
                progress(0.2 * (i + 1) / nentries)
    finally:
        for fd in fds.values():
            if fd is not None:
                os.close(fd)

    def hash_progress(fraction):
        progress(0.2 + 0.8 * fraction)

    results = hasher.finish(hash_progress if progress else None)
    for job, res in zip(jobs, results, strict=True):
        apply_hash(runs[job.entry][0], job, res)
    if write_store:
        for i, (run, prev, blob) in runs.items():
            _settle(run, prev, blob, flat[i][5])
        for pkgs_dir, sdir, (store, changed) in saves:
            if sdir and changed:
                verify_store.save(sdir, pkgs_dir, store)
    return found, hasher.executor


def _settle(run, prev, blob, save: list) -> None:
    """Put an entry's new state in its cache's ``save`` ([states, changed]): the remembered
    bytes as they were when nothing changed (no encoding, no write), else the new state
    encoded."""
    store = save[0]
    state = run.state()
    entry = run.f.entry
    if state is None:
        if entry not in store:
            return
        del store[entry]
    elif prev is not None and state == prev:
        if store.get(entry) is blob:
            return
        store[entry] = blob
    else:
        store[entry] = verify_store.encode(state)
    save[1] = True


def verify_entry(
    pkgs_dir: str,
    entry: str,
    level: str = FAST,
    *,
    store_dir: str | None = None,
    use_store: bool = True,
    write_store: bool | None = None,
) -> EntryFindings:
    """Verify one entry (extracted dir and/or archives) of one pkgs dir."""
    findings, _ = _verify_entries(
        [(pkgs_dir, store_dir, None, [(entry, ARCHIVE_EXTS)], None)],
        level,
        use_store=use_store and bool(store_dir),
        write_store=bool(store_dir) if write_store is None else write_store,
        workers=1,
        executor="serial",
    )
    return findings[0].finish()


def verify_record(record, level: str = FAST, **kwargs) -> EntryFindings:
    """The agreed API: verify one :class:`~.records.PackageCacheRecord`."""
    from ..layouts.kinds import writability

    writable = writability(record.pkgs_dir)[0]
    kwargs.setdefault("store_dir", verify_store.store_dir(record.pkgs_dir, writable))
    out = verify_entry(record.pkgs_dir, record.entry, level, **kwargs)
    out.writable = writable
    return out


def _leftover_problems(result) -> list[Problem]:
    from ..gateways.locks import conda_byte_locked

    out = []
    for lo in result.leftovers:
        if lo.kind == "partial":
            if conda_byte_locked(lo.path):
                continue  # a download in progress right now
            out.append(Problem(PARTIAL_DOWNLOAD, lo.path, actual=lo.size, detail="resumable"))
        elif lo.kind in ("hold", "trash", "tmp"):
            out.append(Problem(ORPHAN_TEMP, lo.path, detail=lo.kind))
        elif lo.kind == "hostile":
            out.append(Problem(HOSTILE_ENTRY, lo.path, detail="hostile name, never a package"))
        elif lo.kind == "link":
            out.append(
                Problem(
                    HOSTILE_ENTRY, lo.path, detail="a link where only the cache's own files belong"
                )
            )
    return out


def verify_caches(
    caches,
    specs=None,
    level: str = FAST,
    *,
    use_store: bool = True,
    write_store: bool | None = None,
    workers: int | None = None,
    executor: str | None = None,
    progress=None,
    keep_scan: bool = True,
) -> VerifyReport:
    """Verify every entry (matching ``specs``, SpecMatchers) of every cache in ``caches``.

    What passed is remembered (at both levels) unless ``write_store`` is False; ``use_store``
    False re-checks everything (``--rehash``). ``progress(fraction)`` is called from the
    calling thread. ``keep_scan`` False drops each cache's loaded records once the entries to
    check are listed (a caller that needs nothing more from ``caches``: less memory held
    while the entries are checked).
    """

    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}")
    # Like the scan: many small objects that live until the end; the cyclic GC would re-walk
    # the growing heap over and over (most of the time at 20k entries).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _verify_caches(
            caches, specs, level, use_store, write_store, workers, executor, progress, keep_scan
        )
    finally:
        if gc_was_enabled:
            gc.enable()


def _verify_caches(
    caches, specs, level, use_store, write_store, workers, executor, progress, keep_scan
) -> VerifyReport:

    start = time.perf_counter()
    write_store = True if write_store is None else write_store
    report = VerifyReport(level=level)
    targets = []
    matched: set[int] = set()
    for cache in caches.writable_first():
        res = cache.load()
        writable = cache.is_writable
        entries: list[tuple[str, tuple]] = []
        if res.exists:
            for rec in res.records:
                if specs:
                    hits = {i for i, m in enumerate(specs) if m.match(rec)}
                    if not hits:
                        continue
                    matched |= hits
                # The scan listed the directory: only the archives it saw need a look.
                exts = tuple(e for e in ARCHIVE_EXTS if e in rec.archives)
                entries.append((rec.entry, _EXTS.setdefault(exts, exts)))
            if not specs:
                entries += [(broken.rel, ()) for broken in res.broken]  # broken: no archive
                report.leftovers += _leftover_problems(res)
            every = None if specs else [e[0] for e in entries]
            sdir = verify_store.store_dir(cache.pkgs_dir, writable)
            targets.append((cache.pkgs_dir, sdir, writable, entries, every))
        report.caches.append(
            {
                "path": cache.pkgs_dir,
                "exists": res.exists,
                "writable": writable,
                "entries": len(entries),
                "problems": list(res.problems),
            }
        )
        del res
        if not keep_scan:
            cache.release()
    report.unmatched = [m.spec for i, m in enumerate(specs or ()) if i not in matched]
    workers = workers or os.cpu_count() or 1
    findings, report.executor = _verify_entries(
        targets,
        level,
        use_store=use_store,
        write_store=write_store,
        workers=workers,
        executor=executor,
        progress=progress,
    )
    report.workers = workers
    report.entries = [f.finish() for f in findings]
    report.entries.sort(key=lambda e: (e.status == OK, e.pkgs_dir, e.entry))
    report.seconds = time.perf_counter() - start
    return report
