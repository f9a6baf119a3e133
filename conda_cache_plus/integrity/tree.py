"""Checking one extracted entry against its plan: metadata, then each file, link and directory
by its type, then its archives; what is unchanged since a remembered run is not read again."""

from __future__ import annotations

import functools
import os
import shutil
import stat

from ..model.cache_paths import CacheLayout
from .archive_facts import (
    MAX_LINK_HOPS,
    archive_empty_links,
    file_kind,
    fingerprint,
    hash_file,
    lstat_or_none,
    may_read,
    packaged_link,
    packaged_symlink_here,
)
from .findings import (
    ARCHIVE_REFUSED,
    ARCHIVE_SIZE,
    BROKEN_LINK,
    FULL,
    LINK_ESCAPES,
    MISSING_FILE,
    UNREADABLE,
    WRONG_HASH,
    WRONG_SIZE,
    WRONG_TYPE,
    EntryFindings,
)
from .hashing import ArchiveJob, EntryRun, queue_files
from .metadata import META_NAMES, META_PATHS, N_META_MODERN, Plan, parse_metadata

# A remembered entry: (meta fingerprints, plan, file fingerprints aligned with plan.files (None:
# not passed), whether each was hashed, {link: (target, target fingerprint)} of links whose
# target hashed right, {archive fn: (fingerprint, algorithm)}).
_S_META, _S_PLAN, _S_FPS, _S_HASHED, _S_LINKS, _S_ARCHIVES = range(6)


# What a plan's source and record source can be (metadata.py), as one shared string each: a
# remembered plan decodes a copy of each per entry, and every entry's findings keep them.
_WORDS = {w: w for w in ("paths.json", "info/files", "none", "repodata_record", "index", "")}


def _stat_at(dir_fd: int):
    """lstat relative to an open directory: the kernel resolves only the relative part, and
    the call is cheaper than building absolute paths (a re-run is one of these per file). A
    partial, not a closure: no Python frame per call."""
    return functools.partial(os.stat, dir_fd=dir_fd, follow_symlinks=False)


def _meta_fps(lstat_at, n: int) -> tuple:
    out = []
    for rel in META_PATHS[:n]:
        try:
            st = lstat_at(rel)
        except OSError:
            out.append(None)
        else:
            out.append((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(out)


def check_entry(
    pkgs_dir: str,
    pkgs_fd: int | None,
    entry: str,
    exts: tuple,
    level: str,
    prev,
    jobs: list,
    index: int,
) -> EntryRun:
    """Everything but hashing for one entry; files that need a hash are queued in ``jobs``.
    ``exts``: the archive extensions to look for beside the directory."""
    layout = CacheLayout(pkgs_dir)
    root = layout.extracted(entry)
    run = EntryRun(EntryFindings(pkgs_dir=pkgs_dir, entry=entry, level=level), root)
    f = run.f
    efd = None
    try:
        if pkgs_fd is not None:
            efd = os.open(
                entry, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pkgs_fd
            )
        else:
            efd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        efd = None
    except OSError as exc:
        efd = None
        st = lstat_or_none(root)
        if st is not None and stat.S_ISDIR(st.st_mode):
            # There, but we may not read it (chmod 000, another user's entry): nothing in it
            # can be checked, and conda could not link from it either.
            f.has_dir = True
            f.add(UNREADABLE, ".", detail=f"the extracted directory: {exc.strerror or exc}")
    f.has_dir = f.has_dir or efd is not None
    try:
        if efd is not None:
            _check_tree(run, efd, level, prev, jobs, index)
        rec = run.plan.record if run.plan else {}
        f.name, f.version, f.build = (
            str(rec.get("name") or ""),
            str(rec.get("version") or ""),
            str(rec.get("build") or ""),
        )
        f.fn, f.url = str(rec.get("fn") or ""), rec.get("url")
        # the plan's own record (fresh from the metadata or from this entry's decoded state,
        # nobody else's); the words are shared, not a copy per entry (10^5 entries are held)
        f.record = rec if run.plan else {}
        f.record_source = _WORDS.get(run.plan.record_source, "") if run.plan else ""
        _check_archives(run, level, prev, jobs, index, pkgs_fd, entry, exts)
        if level == FULL and not f.has_dir:
            _trial_extract(f)
    finally:
        if efd is not None:
            os.close(efd)
    return run


def _trial_extract(f: EntryFindings) -> None:
    """An archive with no extracted directory has nothing else to check it against: at the full
    level it is extracted once into a throw-away directory, so an archive our extractor refuses
    (a member leaving the package, unreadable) is a finding rather than "ok" (issue 11, 8)."""
    import tempfile

    from ..exceptions import ArchiveError, HostileArchiveError
    from ..gateways.extract import extract_archive

    for info in f.archives:
        if info.get("ok") is False:
            continue
        scratch = tempfile.mkdtemp(prefix="cpx-verify-")
        try:
            extract_archive(info["path"], os.path.join(scratch, "pkg"))
        except HostileArchiveError as exc:
            f.add(ARCHIVE_REFUSED, info["fn"], detail=f"hostile: {exc.reason}")
            info.update(checked="extract", ok=False)
        except ArchiveError as exc:
            f.add(ARCHIVE_REFUSED, info["fn"], detail=exc.reason)
            info.update(checked="extract", ok=False)
        else:
            if info.get("checked") is None:
                info.update(checked="extract", ok=True)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def _check_tree(run: EntryRun, efd: int, level: str, prev, jobs: list, index: int) -> None:
    f = run.f
    full = level == FULL
    lstat_at = _stat_at(efd)
    plan = None
    if prev is not None:
        meta = _meta_fps(lstat_at, len(prev[_S_META]))
        if meta == prev[_S_META]:
            plan = Plan.from_state(prev[_S_PLAN])
            f.metadata = _WORDS.get(plan.source, "none")
    if plan is None:
        prev = None  # nothing remembered about the files holds once the metadata changed
        # Fingerprints before reading: a change while we read shows up as a change next time.
        meta = _meta_fps(lstat_at, len(META_NAMES))
        plan = parse_metadata(run.root, efd, f)
        if plan.source == "paths.json":
            meta = meta[:N_META_MODERN]
    run.plan, run.meta = plan, meta
    run.keep = not f.problems
    f.files = plan.count

    # Directories above the paths: a symlink there would lead the checks out of the entry.
    bad_dirs: set[str] = set()
    try:
        ok = all(stat.S_ISDIR(lstat_at(p).st_mode) for p in plan.parents)
    except OSError:
        ok = False
    if not ok:
        for p in plan.parents:
            parent = p.rpartition("/")[0]
            if parent in bad_dirs:
                bad_dirs.add(p)
                continue
            try:
                mode = lstat_at(p).st_mode
            except OSError:
                continue  # missing: the paths under it are reported one by one
            if not stat.S_ISDIR(mode):
                f.add(WRONG_TYPE, p, "directory", file_kind(mode))
                bad_dirs.add(p)

    def under_bad(rel: str) -> bool:
        return bool(bad_dirs) and rel.rpartition("/")[0] in bad_dirs

    _check_files(run, lstat_at, full, prev, jobs, index, bad_dirs)

    for rel in plan.dirs:
        f.checked += 1
        if under_bad(rel):
            continue
        try:
            mode = lstat_at(rel).st_mode
        except OSError:
            f.add(MISSING_FILE, rel, "directory", None)
            continue
        if not stat.S_ISDIR(mode):
            f.add(WRONG_TYPE, rel, "directory", file_kind(mode))
    for rel in plan.anys:
        f.checked += 1
        if under_bad(rel):
            continue
        try:
            lstat_at(rel)
        except OSError:
            f.add(MISSING_FILE, rel)
    if plan.links:
        own = set(plan.files)
        own.update(item[0] for item in plan.links)
        own.update(plan.dirs)
        old_links = prev[_S_LINKS] if prev is not None else {}
        missing = []
        for rel, size, sha in plan.links:
            f.checked += 1
            if under_bad(rel):
                continue
            if not _check_link(run, lstat_at, rel, size, sha, full, own, old_links.get(rel)):
                missing.append(rel)
        if missing:
            # A symlink the archive stores with an empty target cannot be made (no extractor
            # makes it), and conda refuses to link a package whose paths.json path is missing
            # ("appears to be corrupted"): a finding, which the judgement calls the package's
            # own defect, never "ok" (issue 23).
            empty = archive_empty_links(run.root)
            for rel in missing:
                detail = "the archive stores it with an empty target" if rel in empty else ""
                f.add(MISSING_FILE, rel, "symlink", None, detail)


def _check_files(run, lstat_at, full, prev, jobs, index, bad_dirs) -> None:
    f, plan = run.f, run.plan
    rels, sizes, shas = plan.files, plan.sizes, plan.shas
    n = len(rels)
    if not n:
        return
    old_fps = prev[_S_FPS] if prev is not None else None
    old_hashed = prev[_S_HASHED] if prev is not None else None
    root = run.root
    stats = fps = None
    todo = range(n)
    if full and old_fps is None and not bad_dirs:
        # Everything gets read: the worker's open and fstat check the type and size, an
        # lstat here first would only add a syscall per file to the serial part of the run.
        run.fps, run.hashed = [None] * n, [False] * n
        if all(shas):
            f.checked += queue_files(jobs, run, index, range(n), full_plan=True)
            return
        todo = [i for i in range(n) if not shas[i]]
        f.checked += queue_files(jobs, run, index, [i for i in range(n) if shas[i]])
    else:
        # The common case first: every file there; one lstat each and no Python object per
        # path beyond its fingerprint. Anything odd falls through to the path-by-path loop.
        try:
            stats = list(map(lstat_at, rels))
        except OSError:
            stats = None
    if stats is not None:
        fps = [(s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns) for s in stats]
        if (
            old_fps is not None
            and not bad_dirs
            and fps == old_fps
            and (not full or all(old_hashed))
        ):
            # Unchanged since every file passed (at this level): nothing to read. The
            # remembered lists themselves go back into the state, so saving compares nothing.
            run.fps, run.hashed = old_fps, old_hashed
            f.skipped += n
            return
        if (
            not full
            and not bad_dirs
            and [fp[1] for fp in fps] == sizes
            # regular files readable by everyone: the usual modes (0644, 0755), no syscall
            and all(s.st_mode & 0o170444 == 0o100444 for s in stats)
        ):
            # The fast level's whole check (regular files of the recorded sizes) passed in
            # bulk; only the hash flags of files that changed are dropped.
            if old_fps is None:
                run.hashed = [False] * n
                f.checked += n
            else:
                same = [a == b for a, b in zip(fps, old_fps, strict=True)]
                run.hashed = [a and b for a, b in zip(same, old_hashed, strict=True)]
                kept = sum(same)
                f.skipped += kept
                f.checked += n - kept
            run.fps = fps
            return
    if not run.fps:
        run.fps, run.hashed = [None] * n, [False] * n
    new_fps, new_hashed = run.fps, run.hashed
    to_hash = []
    for i in todo:
        rel = rels[i]
        if bad_dirs and rel.rpartition("/")[0] in bad_dirs:
            f.checked += 1  # its parent is reported
            continue
        if fps is not None:
            st, fp = stats[i], fps[i]
        else:
            try:
                st = lstat_at(rel)
            except (FileNotFoundError, NotADirectoryError):
                f.checked += 1
                f.add(MISSING_FILE, rel, "file", None)
                continue
            except OSError as exc:
                f.checked += 1
                f.add(UNREADABLE, rel, detail=exc.strerror or str(exc))
                continue
            fp = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if old_fps is not None and old_fps[i] == fp and (old_hashed[i] or not full):
            f.skipped += 1
            new_fps[i], new_hashed[i] = fp, old_hashed[i]
            continue
        f.checked += 1
        mode = st.st_mode
        if not stat.S_ISREG(mode):
            if stat.S_ISLNK(mode) and packaged_symlink_here(root, rel):
                new_fps[i], new_hashed[i] = fp, full
                continue
            f.add(WRONG_TYPE, rel, "file", file_kind(mode))
            continue
        size = sizes[i]
        if size is not None and st.st_size != size:
            f.add(WRONG_SIZE, rel, size, st.st_size)
            continue
        if not full and not may_read(st, root + "/" + rel):
            # conda copies (and rewrites prefixes in) what it cannot hard-link: unreadable
            # is damage at every level, not only when a hash would have read the file
            f.add(UNREADABLE, rel, detail="permission denied")
            continue
        if full and shas[i]:
            to_hash.append(i)
        else:
            # Nothing more to compare at this level (a full run with no sha256 recorded
            # has checked all there is).
            new_fps[i], new_hashed[i] = fp, full
    if to_hash:
        queue_files(jobs, run, index, to_hash)


def _check_link(run, lstat_at, rel, size, sha, full, own, remembered) -> bool:
    """Check one symlink of paths.json; False when it is not there at all (the caller asks
    the archive whether it could have been)."""
    f = run.f
    try:
        st = lstat_at(rel)
    except OSError:
        return False
    if not stat.S_ISLNK(st.st_mode):
        f.add(WRONG_TYPE, rel, "symlink", file_kind(st.st_mode))
        return True
    # Follow the chain by hand, inside the entry only.
    cur = rel
    for _ in range(MAX_LINK_HOPS):
        try:
            target = os.readlink(os.path.join(run.root, cur))
        except OSError as exc:
            f.add(UNREADABLE, rel, detail=exc.strerror or str(exc))
            return True
        nxt = os.path.normpath(os.path.join(os.path.dirname(cur), target))
        if os.path.isabs(target) or nxt == ".." or nxt.startswith("../"):
            # never followed out of the entry; fine when the package itself says so
            if not packaged_link(run.root, cur, target):
                f.add(LINK_ESCAPES, rel, "a path inside the package", target)
            return True
        try:
            tst = lstat_at(nxt)
        except OSError:
            # A link to another package's file (split packages) dangles in the cache by
            # design; only a link to one of this package's own paths must resolve.
            if nxt in own:
                f.add(BROKEN_LINK, rel, nxt, None, "the target is missing")
            return True
        if stat.S_ISLNK(tst.st_mode):
            cur = nxt
            continue
        if not stat.S_ISREG(tst.st_mode):
            return True  # a link to a directory: nothing recorded to compare
        if size is not None and tst.st_size != size:
            f.add(WRONG_SIZE, rel, size, tst.st_size, f"size of the link target {nxt}")
            return True
        fp = (tst.st_ino, tst.st_size, tst.st_mtime_ns, tst.st_ctime_ns)
        if remembered is not None and tuple(remembered) == (nxt, fp):
            # still the target that hashed right: kept at the fast level too, so a fast run
            # between two full ones neither forgets it nor rewrites the state
            run.links[rel] = remembered
            if full:
                f.skipped += 1
            return True
        if full and sha:
            digest = hash_file(os.path.join(run.root, nxt))
            f.hashed += 1
            f.bytes_hashed += tst.st_size
            if digest != sha:
                f.add(WRONG_HASH, rel, sha, digest, f"hash of the link target {nxt}")
            else:
                run.links[rel] = (nxt, fp)
        return True
    f.add(LINK_ESCAPES, rel, "a path inside the package", "a symlink loop")
    return True


def _check_archives(run: EntryRun, level, prev, jobs, index, pkgs_fd, entry, exts) -> None:
    f = run.f
    full = level == FULL
    rec = run.plan.record if run.plan else {}
    stored = prev[_S_ARCHIVES] if prev is not None else {}
    for ext in exts:
        path = run.root + ext
        try:
            if pkgs_fd is not None:
                st = os.stat(entry + ext, dir_fd=pkgs_fd, follow_symlinks=False)
            else:
                st = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        fn = os.path.basename(path)
        info = {"fn": fn, "path": path, "size": st.st_size, "checked": None, "ok": None}
        f.archives.append(info)
        if not may_read(st, path):
            # conda would re-extract from it, and cannot
            f.add(UNREADABLE, fn, detail="permission denied")
            info.update(ok=False)
            continue
        if rec.get("fn") != fn:
            continue  # the record describes the other format; nothing to compare
        size = rec.get("size")
        if isinstance(size, int) and size != st.st_size:
            f.add(ARCHIVE_SIZE, fn, size, st.st_size)
            info.update(checked="size", ok=False)
            continue
        info.update(checked="size", ok=True if isinstance(size, int) else None)
        if not full:
            if fn in stored:
                run.archives[fn] = stored[fn]  # still true if the fingerprint holds
            continue
        algo = "sha256" if rec.get("sha256") else ("md5" if rec.get("md5") else None)
        if algo is None:
            continue
        fp = fingerprint(st)
        prev_fp = stored.get(fn)
        if prev_fp is not None and tuple(prev_fp) == (fp, algo):
            f.skipped += 1
            info.update(checked=algo, ok=True)
            run.archives[fn] = prev_fp
            continue
        jobs.append(ArchiveJob(index, "archive", fn, path, st.st_size, rec[algo], algo))
