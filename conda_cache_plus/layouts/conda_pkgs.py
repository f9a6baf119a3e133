"""Scanning conda's layout (flat, and mamba's nested one): the records of our
``PackageCacheData`` (:mod:`.caches`).

:func:`scan_pkgs_dir` is a pure read: it never writes, re-extracts or deletes anything in the cache
(conda's ``PackageCacheData.load()`` and ``_make_single_record`` do all three). Records are built in
conda's order:

1. ``info/repodata_record.json`` (complete);
2. else ``info/index.json`` plus the archive's md5 and size and the URL from ``urls.txt``
   (marked incomplete);
3. an archive without a usable directory gives a record from its file name (incomplete);
4. a directory with neither metadata nor an archive is reported as broken.

Both archive formats stay visible on the record (``archives``), unlike conda's dedupe which hides
the ``.tar.bz2`` when a ``.conda`` exists.
"""

from __future__ import annotations

import os
import stat
import struct
import time

from ..exceptions import UnsafePathError
from ..gateways import tmptree
from ..gateways.safefs import open_private_dir
from ..gateways.statefile import RACY_SECONDS
from ..gateways.tmptree import is_tmp_name
from ..gateways.urls import UrlsData
from ..model.cache_paths import CacheLayout
from ..model.filenames import (
    CONDA_EXT,
    META_NAMES,
    PRIVATE_DIR,
    URL_SCHEME_DIRS,
    is_subdir_name,
    leftover_kind,
    package_extension,
    split_dist,
)
from ..model.names import hostile_entry_problem
from ..model.records import (
    SOURCE_FILENAME,
    SOURCE_INDEX,
    SOURCE_RECORD,
    PackageCacheRecord,
    pack_payload,
    sanitize,
    unpack_payload,
)
from ..model.sizes import path_size
from . import scan_index
from .scan_result import (
    BrokenEntry,
    Leftover,
    ScanResult,
    fingerprint,
    md5_file,
    read_json,
    writable_dir,
)

MAX_NESTED_DEPTH = 12


LISTING_KEY = "\0listing"


LEFTOVER_SUFFIXES = (".partial", ".c~", ".mamba_trash", ".trash", ".lock")


# Leftover kinds that are never ours to keep: a name that would make a scan leave the cache,
# and a link planted in place of one of the caches' private directories.
HOSTILE = "hostile"


LINK = "link"


PRIVATE_LINK_NAMES = frozenset({PRIVATE_DIR, ".trash"})


PRIVATE_SUBDIRS = ("tmp", "locks")


def _url_parts(url: str | None) -> dict:
    """channel and subdir implied by a package URL."""
    if not url:
        return {}
    base = url.split("#", 1)[0].rsplit("/", 1)[0]
    subdir = base.rsplit("/", 1)[-1]
    out = {"channel": base.rsplit("/", 1)[0] if is_subdir_name(subdir) else base}
    if is_subdir_name(subdir):
        out["subdir"] = subdir
    return out


# A remembered complete record with its URL (the usual entry) is fingerprinted by one bytes
# object: inode, size, mtime_ns, ctime_ns of its repodata_record.json. Loading the index then
# makes one object for it instead of six; a repeated scan compares it with one pack per entry.
_pack_key = struct.Struct("<Qqqq").pack


def _record_key(st: os.stat_result, packed: bool = True):
    """The remembered fingerprint of a record file: packed bytes (``packed`` and in range), else
    ``("r", fingerprint)``. The two forms never compare equal, so an entry remembered in one is
    simply read again when the other is asked for."""
    if packed:
        try:
            return _pack_key(st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        except struct.error:  # a timestamp beyond 2262: kept as a tuple
            pass
    return ("r", fingerprint(st))


def _is_file(name: str | None, base_fd: int | None, path: str) -> bool:
    """``os.path.isfile(path)``, relative to the open pkgs dir when there is one."""
    try:
        if base_fd is not None and name is not None:
            st = os.stat(name + "/info/index.json", dir_fd=base_fd)
        else:
            st = os.stat(path)
    except (OSError, ValueError):
        return False
    return stat.S_ISREG(st.st_mode)


class _Scanner:
    remember = True  # whether new_index will be saved (scan_pkgs_dir sets it)

    def __init__(self, pkgs_dir: str, index: dict, urls: UrlsData):
        self.pkgs_dir = pkgs_dir
        self.old_index = index
        self.new_index: dict = {}
        # entries the fast path of _scan_dirs carried over unchanged: kept out of new_index
        # (index_to_save puts them back only when something else changed)
        self.carried: list[str] = []
        self.urls = urls
        self.result = ScanResult(pkgs_dir)
        self._clock: float | None = None

    def _now(self) -> float:
        """Now on the cache's file system clock (fsclock: never another host's clock unchecked)."""
        if self._clock is None:
            from ..model import fsclock

            self._clock = fsclock.now(self.pkgs_dir, CacheLayout(self.pkgs_dir).private) - (
                time.time()
            )
        return time.time() + self._clock

    # -- one level of entries (the top, or a subdir of mamba's nested layout) -----------------
    def scan_level(self, base: str, rel_prefix: str, depth: int = 0) -> None:
        res = self.result
        listing = self._remembered_listing(base) if not rel_prefix else None
        if listing is None:
            listing = self._list_dir(base, rel_prefix)
            if listing is None:
                return
        dirs, archive_names, leftover_names, others, has_private = listing
        res.others.extend(others)
        if has_private:
            self._private_leftovers(os.path.join(base, PRIVATE_DIR))
        try:
            base_fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            base_fd = None
        try:
            for name, kind, is_dir in leftover_names:
                try:
                    size = os.stat(name, dir_fd=base_fd, follow_symlinks=False).st_size
                except OSError:
                    continue  # gone since it was listed
                if is_dir and tmptree.is_tmp_name(name):
                    # our temporary extraction trees: a live one is not a leftover; a dead
                    # one counts with everything in it
                    if tmptree.probe(base + "/" + name) == tmptree.LIVE:
                        continue
                    size = path_size(base + "/" + name).apparent
                res.leftovers.append(
                    Leftover(base + "/" + name, rel_prefix + name, kind, size, is_dir)
                )
            archives: dict[str, dict[str, os.stat_result]] = {}
            for root, ext in archive_names:
                try:
                    st = os.stat(root + ext, dir_fd=base_fd, follow_symlinks=False)
                except OSError:
                    continue
                archives.setdefault(root, {})[ext] = st
            self._scan_dirs(base, rel_prefix, dirs, archives, depth, base_fd)
        finally:
            if base_fd is not None:
                os.close(base_fd)
        for root, found in archives.items():
            res.records.append(
                self.archive_only_record(os.path.join(base, root), rel_prefix + root, found)
            )

    def _remembered_listing(self, base: str):
        """The top-level listing of the last scan, when the directory provably did not change.

        Any create, delete or rename of an entry updates the directory's mtime; a listing taken
        within RACY_SECONDS of that mtime could have missed a change in the same clock tick (the
        kernel's timestamps are coarse), so only older listings are trusted, as git does.
        """
        try:
            st = os.stat(base)
        except OSError:
            return None
        self._dir_stat = st
        cached = self.old_index.get(LISTING_KEY)
        fp = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
        if cached is not None and cached[0] == fp and cached[1] - st.st_mtime > RACY_SECONDS:
            self.new_index[LISTING_KEY] = cached
            return cached[2]
        self._listing_fp = (fp, self._now())
        return None

    def _list_dir(self, base: str, rel_prefix: str):
        """Classify the names in one directory: (dirs, archives, leftovers, others, private)."""
        res = self.result
        dirs: list[str] = []
        archive_names: list[tuple[str, str]] = []
        leftover_names: list[tuple[str, str, bool]] = []
        others: list[str] = []
        has_private = False
        try:
            it = os.scandir(base)
        except FileNotFoundError:
            if not rel_prefix:
                res.exists = False
                res.problems.append("does not exist")
            return None
        except OSError as exc:
            if not rel_prefix:
                res.readable = False
            res.problems.append(f"cannot list {base}: {exc.strerror or exc}")
            return None
        top = not rel_prefix
        with it:
            for de in it:
                name = de.name
                try:
                    if hostile_entry_problem(name):
                        # never a package: conda would take '<pkgs>/..' for its directory
                        leftover_names.append((name, HOSTILE, de.is_dir(follow_symlinks=False)))
                    elif de.is_symlink() and (
                        (top and name in PRIVATE_LINK_NAMES) or is_tmp_name(name)
                    ):
                        # a link planted where we (or conda) keep private files: remove the link
                        leftover_names.append((name, LINK, False))
                    elif name.endswith(LEFTOVER_SUFFIXES) or ".conda_trash" in name:
                        if not (top and name in META_NAMES):
                            # no tool leaves a link as a partial, hold or lock: one was planted
                            kind = LINK if de.is_symlink() else leftover_kind(name) or "trash"
                            leftover_names.append((name, kind, de.is_dir(follow_symlinks=False)))
                    elif de.is_dir(follow_symlinks=False):
                        if top and name in META_NAMES:
                            has_private = has_private or name == PRIVATE_DIR
                        elif name[0] == ".":
                            # rattler-style '.name1234' temp dirs and other hidden leftovers
                            leftover_names.append((name, "tmp", True))
                        else:
                            dirs.append(name)
                    elif top and name in META_NAMES:
                        continue
                    elif de.is_symlink():
                        others.append(
                            f"{rel_prefix}{name}: symlink, ignored (conda skips symlinked entries)"
                        )
                    else:
                        ext = package_extension(name)
                        if ext and de.is_file(follow_symlinks=False):
                            archive_names.append((name[: -len(ext)], name[-len(ext) :]))
                        else:
                            others.append(f"{rel_prefix}{name}: not a package, ignored")
                except OSError as exc:
                    others.append(f"{rel_prefix}{name}: cannot stat ({exc.strerror or exc})")
        listing = (dirs, archive_names, leftover_names, others, has_private)
        if top and getattr(self, "_listing_fp", None):
            fp, listed_at = self._listing_fp
            self.new_index[LISTING_KEY] = (fp, listed_at, listing)
        return listing

    def _scan_dirs(self, base, rel_prefix, dirs, archives, depth, base_fd) -> None:
        old, carried, records, pkgs_dir = (
            self.old_index,
            self.carried.append,
            self.result.records,
            self.pkgs_dir,
        )
        stat = os.stat
        pack_key = _pack_key
        cls = PackageCacheRecord
        new_record = object.__new__
        for name in dirs:
            rel = rel_prefix + name
            cached = old.get(rel)
            # Fast path: a remembered, complete entry whose record file is unchanged costs one
            # stat (relative to the open pkgs dir, so the kernel resolves three components).
            if (
                cached is not None
                and base_fd is not None
                # a packed fingerprint: a complete record with its url, nothing to fill from
                # urls.txt (_record_key)
                and type(cached[0]) is bytes
                and name not in archives
            ):
                try:
                    st = stat(name + "/info/repodata_record.json", dir_fd=base_fd)
                    same = cached[0] == pack_key(
                        st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns
                    )
                except (OSError, struct.error):
                    same = False
                if same:
                    carried(rel)
                    # PackageCacheRecord.remembered, inlined: a repeated scan does this per
                    # entry, and the calls would cost a tenth of it
                    rec = new_record(cls)
                    _fp, rec._payload, rec.source, problems, rec.is_extracted, _m = cached
                    rec._data = rec._core = rec._blob = None
                    rec.mtime = st.st_mtime  # the fingerprint holds: the file's own mtime
                    rec.pkgs_dir = pkgs_dir
                    rec.entry = rel
                    rec.archives = {}
                    rec.has_dir = True
                    rec.problems = [*problems]
                    records.append(rec)
                    continue
            path = base + "/" + name
            if (
                not rel_prefix
                and name in URL_SCHEME_DIRS
                and not os.path.isdir(os.path.join(path, "info"))
            ):
                self.walk_nested(path, name + "/", depth + 1)
                continue
            self.scan_dir_entry(path, rel, archives.pop(name, None), depth, base_fd, name)

    def walk_nested(self, path: str, rel_prefix: str, depth: int) -> None:
        """Walk mamba's URL-shaped directories down to the subdir levels that hold packages."""
        self.result.nested = True
        if depth > MAX_NESTED_DEPTH:
            self.result.problems.append(
                f"{rel_prefix}: nested deeper than {MAX_NESTED_DEPTH}, skipped"
            )
            return
        try:
            with os.scandir(path) as it:
                children = [de for de in it if de.is_dir(follow_symlinks=False)]
        except OSError as exc:
            self.result.problems.append(f"cannot list {path}: {exc.strerror or exc}")
            return
        for de in children:
            if is_subdir_name(de.name):
                self.scan_level(de.path, rel_prefix + de.name + "/", depth + 1)
            else:
                self.walk_nested(de.path, rel_prefix + de.name + "/", depth + 1)

    def _private_leftovers(self, private: str) -> None:
        """Temp trees in our private area, listed without following a planted link: a link in
        place of one of our dirs is itself the leftover (its target is never listed)."""
        root = os.path.dirname(private)
        lock = os.path.join(private, "cache.lock")
        if os.path.islink(lock):
            self.result.leftovers.append(Leftover(lock, f"{PRIVATE_DIR}/cache.lock", LINK, 0))
        for sub in PRIVATE_SUBDIRS:
            rel = f"{PRIVATE_DIR}/{sub}"
            try:
                fd = open_private_dir(root, (PRIVATE_DIR, sub), create=False)
            except UnsafePathError:
                self.result.leftovers.append(Leftover(os.path.join(private, sub), rel, LINK, 0))
                continue
            except OSError:
                continue
            try:
                with os.scandir(fd) as it:
                    for de in it:
                        if sub == "tmp" or de.is_symlink():
                            # every tmp tree; in locks only planted links (lock files stay)
                            self.result.leftovers.append(
                                Leftover(
                                    os.path.join(private, sub, de.name),
                                    f"{rel}/{de.name}",
                                    LINK if de.is_symlink() else "tmp",
                                    0,
                                    de.is_dir(follow_symlinks=False),
                                )
                            )
            except OSError:
                pass
            finally:
                os.close(fd)

    # -- records -------------------------------------------------------------------------------
    def scan_dir_entry(
        self, path: str, rel: str, archives, depth: int, base_fd=None, name=None
    ) -> None:
        cached = self.old_index.get(rel)
        problems: list[str] = []
        info = path + "/info/"
        rr_path = info + "repodata_record.json"
        if cached is None:
            # nothing remembered: read it straight away (its fstat is the fingerprint)
            data, st, err = self._read_record(rr_path, name, base_fd)
            if st is None and err:
                problems.append(err)
        else:
            data = err = None
            try:
                # Relative to the open pkgs dir: the kernel resolves 3 components instead of the
                # whole absolute path, most of the cost of the one stat a remembered entry needs.
                if base_fd is not None:
                    st = os.stat(name + "/info/repodata_record.json", dir_fd=base_fd)
                else:
                    st = os.stat(rr_path)
            except (FileNotFoundError, NotADirectoryError):
                st = None
            except OSError as exc:
                st = None
                problems.append(f"cannot read repodata_record.json: {exc.strerror or exc}")
        if st is not None:
            if cached is not None:
                if cached[0] == _record_key(st, type(cached[0]) is bytes):
                    self.new_index[rel] = cached
                    self._emit(path, rel, cached, archives, st.st_mtime)
                    return
                data, st2, err = self._read_record(rr_path, name, base_fd)
            else:
                st2 = st
            if err is None and data is not None:
                # keys are interned where the record is remembered (split_core): for the whole
                # record it would cost a tenth of a first scan
                clean, bad = sanitize(data, intern_keys=False)
                if clean.get("name") and clean.get("version"):
                    is_extracted = _is_file(name, base_fd, info + "index.json")
                    if not is_extracted:
                        bad.append("info/index.json is missing")
                    if not self.remember and clean.get("url"):
                        # complete, with its URL, nothing to remember: the usual entry of a
                        # scan without the index, made here (two calls fewer per entry)
                        self.result.records.append(
                            PackageCacheRecord.lazy(
                                self.pkgs_dir,
                                rel,
                                {e: a.st_size for e, a in archives.items()} if archives else {},
                                None,
                                None,
                                SOURCE_RECORD,
                                bad,
                                is_extracted,
                                st.st_mtime,
                                clean,
                            )
                        )
                        return
                    # the fingerprint only for an index that will be written; packed for a
                    # record whose url is known (the fast path of _scan_dirs)
                    fp = _record_key(st2 or st, bool(clean.get("url"))) if self.remember else None
                    self._remember_and_emit(
                        path,
                        rel,
                        fp,
                        clean,
                        SOURCE_RECORD,
                        bad,
                        is_extracted,
                        st.st_mtime,
                        archives,
                        (st2 or st).st_mtime_ns,
                    )
                    return
                err = "repodata_record.json lacks name/version" if not bad else "; ".join(bad)
            problems.append(err or "repodata_record.json is unusable")

        idx_path = info + "index.json"
        data, st_i, err = read_json(idx_path)
        if data is not None and err is None:
            clean, bad = sanitize(data)
            if clean.get("name") and clean.get("version"):
                archive_fp = None
                ext = None
                if archives:
                    ext = CONDA_EXT if CONDA_EXT in archives else next(iter(archives))
                    archive_fp = fingerprint(archives[ext])
                fp = ("i", fingerprint(st_i), archive_fp, tuple(problems))
                if cached is not None and cached[0] == fp:
                    self.new_index[rel] = cached
                    self._emit(path, rel, cached, archives, st_i.st_mtime)
                    return
                if ext:
                    clean["fn"] = os.path.basename(path) + ext
                    clean["md5"] = md5_file(path + ext)
                    clean["size"] = archives[ext].st_size
                self._remember_and_emit(
                    path,
                    rel,
                    fp,
                    clean,
                    SOURCE_INDEX,
                    problems + bad,
                    True,
                    st_i.st_mtime,
                    archives,
                    st_i.st_mtime_ns,
                )
                return
            err = "index.json lacks name/version"
        if err:
            problems.append(err)

        # Not usable as a package directory.
        if not os.path.isdir(path + "/info"):
            if depth == 0 and self._looks_like_channel_dir(path):
                self.walk_nested(path, rel + "/", depth + 1)
                return
            reason = (
                "a directory without info/"
                if os.access(path, os.R_OK | os.X_OK)
                else "an unreadable directory (permission denied)"
            )
        else:
            reason = "; ".join(problems) or "info/index.json is missing"
        if archives:
            record = self.archive_only_record(path, rel, archives)
            record.has_dir = True
            record.problems.append(f"extracted directory is unusable: {reason}")
            self.result.records.append(record)
        else:
            self.result.broken.append(BrokenEntry(path, rel, reason))

    @staticmethod
    def _read_record(rr_path: str, name: str | None, base_fd: int | None):
        if base_fd is not None and name is not None:
            return read_json(name + "/info/repodata_record.json", base_fd)
        return read_json(rr_path)

    def index_to_save(self) -> dict | None:
        """The index this scan found, or None when it is the one it loaded (nothing to write).

        The carried-over entries are the loaded ones, under keys new_index lacks: the two are
        the same index when every other entry of new_index is the loaded one and the counts add
        up."""
        old, new, carried = self.old_index, self.new_index, self.carried
        if len(carried) + len(new) == len(old) and all(
            k in old and old[k] == v for k, v in new.items()
        ):
            return None
        new.update((k, old[k]) for k in carried)
        return new

    def _looks_like_channel_dir(self, path: str) -> bool:
        # mamba's fallback layout without a URL: pkgs/<channel>/<subdir>/<pkg>
        try:
            with os.scandir(path) as it:
                return any(is_subdir_name(de.name) and de.is_dir() for de in it)
        except OSError:
            return False

    def _remember_and_emit(
        self, path, rel, fp, data, source, problems, is_extracted, mtime, archives, mtime_ns
    ) -> None:
        # A file changed within the same coarse clock tick as this read would keep its
        # fingerprint: remember only metadata that was already stable when read (racy-git rule).
        # Nothing is packed for an index that will not be written (use_index=False).
        if self.remember and self._now() - mtime_ns / 1e9 > RACY_SECONDS:
            # An entry: (fingerprint, payload, source, problems, is_extracted, mtime). A record
            # file's mtime is not kept: the stat that proves the fingerprint gives it again.
            kept_mtime = None if source == SOURCE_RECORD else mtime
            entry = (fp, pack_payload(data), source, tuple(problems), is_extracted, kept_mtime)
            self.new_index[rel] = entry
            # the record keeps the remembered form too (its data decoded only when asked for):
            # a first scan of 10^5 entries would otherwise hold every parsed record beside it
            self._emit(path, rel, entry, archives, mtime)
            return
        self._append(path, rel, data, None, None, source, problems, is_extracted, mtime, archives)

    def _emit(self, path, rel, entry, archives, mtime) -> None:
        """A record from a remembered index entry (its data is decoded only when needed);
        ``mtime`` is its metadata file's, for an entry that does not keep it."""
        fp, payload, source, problems, is_extracted, kept_mtime = entry
        if kept_mtime is not None:
            mtime = kept_mtime
        if type(fp) is bytes:  # complete, with its URL: nothing to fill from urls.txt
            self.result.records.append(
                PackageCacheRecord.remembered(
                    self.pkgs_dir,
                    rel,
                    {ext: st.st_size for ext, st in archives.items()} if archives else {},
                    payload,
                    source,
                    problems,
                    is_extracted,
                    mtime,
                )
            )
            return
        core, blob = unpack_payload(payload)
        self._append(path, rel, None, core, blob, source, problems, is_extracted, mtime, archives)

    def _append(
        self, path, rel, data, core, blob, source, problems, is_extracted, mtime, archives
    ) -> None:
        if source == SOURCE_RECORD and (core[7] if data is None else data.get("url")):
            # complete, with its URL: nothing to fill from urls.txt (the usual entry)
            record = PackageCacheRecord.lazy(
                self.pkgs_dir,
                rel,
                {ext: st.st_size for ext, st in archives.items()} if archives else {},
                core,
                blob,
                source,
                problems,
                is_extracted,
                mtime,
                data,
            )
            self.result.records.append(record)
            return
        record = PackageCacheRecord(
            data,
            self.pkgs_dir,
            rel,
            {ext: st.st_size for ext, st in archives.items()} if archives else {},
            is_extracted,
            True,
            source,
            list(problems),
            mtime,
            core=core,
            blob=blob,
        )
        if source != SOURCE_RECORD or not record.url:
            # Fill what urls.txt knows; a copy, since the data may be shared with the index.
            data = dict(record.data)
            fn = data.get("fn") or os.path.basename(path) + (
                CONDA_EXT if not archives or CONDA_EXT in archives else next(iter(archives))
            )
            url = self.urls.get_url(fn) or self.urls.get_url(os.path.basename(path))
            if url and not data.get("url"):
                data["url"] = url
                data.setdefault("fn", url.rsplit("/", 1)[-1])
                for key, value in _url_parts(url).items():
                    data.setdefault(key, value)
            record.data = data
        self.result.records.append(record)

    def archive_only_record(self, path: str, rel: str, archives) -> PackageCacheRecord:
        base = os.path.basename(path)
        ext = CONDA_EXT if CONDA_EXT in archives else next(iter(archives))
        data: dict = {"fn": base + ext}
        parts = split_dist(base)
        if parts:
            data["name"], data["version"], data["build"] = parts
        url = self.urls.get_url(base + ext)
        if url:
            data["url"] = url
            data.update(_url_parts(url))
        data["size"] = archives[ext].st_size
        return PackageCacheRecord(
            data=data,
            pkgs_dir=self.pkgs_dir,
            entry=rel,
            archives={e: st.st_size for e, st in archives.items()},
            is_extracted=False,
            has_dir=False,
            source=SOURCE_FILENAME,
            problems=[] if parts else [f"{base}{ext}: file name is not name-version-build"],
            mtime=max(st.st_mtime for st in archives.values()),
        )


def scan_pkgs_dir(pkgs_dir: str, use_index: bool) -> ScanResult:
    index = scan_index.load(pkgs_dir) if use_index else {}
    urls = UrlsData(pkgs_dir)
    scanner = _Scanner(pkgs_dir, index, urls)
    scanner.remember = use_index
    scanner.scan_level(pkgs_dir, "")
    result = scanner.result
    if urls.junk_lines:
        result.problems.append(f"urls.txt: {urls.junk_lines} line(s) that are not package URLs")
    if use_index and result.exists:
        new_index = scanner.index_to_save()
        if new_index is not None:
            scan_index.save(pkgs_dir, new_index)
    _adopt_rattler_entries(result)
    return result


def _adopt_rattler_entries(result: ScanResult) -> None:
    """A conda cache rattler also writes into (pixi pointed at conda's pkgs dir): an entry with
    no record but a ``<entry>.lock`` sidecar is rattler's, complete for its layout; its sidecar
    is not a leftover."""
    from .rattler_cache import SIDECAR_EXT, adopt

    sidecars = {
        lo.rel[: -len(SIDECAR_EXT)]: lo
        for lo in result.leftovers
        if lo.kind == "lock" and not lo.is_dir and "/" not in lo.rel
    }
    if not sidecars:
        return
    adopted = set()
    for rec in result.records:
        if rec.entry in sidecars and rec.source == SOURCE_INDEX and not rec.archives:
            adopt(rec)
            adopted.add(rec.entry)
    result.leftovers = [lo for lo in result.leftovers if lo.rel[: -len(SIDECAR_EXT)] not in adopted]


def conda_writability(pkgs_dir: str) -> tuple[bool | None, str]:
    """conda's rule, decided without writing anything: the directory and its magic file
    ``urls.txt`` must be writable (:func:`writable_dir`). A writable directory whose ``urls.txt``
    is gone is writable too: conda's ``first_writable`` makes the file again and uses the cache,
    and so do our verbs that write (``ensure_cache_dir``). One rule for every verb (issue 23)."""
    layout = CacheLayout(pkgs_dir)
    if not os.path.isdir(pkgs_dir):
        return None, "does not exist"
    if not os.path.isfile(layout.urls_txt):
        if os.path.lexists(layout.urls_txt):
            return False, "urls.txt is not a regular file"
        writable, why = writable_dir(pkgs_dir)
        if writable:
            return True, "writable (no urls.txt: made again on the next write, as conda does)"
        return writable, why
    return writable_dir(pkgs_dir, layout.urls_txt)
