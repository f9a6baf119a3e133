"""rattler's (and pixi's) package-cache layout, behind :mod:`.layouts`.

Facts from ``crates/rattler_cache`` (``package_cache/{mod,cache_key,cache_lock}.rs``), and what
py-rattler 0.28 writes:

- an entry is ``<name>-<version>-<build>``, or ``…-<sha256 of the origin URL/path>`` when the
  cache keys on origin (``with_cached_origin``); it holds ``info/index.json`` and
  ``info/paths.json`` but no ``repodata_record.json``, and no archive is kept beside it;
- each entry has a sidecar ``<entry>.lock``: a big-endian u64 *revision* (bumped on every
  re-fetch), then optionally the 32-byte sha256 of the archive the entry came from. It is
  metadata, not a lock (rattler PR #1818) and is created before the entry, so a sidecar without
  its directory is what an interrupted or removed fetch leaves;
- ``.cache.lock`` at the root is the global lock: ``fs4`` ``lock_exclusive`` (``flock`` on Unix)
  held by an installer for its whole transaction (a ``rattler.install`` waits on it, checked with
  py-rattler 0.28), so holding it keeps every rattler/pixi process out of the cache;
- a re-fetch extracts into a ``.<entry>XXXXXX`` temp dir in the cache root, then renames it into
  place; rattler re-validates (and re-fetches) whenever the directory is missing or the revision
  changed since it last validated it.

Removal here follows that protocol: under the global lock, the directory goes first, then its
sidecar; a repaired entry gets ``revision + 1`` so a running process re-validates it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import time
from contextlib import contextmanager

from ..exceptions import LockTimeoutError
from ..gateways.locks import DEFAULT_WAIT, wait_limit
from ..model.plainclass import FrozenFields
from ..model.records import SOURCE_RATTLER, PackageCacheRecord, sanitize

GLOBAL_LOCK = ".cache.lock"


SIDECAR_EXT = ".lock"


PKGS_SUBDIR = "pkgs"  # rattler_cache::PACKAGE_CACHE_DIR, under the cache root


META_NAMES = frozenset({GLOBAL_LOCK, "CACHEDIR.TAG", ".DS_Store", ".conda-cache-plus"})


_ORIGIN_HASH = re.compile(r"^[0-9a-f]{64}$")


_REVISION_LEN = 8


_SHA256_LEN = 32


class Sidecar(FrozenFields):
    """(not a dataclass: model/plainclass.py says why)"""

    __slots__ = ("revision", "sha256")
    FIELDS = ("revision", "sha256")

    def __init__(self, revision: int, sha256: str | None):
        object.__setattr__(self, "revision", revision)
        object.__setattr__(self, "sha256", sha256)  # hex


def read_sidecar(path: str) -> Sidecar | None:
    """The revision and sha256 of ``<entry>.lock`` (rattler's ``read_revision``/``read_sha256``:
    a short file means revision 0 / no sha256). None when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(_REVISION_LEN + _SHA256_LEN)
    except OSError:
        return None
    revision = int.from_bytes(raw[:_REVISION_LEN], "big") if len(raw) >= _REVISION_LEN else 0
    sha = raw[_REVISION_LEN:] if len(raw) == _REVISION_LEN + _SHA256_LEN else b""
    return Sidecar(revision, sha.hex() if sha else None)


def write_sidecar(path: str, revision: int, sha256: str | None) -> None:
    """Write ``<entry>.lock`` the way rattler's ``write_revision_and_sha`` does: in place (a
    running rattler may hold it open), revision then sha256, truncated to what was written."""
    data = revision.to_bytes(_REVISION_LEN, "big") + (bytes.fromhex(sha256) if sha256 else b"")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def sidecar_of(entry_dir: str) -> str:
    return entry_dir + SIDECAR_EXT


def split_origin(entry: str, name: str, version: str, build: str) -> str | None:
    """The origin hash suffix of an entry name, if it has one."""
    base = f"{name}-{version}-{build}"
    if entry.startswith(base + "-") and _ORIGIN_HASH.match(entry[len(base) + 1 :]):
        return entry[len(base) + 1 :]
    return None


def looks_like_rattler(pkgs_dir: str) -> bool:
    """Whether ``pkgs_dir`` is a rattler package cache: the global lock is there, or a sidecar
    sits beside its entry directory. conda's ``urls.txt`` wins (:func:`.layouts.detect` asks
    first), so a directory conda also initialised stays a conda cache."""
    if os.path.isfile(os.path.join(pkgs_dir, GLOBAL_LOCK)):
        return True
    try:
        with os.scandir(pkgs_dir) as it:
            names = {de.name for de in it}
    except OSError:
        return False
    return any(
        n.endswith(SIDECAR_EXT) and n[: -len(SIDECAR_EXT)] in names
        for n in names
        if n != GLOBAL_LOCK
    )


# --- scan ---------------------------------------------------------------------------------------
def scan(pkgs_dir: str, use_index: bool = True):
    """A :class:`~.pkgs_dir.ScanResult` of a rattler cache. Pure: reads only (the remembered
    index, ``use_index``, lives in the user's cache dir)."""
    from ..gateways.statefile import RACY_SECONDS
    from .scan_result import Leftover, ScanResult

    res = ScanResult(pkgs_dir, layout="rattler")
    try:
        listing = list(os.scandir(pkgs_dir))
    except FileNotFoundError:
        res.exists = False
        res.problems.append("does not exist")
        return res
    except OSError as exc:
        res.readable = False
        res.problems.append(f"cannot list {pkgs_dir}: {exc.strerror or exc}")
        return res
    dirs: dict[str, os.DirEntry] = {}
    sidecars: dict[str, os.DirEntry] = {}
    for de in listing:
        name = de.name
        try:
            is_dir = de.is_dir(follow_symlinks=False)
        except OSError:
            is_dir = False
        if name in META_NAMES:
            continue
        if is_dir:
            if name.startswith("."):
                # rattler's `.<entry>XXXXXX` extraction dirs (and our own trash)
                res.leftovers.append(Leftover(de.path, name, "tmp", 0, True))
            else:
                dirs[name] = de
        elif name.endswith(SIDECAR_EXT):
            sidecars[name[: -len(SIDECAR_EXT)]] = de
        elif de.is_symlink():
            res.others.append(f"{name}: symlink, ignored")
        else:
            res.others.append(f"{name}: not a package, ignored")
    for stem, de in sorted(sidecars.items()):
        if stem not in dirs:
            # what a removed or interrupted fetch leaves: rattler re-fetches, keeps the revision
            try:
                size = de.stat(follow_symlinks=False).st_size
            except OSError:
                size = 0
            res.leftovers.append(Leftover(de.path, de.name, "sidecar", size, False))
    old = load_index(pkgs_dir) if use_index else {}
    new: dict = {}
    trust_before = _clock(pkgs_dir) - RACY_SECONDS
    try:
        base_fd = os.open(pkgs_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        base_fd = None
    try:
        for name in sorted(dirs):
            _scan_entry(res, pkgs_dir, name, dirs[name].path, sidecars.get(name), base_fd, old,
                        new, trust_before)  # fmt: skip
    finally:
        if base_fd is not None:
            os.close(base_fd)
    if use_index and new != old:
        _save_index(pkgs_dir, new)
    return res


# What a previous scan read, per entry: the fingerprints of ``info/index.json`` and of the
# sidecar, and what they gave (fields, problems). A later scan that finds both files unchanged
# (one ``stat`` of index.json; the sidecar's is needed anyway for when the entry was fetched)
# reads neither. Kept in the user's cache dir, as the conda scan's index (scan_index.py).
_INDEX_KIND = "rattler-scan"
_INDEX_FORMAT = 1


def load_index(pkgs_dir: str) -> dict:
    """What the last scan of ``pkgs_dir`` remembered, by entry ({} when nothing)."""
    from ..gateways import statefile

    path = statefile.user_state_path(_INDEX_KIND, _INDEX_FORMAT, pkgs_dir)
    return statefile.read(path, _INDEX_FORMAT, pkgs_dir)


def _save_index(pkgs_dir: str, data: dict) -> None:
    from ..gateways import statefile

    path = statefile.user_state_path(_INDEX_KIND, _INDEX_FORMAT, pkgs_dir)
    statefile.write(path, _INDEX_FORMAT, pkgs_dir, data)


def _clock(pkgs_dir: str) -> float:
    from ..model import fsclock

    return fsclock.now(pkgs_dir)


def _fp(st: os.stat_result | None) -> tuple | None:
    return None if st is None else (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _settled(st: os.stat_result | None, trust_before: float) -> bool:
    # written within RACY_SECONDS of now: a change in the same clock tick keeps its fingerprint
    # (the conda scan's rule, conda_pkgs.py; the fingerprint has the ctime too)
    return st is None or st.st_mtime < trust_before


def _scan_entry(res, pkgs_dir, name, path, sidecar, base_fd, old, new, trust_before) -> None:
    from .scan_result import BrokenEntry, read_json

    side_st = None
    if sidecar is not None:
        try:
            side_st = sidecar.stat(follow_symlinks=False)
        except OSError:
            side_st = None
    try:
        if base_fd is not None:
            idx_st = os.stat(name + "/info/index.json", dir_fd=base_fd, follow_symlinks=False)
        else:
            idx_st = os.lstat(os.path.join(path, "info", "index.json"))
    except OSError:
        idx_st = None
    cached = old.get(name)
    if (
        cached is not None
        and idx_st is not None
        and cached[0] == _fp(idx_st)
        and cached[1] == _fp(side_st)
        and (sidecar is None) == (cached[1] is None)
    ):
        new[name] = cached
        clean, problems = dict(cached[2]), list(cached[3])
    else:
        data, _st, err = read_json(os.path.join(path, "info", "index.json"))
        clean, bad = sanitize(data) if err is None and data is not None else ({}, [])
        if not (clean.get("name") and clean.get("version")):
            reason = err or (
                "info/index.json is missing" if data is None else "index.json lacks name/version"
            )
            res.broken.append(BrokenEntry(path, name, reason))
            return
        problems = list(bad)
        side = read_sidecar(sidecar_of(path)) if sidecar is not None else None
        if sidecar is None:
            problems.append(f"no {name}{SIDECAR_EXT} (rattler will re-validate it)")
        elif side is None:
            problems.append(f"{name}{SIDECAR_EXT} is unreadable")
        if side is not None:
            clean["revision"] = side.revision
            if side.sha256:
                clean["sha256"] = side.sha256
        origin = split_origin(
            name, str(clean.get("name")), str(clean.get("version")), str(clean.get("build", ""))
        )
        if origin:
            clean["origin_hash"] = origin
        if (
            idx_st is not None
            and _settled(idx_st, trust_before)
            and _settled(side_st, trust_before)
            and (sidecar is None or side_st is not None)
        ):
            new[name] = (_fp(idx_st), _fp(side_st), dict(clean), list(problems))
    # when it was (re-)fetched (_fetched_at), from the sidecar's stat taken above
    if sidecar is None:
        fetched_at = _fetched_at(path, None)
    else:
        fetched_at = side_st.st_mtime if side_st is not None else None
    res.records.append(
        PackageCacheRecord(
            clean, pkgs_dir, name, {}, True, True, SOURCE_RATTLER, problems, fetched_at
        )
    )


def _fetched_at(path: str, sidecar: os.DirEntry | None) -> float | None:
    """When the entry was (re-)fetched: rattler rewrites the sidecar then (else the directory's
    own time). Not index.json's mtime: extraction keeps the archive's timestamps."""
    try:
        if sidecar is not None:
            return sidecar.stat(follow_symlinks=False).st_mtime
        return os.lstat(path).st_mtime
    except OSError:
        return None


def adopt(record) -> None:
    """Make a record the conda scanner built from ``index.json`` a rattler one: the sidecar's
    revision and sha256, rattler's source (complete for its layout)."""
    side = read_sidecar(sidecar_of(record.extracted_package_dir))
    data = dict(record.data)
    if side is not None:
        data["revision"] = side.revision
        if side.sha256:
            data["sha256"] = side.sha256
    record.data = data
    record.source = SOURCE_RATTLER


def has_sidecar(entry_dir: str) -> bool:
    return os.path.isfile(sidecar_of(entry_dir))


def writability(pkgs_dir: str) -> tuple[bool | None, str]:
    """rattler's rule (``is_readonly``: permissions, plus a read-only mount like CVMFS); no
    magic file: any directory rattler can write is a cache it will fill."""
    from .scan_result import writable_dir

    if not os.path.isdir(pkgs_dir):
        return None, "does not exist"
    return writable_dir(pkgs_dir)


# --- the global lock ------------------------------------------------------------------------------
@contextmanager
def global_lock(pkgs_dir: str, *, timeout=DEFAULT_WAIT, on_wait=None):
    """Hold rattler's ``.cache.lock`` exclusively, as ``CacheGlobalLock::acquire`` does (open
    read-write, create, never truncate; ``flock``). Kept apart from our own lock helpers on
    purpose: those may move to ``fcntl`` record locks, which do not exclude an ``flock``.
    ``timeout`` (seconds, None for ever): by default the verb's --lock-timeout, else 60."""
    if timeout is DEFAULT_WAIT:
        timeout = wait_limit(60.0)
    path = os.path.join(pkgs_dir, GLOBAL_LOCK)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    start = time.monotonic()
    told = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
            waited = time.monotonic() - start
            if timeout is not None and waited >= timeout:
                raise LockTimeoutError(path, "rattler/pixi (global cache lock)", waited)
            if not told and on_wait is not None:
                on_wait(f"waiting for rattler's global lock {path} (a pixi install?) ...")
                told = True
            time.sleep(0.05)
        yield
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


# --- repair -------------------------------------------------------------------------------------
def origin_urls(envs) -> dict[str, tuple[str, str | None]]:
    """entry directory → (url, sha256) from the environments' ``conda-meta`` records: rattler's
    cache keeps no URL, the records of what it installed do (``url``, ``sha256``, and the
    entry they were linked from, ``link.source``/``extracted_package_dir``)."""
    import json

    out: dict[str, tuple[str, str | None]] = {}
    for env in envs:
        meta = os.path.join(env.prefix, "conda-meta")
        try:
            names = [n for n in os.listdir(meta) if n.endswith(".json")]
        except OSError:
            continue
        for name in names:
            try:
                with open(os.path.join(meta, name), "rb") as fh:
                    data = json.loads(fh.read().decode("utf-8"))
            except (OSError, ValueError):
                continue
            if not isinstance(data, dict):
                continue
            link = data.get("link") if isinstance(data.get("link"), dict) else {}
            source = link.get("source") or data.get("extracted_package_dir")
            url, sha = data.get("url"), data.get("sha256")
            if isinstance(source, str) and isinstance(url, str) and url:
                out.setdefault(
                    os.path.normpath(source), (url, sha if isinstance(sha, str) else None)
                )
    return out


def repair_source(entry_dir: str, urls: dict) -> tuple[str | None, str | None, str]:
    """(url, sha256, why) for re-fetching an entry: a URL only when an environment's record names
    it and a sha256 to check the download against is known (the sidecar's, else the record's)."""
    side = read_sidecar(sidecar_of(entry_dir))
    url, rec_sha = urls.get(os.path.normpath(entry_dir), (None, None))
    sha = (side.sha256 if side else None) or rec_sha
    if not url:
        return None, sha, "no environment's record names its URL (rattler keeps none)"
    if side and side.sha256 and rec_sha and side.sha256 != rec_sha:
        return None, sha, "the environment's record and the sidecar disagree on its sha256"
    if not sha:
        return None, None, "no sha256 to check a download against"
    return url, sha, f"URL from an environment's record, checked against sha256 {sha[:12]}…"


def remove_entry(pkgs_dir: str, entry: str) -> dict:
    """Remove one entry and its sidecar under the global lock (rattler fetches it again)."""
    from ..gateways.fsops import RemovalStats, remove_path

    stats = RemovalStats()
    with global_lock(pkgs_dir):
        remove_entry_files(os.path.join(pkgs_dir, entry), lambda p: remove_path(p, stats, pkgs_dir))
    return {"files": stats.files, "bytes": stats.bytes, "urls_lines": 0}


def remove_entry_files(entry_dir: str, remove_path) -> bool:
    """Remove an entry the way a re-fetch would find it gone: the directory, then its sidecar.
    Call with :func:`global_lock` held. ``remove_path(path) -> bool`` deletes one path."""
    removed = remove_path(entry_dir)
    side = sidecar_of(entry_dir)
    if os.path.lexists(side):
        removed = remove_path(side) or removed
    return removed
