"""Planning what ``remove`` and ``clean`` delete, and deleting exactly that.

The plan is pure (it reads the caches and the environments and returns data); ``--dry-run``
prints it, the real run executes the same plan. Semantics of ``clean`` (README "Cleaning"):

* Package policies select *entries* and combine with AND: an entry goes only if every given
  policy selects it.

  - ``--unused``: no known environment uses it (``usage.py``: records, hard links, symlinks);
  - ``--older-than D``: last used (newest link by an environment, or extraction/download, whichever
    is later) more than ``D`` ago;
  - ``--keep-latest N``: not among the ``N`` newest versions (version order, then build number)
    cached for its package name, over all caches;
  - ``--max-size S``: applied last, among what the other policies selected (or every entry when
    it is alone): least recently used first, until the package entries of the writable caches
    take at most ``S`` on disk (as ``du`` counts them).

* ``--tarballs`` / ``--extracted`` say which part of a selected entry goes: only its archives (kept
  only for entries whose extracted directory is complete), or only its extracted directory (kept
  only when an archive stays). Without either the whole entry goes. Given alone they select every
  entry that qualifies.
* ``--temp`` and ``--index-cache`` add leftovers (partial downloads not locked by a running
  download, ``.c~`` holds, trash, our orphan temp dirs) and ``pkgs/cache``; they do not combine with
  the package policies.

Never removed: an entry (or its extracted directory) in use by a known environment — and with
``--keep-history`` one named by a revision in ``conda-meta/history`` (archives may still go with
``--tarballs``: environments never link them); an entry whose lock is held (being written), ours,
mamba's or rattler's beside it, or whose download conda holds (byte 21 of its ``.partial``);
anything in a read-only cache. Each is listed under ``skipped`` with the reason.

Kept unless forced (``clean --force-unsure``, ``remove --force-in-use``), because its use cannot
be ruled out:

- an entry an environment we cannot read fully may use: one of its ``conda-meta`` records is
  unreadable or invalid (the record's file name says which package), or ``conda-meta`` cannot be
  listed (then every entry);
- an entry whose extracted files have hard links that neither the entry itself (a package
  hard-linked to itself), nor the same package in another cache, account for: an environment we
  do not know (``register_envs: false``, a prefix outside ``envs_dirs``) was linked from it.

Policies (not ``remove``) also leave alone what changed within the grace period (``--grace``,
default 1 hour): an entry downloaded, extracted or linked by an environment that recently, or a
file of it hard-linked that recently (a link changes the file's ctime). That is what an install
running right now looks like: conda takes no lock while it extracts and links.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable

from ..model.cache_paths import CacheLayout
from ..model.match import match_any, version_compare
from ..model.records import PackageCacheRecord
from .footprint import Footprint, measure
from .graph import UsageReport
from .plan_records import PART_ENTRY, READ_ONLY_REASON, Plan, PlanItem, Policy, Skipped

PART_TARBALLS = "tarballs"


PART_EXTRACTED = "extracted"


KIND_PACKAGE = "package"


KIND_ARCHIVE = "archive"


KIND_EXTRACTED = "extracted"


KIND_TEMP = "temp"


KIND_INDEX = "index_cache"


# conda's .c~ holds and our temp dirs younger than this may belong to a running transaction.
TEMP_GRACE_SECONDS = 300


# Policies leave alone entries created, extracted or linked more recently than this (--grace).
DEFAULT_GRACE = "1h"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdwy]?)\s*$", re.IGNORECASE)


_DURATION_UNITS = {
    "": 86400,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "y": 365 * 86400,
}


def parse_duration(text: str) -> float:
    """``30d``, ``12h``, ``2w``, ``90m``, ``45s``, ``1y`` → seconds (a bare number is days)."""
    m = _DURATION.match(text or "")
    if not m:
        raise ValueError(f"not a duration: {text!r} (try 30d, 12h, 2w)")
    seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2).lower()]
    if not seconds < 1e12:  # also inf: "1e999d" would overflow every date computed from it
        raise ValueError(f"not a duration: {text!r} (too long)")
    return seconds


# --- selection ---------------------------------------------------------------------------------
def _entry_paths(rec: PackageCacheRecord, part: str) -> list[str]:
    if part == PART_TARBALLS:
        return [rec.archive_path(ext) for ext in rec.archives]
    if part == PART_EXTRACTED:
        return [rec.extracted_package_dir]
    from ..layouts.kinds import detect

    return detect(rec.pkgs_dir).entry_paths(rec)  # rattler's: with the <entry>.lock sidecar


def _part_applies(rec: PackageCacheRecord, part: str) -> bool:
    if part == PART_TARBALLS:
        return rec.is_fetched and rec.is_extracted and rec.is_complete and not rec.problems
    if part == PART_EXTRACTED:
        return rec.has_dir and rec.is_fetched
    return True


def _version_rank(records: list[PackageCacheRecord]) -> dict[int, int]:
    """id(record) → 0 for the newest (version, build_number) of its name, 1 for the next, ..."""
    import functools

    def cmp(a, b):
        return version_compare(a[0], b[0]) or (a[1] > b[1]) - (a[1] < b[1])

    by_name: dict[str, list[PackageCacheRecord]] = {}
    for rec in records:
        by_name.setdefault(rec.name, []).append(rec)
    rank: dict[int, int] = {}
    for recs in by_name.values():
        distinct = sorted(
            {(r.version, r.build_number) for r in recs},
            key=functools.cmp_to_key(cmp),
            reverse=True,
        )
        pos = {v: i for i, v in enumerate(distinct)}
        for r in recs:
            rank[id(r)] = pos[(r.version, r.build_number)]
    return rank


def _fmt_age(seconds: float) -> str:
    days = seconds / 86400
    if days >= 1:
        return f"{days:.1f}d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{max(seconds, 0) / 60:.0f}m"


def _newest_change(rec: PackageCacheRecord, last_linked: float | None) -> float:
    """When the entry last changed: downloaded, extracted, written or linked by an environment."""
    times = [t for t in (rec.mtime, last_linked) if t is not None]
    paths = [rec.archive_path(ext) for ext in rec.archives]
    if rec.has_dir:
        d = rec.extracted_package_dir
        paths += [d, os.path.join(d, "info"), os.path.join(d, "info", "repodata_record.json")]
    for path in paths:
        try:
            st = os.lstat(path)
        except OSError:
            continue
        times += [st.st_mtime, st.st_ctime]
    return max(times) if times else 0.0


# what gateways.locks.entry_busy looks for beside an entry: with none of these names in the
# cache's listing there is nothing to probe (a listing per cache, not five lookups per entry)
_BUSY_SUFFIXES = (".conda.partial", ".tar.bz2.partial", ".lock", ".conda.lock", ".tar.bz2.lock")


def _held_by_another_tool(
    rec: PackageCacheRecord, listings: dict[str, frozenset[str] | None]
) -> str | None:
    """Why a lock beside the entry says another tool is writing it, if one does."""
    from ..gateways.locks import entry_busy

    names = listings.get(rec.pkgs_dir, False)
    if names is False:
        try:
            names = frozenset(os.listdir(rec.pkgs_dir))
        except OSError:
            names = None  # ask entry by entry
        listings[rec.pkgs_dir] = names
    entry = rec.entry
    if (
        names is not None
        and "/" not in entry
        and os.sep not in entry
        and not any(entry + suffix in names for suffix in _BUSY_SUFFIXES)
    ):
        return None
    return entry_busy(rec.archive_path(""))


def plan_packages(
    caches,
    usage: UsageReport,
    policy: Policy,
    *,
    now: float | None = None,
    is_locked: Callable[[CacheLayout, str], bool] | None = None,
    force_in_use: bool = False,
    force_unsure: bool = False,
) -> Plan:
    """Entries (or their parts) to remove under ``policy``; see the module docstring.
    ``force_in_use`` removes entries environments use (and implies ``force_unsure``);
    ``force_unsure`` only those kept because their use cannot be ruled out."""
    from ..gateways.locks import lock_held

    now = time.time() if now is None else now
    if is_locked is None:

        def is_locked(layout: CacheLayout, entry: str) -> bool:
            return lock_held(layout.entry_lock(entry))

    plan = Plan()
    all_records: list[PackageCacheRecord] = []
    writable: dict[str, bool] = {}
    for cache in caches.writable_first():
        res = cache.load()
        if not res.exists:
            continue
        writable[cache.pkgs_dir] = bool(cache.is_writable)
        if not cache.is_writable:
            plan.read_only.append(cache.pkgs_dir)
        all_records.extend(res.records)
    if not policy.selects_packages:
        return plan
    rank = _version_rank(all_records) if policy.keep_latest is not None else {}
    part = policy.part

    selected: list[tuple[PackageCacheRecord, list[str]]] = []
    for rec in all_records:
        reasons: list[str] = []
        if policy.specs:
            if not match_any(rec, policy.specs):
                continue
            reasons.append("matches " + " | ".join(m.spec for m in policy.specs))
        if not _part_applies(rec, part):
            continue
        u = usage.usage_of(rec)
        if policy.unused:
            if u.in_use or (policy.keep_history and u.history):
                continue
            reasons.append("unused")
        if policy.older_than is not None:
            age = now - u.last_used
            if age <= policy.older_than:
                continue
            reasons.append(f"last used {_fmt_age(age)} ago")
        if policy.keep_latest is not None:
            r = rank[id(rec)]
            if r < policy.keep_latest:
                continue
            reasons.append(f"version #{r + 1} of {rec.name} (keeping {policy.keep_latest})")
        if part == PART_TARBALLS:
            reasons.append("archive of a complete extracted entry")
        elif part == PART_EXTRACTED:
            reasons.append("extracted dir whose archive stays")
        selected.append((rec, reasons))

    kept: list[tuple[PackageCacheRecord, list[str]]] = []
    unsure_ok = force_in_use or force_unsure
    listings: dict[str, frozenset[str] | None] = {}  # pkgs dir -> its names, when first asked
    for rec, reasons in selected:
        u = usage.usage_of(rec)
        kind = {PART_TARBALLS: KIND_ARCHIVE, PART_EXTRACTED: KIND_EXTRACTED}.get(part, KIND_PACKAGE)
        protected = part != PART_TARBALLS and not force_in_use
        if protected and u.in_use:
            plan.skipped.append(Skipped(kind, rec.pkgs_dir, rec.entry, "in use", sorted(u.users)))
            continue
        if protected and policy.keep_history and u.history:
            plan.skipped.append(
                Skipped(
                    kind, rec.pkgs_dir, rec.entry, "named by environment history", sorted(u.history)
                )
            )
            continue
        if part != PART_TARBALLS and u.maybe and not unsure_ok:
            why = next(iter(sorted(u.maybe.values())))
            # hard links nobody accounts for say so themselves; otherwise an environment's
            # records could not all be read
            if not why.startswith(LINKED_OUTSIDE):
                why = f"may be in use: an environment we cannot read fully ({why})"
            plan.skipped.append(Skipped(kind, rec.pkgs_dir, rec.entry, why, sorted(u.maybe)))
            continue
        if not writable.get(rec.pkgs_dir):
            plan.skipped.append(
                Skipped(
                    kind,
                    rec.pkgs_dir,
                    rec.entry,
                    READ_ONLY_REASON,
                    paths=_entry_paths(rec, part),
                )
            )
            continue
        if is_locked(CacheLayout(rec.pkgs_dir), rec.entry):
            plan.skipped.append(Skipped(kind, rec.pkgs_dir, rec.entry, "being written (locked)"))
            continue
        held = _held_by_another_tool(rec, listings)
        if held:
            plan.skipped.append(Skipped(kind, rec.pkgs_dir, rec.entry, held))
            continue
        if policy.grace:
            age = now - _newest_change(rec, u.last_linked)
            if age < policy.grace:
                plan.skipped.append(
                    Skipped(kind, rec.pkgs_dir, rec.entry, _grace_reason(age, policy.grace))
                )
                continue
        if force_in_use and u.in_use:
            reasons = [*reasons, "in use, removed anyway (--force-in-use)"]
        elif unsure_ok and u.maybe and part != PART_TARBALLS:
            reasons = [*reasons, "maybe in use (an environment we cannot read), removed anyway"]
        kept.append((rec, reasons))

    if policy.max_size is not None:
        kept = _apply_budget(kept, all_records, writable, usage, policy, plan)
    else:
        kept.sort(key=lambda x: (x[0].pkgs_dir, x[0].entry))

    # the other cached copies of what goes (their names only: basename per record was a visible
    # part of a clean of thousands of entries)
    going = {rec.basename for rec, _ in kept}
    same_dist: dict[str, list[str]] = {}
    for rec in all_records:
        entry = rec.entry
        base = entry[entry.rfind("/") + 1 :]
        if base in going and rec.has_dir:
            same_dist.setdefault(base, []).append(rec.extracted_package_dir)
    for rec, reasons in kept:
        kind = {PART_TARBALLS: KIND_ARCHIVE, PART_EXTRACTED: KIND_EXTRACTED}.get(part, KIND_PACKAGE)
        # urls.txt records where an entry came from; its lines go only with the whole entry
        urls = [rec.basename + ext for ext in rec.archives] if part == PART_ENTRY else []
        mine = rec.extracted_package_dir
        plan.items.append(
            PlanItem(
                kind=kind,
                pkgs_dir=rec.pkgs_dir,
                name=rec.entry,
                paths=_entry_paths(rec, part),
                reasons=reasons,
                record=rec,
                last_used=usage.usage_of(rec).last_used or None,
                url_basenames=urls,
                grace=policy.grace,
                now=now,
                # environments link extracted files, never archives
                check_links=part != PART_TARBALLS and rec.has_dir and not unsure_ok,
                siblings=[d for d in same_dist.get(rec.basename, ()) if d != mine],
            )
        )
    return plan


def _grace_reason(age: float, grace: float) -> str:
    return (
        f"changed {_fmt_age(age)} ago, within the grace period ({_fmt_age(grace)}; an install "
        "may be using it; --grace 0 to ignore)"
    )


LINKED_OUTSIDE = "linked from outside the known environments"


def _screen(item: PlanItem, walked: list, errors: list[str]) -> str | None:
    """Why ``item`` must stay after all, from the ``lstat`` results of its files: a file changed
    within the grace period, or hard links to its extracted files that no known place accounts
    for (an environment we do not know)."""
    if item.grace:
        newest = max((st.st_ctime for _p, st, _d in walked), default=0.0)
        if item.now - newest < item.grace:
            return _grace_reason(item.now - newest, item.grace)
    if not item.check_links or item.record is None:
        return None
    root = item.record.extracted_package_dir + os.sep
    seen: dict[tuple[int, int], list] = {}  # (dev, ino) -> [links here, nlink, a rel path]
    for path, st, is_dir in walked:
        if is_dir or st.st_nlink < 2:
            continue
        key = (st.st_dev, st.st_ino)
        got = seen.get(key)
        if got is None:
            rel = path[len(root) :] if path.startswith(root) else None
            seen[key] = [1, st.st_nlink, rel]
        else:
            got[0] += 1
    outside = []
    for key, (here, nlink, rel) in seen.items():
        extra = nlink - here
        if extra <= 0 or rel is None:
            continue
        for sib in item.siblings:  # the same package in another cache (cp -al, mirrors)
            try:
                st = os.lstat(os.path.join(sib, rel))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == key:
                extra -= 1
        if extra > 0:
            outside.append(rel)
    if not outside:
        return None
    return (
        f"{LINKED_OUTSIDE}: {len(outside)} file(s) have hard links no known environment "
        f"accounts for, e.g. {sorted(outside)[0]}"
    )


def _apply_budget(kept, all_records, writable, usage, policy, plan):
    part = policy.part
    total = 0
    for rec in all_records:
        if writable.get(rec.pkgs_dir):
            total += measure(_entry_paths(rec, PART_ENTRY)).disk
    budget = policy.max_size
    out = []
    lru = sorted(kept, key=lambda x: (usage.usage_of(x[0]).last_used, x[0].pkgs_dir, x[0].entry))
    for rec, reasons in lru:
        if total <= budget:
            break
        size = measure(_entry_paths(rec, part)).disk
        total -= size
        out.append((rec, [*reasons, "least recently used, over the size budget"]))
    if total > budget:
        plan.notes.append(
            f"the size budget cannot be met: {total} bytes stay after removing every candidate"
        )
    return out


def plan_temp(caches, *, now: float | None = None, index_cache: bool, temp: bool) -> Plan:
    """Leftovers and index caches of the writable caches."""
    from ..gateways import tmptree
    from ..gateways.locks import conda_byte_locked, lock_held

    def is_tmp_name(rel: str) -> bool:
        return tmptree.is_tmp_name(rel.rsplit("/", 1)[-1])

    now = time.time() if now is None else now
    plan = Plan()
    for cache in caches.writable_first():
        res = cache.load()
        if not res.exists:
            continue
        if not cache.is_writable:
            plan.read_only.append(cache.pkgs_dir)
            continue
        layout = cache.layout
        if temp:
            entry_locks_busy = _any_entry_lock_held(layout, lock_held)
            for lo in sorted(res.leftovers, key=lambda x: x.rel):
                if lo.kind == "lock":
                    continue  # deleting a lock file someone holds would break their exclusion
                reason = None
                tree = tmptree.probe(lo.path) if lo.is_dir and is_tmp_name(lo.rel) else None
                if lo.kind == "partial" and conda_byte_locked(lo.path):
                    reason = "download in progress (conda's byte-range lock is held)"
                elif tree is not None:
                    # our temporary trees say themselves whether their extraction still runs
                    reason = {
                        tmptree.LIVE: "an extraction is running (its lock is held)",
                        tmptree.YOUNG: "an extraction is starting",
                        tmptree.FOREIGN: "another user's extraction (not readable)",
                    }.get(tree)
                elif lo.kind in ("hold", "tmp"):
                    try:
                        age = now - os.lstat(lo.path).st_mtime
                    except OSError:
                        age = TEMP_GRACE_SECONDS + 1
                    if lo.kind == "tmp" and entry_locks_busy:
                        reason = "an extraction is running (entry lock held)"
                    elif age < TEMP_GRACE_SECONDS:
                        reason = (
                            f"younger than {TEMP_GRACE_SECONDS}s, "
                            "may belong to a running transaction"
                        )
                if reason:
                    plan.skipped.append(Skipped(KIND_TEMP, cache.pkgs_dir, lo.rel, reason))
                    continue
                why = [f"leftover ({lo.kind})"]
                plan.items.append(PlanItem(KIND_TEMP, cache.pkgs_dir, lo.rel, [lo.path], why))
        if index_cache and os.path.isdir(layout.index_cache):
            plan.items.append(
                PlanItem(KIND_INDEX, cache.pkgs_dir, "cache", [layout.index_cache], ["index cache"])
            )
    return plan


def plan_logfiles(caches) -> Plan:
    """conda's log files (``clean -l``): the ``.logs`` directory of each writable cache."""
    plan = Plan()
    for cache in caches.writable_first():
        logs = os.path.join(cache.pkgs_dir, ".logs")
        if not cache.is_writable or not os.path.isdir(logs) or os.path.islink(logs):
            continue
        plan.items.append(PlanItem(KIND_TEMP, cache.pkgs_dir, ".logs", [logs], ["log files"]))
    return plan


def plan_every_entry(caches, report, specs=()) -> Plan:
    """``clean -f`` (conda's --force-pkgs-dirs): every entry of the writable caches matching
    ``specs``, whoever uses it; each item says who does. Read-only caches: plan_temp names them."""
    writable = {c.pkgs_dir for c in caches.caches if c.is_writable}
    plan = Plan()
    for rec in caches.records():
        if rec.pkgs_dir not in writable or (specs and not match_any(rec, specs)):
            continue
        users = sorted(report.usage_of(rec).users)
        why = ["-f"]
        if users:
            why.append(f"used by {len(users)} environment(s): {', '.join(users)}")
        plan.items.append(
            PlanItem(
                kind=KIND_PACKAGE,
                pkgs_dir=rec.pkgs_dir,
                name=rec.entry,
                paths=_entry_paths(rec, PART_ENTRY),
                reasons=why,
                record=rec,
                url_basenames=[rec.basename + ext for ext in rec.archives],
            )
        )
    return plan


def _any_entry_lock_held(layout: CacheLayout, lock_held) -> bool:
    try:
        ours = os.path.basename(layout.cache_lock)
        names = [n for n in os.listdir(layout.locks_dir) if n != ours]
    except OSError:
        return False
    return any(lock_held(os.path.join(layout.locks_dir, n)) for n in names)


def merge(*plans: Plan) -> Plan:
    out = Plan()
    for p in plans:
        out.items += p.items
        out.skipped += p.skipped
        out.notes += p.notes
        for d in p.read_only:
            if d not in out.read_only:
                out.read_only.append(d)
    return out


def measure_plan(plan: Plan) -> Plan:
    """Fill every item's bytes: freed counts an inode once, at the item removing its last link.

    Items that ask for it are screened in the same walk (:func:`_screen`): one that must stay
    after all moves to ``skipped`` and frees nothing."""
    from ..model.sizes import walk_paths

    fp = Footprint()
    items = []
    for item in plan.items:
        if not (item.grace or item.check_links):
            item.bytes = fp.add(item.paths)
            items.append(item)
            continue
        errors: list[str] = []
        walked = [
            w for path in item.paths if os.path.lexists(path) for w in walk_paths(path, errors)
        ]
        why = _screen(item, walked, errors)
        if why:
            plan.skipped.append(Skipped(item.kind, item.pkgs_dir, item.name, why))
            continue
        item.bytes = fp.add_stats([st for _p, st, _d in walked], errors)
        items.append(item)
    plan.items = items
    plan.still_linked = fp.still_linked()
    ro = Footprint()
    for s in plan.skipped:
        if s.reason == READ_ONLY_REASON and s.paths:
            n, freed = plan.read_only_freed.get(s.pkgs_dir, (0, 0))
            plan.read_only_freed[s.pkgs_dir] = (n + 1, freed + ro.add(s.paths).freed)
    return plan
