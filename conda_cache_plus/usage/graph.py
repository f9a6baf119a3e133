"""Which environments use which cache entries: pure reads, plain data.

An environment uses an entry when any of these says so:

- ``record``: one of its ``conda-meta/<dist>.json`` names the entry, matched in this order:
  the extracted directory it was linked from (``link.source``, else ``extracted_package_dir``)
  when that entry exists in a cache we scan; else the same ``url``; else the same ``fn`` and
  channel; else the same ``name-version-build``. A path match marks only that one entry, the
  fallbacks mark every cached copy (any of them can serve a reinstall of the env);
- ``hardlink``: a sampled file of the env's package is the same inode as the file with the same
  relative path in the entry;
- ``symlink``: a sampled file of the env is a symlink into the entry (``allow_softlinks`` /
  ``always_softlink`` installs; removing such an entry breaks the env, which is what
  ``conda clean -p`` gets wrong: it only looks at link counts).

Copies are covered by ``record`` (the entry is what a re-link or ``--offline`` reinstall needs).
Separately, ``history`` lists the environments whose ``conda-meta/history`` names the entry's
``name-version-build`` in any revision (``+``/``-`` lines), so ``--keep-history`` can keep what
``conda install --rev N`` would need.

Sampling rule (what keeps the scan at a few ``stat`` calls per record, not one per file): per
record we ``lstat`` ONE file of the environment, the first ``paths_data`` entry of
``path_type`` ``hardlink`` with no prefix placeholder and not ``.pyc``/``.pyo`` (those are
rewritten or regenerated, so never links), falling back to the first ``softlink`` entry, then
to the first of ``files`` for records without ``paths_data``. conda links a whole package one
way, so one file tells how it was linked. A symlink is resolved and matched to the entry it
points into; a regular file with ``st_nlink > 1`` is compared, by ``(st_dev, st_ino)``, with the
same relative path in the record's matched entries and in every cached copy of the same
``name-version-build`` (another cache may hold the linked copy); a file with one link is a copy
(or a rewritten file) and gives no link evidence. Limits: a package whose sampled file was
replaced in the environment (by pip, by hand) but whose other files are still linked shows no
link evidence for that entry (its ``record`` evidence still holds when the record names it);
and a hard link to an entry in a cache we are not told about is not seen.

Remembered scan (``env_index.py``): what a record, the ``history`` and the listing of
``conda-meta`` gave is reused while their fingerprints match the files (one ``stat`` each), and
what the sampled file showed is reused while its ``(st_dev, st_ino, st_mode, st_nlink,
st_ctime_ns)`` is unchanged: any ``link``/``unlink``/``rename`` of that inode changes its
ctime, so no hard link to it can appear or go unnoticed; entries checked before are not
``stat``-ed again, new candidate entries are. A repeated scan of an unchanged environment costs
one ``stat`` of ``conda-meta``, one per record and one ``lstat`` per sampled file. Limit: an
entry directory renamed away and replaced by a fresh copy under the same path, while the
environment's file keeps its inode and ctime, still shows the old hard link until the record or
the file changes (the entry is then kept, never wrongly removed).

Verdict mode (``scan_usage(detail=False)``: ``clean --unused``, which needs only who uses each
entry): conda names each record ``conda-meta/<name>-<version>-<build>.json``. When every cached
entry is named after its package (directory, ``fn`` and ``url`` agree with its
``name-version-build``), a record that names its package ``<dist>`` in all its matching fields
(name, version, build, ``fn``, ``url``, the directory it was linked from) can match no entry but
the one cached copy of ``<dist>``, and its sampled file can only add evidence to that entry: such a
record is still read (an unreadable one makes its package "maybe in use", as always) but not
matched or sampled, and only its fingerprint is remembered. Records of a dist with several cached
copies (which copy a record names decides), and every record that does not name itself
consistently, go the full way; so does everything when one entry is not named after its
package. The report then holds users and ``last_linked`` for those entries, no link types or
evidence beyond ``record``.

"Last used" of an entry is the newest modification time of the ``conda-meta`` records that
reference it (when an environment linked it), or, if later, the entry's own time (extraction:
``repodata_record.json``; download: the archive). Access times are not used: most systems mount
with ``relatime``/``noatime``, and a scan would itself touch them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

from ..envs import env_index
from ..envs.discovery import Environment
from ..gateways import statefile
from ..model import fsclock
from ..model.gcpause import no_gc
from ..model.plainclass import FieldsEq
from ..model.records import PackageCacheRecord
from .env_records import (
    O_DIR,
    EnvPackage,
    EnvState,
    names_agree,
    normpath,
    read_environment,
    sample_fp,
)
from .samples import mark_unnamed_links

EVIDENCE_RECORD = "record"
EVIDENCE_HARDLINK = "hardlink"
EVIDENCE_SYMLINK = "symlink"


class EntryUsage(FieldsEq):
    # not a dataclass (nor the other usage/ records): env_records.EnvPackage says why
    FIELDS = ("record", "users", "link_types", "history", "last_linked", "maybe")

    def __init__(
        self,
        record: PackageCacheRecord,
        users: dict[str, set[str]] | None = None,  # prefix -> evidence kinds
        link_types: dict[str, str] | None = None,  # prefix -> how conda linked it
        history: set[str] | None = None,  # prefixes whose history names it
        last_linked: float | None = None,
        # prefix -> why that environment MAY use it (we could not read it fully); not "in use"
        maybe: dict[str, str] | None = None,
    ):
        self.record = record
        self.users = {} if users is None else users
        self.link_types = {} if link_types is None else link_types
        self.history = set() if history is None else history
        self.last_linked = last_linked
        self.maybe = {} if maybe is None else maybe

    @property
    def in_use(self) -> bool:
        return bool(self.users)

    @property
    def last_used(self) -> float:
        times = [t for t in (self.last_linked, self.record.mtime) if t is not None]
        return max(times) if times else 0.0

    def to_json(self) -> dict:
        return {
            "used_by": [
                {
                    "prefix": prefix,
                    "evidence": sorted(kinds),
                    "link_type": self.link_types.get(prefix),
                }
                for prefix, kinds in sorted(self.users.items())
            ],
            "in_history_of": sorted(self.history),
            "last_used": self.last_used or None,
            "maybe_used_by": [
                {"prefix": prefix, "reason": why} for prefix, why in sorted(self.maybe.items())
            ],
        }


class UsageReport(FieldsEq):
    FIELDS = ("entries", "envs", "matched", "missing")  # by_record: not compared, not shown

    def __init__(
        self,
        entries: dict[str, EntryUsage],  # extracted_package_dir -> usage
        envs: list[EnvState],
        # per env prefix: meta path -> extracted dirs it matched; and the packages in no cache
        matched: dict[str, dict[str, list[str]]] | None = None,
        missing: dict[str, list[EnvPackage]] | None = None,
        # id(record) -> usage for the records scanned (they stay alive in ``entries``):
        # planners ask once per record, and building the path key each time was a visible part
        # of ``clean``
        by_record: dict[int, EntryUsage] | None = None,
    ):
        self.entries = entries
        self.envs = envs
        self.matched = {} if matched is None else matched
        self.missing = {} if missing is None else missing
        self.by_record = {} if by_record is None else by_record

    def usage_of(self, record: PackageCacheRecord) -> EntryUsage:
        usage = self.by_record.get(id(record))
        if usage is not None and usage.record is record:
            return usage
        return self.entries[record.extracted_package_dir]


# --- matching ----------------------------------------------------------------------------------
class _Index:
    """Cache entries by every key an environment record can point at."""

    def __init__(self, records: Iterable[PackageCacheRecord]):
        self.records = list(records)
        self.by_dist: dict[str, list[PackageCacheRecord]] = {}
        self.dir_of: dict[int, str] = {}  # id(record) -> extracted_package_dir, computed once
        for rec in self.records:
            self.dir_of[id(rec)] = rec.extracted_package_dir
            entry = rec.entry
            self.by_dist.setdefault(entry[entry.rfind("/") + 1 :], []).append(rec)
        self._by_dir: dict[str, PackageCacheRecord] | None = None
        self._by_url: dict[str, list[PackageCacheRecord]] | None = None
        self._by_fn: dict[str, list[PackageCacheRecord]] | None = None

    def _dir_keys(self) -> None:
        """Entries by directory, built when a record is first matched in full (the verdict
        mode may match none)."""
        self._by_dir = by_dir = {}
        real_roots: dict[str, str] = {}
        dir_of = self.dir_of
        for rec in self.records:
            by_dir[normpath(dir_of[id(rec)])] = rec
            pkgs_dir = rec.pkgs_dir
            root = real_roots.get(pkgs_dir)
            if root is None:
                root = real_roots[pkgs_dir] = os.path.realpath(pkgs_dir)
            if root != pkgs_dir:
                # environments record the path conda saw, maybe through a symlinked pkgs dir
                by_dir.setdefault(os.path.join(root, rec.entry), rec)

    def _name_keys(self) -> None:
        """Entries by URL and file name, built when a record does not name the directory of a
        scanned entry (most records do: their link source)."""
        self._by_url = by_url = {}
        self._by_fn = by_fn = {}
        for rec in self.records:
            url = rec.url
            if url:
                by_url.setdefault(url.split("#", 1)[0], []).append(rec)
            basename = rec.basename
            for fn in {rec.fn, *(basename + ext for ext in rec.archives)}:
                by_fn.setdefault(fn, []).append(rec)

    @property
    def by_dir(self) -> dict[str, PackageCacheRecord]:
        if self._by_dir is None:
            self._dir_keys()
        return self._by_dir

    @property
    def by_url(self) -> dict[str, list[PackageCacheRecord]]:
        if self._by_url is None:
            self._name_keys()
        return self._by_url

    @property
    def by_fn(self) -> dict[str, list[PackageCacheRecord]]:
        if self._by_fn is None:
            self._name_keys()
        return self._by_fn

    def several(self) -> set[str] | None:
        """For the verdict mode (module docstring): the dists with several cached copies
        (which copy a record names needs its content), or None when an entry is not named after
        its package (a record of any name might then match it)."""
        for dist, recs in self.by_dist.items():
            for rec in recs:
                if not names_agree(dist, rec.name, rec.version, rec.build, rec.fn, rec.url, None):
                    return None
        return {d for d, recs in self.by_dist.items() if len(recs) > 1}

    def match(self, pkg: EnvPackage) -> list[PackageCacheRecord]:
        if pkg.source_dir:
            rec = self.by_dir.get(pkg.source_dir)
            if rec is not None:
                return [rec]
        if pkg.url:
            found = self.by_url.get(pkg.url.split("#", 1)[0])
            if found:
                return list(found)
        if pkg.fn:
            found = [r for r in self.by_fn.get(pkg.fn, ()) if r.channel == pkg.channel]
            if found:
                return found
        return [r for r in self.by_dist.get(pkg.dist, ()) if r.name == pkg.name]

    def entry_of_target(self, target: str, rel: str) -> PackageCacheRecord | None:
        """The entry a symlink target ``<pkgs>/<entry>/<rel>`` points into."""
        target = os.path.normpath(target)
        suffix = os.sep + os.path.normpath(rel)
        if target.endswith(suffix):
            return self.by_dir.get(target[: -len(suffix)])
        return None


def _link_evidence(
    pkg: EnvPackage,
    index: _Index,
    candidates: list[PackageCacheRecord],
    prefix_fd: int | None,
    now: float,
    inodes: dict[str, tuple[int, int] | None],
):
    """(evidence kind, record) pairs from the sampled file(s) of the environment, and what the
    samples showed, to remember (rel -> (fingerprint, symlink target, {entry dir: same inode}))."""
    found: list[tuple[str, PackageCacheRecord]] = []
    memos: dict = {}
    old = pkg.memos
    for rel in pkg.samples:
        path = pkg.prefix + "/" + rel
        try:
            if prefix_fd is not None:
                st = os.stat(rel, dir_fd=prefix_fd, follow_symlinks=False)
            else:
                st = os.lstat(path)
        except OSError:
            continue
        fp = sample_fp(st)
        memo = old.get(rel)
        if memo is not None and memo[0] != fp:
            memo = None
        target = None
        checked: dict[str, bool] = {}
        if stat.S_ISLNK(st.st_mode):
            if memo is not None:
                target = memo[1]
            else:
                try:
                    target = os.readlink(path)
                except OSError:
                    continue
            if not os.path.isabs(target):
                full = os.path.join(os.path.dirname(path), target)
            else:
                full = target
            rec = index.entry_of_target(full, rel)
            if rec is not None:
                found.append((EVIDENCE_SYMLINK, rec))
        elif st.st_nlink >= 2:
            before = memo[2] if memo is not None else {}
            same_dist = index.by_dist.get(pkg.dist, ())
            if len(same_dist) == 1 and len(candidates) == 1 and same_dist[0] is candidates[0]:
                todo = candidates  # the usual case: one cached copy, the one the record names
                if len(before) == 1:
                    same = before.get(index.dir_of[id(candidates[0])])
                    if same is not None:
                        # what the loop below would find and remember: the memo as it is
                        if same:
                            found.append((EVIDENCE_HARDLINK, candidates[0]))
                        if now - st.st_ctime > statefile.RACY_SECONDS:
                            memos[rel] = memo
                        continue
            else:
                todo = [*candidates, *(r for r in same_dist if r not in candidates)]
            key = (st.st_dev, st.st_ino)
            dir_of = index.dir_of
            for rec in todo:
                entry_dir = dir_of[id(rec)]
                same = before.get(entry_dir)
                if same is None:
                    # environments share entries: each entry file is looked at once a scan
                    where = entry_dir + "/" + rel
                    ident = inodes.get(where, False)
                    if ident is False:
                        try:
                            cst = os.lstat(where)
                        except OSError:
                            ident = None
                        else:
                            ident = (cst.st_dev, cst.st_ino)
                        inodes[where] = ident
                    same = ident == key
                # the record's own string when equal: the index then stores it once (marshal)
                checked[pkg.source_dir if pkg.source_dir == entry_dir else entry_dir] = same
                if same:
                    found.append((EVIDENCE_HARDLINK, rec))
        if now - st.st_ctime > statefile.RACY_SECONDS:
            memos[rel] = (fp, target, checked)
    return found, memos


def scan_usage(
    records: Iterable[PackageCacheRecord],
    envs: Iterable[Environment],
    *,
    use_index: bool = True,
    detail: bool = True,
    history: bool = True,
) -> UsageReport:
    """Who uses what, for the given cache records and environments. Reads only (the remembered
    index, ``use_index``, lives outside the environments: env_index.py). ``detail=False``: the
    verdict mode (module docstring), for callers that need only who uses what;
    ``history=False``: no entry's ``history`` is filled (``conda-meta/history`` is not read),
    for callers that do not ask for it (``clean`` without ``--keep-history``)."""
    with no_gc():
        return _scan_usage(list(records), envs, use_index, detail, history)


def _scan_usage(
    records: list[PackageCacheRecord], envs, use_index: bool, detail: bool, history: bool
) -> UsageReport:
    index = _Index(records)
    several = None if detail else index.several()
    dir_of = index.dir_of
    report = UsageReport(entries={}, envs=[])
    entries = report.entries
    for rec in records:
        entries[dir_of[id(rec)]] = report.by_record[id(rec)] = EntryUsage(rec)
    by_dist = index.by_dist
    # the verdict mode's records name a dist with one cached copy (or none): its usage, by dist
    single = (
        {d: entries[dir_of[id(recs[0])]] for d, recs in by_dist.items() if len(recs) == 1}
        if several is not None
        else {}
    )
    inodes: dict[str, tuple[int, int] | None] = {}  # entry file -> (st_dev, st_ino), this scan
    for env in envs:
        prefix = env.prefix
        old = env_index.load(prefix) if use_index else {}
        new: dict = {}
        state = read_environment(env, old, new, several, history)
        report.envs.append(state)
        matched = report.matched.setdefault(prefix, {})
        missing = report.missing.setdefault(prefix, [])
        for dist, mtime in state.named:
            usage = single.get(dist)
            if usage is None:
                continue  # in no cache we scan (a dist with several copies is never named)
            users = usage.users
            kinds = users.get(prefix)
            if kinds is None:
                users[prefix] = {EVIDENCE_RECORD}
            else:
                kinds.add(EVIDENCE_RECORD)
            last = usage.last_linked
            if last is None or mtime > last:
                usage.last_linked = mtime
        now = fsclock.now(prefix)
        try:
            prefix_fd = os.open(prefix, O_DIR)
        except OSError:
            prefix_fd = None
        try:
            by_dir = index.by_dir if state.packages else None
            for pkg in state.packages:
                # index.match's first rule, inline: most records name their entry's directory
                rec = by_dir.get(pkg.source_dir) if pkg.source_dir else None
                recs = [rec] if rec is not None else index.match(pkg)
                evidence: list = []
                if pkg.samples:
                    evidence, memos = _link_evidence(pkg, index, recs, prefix_fd, now, inodes)
                    if pkg.slot is not None:
                        pkg.slot[2] = memos
                if len(recs) == 1 and (
                    not evidence or (len(evidence) == 1 and evidence[0][1] is recs[0])
                ):
                    # the usual case, one entry and all the evidence about it: the general
                    # path below, without its dicts
                    path = dir_of[id(recs[0])]
                    matched[pkg.meta_path] = [path]
                    usage = entries[path]
                    kinds = usage.users.get(prefix)
                    if kinds is None:
                        kinds = usage.users[prefix] = set()
                    kinds.add(EVIDENCE_RECORD)
                    for kind, _rec in evidence:
                        kinds.add(kind)
                    if pkg.link_type:
                        usage.link_types[prefix] = pkg.link_type
                    if usage.last_linked is None or pkg.mtime > usage.last_linked:
                        usage.last_linked = pkg.mtime
                    continue
                hits: dict[str, set[str]] = {}
                for rec in recs:
                    hits.setdefault(dir_of[id(rec)], set()).add(EVIDENCE_RECORD)
                for kind, rec in evidence:
                    hits.setdefault(dir_of[id(rec)], set()).add(kind)
                if not hits:
                    missing.append(pkg)
                    continue
                matched[pkg.meta_path] = sorted(hits) if len(hits) > 1 else list(hits)
                for path, kinds in hits.items():
                    usage = entries[path]
                    usage.users.setdefault(prefix, set()).update(kinds)
                    if pkg.link_type:
                        usage.link_types[prefix] = pkg.link_type
                    if usage.last_linked is None or pkg.mtime > usage.last_linked:
                        usage.last_linked = pkg.mtime
        finally:
            if prefix_fd is not None:
                os.close(prefix_fd)
        for dist in state.history_dists:
            for rec in by_dist.get(dist, ()):
                entries[dir_of[id(rec)]].history.add(prefix)
        if state.unsure_all is not None:
            for usage in entries.values():
                usage.maybe.setdefault(prefix, state.unsure_all)
        for dist, why in state.unsure.items():
            for rec in by_dist.get(dist, ()):
                entries[dir_of[id(rec)]].maybe.setdefault(prefix, why)
        if use_index and new != old:
            env_index.save(prefix, new)
    mark_unnamed_links(report)
    return report


def usage_map(caches, envs: Iterable[Environment]) -> dict[str, list[str]]:
    """The agreed cross-module shape: extracted dir of every cached entry → prefixes using it."""
    report = scan_usage(caches.records(), envs)
    return {path: sorted(u.users) for path, u in report.entries.items()}
