"""Integrity of cache entries: the extracted files against ``info/paths.json``, the metadata
against itself, the archives against ``repodata_record.json``.

Two levels, like rattler's ``ValidationMode``:

- **fast**: every path in ``paths.json`` exists with the right type (checked with ``lstat``; a
  softlink is never followed out of the entry) and size; ``repodata_record.json`` agrees with
  ``index.json``; the archive has the recorded size.
- **full**: also the sha256 of every file, and the archive's sha256 (or md5).

Findings are data (:class:`EntryFindings`, :class:`Problem`); nothing here prints or changes the
cache. What passed is remembered per entry (:mod:`.verify_store`) so a re-run re-checks only what
changed. Work is spread over a process pool (full level: hashing and the per-file Python work
both scale with cores) or threads (fast level: mostly waiting on ``lstat``).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
import time
from dataclasses import dataclass, field

from . import verify_store
from .layout import CONDA_EXT, TARBZ2_EXT, CacheLayout

FAST = "fast"
FULL = "full"
LEVELS = (FAST, FULL)

OK = "ok"
CORRUPT = "corrupt"
INCOMPLETE = "incomplete"
MISSING_METADATA = "missing-metadata"
STATUSES = (OK, CORRUPT, INCOMPLETE, MISSING_METADATA)

# Problem kinds.
MISSING_FILE = "missing_file"
WRONG_SIZE = "wrong_size"
WRONG_HASH = "wrong_hash"
WRONG_TYPE = "wrong_type"
LINK_ESCAPES = "link_escapes"
BROKEN_LINK = "broken_link"
UNREADABLE = "unreadable"
META_MISSING = "missing_metadata"
META_INVALID = "invalid_metadata"
ARCHIVE_CHECKSUM = "archive_checksum_mismatch"
ARCHIVE_SIZE = "archive_size_mismatch"
ORPHAN_TEMP = "orphan_temp"
PARTIAL_DOWNLOAD = "partial_download"

_CORRUPT_KINDS = frozenset(
    {WRONG_SIZE, WRONG_HASH, WRONG_TYPE, LINK_ESCAPES, BROKEN_LINK, UNREADABLE}
    | {ARCHIVE_CHECKSUM, ARCHIVE_SIZE}
)
_METADATA_KINDS = frozenset({META_MISSING, META_INVALID})

# paths.json types that exist in a package (the others are made at link time).
_HARDLINK, _SOFTLINK, _DIRECTORY = "hardlink", "softlink", "directory"
# Fields of repodata_record.json that must agree with info/index.json.
CONSISTENT_FIELDS = ("name", "version", "build", "build_number", "subdir")

_BUF = 1 << 20
_UNCHANGED = {"unchanged": True}  # what a check returns when the remembered state still holds
_MAX_LINK_HOPS = 40


@dataclass
class Problem:
    kind: str
    path: str  # relative to the entry (or an archive name); absolute for cache leftovers
    expected: object = None
    actual: object = None
    detail: str = ""

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "path": self.path,
            "expected": self.expected,
            "actual": self.actual,
            "detail": self.detail,
        }

    def describe(self) -> str:
        text = f"{self.kind.replace('_', ' ')}: {self.path}"
        if self.expected is not None or self.actual is not None:
            text += f" (expected {self.expected}, found {self.actual})"
        if self.detail:
            text += f" - {self.detail}"
        return text


@dataclass
class EntryFindings:
    pkgs_dir: str
    entry: str
    level: str = FAST
    name: str = ""
    version: str = ""
    build: str = ""
    fn: str = ""
    url: str | None = None
    status: str = OK
    problems: list[Problem] = field(default_factory=list)
    has_dir: bool = False
    metadata: str = "none"  # paths.json | info/files | none
    files: int = 0  # paths the metadata lists
    checked: int = 0  # paths examined in this run
    skipped: int = 0  # unchanged since they last passed (not re-read)
    hashed: int = 0
    bytes_hashed: int = 0
    archives: list[dict] = field(default_factory=list)
    writable: bool | None = None
    # What the entry's metadata says about its archive (fn, url, size, sha256, md5, ...) and
    # where that came from: "repodata_record" (trusted), "index" (no checksums) or "".
    record: dict = field(default_factory=dict)
    record_source: str = ""

    @property
    def path(self) -> str:
        return os.path.join(self.pkgs_dir, self.entry)

    @property
    def label(self) -> str:
        if self.name:
            return f"{self.name}-{self.version}-{self.build}"
        return os.path.basename(self.entry)

    def archive_ok(self) -> str | None:
        """The path of an archive that verified against the record at full level, if any."""
        for a in self.archives:
            if a.get("ok") and a.get("checked") in ("sha256", "md5"):
                return a["path"]
        return None

    def add(self, kind: str, path: str, expected=None, actual=None, detail: str = "") -> None:
        self.problems.append(Problem(kind, path, expected, actual, detail))

    def finish(self) -> EntryFindings:
        kinds = {p.kind for p in self.problems}
        if kinds & _CORRUPT_KINDS:
            self.status = CORRUPT
        elif kinds & _METADATA_KINDS:
            self.status = MISSING_METADATA
        elif MISSING_FILE in kinds:
            self.status = INCOMPLETE
        else:
            self.status = OK
        return self

    def merge(self, other: EntryFindings) -> None:
        self.problems += other.problems
        for key in ("checked", "skipped", "hashed", "bytes_hashed"):
            setattr(self, key, getattr(self, key) + getattr(other, key))
        self.archives += other.archives

    def to_json(self) -> dict:
        return {
            "pkgs_dir": self.pkgs_dir,
            "entry": self.entry,
            "path": self.path,
            "name": self.name,
            "version": self.version,
            "build": self.build,
            "fn": self.fn,
            "url": self.url,
            "level": self.level,
            "status": self.status,
            "writable": self.writable,
            "metadata": self.metadata,
            "files": self.files,
            "checked": self.checked,
            "skipped": self.skipped,
            "hashed": self.hashed,
            "bytes_hashed": self.bytes_hashed,
            "archives": list(self.archives),
            "record_source": self.record_source,
            "problems": [p.to_json() for p in self.problems],
        }


@dataclass
class VerifyReport:
    level: str
    entries: list[EntryFindings] = field(default_factory=list)
    leftovers: list[Problem] = field(default_factory=list)
    caches: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    workers: int = 1
    executor: str = "thread"

    def counts(self) -> dict:
        out = {s: 0 for s in STATUSES}
        for e in self.entries:
            out[e.status] += 1
        return out

    @property
    def bad(self) -> list[EntryFindings]:
        return [e for e in self.entries if e.status != OK]

    def totals(self) -> dict:
        sums = {"entries": len(self.entries)}
        sums.update(self.counts())
        for key in ("files", "checked", "skipped", "hashed", "bytes_hashed"):
            sums[key] = sum(getattr(e, key) for e in self.entries)
        sums["problems"] = sum(len(e.problems) for e in self.entries)
        sums["leftovers"] = len(self.leftovers)
        return sums


# --- small helpers ---------------------------------------------------------------------------


def _fp(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "directory"
    return "special file"


def _safe_rel(rel) -> bool:
    if not isinstance(rel, str) or not rel or rel.startswith("/") or "\0" in rel:
        return False
    return not any(p in ("", ".", "..") for p in rel.split("/"))


def sha256_fd(fd: int, size_hint: int) -> tuple[str, int]:
    """(hex digest, bytes read). Small files in one read; hashlib drops the GIL on big buffers."""
    if size_hint < _BUF:
        data = os.read(fd, size_hint + 1)
        if len(data) <= size_hint:
            return hashlib.sha256(data).hexdigest(), len(data)
        h = hashlib.sha256(data)
        n = len(data)
    else:
        h = hashlib.sha256()
        n = 0
    buf = bytearray(_BUF)
    view = memoryview(buf)
    with open(fd, "rb", buffering=0, closefd=False) as fh:
        while True:
            k = fh.readinto(buf)
            if not k:
                break
            h.update(view[:k])
            n += k
    return h.hexdigest(), n


def hash_file(path: str, algorithm: str = "sha256") -> str | None:
    """Digest of a file without following a final symlink; None if it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if algorithm == "sha256":
            return sha256_fd(fd, os.fstat(fd).st_size)[0]
        h = hashlib.new(algorithm)
        with open(fd, "rb", buffering=0, closefd=False) as fh:
            while chunk := fh.read(_BUF):
                h.update(chunk)
        return h.hexdigest()
    except OSError:
        return None
    finally:
        os.close(fd)


def _read_json(path: str) -> tuple[object, str | None, bool]:
    """(data, error, exists)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except (FileNotFoundError, NotADirectoryError):
        return None, None, False
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or exc}", True
    try:
        return json.loads(raw), None, True
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"not valid JSON ({exc})", True


def archive_lists_paths_json(archive: str) -> bool | None:
    """Whether the archive contains ``info/paths.json`` (None if it cannot be read).

    Only asked when an extracted entry lacks the file: old packages never had one, and only the
    archive can tell a deleted file from a legacy package.
    """
    import tarfile

    try:
        if archive.endswith(CONDA_EXT):
            import zipfile

            import zstandard

            with zipfile.ZipFile(archive) as zf:
                names = [n for n in zf.namelist() if n.startswith("info-") and n.endswith(".zst")]
                if not names:
                    return None
                with zf.open(names[0]) as raw:
                    stream = zstandard.ZstdDecompressor().stream_reader(raw)
                    with tarfile.open(fileobj=stream, mode="r|") as tar:
                        return any(m.name == "info/paths.json" for m in tar)
        with tarfile.open(archive, mode="r|bz2") as tar:
            return any(member.name == "info/paths.json" for member in tar)
    except Exception:
        return None


# --- one entry ---------------------------------------------------------------------------------


class _EntryCheck:
    """Checks of one extracted entry, or of one part of its files (big entries are split)."""

    def __init__(self, pkgs_dir, entry, level, part, nparts, sdir, use_store):
        self.layout = CacheLayout(pkgs_dir)
        self.root = self.layout.extracted(entry)
        self.level = level
        self.part, self.nparts = part, nparts
        self.f = EntryFindings(pkgs_dir=pkgs_dir, entry=entry, level=level)
        self.store_path = verify_store.store_path(sdir, entry) if sdir else None
        self.stored = (
            verify_store.load(self.store_path) if (use_store and self.store_path) else None
        )
        self.new_files: dict = {}
        self.new_archives: dict = {}
        self.dirs_ok: dict[str, bool] = {"": True}
        self.record: dict = {}
        self.record_source = ""
        self.meta_fp = None
        self.meta_clean = True

    # metadata -------------------------------------------------------------------------------
    def _meta_fingerprint(self):
        info = os.path.join(self.root, "info")
        fps = []
        for name in ("paths.json", "index.json", "repodata_record.json", "files", "has_prefix"):
            st = _lstat(os.path.join(info, name))
            fps.append(_fp(st) if st else None)
        return tuple(fps)

    def _report(self, *args, **kw):
        if self.part == 0:
            self.f.add(*args, **kw)

    def load_metadata(self):
        """The list of (rel, type, size, sha256) to check, from the store when unchanged."""
        self.meta_fp = self._meta_fingerprint()
        st = self.stored
        if st and st.get("meta") == self.meta_fp and "paths" in st:
            self.record = st.get("record") or {}
            self.record_source = "repodata_record"
            self.f.metadata = st.get("source", "paths.json")
            return st["paths"]
        f = self.f
        info = os.path.join(self.root, "info")
        index, err, exists = _read_json(os.path.join(info, "index.json"))
        if not exists:
            self._report(META_MISSING, "info/index.json")
        elif err or not isinstance(index, dict):
            self._report(META_INVALID, "info/index.json", detail=err or "not a JSON object")
            index = None
        record, err, exists = _read_json(os.path.join(info, "repodata_record.json"))
        if not exists:
            self._report(META_MISSING, "info/repodata_record.json")
            record = None
        elif err or not isinstance(record, dict):
            self._report(
                META_INVALID, "info/repodata_record.json", detail=err or "not a JSON object"
            )
            record = None
        if isinstance(record, dict) and isinstance(index, dict):
            for key in CONSISTENT_FIELDS:
                if key in index and record.get(key) != index.get(key):
                    self._report(
                        META_INVALID,
                        "info/repodata_record.json",
                        expected=index.get(key),
                        actual=record.get(key),
                        detail=f"{key} differs from info/index.json",
                    )
        src = record if isinstance(record, dict) else (index if isinstance(index, dict) else {})
        self.record_source = (
            "repodata_record" if isinstance(record, dict) else ("index" if src else "")
        )
        self.record = {
            k: src.get(k)
            for k in ("name", "version", "build", "fn", "url", "size", "sha256", "md5")
            if isinstance(src.get(k), (str, int)) and not isinstance(src.get(k), bool)
        }
        paths = self._paths_list(info)
        self.meta_clean = not f.problems
        return paths

    def _paths_list(self, info):
        data, err, exists = _read_json(os.path.join(info, "paths.json"))
        if exists and not err:
            if not isinstance(data, dict) or data.get("paths_version") != 1:
                version = data.get("paths_version") if isinstance(data, dict) else None
                self._report(META_INVALID, "info/paths.json", 1, version, "unknown paths_version")
                return []
            raw = data.get("paths")
            if not isinstance(raw, list):
                self._report(META_INVALID, "info/paths.json", detail="no list of paths")
                return []
            self.f.metadata = "paths.json"
            out = []
            for item in raw:
                rel = item.get("_path") if isinstance(item, dict) else None
                if not _safe_rel(rel):
                    self._report(META_INVALID, "info/paths.json", detail=f"bad path {rel!r}")
                    continue
                size = item.get("size_in_bytes")
                sha = item.get("sha256")
                out.append(
                    (
                        rel,
                        item.get("path_type", _HARDLINK),
                        size if isinstance(size, int) and not isinstance(size, bool) else None,
                        sha if isinstance(sha, str) else None,
                    )
                )
            return out
        if exists:
            self._report(META_INVALID, "info/paths.json", detail=err)
            return []
        # No paths.json: a legacy package, or a deleted file. Only the archive can tell.
        for ext in (CONDA_EXT, TARBZ2_EXT):
            archive = self.root + ext
            if os.path.isfile(archive) and archive_lists_paths_json(archive):
                self._report(
                    META_MISSING,
                    "info/paths.json",
                    detail=f"{os.path.basename(archive)} has it; the extraction lost it",
                )
                break
        return self._legacy_list(info)

    def _legacy_list(self, info):
        names: dict[str, None] = {}
        for fname in ("files", "has_prefix"):
            try:
                with open(os.path.join(info, fname), encoding="utf-8", errors="replace") as fh:
                    lines = fh.read().splitlines()
            except (FileNotFoundError, NotADirectoryError):
                if fname == "files":
                    if self.f.metadata == "none":
                        self._report(
                            META_MISSING,
                            "info/paths.json",
                            detail="and no info/files: the files cannot be checked",
                        )
                    return []
                continue
            except OSError:
                continue
            self.f.metadata = self.f.metadata if self.f.metadata != "none" else "info/files"
            for line in lines:
                line = line.strip()
                if not line:
                    continue
                if fname == "has_prefix":
                    parts = line.split(None, 2)
                    line = parts[-1] if len(parts) == 3 else parts[0]
                    line = line.strip('"')
                if _safe_rel(line):
                    names.setdefault(line, None)
        # Existence only: legacy metadata records neither types nor sizes.
        return [(rel, "any", None, None) for rel in names]

    # files ------------------------------------------------------------------------------------
    def _parent_ok(self, rel: str) -> bool:
        parent = rel.rpartition("/")[0]
        known = self.dirs_ok.get(parent)
        if known is not None:
            return known
        ok = self._parent_ok(parent)
        if ok:
            st = _lstat(os.path.join(self.root, parent))
            if st is not None and not stat.S_ISDIR(st.st_mode):
                self.f.add(WRONG_TYPE, parent, "directory", _kind(st.st_mode))
                ok = False
        self.dirs_ok[parent] = ok
        return ok

    def check_paths(self, paths) -> None:
        f = self.f
        full = self.level == FULL
        stored = (self.stored or {}).get("files", {}) if self.stored else {}
        if self.stored and self.stored.get("meta") != self.meta_fp:
            stored = {}
        own = None
        root = self.root
        for i, (rel, ptype, size, sha) in enumerate(paths):
            if self.nparts > 1 and i % self.nparts != self.part:
                continue
            f.checked += 1
            if "/" in rel and not self._parent_ok(rel):
                continue
            path = os.path.join(root, rel)
            if ptype == _HARDLINK:
                prev = stored.get(rel)
                if prev is not None:
                    st = _lstat(path)
                    if st is not None and _fp(st) == prev[0] and (prev[1] or not full):
                        f.skipped += 1
                        f.checked -= 1
                        self.new_files[rel] = prev
                        continue
                self._check_file(rel, path, size, sha, full)
            elif ptype == _SOFTLINK:
                if own is None:
                    own = {p[0] for p in paths}
                self._check_link(rel, path, size, sha, full, own)
            elif ptype == _DIRECTORY:
                st = _lstat(path)
                if st is None:
                    f.add(MISSING_FILE, rel, "directory", None)
                elif not stat.S_ISDIR(st.st_mode):
                    f.add(WRONG_TYPE, rel, "directory", _kind(st.st_mode))
            elif ptype == "any" and _lstat(path) is None:
                f.add(MISSING_FILE, rel)
            # Other path types (entry points, pyc files) are made at link time, not packaged.

    def _check_file(self, rel, path, size, sha, full) -> None:
        f = self.f
        if not full or not sha:
            st = _lstat(path)
            if st is None:
                f.add(MISSING_FILE, rel, "file", None)
            elif not stat.S_ISREG(st.st_mode):
                f.add(WRONG_TYPE, rel, "file", _kind(st.st_mode))
            elif size is not None and st.st_size != size:
                f.add(WRONG_SIZE, rel, size, st.st_size)
            else:
                self.new_files[rel] = (_fp(st), False)
            return
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            f.add(MISSING_FILE, rel, "file", None)
            return
        except OSError:
            st = _lstat(path)
            if st is not None and not stat.S_ISREG(st.st_mode):
                f.add(WRONG_TYPE, rel, "file", _kind(st.st_mode))
            else:
                f.add(UNREADABLE, rel, detail="cannot open")
            return
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                f.add(WRONG_TYPE, rel, "file", _kind(st.st_mode))
                return
            if size is not None and st.st_size != size:
                f.add(WRONG_SIZE, rel, size, st.st_size)
                return
            try:
                digest, n = sha256_fd(fd, st.st_size)
            except OSError as exc:
                f.add(UNREADABLE, rel, detail=exc.strerror or str(exc))
                return
            f.hashed += 1
            f.bytes_hashed += n
            if digest != sha:
                f.add(WRONG_HASH, rel, sha, digest)
            else:
                self.new_files[rel] = (_fp(st), True)
        finally:
            os.close(fd)

    def _check_link(self, rel, path, size, sha, full, own) -> None:
        f = self.f
        st = _lstat(path)
        if st is None:
            f.add(MISSING_FILE, rel, "symlink", None)
            return
        if not stat.S_ISLNK(st.st_mode):
            f.add(WRONG_TYPE, rel, "symlink", _kind(st.st_mode))
            return
        # Follow the chain by hand, inside the entry only.
        cur = rel
        for _ in range(_MAX_LINK_HOPS):
            try:
                target = os.readlink(os.path.join(self.root, cur))
            except OSError as exc:
                f.add(UNREADABLE, rel, detail=exc.strerror or str(exc))
                return
            if os.path.isabs(target):
                f.add(LINK_ESCAPES, rel, "a path inside the package", target)
                return
            nxt = os.path.normpath(os.path.join(os.path.dirname(cur), target))
            if nxt == ".." or nxt.startswith("../"):
                f.add(LINK_ESCAPES, rel, "a path inside the package", target)
                return
            tst = _lstat(os.path.join(self.root, nxt))
            if tst is None:
                # A link to another package's file (split packages) dangles in the cache by
                # design; only a link to one of this package's own paths must resolve.
                if nxt in own:
                    f.add(BROKEN_LINK, rel, nxt, None, "the target is missing")
                return
            if stat.S_ISLNK(tst.st_mode):
                cur = nxt
                continue
            if not stat.S_ISREG(tst.st_mode):
                return  # a link to a directory: nothing recorded to compare
            if size is not None and tst.st_size != size:
                f.add(WRONG_SIZE, rel, size, tst.st_size, f"size of the link target {nxt}")
                return
            if full and sha:
                digest = hash_file(os.path.join(self.root, nxt))
                f.hashed += 1
                f.bytes_hashed += tst.st_size
                if digest != sha:
                    f.add(WRONG_HASH, rel, sha, digest, f"hash of the link target {nxt}")
            return
        f.add(LINK_ESCAPES, rel, "a path inside the package", "a symlink loop")

    # archives ----------------------------------------------------------------------------------
    def check_archives(self) -> None:
        f = self.f
        full = self.level == FULL
        rec = self.record
        stored = (self.stored or {}).get("archives", {}) if self.stored else {}
        for ext in (CONDA_EXT, TARBZ2_EXT):
            path = self.root + ext
            st = _lstat(path)
            if st is None or not stat.S_ISREG(st.st_mode):
                continue
            fn = os.path.basename(path)
            info = {"fn": fn, "path": path, "size": st.st_size, "checked": None, "ok": None}
            f.archives.append(info)
            if rec.get("fn") != fn:
                continue  # the record describes the other format; nothing to compare
            size = rec.get("size")
            if isinstance(size, int) and size != st.st_size:
                f.add(ARCHIVE_SIZE, fn, size, st.st_size)
                info.update(checked="size", ok=False)
                continue
            info.update(checked="size", ok=True if isinstance(size, int) else None)
            if not full:
                continue
            algo = "sha256" if rec.get("sha256") else ("md5" if rec.get("md5") else None)
            if algo is None:
                continue
            prev = stored.get(fn)
            if prev is not None and prev[0] == _fp(st) and prev[1] == algo:
                f.skipped += 1
                info.update(checked=algo, ok=True)
                self.new_archives[fn] = prev
                continue
            digest = hash_file(path, algo)
            f.hashed += 1
            f.bytes_hashed += st.st_size
            if digest != rec[algo]:
                f.add(ARCHIVE_CHECKSUM, fn, rec[algo], digest, algo)
                info.update(checked=algo, ok=False)
            else:
                info.update(checked=algo, ok=True)
                self.new_archives[fn] = (_fp(st), algo)

    def run(self):
        f = self.f
        f.has_dir = os.path.isdir(self.root) and not os.path.islink(self.root)
        paths = []
        if f.has_dir:
            paths = self.load_metadata()
            f.files = len(paths)
        rec = self.record
        f.name, f.version, f.build = (
            str(rec.get("name") or ""),
            str(rec.get("version") or ""),
            str(rec.get("build") or ""),
        )
        f.fn, f.url = str(rec.get("fn") or ""), rec.get("url")
        f.record, f.record_source = dict(rec), self.record_source
        if f.has_dir:
            self.check_paths(paths)
        if self.part == self.nparts - 1:
            self.check_archives()
        store = None
        if f.has_dir and self.meta_clean:
            store = {
                "meta": self.meta_fp,
                "source": f.metadata,
                "record": self.record,
                "paths": paths,
                "files": self.new_files,
                "archives": self.new_archives,
            }
            if self.nparts == 1 and store == self.stored:
                store = _UNCHANGED
        return f, store


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
    findings, store = _EntryCheck(pkgs_dir, entry, level, 0, 1, store_dir, use_store).run()
    if store_dir and store is not None and (write_store if write_store is not None else True):
        _save_store(store_dir, entry, store, level, use_store)
    return findings.finish()


def verify_record(record, level: str = FAST, **kwargs) -> EntryFindings:
    """The agreed API: verify one :class:`~.records.PackageCacheRecord`."""
    from .pkgs_dir import writability

    writable = writability(record.pkgs_dir)[0]
    kwargs.setdefault("store_dir", verify_store.store_dir(record.pkgs_dir, writable))
    out = verify_entry(record.pkgs_dir, record.entry, level, **kwargs)
    out.writable = writable
    return out


def _save_store(sdir, entry, store, level, use_store) -> None:
    if store.get("unchanged"):
        return
    path = verify_store.store_path(sdir, entry)
    if not store["files"] and not store["archives"] and not store["paths"]:
        return
    verify_store.save(path, store)


# --- many entries ----------------------------------------------------------------------------


@dataclass
class _Task:
    pkgs_dir: str
    entry: str
    weight: int
    writable: bool | None
    sdir: str | None
    part: int = 0
    nparts: int = 1


def _run_task(args):
    task, level, use_store = args
    return _EntryCheck(
        task.pkgs_dir, task.entry, level, task.part, task.nparts, task.sdir, use_store
    ).run()


def _leftover_problems(result) -> list[Problem]:
    from .locks import conda_byte_locked

    out = []
    for lo in result.leftovers:
        if lo.kind == "partial":
            if conda_byte_locked(lo.path):
                continue  # a download in progress right now
            out.append(Problem(PARTIAL_DOWNLOAD, lo.path, actual=lo.size, detail="resumable"))
        elif lo.kind in ("hold", "trash", "tmp"):
            out.append(Problem(ORPHAN_TEMP, lo.path, detail=lo.kind))
    return out


def choose_executor(level: str, ntasks: int, workers: int) -> str:
    """Processes for hashing (both the digest and the per-file work scale with cores); threads
    for the fast level, whose per-file work is a syscall. fork is only used while this process
    has no other threads (forking a threaded process can deadlock)."""
    if workers < 2 or ntasks < 2 or level != FULL:
        return "thread"
    if threading.active_count() > 1 or not hasattr(os, "fork"):
        return "thread"
    return "process"


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
) -> VerifyReport:
    """Verify every entry (matching ``specs``, SpecMatchers) of every cache in ``caches``.

    ``progress(fraction)`` is called from the calling thread as entries finish.
    """
    from .match import match_any

    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}")
    start = time.perf_counter()
    write_store = (level == FULL) if write_store is None else write_store
    report = VerifyReport(level=level)
    tasks: list[_Task] = []
    for cache in caches.writable_first():
        res = cache.load()
        writable = cache.is_writable
        count = 0
        if res.exists:
            sdir = verify_store.store_dir(cache.pkgs_dir, writable)
            for rec in res.records:
                if specs and not match_any(rec, specs):
                    continue
                weight = rec.size or rec.archive_bytes or 1
                tasks.append(_Task(cache.pkgs_dir, rec.entry, weight, writable, sdir))
                count += 1
            if not specs:
                for broken in res.broken:
                    tasks.append(_Task(cache.pkgs_dir, broken.rel, 1, writable, sdir))
                    count += 1
                report.leftovers += _leftover_problems(res)
        report.caches.append(
            {
                "path": cache.pkgs_dir,
                "exists": res.exists,
                "writable": writable,
                "entries": count,
                "problems": list(res.problems),
            }
        )
    workers = workers or os.cpu_count() or 1
    executor = executor or choose_executor(level, len(tasks), workers)
    report.workers, report.executor = workers, executor
    tasks = _split_big(tasks, workers) if level == FULL and workers > 1 else tasks
    tasks.sort(key=lambda t: -t.weight)
    results = _execute(tasks, level, use_store, workers, executor, progress)
    grouped: dict[tuple[str, str], list] = {}
    for task, (findings, store) in results:
        grouped.setdefault((task.pkgs_dir, task.entry), []).append((task, findings, store))
    for parts in grouped.values():
        parts.sort(key=lambda p: p[0].part)
        task, findings, store = parts[0]
        findings.writable = task.writable
        for _t, other, other_store in parts[1:]:
            findings.merge(other)
            if store is not None and other_store is not None:
                store["files"].update(other_store["files"])
                store["archives"].update(other_store["archives"])
            else:
                store = None
        _dedupe_problems(findings)
        report.entries.append(findings.finish())
        if write_store and store is not None and task.sdir:
            _save_store(task.sdir, task.entry, store, level, use_store)
    report.entries.sort(key=lambda e: (e.status == OK, e.pkgs_dir, e.entry))
    report.seconds = time.perf_counter() - start
    return report


def _split_big(tasks: list[_Task], workers: int) -> list[_Task]:
    """Split entries much bigger than their share into parts, so one huge package does not
    leave the other cores idle at the end."""
    total = sum(t.weight for t in tasks) or 1
    share = max(total // (workers * 4), 1)
    out = []
    for t in tasks:
        n = min(max(t.weight // share, 1), workers * 2)
        if n <= 1:
            out.append(t)
            continue
        for i in range(n):
            out.append(
                _Task(t.pkgs_dir, t.entry, t.weight // n, t.writable, t.sdir, part=i, nparts=n)
            )
    return out


def _execute(tasks, level, use_store, workers, executor, progress):
    if not tasks:
        return []
    total = sum(t.weight for t in tasks) or 1
    done = 0
    jobs = [(t, level, use_store) for t in tasks]
    out = []
    if executor == "serial" or workers == 1 or len(tasks) == 1:
        for job in jobs:
            out.append((job[0], _run_task(job)))
            done += job[0].weight
            if progress:
                progress(done / total)
        return out
    if executor == "process":
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(min(workers, len(tasks)), multiprocessing.get_context("fork"))
    else:
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(min(workers, len(tasks)))
    with pool:
        futures = {pool.submit(_run_task, job): job[0] for job in jobs}
        from concurrent.futures import as_completed

        for fut in as_completed(futures):
            task = futures[fut]
            out.append((task, fut.result()))
            done += task.weight
            if progress:
                progress(done / total)
    return out


def _dedupe_problems(findings: EntryFindings) -> None:
    # Parts of a split entry each meet the same bad parent directory.
    seen = set()
    kept = []
    for p in findings.problems:
        key = (p.kind, p.path, p.detail)
        if key not in seen:
            seen.add(key)
            kept.append(p)
    findings.problems = kept
