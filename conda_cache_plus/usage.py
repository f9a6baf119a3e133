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

"Last used" of an entry is the newest modification time of the ``conda-meta`` records that
reference it (when an environment linked it), or, if later, the entry's own time (extraction:
``repodata_record.json``; download: the archive). Access times are not used: most systems mount
with ``relatime``/``noatime``, and a scan would itself touch them.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field

from .envs import Environment
from .layout import split_dist, strip_package_extension
from .records import PackageCacheRecord, channel_name

# One linked file tells how a package was linked (hard link, symlink, copy): conda links a whole
# package one way. More samples only cost stats (the usage scan is dominated by them).
SAMPLE_FILES = 1

LINK_TYPES = {1: "hardlink", 2: "softlink", 3: "copy", 4: "directory"}

EVIDENCE_RECORD = "record"
EVIDENCE_HARDLINK = "hardlink"
EVIDENCE_SYMLINK = "symlink"


@dataclass
class EnvPackage:
    """One ``conda-meta/<dist>.json`` of an environment, reduced to what matching needs."""

    prefix: str
    meta_path: str
    name: str
    version: str
    build: str
    fn: str | None
    url: str | None
    channel: str
    source_dir: str | None  # link.source, else extracted_package_dir
    link_type: str | None
    samples: list[str]  # a few relative paths of regular files the package linked
    mtime: float

    @property
    def dist(self) -> str:
        return f"{self.name}-{self.version}-{self.build}"

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "build": self.build,
            "fn": self.fn,
            "url": self.url,
            "channel": self.channel,
            "linked_from": self.source_dir,
            "link_type": self.link_type,
        }


@dataclass
class EnvState:
    env: Environment
    packages: list[EnvPackage] = field(default_factory=list)
    history_dists: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


@dataclass
class EntryUsage:
    record: PackageCacheRecord
    users: dict[str, set[str]] = field(default_factory=dict)  # prefix -> evidence kinds
    link_types: dict[str, str] = field(default_factory=dict)  # prefix -> how conda linked it
    history: set[str] = field(default_factory=set)  # prefixes whose history names it
    last_linked: float | None = None

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
        }


@dataclass
class UsageReport:
    entries: dict[str, EntryUsage]  # extracted_package_dir -> usage
    envs: list[EnvState]
    # per env prefix: meta path -> extracted dirs it matched; and the packages in no cache
    matched: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    missing: dict[str, list[EnvPackage]] = field(default_factory=dict)

    def usage_of(self, record: PackageCacheRecord) -> EntryUsage:
        return self.entries[record.extracted_package_dir]


# --- reading environments ------------------------------------------------------------------------
def _sample_paths(data: dict) -> list[str]:
    """Relative paths of a few files conda linked as-is (not rewritten for the prefix).

    Hard-link entries come first; a softlinked install records every file as ``softlink``.
    """
    paths = (data.get("paths_data") or {}).get("paths")
    if isinstance(paths, list):
        hard: list[str] = []
        soft: list[str] = []
        for p in paths:
            if not isinstance(p, dict) or p.get("prefix_placeholder"):
                continue
            rel = p.get("_path") or p.get("path")
            if not isinstance(rel, str) or rel.endswith((".pyc", ".pyo")):
                continue
            kind = p.get("path_type", "hardlink")
            if kind == "hardlink":
                hard.append(rel)
                if len(hard) >= SAMPLE_FILES:
                    break
            elif kind == "softlink" and len(soft) < SAMPLE_FILES:
                soft.append(rel)
        if hard or soft:
            return (hard + soft)[:SAMPLE_FILES]
    files = data.get("files")
    if isinstance(files, list):
        return [f for f in files if isinstance(f, str)][:SAMPLE_FILES]
    return []


def read_env_package(prefix: str, meta_path: str) -> EnvPackage | None:
    try:
        with open(meta_path, "rb") as fh:
            mtime = os.fstat(fh.fileno()).st_mtime
            data = json.loads(fh.read())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    dist = os.path.basename(meta_path)[: -len(".json")]
    parts = split_dist(dist) or (dist, "", "")
    link = data.get("link") if isinstance(data.get("link"), dict) else {}
    source = link.get("source") or data.get("extracted_package_dir")
    ltype = link.get("type")
    if isinstance(ltype, int):
        ltype = LINK_TYPES.get(ltype, str(ltype))
    url = data.get("url") if isinstance(data.get("url"), str) else None
    fn = data.get("fn") if isinstance(data.get("fn"), str) else None
    return EnvPackage(
        prefix=prefix,
        meta_path=meta_path,
        name=str(data.get("name") or parts[0]),
        version=str(data.get("version") or parts[1]),
        build=str(data.get("build") or parts[2]),
        fn=fn or (url.rsplit("/", 1)[-1] if url else None),
        url=url,
        channel=channel_name(
            data.get("channel") if isinstance(data.get("channel"), str) else None, url
        ),
        source_dir=os.path.normpath(source) if isinstance(source, str) and source else None,
        link_type=ltype if isinstance(ltype, str) else None,
        samples=_sample_paths(data),
        mtime=mtime,
    )


def history_dists(prefix: str) -> set[str]:
    """``name-version-build`` of every package any revision of ``conda-meta/history`` names."""
    out: set[str] = set()
    try:
        with open(os.path.join(prefix, "conda-meta", "history"), encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if line[:1] not in ("+", "-"):
                    continue
                dist = line[1:].rsplit("::", 1)[-1]
                dist, _ = strip_package_extension(dist)
                if split_dist(dist):
                    out.add(dist)
    except (OSError, UnicodeDecodeError):
        pass
    return out


def read_environment(env: Environment) -> EnvState:
    state = EnvState(env)
    meta = os.path.join(env.prefix, "conda-meta")
    try:
        with os.scandir(meta) as it:
            names = sorted(de.name for de in it if de.name.endswith(".json"))
    except OSError as exc:
        state.problems.append(f"cannot list {meta}: {exc.strerror or exc}")
        names = []
    for name in names:
        pkg = read_env_package(env.prefix, os.path.join(meta, name))
        if pkg is None:
            state.problems.append(f"{os.path.join(meta, name)}: unreadable record, skipped")
        else:
            state.packages.append(pkg)
    state.history_dists = history_dists(env.prefix)
    return state


# --- matching ----------------------------------------------------------------------------------
class _Index:
    """Cache entries by every key an environment record can point at."""

    def __init__(self, records: Iterable[PackageCacheRecord]):
        self.by_dir: dict[str, PackageCacheRecord] = {}
        self.by_url: dict[str, list[PackageCacheRecord]] = {}
        self.by_fn: dict[str, list[PackageCacheRecord]] = {}
        self.by_dist: dict[str, list[PackageCacheRecord]] = {}
        real_roots: dict[str, str] = {}
        for rec in records:
            self.by_dir[os.path.normpath(rec.extracted_package_dir)] = rec
            root = real_roots.get(rec.pkgs_dir)
            if root is None:
                root = real_roots[rec.pkgs_dir] = os.path.realpath(rec.pkgs_dir)
            # environments record the path conda saw, which may go through a symlinked pkgs dir
            self.by_dir.setdefault(os.path.join(root, rec.entry), rec)
            if rec.url:
                self.by_url.setdefault(rec.url.split("#", 1)[0], []).append(rec)
            fns = {rec.fn, *(rec.basename + ext for ext in rec.archives)}
            for fn in fns:
                self.by_fn.setdefault(fn, []).append(rec)
            self.by_dist.setdefault(rec.basename, []).append(rec)

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


def _link_evidence(pkg: EnvPackage, index: _Index, candidates: list[PackageCacheRecord]):
    """(evidence kind, record) pairs from a few real files of the environment."""
    found: list[tuple[str, PackageCacheRecord]] = []
    more = [r for r in index.by_dist.get(pkg.dist, ()) if r not in candidates]
    for rel in pkg.samples:
        path = os.path.join(pkg.prefix, rel)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISLNK(st.st_mode):
            try:
                target = os.readlink(path)
            except OSError:
                continue
            if not os.path.isabs(target):
                target = os.path.join(os.path.dirname(path), target)
            rec = index.entry_of_target(target, rel)
            if rec is not None:
                found.append((EVIDENCE_SYMLINK, rec))
            continue
        if st.st_nlink < 2:
            continue
        for rec in (*candidates, *more):
            try:
                cst = os.lstat(os.path.join(rec.extracted_package_dir, rel))
            except OSError:
                continue
            if (cst.st_dev, cst.st_ino) == (st.st_dev, st.st_ino):
                found.append((EVIDENCE_HARDLINK, rec))
    return found


def scan_usage(records: Iterable[PackageCacheRecord], envs: Iterable[Environment]) -> UsageReport:
    """Who uses what, for the given cache records and environments. Reads only."""
    records = list(records)
    index = _Index(records)
    report = UsageReport(entries={r.extracted_package_dir: EntryUsage(r) for r in records}, envs=[])
    by_dist = index.by_dist
    for env in envs:
        state = read_environment(env)
        report.envs.append(state)
        prefix = env.prefix
        matched = report.matched.setdefault(prefix, {})
        missing = report.missing.setdefault(prefix, [])
        for pkg in state.packages:
            recs = index.match(pkg)
            hits: dict[str, set[str]] = {}
            for rec in recs:
                hits.setdefault(rec.extracted_package_dir, set()).add(EVIDENCE_RECORD)
            for kind, rec in _link_evidence(pkg, index, recs):
                hits.setdefault(rec.extracted_package_dir, set()).add(kind)
            if not hits:
                missing.append(pkg)
                continue
            matched[pkg.meta_path] = sorted(hits)
            for path, kinds in hits.items():
                usage = report.entries[path]
                usage.users.setdefault(prefix, set()).update(kinds)
                if pkg.link_type:
                    usage.link_types[prefix] = pkg.link_type
                if usage.last_linked is None or pkg.mtime > usage.last_linked:
                    usage.last_linked = pkg.mtime
        for dist in state.history_dists:
            for rec in by_dist.get(dist, ()):
                report.entries[rec.extracted_package_dir].history.add(prefix)
    return report


def usage_map(caches, envs: Iterable[Environment]) -> dict[str, list[str]]:
    """The agreed cross-module shape: extracted dir of every cached entry → prefixes using it."""
    report = scan_usage(caches.records(), envs)
    return {path: sorted(u.users) for path, u in report.entries.items()}
