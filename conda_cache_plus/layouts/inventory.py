"""What is in the caches, as plain data: the pure layer under ``info`` and ``list``."""

from __future__ import annotations

import os
import stat

from ..model.filenames import MAGIC_FILE
from ..model.match import SpecMatcher, match_any, version_sort_keys
from ..model.records import PackageCacheRecord
from ..model.sizes import InodeSet, path_size
from .caches import PackageCacheData


def cache_counts(cache: PackageCacheData) -> dict[str, int]:
    res = cache.load()
    recs = res.records
    return {
        "packages": len(recs),
        "archives": sum(1 for r in recs if r.is_fetched),
        "extracted": sum(1 for r in recs if r.is_extracted),
        "both": sum(1 for r in recs if r.is_fetched and r.is_extracted),
        "archive_only": sum(1 for r in recs if r.is_fetched and not r.is_extracted),
        "extracted_only": sum(1 for r in recs if r.is_extracted and not r.is_fetched),
        "incomplete": sum(1 for r in recs if r.is_extracted and not r.is_complete),
        "broken": len(res.broken) + sum(1 for r in recs if r.is_broken),
        "leftovers": len(res.leftovers),
    }


def cache_summary(
    cache: PackageCacheData, *, sizes: bool = True, inodes: InodeSet | None = None
) -> dict:
    """The ``info --json`` shape for one cache (docs/json-schemas.md)."""
    res = cache.load()
    out: dict = {
        "path": cache.pkgs_dir,
        "exists": res.exists,
        "readable": res.readable,
        "writable": cache.is_writable,
        "writable_reason": cache.writable_reason,
        "layout": res.layout or ("nested" if res.nested else "flat"),
        "counts": cache_counts(cache),
        "sizes": None,
        "problems": list(res.problems),
        "broken": [b.to_json() for b in res.broken]
        + [
            {"path": r.extracted_package_dir, "reason": "; ".join(r.problems)}
            for r in res.records
            if r.is_broken
        ],
        "leftovers": [lo.to_json() for lo in res.leftovers],
        "ignored": list(res.others),
        "not_repairable": not_repairable(cache),
    }
    for item in out["not_repairable"]:
        out["problems"].append(f"you could not repair {item['entry']}: {item['reason']}")
    if sizes and res.exists and res.readable:
        inodes = inodes or InodeSet()
        total = path_size(cache.pkgs_dir, inodes)
        index_cache = os.path.join(cache.pkgs_dir, "cache")
        out["sizes"] = {
            "apparent": total.apparent,
            "disk": total.disk,
            "shared_hardlinks": total.shared,
            "archives": sum(r.archive_bytes for r in res.records),
            "leftovers": sum(lo.size for lo in res.leftovers),
            "index_cache": path_size(index_cache).apparent if os.path.isdir(index_cache) else 0,
        }
        if total.errors:
            out["problems"].append(f"{len(total.errors)} path(s) could not be measured")
    return out


def _who(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def not_repairable(cache: PackageCacheData) -> list[dict]:
    """Entries of a writable cache that the current user could not re-extract, re-download or
    remove: in a cache shared by a group, those another member left without group write
    permission (or owns, under a sticky cache directory). Checks each entry's directory and its
    ``info/`` (where a member's umask shows) and each archive; root can repair anything."""
    if os.geteuid() == 0 or not cache.is_writable:
        return []
    res = cache.load()
    try:
        sticky = bool(os.stat(cache.pkgs_dir).st_mode & stat.S_ISVTX)
    except OSError:
        return []
    uid = os.getuid()
    out = []
    for rec in res.records:
        reason = owner = None
        paths = [rec.archive_path(ext) for ext in rec.archives]
        if rec.has_dir:
            d = rec.extracted_package_dir
            paths = [d, os.path.join(d, "info"), *paths]
        for path in paths:
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if sticky and st.st_uid != uid and os.path.dirname(path) == cache.pkgs_dir:
                owner = _who(st.st_uid)
                reason = (
                    f"{os.path.basename(path)} belongs to {owner} and the cache directory is "
                    "sticky (+t): only its owner may replace or remove it"
                )
                break
            if stat.S_ISDIR(st.st_mode) and not os.access(path, os.W_OK | os.X_OK):
                owner = _who(st.st_uid)
                reason = (
                    f"{os.path.relpath(path, cache.pkgs_dir)} is not writable by you (owner "
                    f"{owner}, group {_group(st.st_gid)}, mode {stat.S_IMODE(st.st_mode):04o}); "
                    "make the cache group-writable (chmod -R g+w) and use umask 002"
                )
                break
        if reason:
            out.append(
                {
                    "entry": rec.entry,
                    "path": rec.extracted_package_dir,
                    "owner": owner,
                    "reason": reason,
                }
            )
    return out


def is_initialised(pkgs_dir: str) -> bool:
    return os.path.isfile(os.path.join(pkgs_dir, MAGIC_FILE))


def select(records: list[PackageCacheRecord], specs: list[SpecMatcher]) -> list[PackageCacheRecord]:
    return [r for r in records if match_any(r, specs)]


def sort_records(records: list[PackageCacheRecord], by: str) -> list[PackageCacheRecord]:
    if by == "size":
        return sorted(records, key=lambda r: (-(r.archive_bytes or r.size or 0), r.name))
    if by == "date":
        return sorted(records, key=lambda r: (-(r.mtime or 0), r.name))
    keys = version_sort_keys(r.version for r in records)
    return sorted(records, key=lambda r: (r.name, keys[r.version], r.build, r.pkgs_dir))
