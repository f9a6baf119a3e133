"""The fetch plan: for each package, reuse, extract, copy or download, and into which cache."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from ..exceptions import (
    NoWritableCacheError,
    UsageError,
)
from ..gateways.download import (
    expected_checksum,
    hash_file,
)
from ..layouts.caches import PackageCaches
from ..model.cache_paths import CacheLayout
from ..model.records import SOURCE_RECORD
from ..model.sizes import human_bytes
from .refs import PackageRef

NONE = "none"


EXTRACT = "extract"


COPY = "copy"


DOWNLOAD = "download"


# -- planning -------------------------------------------------------------------------------------
@dataclass
class PlanItem:
    ref: PackageRef
    action: str  # none | extract | copy | download
    pkgs_dir: str  # where the package is (none) or will be (others)
    reason: str
    source: str | None = None  # the archive extracted (extract) or copied (copy)
    source_url: str | None = None  # the URL recorded for a copied archive
    resume_bytes: int = 0
    digests: tuple[int, str, str] | None = None  # (size, sha256, md5) of a verified archive
    forced: bool = False

    @property
    def layout(self) -> CacheLayout:
        return CacheLayout(self.pkgs_dir)

    def to_json(self) -> dict:
        return {
            **self.ref.to_json(),
            "action": self.action,
            "pkgs_dir": self.pkgs_dir,
            "reason": self.reason,
            "source": self.source,
            "resume_bytes": self.resume_bytes,
        }


@dataclass
class FetchPlan:
    items: list[PlanItem]
    target: str | None  # the first writable cache (created when needed)
    create_target: bool = False

    def counts(self) -> dict[str, int]:
        out = {NONE: 0, EXTRACT: 0, COPY: 0, DOWNLOAD: 0}
        for item in self.items:
            out[item.action] += 1
        return out

    @property
    def download_bytes(self) -> int:
        """Bytes still to download, of the packages whose size is known (see unknown_sizes)."""
        return sum(
            max((i.ref.size or 0) - i.resume_bytes, 0) for i in self.items if i.action == DOWNLOAD
        )

    @property
    def unknown_sizes(self) -> int:
        """Downloads whose size nothing told us (a bare URL): download_bytes leaves them out."""
        return sum(1 for i in self.items if i.action == DOWNLOAD and i.ref.size is None)

    def download_size_text(self) -> str:
        """``87 KiB``, ``size unknown``, or ``87 KiB + 2 of unknown size``: never "0 B" for
        what simply was not said."""
        unknown = self.unknown_sizes
        known = human_bytes(self.download_bytes)
        if not unknown:
            return known
        if unknown == self.counts()[DOWNLOAD]:
            return "size unknown"
        return f"{known} + {unknown} of unknown size"

    def to_json(self) -> dict:
        return {
            "target": self.target,
            "create_target": self.create_target,
            "counts": self.counts(),
            "download_bytes": self.download_bytes,
            "unknown_sizes": self.unknown_sizes,
            "items": [i.to_json() for i in self.items],
        }


# (path, inode, size, mtime_ns) → (size, sha256, md5): an archive is hashed once per process.
_digest_memo: dict[tuple, tuple[int, str, str]] = {}


_memo_lock = threading.Lock()


def archive_digests(path: str) -> tuple[int, str, str]:
    st = os.stat(path)
    key = (path, st.st_ino, st.st_size, st.st_mtime_ns)
    with _memo_lock:
        hit = _digest_memo.get(key)
    if hit is None:
        hit = hash_file(path)
        with _memo_lock:
            _digest_memo[key] = hit
    return hit


def _agrees(ref: PackageRef, data: dict) -> bool:
    """The recorded fields do not contradict the reference (each compared when both know it)."""
    if data.get("fn") and data["fn"] != ref.fn:
        return False
    for key in ("size", "md5", "sha256"):
        mine, theirs = getattr(ref, key), data.get(key)
        if mine is None or theirs is None:
            continue
        if (mine.lower() if isinstance(mine, str) else mine) != (
            theirs.lower() if isinstance(theirs, str) else theirs
        ):
            return False
    return True


def _archive_ok(ref: PackageRef, path: str, record_data: dict) -> tuple[int, str, str] | None:
    """The archive's digests when it verifies against the reference (or, lacking checksums in
    the reference, against its cache record), else None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    want_size = ref.size
    sha, md5 = ref.sha256, ref.md5
    if not expected_checksum(sha, md5) and record_data.get("fn") == ref.fn:
        sha, md5 = record_data.get("sha256"), record_data.get("md5")
        want_size = want_size if want_size is not None else record_data.get("size")
    if want_size is not None and st.st_size != want_size:
        return None
    try:
        got = archive_digests(path)
    except OSError:
        return None
    want = expected_checksum(sha, md5)
    if want is not None and (got[1] if want[0] == "sha256" else got[2]) != want[1]:
        return None
    return got


def _creatable(path: str) -> bool:
    probe = path
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            return False
        probe = parent
    return os.path.isdir(probe) and os.access(probe, os.W_OK | os.X_OK)


def choose_target(caches: PackageCaches) -> tuple[str | None, bool]:
    """conda's ``first_writable``: configured order, skipping read-only caches, creating the first
    directory that is not a cache yet. (target, needs creating). Never a cache in a layout we
    do not write (rattler's: pixi fills it, and conda's files in it would hide its entries)."""
    for cache in caches.caches:
        if not cache.kind.fetch_target:
            continue
        if cache.is_writable:
            return cache.pkgs_dir, False
        if cache.is_writable is None and _creatable(cache.pkgs_dir):
            return cache.pkgs_dir, True
    return None, False


def plan(refs: list[PackageRef], caches: PackageCaches, *, force=frozenset()) -> FetchPlan:
    """Decide what each reference needs; reads the caches, changes nothing."""
    target, create = choose_target(caches)
    by_dist: dict[str, list] = {}
    ordered = caches.writable_first()
    for cache in ordered:
        if cache.is_writable is None:
            continue
        for rec in cache.records:
            by_dist.setdefault(rec.basename, []).append((cache, rec))
    items: list[PlanItem] = []
    seen: set[str] = set()
    for ref in refs:
        if ref.fn in seen or ref.refused:
            continue  # a refused reference is reported by the caller, never planned
        seen.add(ref.fn)
        items.append(_plan_one(ref, by_dist.get(ref.dist, []), target, ref.fn in force))
    if target is None and any(i.action != NONE for i in items):
        foreign = [c.pkgs_dir for c in caches.caches if not c.kind.fetch_target]
        if foreign:
            raise UsageError(
                f"{', '.join(foreign)}: a rattler/pixi package cache; fetch writes conda's layout "
                "only. Let pixi fill it, or fetch into a conda cache (--pkgs-dir DIR)."
            )
        raise NoWritableCacheError(caches.pkgs_dirs)
    items.sort(key=lambda i: -(i.ref.size or 0))
    return FetchPlan(items, target, create and any(i.action != NONE for i in items))


def _plan_one(ref: PackageRef, found: list, target: str | None, forced: bool) -> PlanItem:
    if not forced:
        for cache, rec in found:
            if (
                rec.is_extracted
                and rec.source == SOURCE_RECORD
                and rec.url
                and _agrees(ref, rec.data)
            ):
                return PlanItem(ref, NONE, cache.pkgs_dir, "already extracted")
        for cache, rec in found:
            if ref.ext not in rec.archives:
                continue
            path = rec.archive_path(ref.ext)
            got = _archive_ok(ref, path, rec.data)
            if got is None:
                continue
            if cache.is_writable:
                return PlanItem(
                    ref, EXTRACT, cache.pkgs_dir, "archive in the cache", source=path, digests=got
                )
            if target is not None:
                return PlanItem(
                    ref,
                    COPY,
                    target,
                    f"archive in read-only cache {cache.pkgs_dir}",
                    source=path,
                    source_url=rec.url or ref.url,
                    digests=got,
                )
    pkgs_dir = target or ""
    resume = 0
    reason = "forced" if forced else "not in any cache"
    if pkgs_dir and expected_checksum(ref.sha256, ref.md5):
        try:
            resume = os.path.getsize(CacheLayout(pkgs_dir).partial(ref.fn))
        except OSError:
            resume = 0
        if ref.size is not None and resume > ref.size:
            resume = 0
        if resume:
            reason += f"; resuming {human_bytes(resume)} already downloaded"
    return PlanItem(ref, DOWNLOAD, pkgs_dir, reason, resume_bytes=resume, forced=forced)
