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

import json
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..envs import env_index
from ..envs.discovery import Environment
from ..gateways import statefile
from ..model import fsclock
from ..model.filenames import split_dist, strip_package_extension
from ..model.gcpause import no_gc
from ..model.records import PackageCacheRecord, channel_name
from .samples import mark_unnamed_links, sample_paths

LINK_TYPES = {1: "hardlink", 2: "softlink", 3: "copy", 4: "directory"}

EVIDENCE_RECORD = "record"
EVIDENCE_HARDLINK = "hardlink"
EVIDENCE_SYMLINK = "symlink"

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)
_O_FILE = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
_decode_json = json.JSONDecoder().decode


@dataclass(slots=True)
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
    # remembered sample facts (rel -> (fingerprint, symlink target, {entry dir: same inode}))
    # and the index slot to store new ones in; neither is part of the package's identity
    memos: dict = field(default_factory=dict, repr=False, compare=False)
    slot: list | None = field(default=None, repr=False, compare=False)

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
    # What we could not read, so what the environment MAY use: dist -> why (a record that is
    # unreadable or invalid names its package by its file name), and, when even that is not
    # known (conda-meta unlistable, a record whose name is no dist), why it may use anything.
    unsure: dict[str, str] = field(default_factory=dict)
    unsure_all: str | None = None
    # verdict mode: (dist, record mtime) of the records matched by their names alone
    named: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class EntryUsage:
    record: PackageCacheRecord
    users: dict[str, set[str]] = field(default_factory=dict)  # prefix -> evidence kinds
    link_types: dict[str, str] = field(default_factory=dict)  # prefix -> how conda linked it
    history: set[str] = field(default_factory=set)  # prefixes whose history names it
    last_linked: float | None = None
    # prefix -> why that environment MAY use it (we could not read it fully); not "in use"
    maybe: dict[str, str] = field(default_factory=dict)

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


@dataclass
class UsageReport:
    entries: dict[str, EntryUsage]  # extracted_package_dir -> usage
    envs: list[EnvState]
    # per env prefix: meta path -> extracted dirs it matched; and the packages in no cache
    matched: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    missing: dict[str, list[EnvPackage]] = field(default_factory=dict)
    # id(record) -> usage for the records scanned (they stay alive in ``entries``): planners ask
    # once per record, and building the path key each time was a visible part of ``clean``
    by_record: dict[int, EntryUsage] = field(default_factory=dict, repr=False, compare=False)

    def usage_of(self, record: PackageCacheRecord) -> EntryUsage:
        usage = self.by_record.get(id(record))
        if usage is not None and usage.record is record:
            return usage
        return self.entries[record.extracted_package_dir]


# --- reading environments ------------------------------------------------------------------------
_channels: dict[str | None, str] = {}


def _channel(channel: str | None, url: str | None) -> str:
    # 15,000 records name a handful of channels: parse each once
    if channel:
        name = _channels.get(channel)
        if name is None:
            name = _channels[channel] = channel_name(channel, None)
        return name
    return channel_name(None, url)


def _normpath(path: str) -> str:
    # posixpath.normpath is pure Python before 3.12; conda writes normal paths already
    if path[:1] == "/" and "//" not in path and "/." not in path and path[-1:] != "/":
        return path
    return os.path.normpath(path)


def _reduce(dist: str, data) -> tuple | None:
    """The fields matching needs, as a plain tuple (what the remembered index stores)."""
    if not isinstance(data, dict):
        return None
    link = data.get("link")
    link = link if isinstance(link, dict) else {}
    source = link.get("source") or data.get("extracted_package_dir")
    ltype = link.get("type")
    if isinstance(ltype, int):
        ltype = LINK_TYPES.get(ltype, str(ltype))
    url = data.get("url")
    url = url if isinstance(url, str) else None
    fn = data.get("fn")
    fn = fn if isinstance(fn, str) else None
    channel = data.get("channel")
    name, version, build = data.get("name"), data.get("version"), data.get("build")
    if not (name and version and build):
        parts = split_dist(dist) or (dist, "", "")
        name, version, build = name or parts[0], version or parts[1], build or parts[2]
    return (
        str(name),
        str(version),
        str(build),
        fn or (url.rsplit("/", 1)[-1] if url else None),
        url,
        _channel(channel if isinstance(channel, str) else None, url),
        _normpath(source) if isinstance(source, str) and source else None,
        ltype if isinstance(ltype, str) else None,
        sample_paths(data),
    )


def _package(prefix: str, meta_path: str, t: tuple, mtime: float) -> EnvPackage:
    return EnvPackage(
        prefix, meta_path, t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8], mtime
    )


def _read(name: str, dir_fd: int | None, path: str) -> tuple[bytes, os.stat_result]:
    fd = os.open(name, _O_FILE, dir_fd=dir_fd) if dir_fd is not None else os.open(path, _O_FILE)
    try:
        st = os.fstat(fd)
        want = st.st_size + 1
        raw = os.read(fd, want)
        if len(raw) == want:  # grew since fstat: read the rest
            chunks = [raw]
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            raw = b"".join(chunks)
    finally:
        os.close(fd)
    return raw, st


def _racy(st: os.stat_result, now: float) -> bool:
    # ctime too: utime() can set an old mtime on a file written just now
    return now - max(st.st_mtime, st.st_ctime) <= statefile.RACY_SECONDS


def read_env_package(prefix: str, meta_path: str) -> EnvPackage | None:
    try:
        raw, st = _read(meta_path, None, meta_path)
        data = _decode_json(raw.decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    t = _reduce(os.path.basename(meta_path)[: -len(".json")], data)
    return None if t is None else _package(prefix, meta_path, t, st.st_mtime)


def _parse_history(text: str) -> set[str]:
    out: set[str] = set()
    for line in text.splitlines():
        line = line.strip()
        if line[:1] not in ("+", "-"):
            continue
        dist = line[1:].rsplit("::", 1)[-1]
        dist, _ = strip_package_extension(dist)
        if split_dist(dist):
            out.add(dist)
    return out


def history_dists(prefix: str) -> set[str]:
    """``name-version-build`` of every package any revision of ``conda-meta/history`` names."""
    try:
        with open(os.path.join(prefix, "conda-meta", "history"), encoding="utf-8") as fh:
            return _parse_history(fh.read())
    except (OSError, UnicodeDecodeError):
        return set()


def _fp(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def read_environment(
    env: Environment,
    old: dict | None = None,
    new: dict | None = None,
    several: set[str] | frozenset[str] | None = None,
    history: bool = True,
) -> EnvState:
    """An environment's records and history; ``old``/``new``: its remembered index (env_index).

    ``several`` turns on the verdict mode (module docstring): the dists with several cached
    copies, whose records are matched in full; every other record that names itself and its
    package consistently only goes to ``state.named``. ``history=False``: ``conda-meta/history``
    is not read (``state.history_dists`` stays empty; what the index remembers of it is kept,
    it is checked against the file whenever it is used)."""
    old = old or {}
    new = {} if new is None else new
    state = EnvState(env)
    meta = os.path.join(env.prefix, "conda-meta")
    now = fsclock.now(env.prefix)
    try:
        meta_fd = os.open(meta, _O_DIR)
    except FileNotFoundError:
        return state  # removed since it was found: it uses nothing any more
    except OSError as exc:
        why = f"cannot list {meta}: {exc.strerror or exc}"
        state.problems.append(why)
        state.unsure_all = why
        return state
    try:
        try:
            names = _listing(meta_fd, old, new, now)
        except OSError as exc:
            why = f"cannot list {meta}: {exc.strerror or exc}"
            state.problems.append(why)
            state.unsure_all = why
            return state
        old_recs = old.get("records") or {}
        new_recs: dict = {}
        new["records"] = new_recs
        packages = state.packages
        named = state.named
        # the racy rule (_racy), as one comparison per record: remembered only when both
        # times are older than this
        settled = now - statefile.RACY_SECONDS
        stat_, read_, open_, fstat, close = os.stat, os.read, os.open, os.fstat, os.close
        for name in names:
            dist = name[:-5]
            quick = several is not None and dist not in several
            cached = old_recs.get(name)
            if cached is not None:
                try:
                    st = stat_(name, dir_fd=meta_fd)
                except OSError:
                    st = None
                if (
                    st is not None
                    and (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns) == cached[0]
                ):
                    t = cached[1]
                    if quick and (t is None or _names_agree(dist, *t[:5], t[6])):
                        new_recs[name] = cached
                        named.append((dist, st.st_mtime))
                        continue
                    if t is not None:
                        slot = new_recs[name] = [cached[0], t, cached[2]]
                        pkg = _package(env.prefix, meta + "/" + name, t, st.st_mtime)
                        pkg.memos, pkg.slot = cached[2], slot
                        packages.append(pkg)
                        continue
            meta_path = meta + "/" + name
            try:
                if quick:
                    # _read, inline: this is the loop a first clean --unused spends its time in
                    fd = open_(name, _O_FILE, dir_fd=meta_fd)
                    try:
                        st = fstat(fd)
                        want = st.st_size + 1
                        raw = read_(fd, want)
                    finally:
                        close(fd)
                    if len(raw) == want:  # grew since fstat: read it whole
                        raw, st = _read(name, meta_fd, meta_path)
                    data = _decode_json(raw.decode("utf-8"))
                    if type(data) is dict and _data_agrees(dist, data):
                        named.append((dist, st.st_mtime))
                        if st.st_mtime < settled and st.st_ctime < settled:
                            # checked by its names only: a full scan reads it again
                            new_recs[name] = [
                                (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns),
                                None,
                                {},
                            ]
                        continue
                else:
                    raw, st = _read(name, meta_fd, meta_path)
                    data = _decode_json(raw.decode("utf-8"))
                t = _reduce(dist, data)
                why = "not a conda-meta record"
            except FileNotFoundError:
                continue  # uninstalled while we read: no longer used
            except OSError as exc:
                t, why = None, f"cannot read it: {exc.strerror or exc}"
            except (ValueError, RecursionError):
                t, why = None, "not valid JSON"
            if t is None:
                state.problems.append(f"{meta_path}: unreadable record, skipped ({why})")
                _unsure_of(state, dist, f"{meta_path}: {why}")
                continue
            pkg = _package(env.prefix, meta_path, t, st.st_mtime)
            if not _racy(st, now):
                pkg.slot = new_recs[name] = [_fp(st), t, {}]
            packages.append(pkg)
        if history:
            state.history_dists = _history(meta_fd, meta, old, new, now)
        elif "history" in old:
            new["history"] = old["history"]  # unchecked here; checked whenever it is used
    finally:
        os.close(meta_fd)
    return state


def _unsure_of(state: EnvState, dist: str, why: str) -> None:
    """The package a record we cannot read is for, by its file name (conda names each record
    ``<name>-<version>-<build>.json``); when the name says nothing, every package."""
    if split_dist(dist):
        state.unsure[dist] = why
    elif state.unsure_all is None:
        state.unsure_all = why


def _names_agree(dist, name, version, build, fn, url, source) -> bool:
    """Whether a package's record names it ``dist`` everywhere matching looks: its own fields,
    its file name, its URL and the directory it was linked from (each absent, or naming it).
    Strict (conda's own spelling, extensions in lower case): what it refuses goes the full way."""
    if [name, version, build] != dist.rsplit("-", 2):
        return False
    if fn and fn != dist + ".conda" and fn != dist + ".tar.bz2":
        return False
    if url:
        if not isinstance(url, str):
            return False
        base = url.split("#", 1)[0].rsplit("/", 1)[-1]
        if base != dist + ".conda" and base != dist + ".tar.bz2":
            return False
    return not source or (isinstance(source, str) and _normpath(source).rsplit("/", 1)[-1] == dist)


def _data_agrees(dist: str, data: dict) -> bool:
    link = data.get("link")
    link = link if isinstance(link, dict) else {}
    return _names_agree(
        dist,
        data.get("name"),
        data.get("version"),
        data.get("build"),
        data.get("fn"),
        data.get("url"),
        link.get("source") or data.get("extracted_package_dir"),
    )


def _listing(meta_fd: int, old: dict, new: dict, now: float) -> list[str]:
    """The ``*.json`` names of conda-meta; reused while the directory is unchanged (any create,
    delete or rename in it updates its mtime)."""
    st = os.fstat(meta_fd)
    key = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
    cached = old.get("listing")
    if cached is not None and cached[0] == key:
        names = cached[1]
    else:
        names = sorted(n for n in os.listdir(meta_fd) if n.endswith(".json"))
    if not _racy(st, now):
        new["listing"] = (key, names)
    return names


def _history(meta_fd: int, meta: str, old: dict, new: dict, now: float) -> set[str]:
    cached = old.get("history")
    try:
        st = os.stat("history", dir_fd=meta_fd) if cached is not None else None
        if st is not None and cached[0] == _fp(st):
            dists = set(cached[1])
        else:
            raw, st = _read("history", meta_fd, meta + "/history")
            dists = _parse_history(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError):
        return set()
    if not _racy(st, now):
        new["history"] = (_fp(st), sorted(dists))
    return dists


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
            by_dir[_normpath(dir_of[id(rec)])] = rec
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
                if not _names_agree(dist, rec.name, rec.version, rec.build, rec.fn, rec.url, None):
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
        fp = (st.st_dev, st.st_ino, st.st_mode, st.st_nlink, st.st_ctime_ns)
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
                checked[entry_dir] = same
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
            prefix_fd = os.open(prefix, _O_DIR)
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
