"""Integrity of cache entries: the extracted files against ``info/paths.json``, the metadata
against itself, the archives against ``repodata_record.json``.

Two levels, like rattler's ``ValidationMode``:

- **fast**: every path in ``paths.json`` exists with the right type (checked with ``lstat``; a
  softlink is never followed out of the entry) and size; ``repodata_record.json`` agrees with
  ``index.json``; the archive has the recorded size.
- **full**: also the sha256 of every file, and the archive's sha256 (or md5).

Findings are data (:class:`EntryFindings`, :class:`Problem`); nothing here prints or changes the
cache. What passed is remembered (:mod:`.verify_store`) so a re-run re-checks only what changed:
an unchanged file costs one ``lstat`` (relative to the entry's open directory), an unchanged
entry's metadata is not parsed again. Everything but hashing runs in this process; the files
that need a hash go to a pool of processes (or threads) in batches, and only when there are
enough of them to pay for the pool.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import io
import json
import os
import shutil
import stat
import threading
import time
from dataclasses import dataclass, field

from . import verify_store
from .layout import CONDA_EXT, TARBZ2_EXT, CacheLayout
from .rattler_cache import has_sidecar
from .sizes import human_bytes
from .statefile import RACY_SECONDS

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
ARCHIVE_REFUSED = "archive_refused"  # our extractor refuses it (hostile or unreadable)
ORPHAN_TEMP = "orphan_temp"
PARTIAL_DOWNLOAD = "partial_download"
# a name that would make a scan leave the cache, or a link planted in place of a private dir:
# never a package, always a finding (exit 1); `clean --temp` removes it
HOSTILE_ENTRY = "hostile_entry"

_CORRUPT_KINDS = frozenset(
    {WRONG_SIZE, WRONG_HASH, WRONG_TYPE, LINK_ESCAPES, BROKEN_LINK, UNREADABLE}
    | {ARCHIVE_CHECKSUM, ARCHIVE_SIZE, ARCHIVE_REFUSED}
)
_METADATA_KINDS = frozenset({META_MISSING, META_INVALID})

# paths.json types that exist in a package (the others are made at link time).
_HARDLINK, _SOFTLINK, _DIRECTORY = "hardlink", "softlink", "directory"
# Fields of repodata_record.json that must agree with info/index.json.
CONSISTENT_FIELDS = ("name", "version", "build", "build_number", "subdir")

_BUF = 1 << 20
# Never through a final symlink; O_NONBLOCK so that a FIFO put in a file's place cannot hang
# the check (it changes nothing for regular files).
_OPEN_FLAGS = (
    os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0)
)
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
        if self.kind == PARTIAL_DOWNLOAD and isinstance(self.actual, int):
            text += f" ({human_bytes(self.actual)} so far)"
        elif self.expected is not None:
            found = "nothing" if self.actual is None else self.actual
            text += f" (expected {self.expected}, found {found})"
        elif self.actual is not None:  # nothing to expect: never print Python's None
            text += f" (found {self.actual})"
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
    # the specs (as typed) that matched no cached package
    unmatched: list[str] = field(default_factory=list)

    def not_found(self, explicit_dirs: bool) -> list[dict]:
        """What the user asked about that was not there to check: nothing checked is not ok.
        A configured cache that does not exist is normal (conda lists several); a directory
        given on the command line, or every configured one missing, is not."""
        missing = [
            {"kind": "pkgs_dir", "what": c["path"], "reason": _why_not_a_cache(c["path"])}
            for c in self.caches
            if not os.path.isdir(c["path"])
        ]
        out = missing if explicit_dirs or len(missing) == len(self.caches) else []
        out += [
            {"kind": "spec", "what": spec, "reason": "no cached package matches it"}
            for spec in self.unmatched
        ]
        return out

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


def _why_not_a_cache(path: str) -> str:
    if not os.path.lexists(path):
        return "does not exist"
    return "is not a directory"


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


def _readable(st: os.stat_result, path: str) -> bool:
    """Whether we may read the file ``st`` describes. The mode bits answer for almost every
    file without a syscall; only when they deny us is ``access`` asked (an ACL may allow)."""
    euid = os.geteuid() if hasattr(os, "geteuid") else -1
    if euid == 0:
        return True
    mode = st.st_mode
    if st.st_uid == euid:
        bit = mode & 0o400
    elif st.st_gid == os.getegid() or st.st_gid in os.getgroups():
        bit = mode & 0o040
    else:
        bit = mode & 0o004
    return bool(bit) or os.access(path, os.R_OK)


def _safe_rel(rel) -> bool:
    if rel.__class__ is not str or not rel or rel[0] == "/" or "\0" in rel:
        return False
    # No empty, "." or ".." component; one substring test each instead of a split per path.
    framed = "/" + rel + "/"
    return "//" not in framed and "/./" not in framed and "/../" not in framed


def _all_safe(items: list) -> bool:
    """Whether every item is a dict whose ``_path`` passes :func:`_safe_rel`, in one pass of
    substring tests over all the paths joined (each framed by slashes, so a bad component of
    one path shows as it would alone; the joins can only add false alarms, never hide one)."""
    try:
        joined = "/\n/".join([item["_path"] for item in items])  # TypeError on a non-string
    except (TypeError, KeyError):
        return False
    framed = "/" + joined + "/"
    return (
        "\0" not in joined and "//" not in framed and "/./" not in framed and "/../" not in framed
    )


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
        fd = os.open(path, _OPEN_FLAGS)
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


_CANNOT_READ = "cannot read: "


def _read_json(path: str, dir_fd: int | None = None) -> tuple[object, str | None, bool]:
    """(data, error, exists). Plain ``os`` calls: a buffered file object costs more than the
    read of a small metadata file, and a first run reads three per entry."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    except (FileNotFoundError, NotADirectoryError):
        return None, None, False
    except OSError as exc:
        return None, f"{_CANNOT_READ}{exc.strerror or exc}", True
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    except OSError as exc:
        return None, f"{_CANNOT_READ}{exc.strerror or exc}", True
    finally:
        os.close(fd)
    try:
        return json.loads(b"".join(chunks) if len(chunks) != 1 else chunks[0]), None, True
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"not valid JSON ({exc})", True
    except RecursionError:
        return None, "not usable JSON (nested too deeply)", True


def _meta_kind(err: str | None) -> str:
    """A metadata file we could not read is unreadable, not invalid (see ``_read_json``)."""
    return UNREADABLE if err and err.startswith(_CANNOT_READ) else META_INVALID


def info_members(archive: str):
    """``(member, read)`` for each member of the archive's info part, in archive order
    (``read()`` returns the current member's bytes). Raises what a damaged archive raises."""
    for member, tar in _archive_members(archive, info_only=True):
        yield member, lambda m=member, t=tar: (t.extractfile(m) or io.BytesIO()).read()


def _archive_members(archive: str, info_only: bool = False):
    """``(member, tar)`` for the tar members of a package archive, streamed (``.conda``: the
    info part, then the payload unless ``info_only``). Raises whatever reading raises."""
    import tarfile

    if archive.endswith(CONDA_EXT):
        import zipfile

        import zstandard

        with zipfile.ZipFile(archive) as zf:
            names = sorted(
                (n for n in zf.namelist() if n.endswith(".tar.zst")),
                key=lambda n: not n.startswith("info-"),
            )
            for name in names:
                if info_only and not name.startswith("info-"):
                    continue
                with zf.open(name) as raw:
                    stream = zstandard.ZstdDecompressor().stream_reader(raw)
                    with tarfile.open(fileobj=stream, mode="r|") as tar:
                        for member in tar:
                            yield member, tar
        return
    with tarfile.open(archive, mode="r|bz2") as tar:
        for member in tar:
            yield member, tar


def archive_has_member(archive: str, name: str) -> bool | None:
    """Whether the archive contains ``name`` (an ``info/`` file; None if it cannot be read).

    Only asked when an extracted entry lacks the file: old packages never had one, and only the
    archive can tell a deleted file from a package that never had it.
    """
    try:
        return any(m.name == name for m, _tar in _archive_members(archive, info_only=True))
    except Exception:
        return None


def archive_lists_paths_json(archive: str) -> bool | None:
    return archive_has_member(archive, "info/paths.json")


@functools.lru_cache(maxsize=64)
def _link_targets(archive: str, size: int, mtime_ns: int) -> dict[str, str] | None:
    try:
        members = [m for m, _ in _archive_members(archive) if m.issym() or m.islnk()]
    except Exception:
        return None
    found = {m.name: m.linkname for m in members if m.issym()}
    for m in members:
        # a hard link to a symlink member (how GNU tar stores a hard-linked symlink) is
        # extracted as the same symlink, by conda's extractor and ours
        if m.islnk() and m.linkname in found:
            found[m.name] = found[m.linkname]
    return found


def archive_link_targets(root: str) -> dict[str, str]:
    """``{path: target}`` of the symlinks in the archive beside the extracted ``root`` (empty
    without a readable archive). Asked only about unusual links, so rarely read."""
    for ext in (CONDA_EXT, TARBZ2_EXT):
        try:
            st = os.stat(root + ext)
        except OSError:
            continue
        found = _link_targets(root + ext, st.st_size, st.st_mtime_ns)
        if found is not None:
            return found
    return {}


def archive_empty_links(root: str) -> frozenset[str]:
    """Symlinks with an empty target in the archive beside the extracted ``root``: no link can
    be made from them (conda's extraction skips them too), so their absence is not damage."""
    return frozenset(name for name, target in archive_link_targets(root).items() if not target)


def _packaged_symlink_here(root: str, rel: str) -> bool:
    """Whether the symlink at ``rel`` is one the archive itself has (paths.json may call it a
    hardlink: a hard link to a symlink member is extracted as that symlink)."""
    try:
        target = os.readlink(os.path.join(root, rel))
    except OSError:
        return False
    return _packaged_link(root, rel, target)


def _packaged_link(root: str, rel: str, target: str) -> bool:
    """Whether the archive itself has this link with this target: conda keeps links to system
    paths or out of the package (conda-build and rattler-build write them), so one that came
    from the archive is the package's, not a planted one."""
    return archive_link_targets(root).get(rel) == target


# --- the check plan: what an entry's metadata says must be there ------------------------------

# Fingerprinted metadata files, in this order; a legacy entry (no paths.json) also depends on
# the last two.
_META_NAMES = ("paths.json", "index.json", "repodata_record.json", "files", "has_prefix")
_META_PATHS = tuple("info/" + n for n in _META_NAMES)
_N_META_MODERN = 3
_ARCHIVE_EXTS = (CONDA_EXT, TARBZ2_EXT)
_RECORD_KEYS = ("name", "version", "build", "fn", "url", "size", "sha256", "md5")


@dataclass
class _Plan:
    """What an entry must contain, parsed once from its metadata (and then remembered)."""

    source: str = "none"  # paths.json | info/files | none
    record: dict = field(default_factory=dict)
    record_source: str = ""
    files: list = field(default_factory=list)  # hardlink paths
    sizes: list = field(default_factory=list)  # their sizes (None: not recorded)
    shas: list = field(default_factory=list)  # their sha256 (None: not recorded)
    links: list = field(default_factory=list)  # (rel, size, sha) of softlinks
    dirs: list = field(default_factory=list)  # paths of type directory
    anys: list = field(default_factory=list)  # legacy paths: existence only
    parents: list = field(default_factory=list)  # every directory above a path, shallow first
    count: int = 0  # paths listed

    def to_state(self) -> tuple:
        return (
            self.source,
            self.record,
            self.record_source,
            self.files,
            self.sizes,
            self.shas,
            self.links,
            self.dirs,
            self.anys,
            self.parents,
            self.count,
        )

    @classmethod
    def from_state(cls, t: tuple) -> _Plan:
        return cls(*t)


@functools.lru_cache(maxsize=64)
def _kind_requires_record(pkgs_dir: str, _ino: int, _mtime_ns: int) -> bool:
    from .layouts import detect

    return detect(pkgs_dir).record_required


def _record_required(pkgs_dir: str) -> bool:
    """Whether the cache's layout keeps ``repodata_record.json`` (rattler's does not)."""
    try:
        st = os.stat(pkgs_dir)
    except OSError:
        return True
    return _kind_requires_record(pkgs_dir, st.st_ino, st.st_mtime_ns)


def _parse_metadata(root: str, efd: int, f: EntryFindings) -> _Plan:
    """The plan of one entry from its metadata files; problems go into ``f``."""
    plan = _Plan()
    info = os.path.join(root, "info")
    index, err, exists = _read_json("info/index.json", efd)
    if not exists:
        f.add(META_MISSING, "info/index.json")
    elif err or not isinstance(index, dict):
        f.add(_meta_kind(err), "info/index.json", detail=err or "not a JSON object")
        index = None
    record, err, exists = _read_json("info/repodata_record.json", efd)
    if not exists:
        if _record_required(f.pkgs_dir) and not has_sidecar(root):
            # (an entry rattler wrote into a conda cache has its sidecar instead)
            f.add(META_MISSING, "info/repodata_record.json")
        record = None
    elif err or not isinstance(record, dict):
        f.add(_meta_kind(err), "info/repodata_record.json", detail=err or "not a JSON object")
        record = None
    if isinstance(record, dict) and isinstance(index, dict):
        for key in CONSISTENT_FIELDS:
            if key in index and record.get(key) != index.get(key):
                f.add(
                    META_INVALID,
                    "info/repodata_record.json",
                    expected=index.get(key),
                    actual=record.get(key),
                    detail=f"{key} differs from info/index.json",
                )
    src = record if isinstance(record, dict) else (index if isinstance(index, dict) else {})
    plan.record_source = "repodata_record" if isinstance(record, dict) else ("index" if src else "")
    plan.record = {
        k: src.get(k)
        for k in _RECORD_KEYS
        if isinstance(src.get(k), (str, int)) and not isinstance(src.get(k), bool)
    }
    if not _paths_json_plan(root, efd, f, plan):
        _legacy_plan(root, info, f, plan)
    direct = {rel.rpartition("/")[0] for rel in plan.files}
    direct.update(rel.rpartition("/")[0] for rel in plan.anys)
    direct.update(rel.rpartition("/")[0] for rel in plan.dirs)
    direct.update(item[0].rpartition("/")[0] for item in plan.links)
    parents: set[str] = set()
    for parent in direct:  # far fewer directories than paths: walk up from each once
        while parent and parent not in parents:
            parents.add(parent)
            parent = parent.rpartition("/")[0]
    plan.parents = sorted(parents, key=lambda p: (p.count("/"), p))
    return plan


def _paths_json_plan(root: str, efd: int, f: EntryFindings, plan: _Plan) -> bool:
    """Fill ``plan`` from paths.json; False when there is none (a legacy package or a lost file)."""
    data, err, exists = _read_json("info/paths.json", efd)
    if exists and not err:
        if not isinstance(data, dict) or data.get("paths_version") != 1:
            version = data.get("paths_version") if isinstance(data, dict) else None
            f.add(META_INVALID, "info/paths.json", 1, version, "unknown paths_version")
            return True
        raw = data.get("paths")
        if not isinstance(raw, list):
            f.add(META_INVALID, "info/paths.json", detail="no list of paths")
            return True
        plan.source = f.metadata = "paths.json"
        if _all_safe(raw):
            # The usual case, in bulk: one check over all the paths, a comprehension per column.
            hard = [item for item in raw if item.get("path_type", _HARDLINK) == _HARDLINK]
            sizes = [item.get("size_in_bytes") for item in hard]
            shas = [item.get("sha256") for item in hard]
            if all(v.__class__ is int for v in sizes) and all(v.__class__ is str for v in shas):
                plan.files = [item["_path"] for item in hard]
                plan.sizes, plan.shas = sizes, shas
                plan.count = len(raw)
                if len(hard) != len(raw):
                    for item in raw:
                        ptype = item.get("path_type", _HARDLINK)
                        if ptype == _SOFTLINK:
                            plan.links.append(_link_item(item))
                        elif ptype == _DIRECTORY:
                            plan.dirs.append(item["_path"])
                return True
        files, sizes, shas = plan.files, plan.sizes, plan.shas
        # Path by path, when something is off (or unusual).
        each = not _all_safe(raw)
        for item in raw:
            rel = item.get("_path") if item.__class__ is dict else None
            if each and not _safe_rel(rel):
                f.add(META_INVALID, "info/paths.json", detail=f"bad path {rel!r}")
                continue
            size = item.get("size_in_bytes")
            if size.__class__ is not int:  # also refuses bool
                size = None
            sha = item.get("sha256")
            if sha.__class__ is not str:
                sha = None
            ptype = item.get("path_type", _HARDLINK)
            plan.count += 1
            if ptype == _HARDLINK:
                files.append(rel)
                sizes.append(size)
                shas.append(sha)
            elif ptype == _SOFTLINK:
                plan.links.append((rel, size, sha))  # same as _link_item
            elif ptype == _DIRECTORY:
                plan.dirs.append(rel)
            # Other path types (entry points, pyc files) are made at link time, not packaged.
        return True
    if exists:
        f.add(_meta_kind(err), "info/paths.json", detail=err)
        return True
    # No paths.json: a legacy package, or a deleted file. Only the archive can tell.
    for ext in (CONDA_EXT, TARBZ2_EXT):
        archive = root + ext
        if os.path.isfile(archive) and archive_lists_paths_json(archive):
            f.add(
                META_MISSING,
                "info/paths.json",
                detail=f"{os.path.basename(archive)} has it; the extraction lost it",
            )
            break
    return False


def _link_item(item: dict) -> tuple:
    size = item.get("size_in_bytes")
    sha = item.get("sha256")
    return (
        item["_path"],
        size if size.__class__ is int else None,
        sha if sha.__class__ is str else None,
    )


def _legacy_plan(root: str, info: str, f: EntryFindings, plan: _Plan) -> None:
    names: dict[str, None] = {}
    for fname in ("files", "has_prefix"):
        try:
            with open(os.path.join(info, fname), encoding="utf-8", errors="replace") as fh:
                lines = fh.read().splitlines()
        except (FileNotFoundError, NotADirectoryError):
            if fname == "files":
                if f.metadata == "none":
                    _no_file_list(root, f)
                return
            continue
        except OSError:
            continue
        if f.metadata == "none":
            f.metadata = "info/files"
        plan.source = f.metadata
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
    plan.anys = list(names)
    plan.count = len(plan.anys)


def _no_file_list(root: str, f: EntryFindings) -> None:
    """Neither info/paths.json nor info/files. conda then treats the package as having no
    files, and so do we -- unless something shows a list was lost: the archive has one, or
    (with no archive to ask) the entry holds files outside info/."""
    archives = [root + ext for ext in (CONDA_EXT, TARBZ2_EXT) if os.path.isfile(root + ext)]
    for archive in archives:
        for name in ("info/paths.json", "info/files"):
            if archive_has_member(archive, name):
                f.add(
                    META_MISSING,
                    name,
                    detail=f"{os.path.basename(archive)} has it; the extraction lost it",
                )
                return
    if archives:
        return
    try:
        payload = [n for n in os.listdir(root) if n != "info"]
    except OSError:
        payload = []
    if payload:
        f.add(
            META_MISSING,
            "info/paths.json",
            detail="and no info/files, but the entry holds files: they cannot be checked",
        )


# --- one entry ---------------------------------------------------------------------------------

# A remembered entry: (meta fingerprints, plan, file fingerprints aligned with plan.files (None:
# not passed), whether each was hashed, {link: (target, target fingerprint)} of links whose
# target hashed right, {archive fn: (fingerprint, algorithm)}).
_S_META, _S_PLAN, _S_FPS, _S_HASHED, _S_LINKS, _S_ARCHIVES = range(6)


def _stat_at(dir_fd: int):
    """lstat relative to an open directory: the kernel resolves only the relative part, and
    the call is cheaper than building absolute paths (a re-run is one of these per file). A
    partial, not a closure: no Python frame per call."""
    return functools.partial(os.stat, dir_fd=dir_fd, follow_symlinks=False)


def _meta_fps(lstat_at, n: int) -> tuple:
    out = []
    for rel in _META_PATHS[:n]:
        try:
            st = lstat_at(rel)
        except OSError:
            out.append(None)
        else:
            out.append((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(out)


@dataclass
class _HashJob:
    entry: int  # index into the run's entry list
    what: str  # "file" or "archive"
    key: object  # index into plan.files, or the archive's fn
    path: str
    size: int | None
    expected: str
    algorithm: str = "sha256"


class _EntryRun:
    """One entry in one run: its findings, its new remembered state, its pending hash jobs."""

    __slots__ = ("archives", "f", "fps", "hashed", "keep", "links", "meta", "plan", "root")

    def __init__(self, f: EntryFindings, root: str):
        self.f = f
        self.root = root
        self.plan: _Plan | None = None
        self.meta: tuple | None = None
        self.fps: list = []
        self.hashed: list = []
        self.links: dict = {}
        self.archives: dict = {}
        self.keep = False  # whether the state is worth remembering (clean metadata)

    def now(self) -> float:
        """Now on the entry's file system clock (the scan probed it; fsclock.py)."""
        from . import fsclock

        return fsclock.now(self.root)

    def state(self) -> tuple | None:
        if not self.keep or self.plan is None:
            return None
        return (
            self.meta,
            self.plan.to_state(),
            self.fps,
            self.hashed,
            self.links,
            self.archives,
        )


def _check_entry(
    pkgs_dir: str,
    pkgs_fd: int | None,
    entry: str,
    exts: tuple,
    level: str,
    prev,
    jobs: list,
    index: int,
) -> _EntryRun:
    """Everything but hashing for one entry; files that need a hash are queued in ``jobs``.
    ``exts``: the archive extensions to look for beside the directory."""
    layout = CacheLayout(pkgs_dir)
    root = layout.extracted(entry)
    run = _EntryRun(EntryFindings(pkgs_dir=pkgs_dir, entry=entry, level=level), root)
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
        st = _lstat(root)
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
        f.record, f.record_source = dict(rec), (run.plan.record_source if run.plan else "")
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

    from .exceptions import ArchiveError, HostileArchiveError
    from .extract import extract_archive

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


def _check_tree(run: _EntryRun, efd: int, level: str, prev, jobs: list, index: int) -> None:
    f = run.f
    full = level == FULL
    lstat_at = _stat_at(efd)
    plan = None
    if prev is not None:
        meta = _meta_fps(lstat_at, len(prev[_S_META]))
        if meta == prev[_S_META]:
            plan = _Plan.from_state(prev[_S_PLAN])
            f.metadata = plan.source
    if plan is None:
        prev = None  # nothing remembered about the files holds once the metadata changed
        # Fingerprints before reading: a change while we read shows up as a change next time.
        meta = _meta_fps(lstat_at, len(_META_NAMES))
        plan = _parse_metadata(run.root, efd, f)
        if plan.source == "paths.json":
            meta = meta[:_N_META_MODERN]
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
                f.add(WRONG_TYPE, p, "directory", _kind(mode))
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
            f.add(WRONG_TYPE, rel, "directory", _kind(mode))
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
            empty = archive_empty_links(run.root)
            for rel in missing:
                if rel not in empty:
                    f.add(MISSING_FILE, rel, "symlink", None)


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
        todo = []
        for i in range(n):
            if shas[i]:
                jobs.append(_HashJob(index, "file", i, root + "/" + rels[i], sizes[i], shas[i]))
                f.checked += 1
            else:
                todo.append(i)
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
            if stat.S_ISLNK(mode) and _packaged_symlink_here(root, rel):
                new_fps[i], new_hashed[i] = fp, full
                continue
            f.add(WRONG_TYPE, rel, "file", _kind(mode))
            continue
        size = sizes[i]
        if size is not None and st.st_size != size:
            f.add(WRONG_SIZE, rel, size, st.st_size)
            continue
        if not full and not _readable(st, root + "/" + rel):
            # conda copies (and rewrites prefixes in) what it cannot hard-link: unreadable
            # is damage at every level, not only when a hash would have read the file
            f.add(UNREADABLE, rel, detail="permission denied")
            continue
        sha = shas[i]
        if full and sha:
            jobs.append(_HashJob(index, "file", i, root + "/" + rel, size, sha))
        else:
            # Nothing more to compare at this level (a full run with no sha256 recorded
            # has checked all there is).
            new_fps[i], new_hashed[i] = fp, full


def _check_link(run, lstat_at, rel, size, sha, full, own, remembered) -> bool:
    """Check one symlink of paths.json; False when it is not there at all (the caller asks
    the archive whether it could have been)."""
    f = run.f
    try:
        st = lstat_at(rel)
    except OSError:
        return False
    if not stat.S_ISLNK(st.st_mode):
        f.add(WRONG_TYPE, rel, "symlink", _kind(st.st_mode))
        return True
    # Follow the chain by hand, inside the entry only.
    cur = rel
    for _ in range(_MAX_LINK_HOPS):
        try:
            target = os.readlink(os.path.join(run.root, cur))
        except OSError as exc:
            f.add(UNREADABLE, rel, detail=exc.strerror or str(exc))
            return True
        nxt = os.path.normpath(os.path.join(os.path.dirname(cur), target))
        if os.path.isabs(target) or nxt == ".." or nxt.startswith("../"):
            # never followed out of the entry; fine when the package itself says so
            if not _packaged_link(run.root, cur, target):
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
        if full and sha:
            fp = (tst.st_ino, tst.st_size, tst.st_mtime_ns, tst.st_ctime_ns)
            if remembered is not None and tuple(remembered) == (nxt, fp):
                f.skipped += 1
                run.links[rel] = remembered
                return True
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


def _check_archives(run: _EntryRun, level, prev, jobs, index, pkgs_fd, entry, exts) -> None:
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
        if not _readable(st, path):
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
        fp = _fp(st)
        prev_fp = stored.get(fn)
        if prev_fp is not None and tuple(prev_fp) == (fp, algo):
            f.skipped += 1
            info.update(checked=algo, ok=True)
            run.archives[fn] = prev_fp
            continue
        jobs.append(_HashJob(index, "archive", fn, path, st.st_size, rec[algo], algo))


# --- hashing (the only part worth parallel workers) ------------------------------------------


def _hash_one(path: str, size: int | None, algorithm: str):
    """(problem kind or None, detail, fingerprint, digest, bytes read), never following a link."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        return MISSING_FILE, None, None, None, 0
    except OSError:
        st = _lstat(path)
        if st is not None and not stat.S_ISREG(st.st_mode):
            return WRONG_TYPE, _kind(st.st_mode), None, None, 0
        return UNREADABLE, "cannot open", None, None, 0
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return WRONG_TYPE, _kind(st.st_mode), None, None, 0
        if size is not None and st.st_size != size:
            return WRONG_SIZE, st.st_size, None, None, 0
        try:
            if algorithm == "sha256":
                digest, n = sha256_fd(fd, st.st_size)
            else:
                h = hashlib.new(algorithm)
                n = 0
                with open(fd, "rb", buffering=0, closefd=False) as fh:
                    while chunk := fh.read(_BUF):
                        h.update(chunk)
                        n += len(chunk)
                digest = h.hexdigest()
        except OSError as exc:
            return UNREADABLE, exc.strerror or str(exc), None, None, 0
        return None, None, _fp(st), digest, n
    finally:
        os.close(fd)


def _hash_batch(batch: list[tuple]) -> list[tuple]:
    return [_hash_one(path, size, algo) for path, size, algo in batch]


# Below this much work, a pool costs more than it saves.
_SERIAL_BYTES = 8 << 20
_SERIAL_FILES = 256
# A batch for a worker: enough that small files do not cost a round trip each, small enough
# that the workers finish together.
_BATCH_BYTES = 4 << 20
_BATCH_FILES = 256
_OPEN_COST = 4096  # opening a file costs about as much as hashing 4 KiB


def choose_executor(level: str, nbytes: int, njobs: int, workers: int) -> str:
    """serial for little work; processes for much (the per-file Python work holds the GIL, the
    digests scale with cores); threads when fork is unsafe (this process runs other threads)."""
    if level != FULL or workers < 2 or (nbytes < _SERIAL_BYTES and njobs < _SERIAL_FILES):
        return "serial"
    if threading.active_count() > 1 or not hasattr(os, "fork"):
        return "thread"
    return "process"


class _Hasher:
    """Hashes the queued jobs while the entries are still being checked: batches go to the
    pool as soon as they fill, so the stat and parse work of the main process overlaps the
    hashing. The pool starts only once there is enough to hash (a re-run of an unchanged cache
    never starts one)."""

    def __init__(self, jobs: list[_HashJob], level: str, workers: int, executor: str | None):
        self.jobs = jobs
        self.level = level
        self.workers = workers
        self.executor = executor
        self.results: list = []
        self.fed = 0  # jobs looked at
        self.batch: list[int] = []
        self.batch_bytes = 0
        self.seen_bytes = 0
        self.pool = None
        self.futures: dict = {}
        self.serial: list[list[int]] = []  # batches kept for this process

    def _cost(self, i: int) -> int:
        return (self.jobs[i].size or 0) + _OPEN_COST

    def feed(self) -> None:
        """Take the jobs queued since the last call."""
        jobs = self.jobs
        while self.fed < len(jobs):
            i = self.fed
            self.fed += 1
            self.results.append(None)
            self.batch.append(i)
            cost = self._cost(i)
            self.batch_bytes += cost
            self.seen_bytes += cost
            if self.batch_bytes >= _BATCH_BYTES or len(self.batch) >= _BATCH_FILES:
                self._flush()

    def _start_pool(self) -> bool:
        if self.pool is not None:
            return True
        kind = self.executor or choose_executor(self.level, self.seen_bytes, self.fed, self.workers)
        if kind == "serial" or self.workers < 2:
            self.executor = "serial"  # it will not pay later either
            return False
        if kind == "process":
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self.pool = ProcessPoolExecutor(self.workers, multiprocessing.get_context("fork"))
        else:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(self.workers)
        self.executor = kind
        # What was held back while it was not clear a pool would pay goes first.
        held, self.serial = self.serial, []
        for batch in held:
            self._submit(batch)
        return True

    def _submit(self, batch: list[int]) -> None:
        jobs = self.jobs
        payload = [(jobs[i].path, jobs[i].size, jobs[i].algorithm) for i in batch]
        self.futures[self.pool.submit(_hash_batch, payload)] = batch

    def _flush(self) -> None:
        batch, self.batch, self.batch_bytes = self.batch, [], 0
        if not batch:
            return
        wanted = self.pool is not None or (self.executor != "serial" and self._pool_pays())
        if wanted and self._start_pool():
            self._submit(batch)
            return
        self.serial.append(batch)

    def _pool_pays(self) -> bool:
        if self.executor in ("thread", "process"):
            return True
        return self.seen_bytes >= _SERIAL_BYTES or self.fed >= _SERIAL_FILES

    def finish(self, progress=None) -> list:
        self._flush()
        if self.serial and self.pool is None and self.executor in ("thread", "process"):
            self._start_pool()
        total = sum(self._cost(i) for i in range(self.fed)) or 1
        done = 0
        jobs = self.jobs
        for batch in self.serial:
            payload = [(jobs[i].path, jobs[i].size, jobs[i].algorithm) for i in batch]
            for i, res in zip(batch, _hash_batch(payload), strict=True):
                self.results[i] = res
                done += self._cost(i)
            if progress:
                progress(done / total)
        self.serial = []
        if self.pool is not None:
            from concurrent.futures import as_completed

            with self.pool:
                for fut in as_completed(self.futures):
                    batch = self.futures[fut]
                    for i, res in zip(batch, fut.result(), strict=True):
                        self.results[i] = res
                        done += self._cost(i)
                    if progress:
                        progress(done / total)
        if self.executor is None:
            self.executor = "serial"
        return self.results


def _apply_hash(run: _EntryRun, job: _HashJob, res) -> None:
    f = run.f
    kind, detail, fp, digest, n = res
    if job.what == "archive":
        info = next(a for a in f.archives if a["fn"] == job.key)
        if kind is not None:
            f.add(UNREADABLE, job.key, detail=str(detail or kind))
            return
        f.hashed += 1
        f.bytes_hashed += n
        if digest != job.expected:
            f.add(ARCHIVE_CHECKSUM, job.key, job.expected, digest, job.algorithm)
            info.update(checked=job.algorithm, ok=False)
        else:
            info.update(checked=job.algorithm, ok=True)
            run.archives[job.key] = (fp, job.algorithm)
        return
    rel = run.plan.files[job.key]
    if kind == MISSING_FILE:
        f.add(MISSING_FILE, rel, "file", None)
    elif kind == WRONG_TYPE:
        if not (detail == "symlink" and _packaged_symlink_here(run.root, rel)):
            f.add(WRONG_TYPE, rel, "file", detail)
    elif kind == WRONG_SIZE:
        f.add(WRONG_SIZE, rel, job.size, detail)
    elif kind is not None:
        f.add(UNREADABLE, rel, detail=str(detail))
    else:
        f.hashed += 1
        f.bytes_hashed += n
        if digest != job.expected:
            f.add(WRONG_HASH, rel, job.expected, digest)
        elif fp[2] / 1e9 > run.now() - RACY_SECONDS:
            # Written moments ago: a second write in the same coarse clock tick would keep this
            # fingerprint, so the hash is not remembered (the racy-git rule, as in pkgs_dir).
            run.fps[job.key], run.hashed[job.key] = fp, False
        else:
            run.fps[job.key], run.hashed[job.key] = fp, True


# --- many entries ----------------------------------------------------------------------------


def _verify_entries(
    targets,
    level: str,
    *,
    use_store: bool,
    write_store: bool,
    workers: int,
    executor: str | None,
    progress=None,
) -> tuple[list[EntryFindings], str]:
    """``targets``: [(pkgs_dir, store_dir or None, writable, [(entry, archive exts)],
    all_entries or None)].

    The stat and metadata work runs here, entry by entry: it is a syscall per path, threads
    gain nothing under the GIL, and forked workers lost more sending their findings back than
    they saved (measured on 2 cores). The files that need hashing go to workers in batches
    while the checks go on, and only once there are enough of them to pay for a pool.
    """
    flat: list[tuple] = []  # (pkgs_dir, entry, exts, remembered state, writable)
    saves = []
    for pkgs_dir, sdir, writable, entries, all_entries in targets:
        old = verify_store.load(sdir, pkgs_dir) if sdir else {}
        remembered = old if use_store else {}
        new = dict(old)
        if all_entries is not None:  # drop what no longer exists in the cache
            for gone in set(new) - set(all_entries):
                del new[gone]
        first = len(flat)
        flat += [(pkgs_dir, e, exts, remembered.get(e), writable) for e, exts in entries]
        saves.append((pkgs_dir, sdir, old, new, first, len(flat)))
    nentries = len(flat) or 1
    jobs: list[_HashJob] = []
    hasher = _Hasher(jobs, level, workers, executor)
    runs: list = [None] * len(flat)
    fds: dict[str, int | None] = {}
    try:
        for i, (pkgs_dir, entry, exts, prev, writable) in enumerate(flat):
            if pkgs_dir not in fds:
                try:
                    fds[pkgs_dir] = os.open(pkgs_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                except OSError:
                    fds[pkgs_dir] = None
            run = _check_entry(pkgs_dir, fds[pkgs_dir], entry, exts, level, prev, jobs, i)
            run.f.writable = writable
            runs[i] = run
            hasher.feed()
            if progress and i % 64 == 63:
                progress(0.2 * (i + 1) / nentries)
    finally:
        for fd in fds.values():
            if fd is not None:
                os.close(fd)

    def hash_progress(fraction):
        progress(0.2 + 0.8 * fraction)

    results = hasher.finish(hash_progress if progress else None)
    for job, res in zip(jobs, results, strict=True):
        _apply_hash(runs[job.entry], job, res)
    if write_store:
        for pkgs_dir, sdir, old, new, lo, hi in saves:
            if not sdir:
                continue
            for run in runs[lo:hi]:
                state = run.state()
                if state is None:
                    new.pop(run.f.entry, None)
                else:
                    new[run.f.entry] = state
            if new != old:
                verify_store.save(sdir, pkgs_dir, new)
    return [r.f for r in runs], hasher.executor


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
    findings, _ = _verify_entries(
        [(pkgs_dir, store_dir, None, [(entry, _ARCHIVE_EXTS)], None)],
        level,
        use_store=use_store and bool(store_dir),
        write_store=bool(store_dir) if write_store is None else write_store,
        workers=1,
        executor="serial",
    )
    return findings[0].finish()


def verify_record(record, level: str = FAST, **kwargs) -> EntryFindings:
    """The agreed API: verify one :class:`~.records.PackageCacheRecord`."""
    from .pkgs_dir import writability

    writable = writability(record.pkgs_dir)[0]
    kwargs.setdefault("store_dir", verify_store.store_dir(record.pkgs_dir, writable))
    out = verify_entry(record.pkgs_dir, record.entry, level, **kwargs)
    out.writable = writable
    return out


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
        elif lo.kind == "hostile":
            out.append(Problem(HOSTILE_ENTRY, lo.path, detail="hostile name, never a package"))
        elif lo.kind == "link":
            out.append(
                Problem(
                    HOSTILE_ENTRY, lo.path, detail="a link where only the cache's own files belong"
                )
            )
    return out


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

    What passed is remembered (at both levels) unless ``write_store`` is False; ``use_store``
    False re-checks everything (``--rehash``). ``progress(fraction)`` is called from the
    calling thread.
    """

    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}")
    # Like the scan: many small objects that live until the end; the cyclic GC would re-walk
    # the growing heap over and over (most of the time at 20k entries).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _verify_caches(
            caches, specs, level, use_store, write_store, workers, executor, progress
        )
    finally:
        if gc_was_enabled:
            gc.enable()


def _verify_caches(
    caches, specs, level, use_store, write_store, workers, executor, progress
) -> VerifyReport:

    start = time.perf_counter()
    write_store = True if write_store is None else write_store
    report = VerifyReport(level=level)
    targets = []
    matched: set[int] = set()
    for cache in caches.writable_first():
        res = cache.load()
        writable = cache.is_writable
        entries: list[tuple[str, tuple]] = []
        if res.exists:
            for rec in res.records:
                if specs:
                    hits = {i for i, m in enumerate(specs) if m.match(rec)}
                    if not hits:
                        continue
                    matched |= hits
                # The scan listed the directory: only the archives it saw need a look.
                entries.append((rec.entry, tuple(e for e in _ARCHIVE_EXTS if e in rec.archives)))
            if not specs:
                entries += [(broken.rel, ()) for broken in res.broken]  # broken: no archive
                report.leftovers += _leftover_problems(res)
            every = None if specs else [e[0] for e in entries]
            sdir = verify_store.store_dir(cache.pkgs_dir, writable)
            targets.append((cache.pkgs_dir, sdir, writable, entries, every))
        report.caches.append(
            {
                "path": cache.pkgs_dir,
                "exists": res.exists,
                "writable": writable,
                "entries": len(entries),
                "problems": list(res.problems),
            }
        )
    report.unmatched = [m.spec for i, m in enumerate(specs or ()) if i not in matched]
    workers = workers or os.cpu_count() or 1
    findings, report.executor = _verify_entries(
        targets,
        level,
        use_store=use_store,
        write_store=write_store,
        workers=workers,
        executor=executor,
        progress=progress,
    )
    report.workers = workers
    report.entries = [f.finish() for f in findings]
    report.entries.sort(key=lambda e: (e.status == OK, e.pkgs_dir, e.entry))
    report.seconds = time.perf_counter() - start
    return report
