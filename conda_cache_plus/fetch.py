"""The fetch engine: our ``ProgressiveFetchExtract`` (conda-facts §4.6).

:func:`plan` decides, for each package reference, what the caches need, like conda but checking
sha256 where it is known:

- ``none``: an extracted entry in some cache agrees with the reference (size, md5, sha256 where
  both sides know them; the file name; a URL is recorded);
- ``extract``: a writable cache holds the archive and it verifies → extract it there;
- ``copy``: a read-only cache holds the archive and it verifies → hard-link (or copy) it into the
  first writable cache, then extract;
- ``download``: anything else, into the first writable cache (resuming a partial).

:func:`execute` runs the plan: downloads (largest first) and extractions overlap in two pools;
each package is worked on under a per-archive lock and re-checked once the lock is held, so
several processes fetching the same package do the work once and all succeed; the whole run
holds a shared lock on each cache it writes (``conda cache clean`` takes it exclusively).
Ctrl-C cancels what has not started, stops transfers (their partials stay resumable) and lets
running extractions finish (they are atomic either way).

On Linux the extractions run in a small pool of forked worker processes (forked before any
thread or lock of the run exists), elsewhere in threads. Extraction is many small syscalls with
Python work between them; in threads sharing one GIL each syscall hands the GIL over and waits
to get it back (measured: ~360,000 futex calls for 15,000 files), while processes keep every
core busy without that traffic (docs/benchmarks.md, "Fetch end to end").
"""

from __future__ import annotations

import concurrent.futures as cf
import fnmatch
import json
import os
import queue
import re
import signal
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

from .caches import PackageCaches
from .download import (
    copy_or_link,
    download,
    expected_checksum,
    hash_file,
    path_to_url,
    read_url_bytes,
    strip_fragment,
)
from .exceptions import (
    ArchiveError,
    CachePlusError,
    ChecksumMismatchError,
    DownloadCancelled,
    InputError,
    InvalidSpecError,
    LockTimeoutError,
    LockUnavailableError,
    NoWritableCacheError,
    RefusedArchiveError,
    SizeMismatchError,
    UsageError,
)
from .layout import CacheLayout, is_subdir_name, package_extension, strip_package_extension
from .locks import FileLock
from .names import check_package_fn, package_fn_problem
from .records import SOURCE_RECORD
from .sizes import human_bytes

NONE = "none"
EXTRACT = "extract"
COPY = "copy"
DOWNLOAD = "download"

# Outcomes, one per package; they add up to the number of packages.
REUSED = "reused"
DOWNLOADED = "downloaded"
COPIED = "copied"
EXTRACTED = "extracted"
FAILED = "failed"
CANCELLED = "cancelled"
OUTCOMES = (REUSED, DOWNLOADED, COPIED, EXTRACTED, FAILED, CANCELLED)

_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


# -- references ---------------------------------------------------------------------------------
@dataclass
class PackageRef:
    """One package to have in the cache: where it comes from and what it must hash to."""

    url: str
    fn: str
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None
    extra: dict | None = None  # further record fields (from repodata), written into the record
    refused: str | None = None  # why this reference is not fetched at all (checked up front)

    @property
    def dist(self) -> str:
        return strip_package_extension(self.fn)[0]

    @property
    def ext(self) -> str:
        return package_extension(self.fn) or ""

    def to_json(self) -> dict:
        return {
            "url": self.url,
            "fn": self.fn,
            "md5": self.md5,
            "sha256": self.sha256,
            "size": self.size,
        }


def _parse_fragment(frag: str, line: str) -> dict:
    frag = frag.strip()
    for prefix in ("sha256:", "sha256="):
        if frag.lower().startswith(prefix):
            value = frag[len(prefix) :]
            if not _HEX64.fullmatch(value):
                raise InvalidSpecError(line, "the sha256 after '#' is not 64 hex digits")
            return {"sha256": value.lower()}
    for prefix in ("md5:", "md5="):
        if frag.lower().startswith(prefix):
            value = frag[len(prefix) :]
            if not _HEX32.fullmatch(value):
                raise InvalidSpecError(line, "the md5 after '#' is not 32 hex digits")
            return {"md5": value.lower()}
    if _HEX64.fullmatch(frag):
        return {"sha256": frag.lower()}
    if _HEX32.fullmatch(frag):
        return {"md5": frag.lower()}
    raise InvalidSpecError(line, f"cannot read the checksum {frag!r} after '#'")


def ref_from_url(line: str, source: str | None = None) -> PackageRef:
    """A package URL (or local path), optionally with ``#md5``, ``#sha256``, ``#sha256:...``.
    ``source`` names where the line came from (an @EXPLICIT file) in errors."""
    text = line.strip()
    url, _, frag = text.partition("#")
    if "://" not in url:
        url = path_to_url(os.path.expanduser(url))
    try:
        path = urllib.parse.urlsplit(url).path
    except ValueError as exc:  # e.g. "Invalid IPv6 URL"
        raise InvalidSpecError(text, f"not a valid URL ({exc})") from None
    fn = urllib.parse.unquote(path.rstrip("/").rsplit("/", 1)[-1])
    if not package_extension(fn):
        raise InvalidSpecError(text, "not a package URL (must end in .conda or .tar.bz2)")
    check_package_fn(fn, source or text)  # before anything is written (names.py)
    checks = _parse_fragment(frag, text) if frag else {}
    return PackageRef(url=url, fn=fn, **checks)


def refs_from_urls(urls) -> list[PackageRef]:
    return [ref_from_url(u) for u in urls]


def parse_explicit(path_or_text: str) -> list[PackageRef]:
    """The packages of an ``@EXPLICIT`` file (a path, or the text itself).

    Reads what ``conda list --explicit [--md5|--sha256]`` and conda-lock's explicit render
    write: comments, the ``@EXPLICIT`` marker, then one URL per line with an optional checksum.
    """
    source = None
    if "\n" not in path_or_text and os.path.isfile(path_or_text):
        source = path_or_text
        text = read_text_file(path_or_text, "an @EXPLICIT file")
    else:
        text = path_or_text
    refs = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith("@"):
            continue
        refs.append(ref_from_url(line, source))
    return refs


def read_text_file(path: str, what: str) -> str:
    """A small UTF-8 input file, or a one-line InputError naming it."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise InputError(path, f"cannot read {what}: {exc.strerror or exc}") from None
    return decode_utf8(raw, path, what)


def decode_utf8(raw: bytes, source: str, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            source, f"{what} must be UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        ) from None


def load_repodata(source: str, run=None) -> tuple[dict, str]:
    """(repodata, base URL of its packages) from a file path or URL of a ``repodata.json``."""
    url = source if "://" in source else path_to_url(os.path.expanduser(source))
    raw = read_url_bytes(url, run)
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InputError(source, f"not a repodata.json ({str(exc) or 'nested too deeply'})")
    if not isinstance(data, dict):
        raise InputError(source, "not a repodata.json (not a JSON object)")
    info = data.get("info")
    if info is not None and not isinstance(info, dict):
        raise InputError(source, "not a repodata.json ('info' is not an object)")
    base = (info or {}).get("base_url") or strip_fragment(url).rsplit("/", 1)[0]
    if not isinstance(base, str):
        raise InputError(source, "not a repodata.json ('info.base_url' is not a string)")
    return data, base.rstrip("/")


def _repodata_entry_problem(fn: str, rec: dict) -> str | None:
    """Why a repodata entry cannot be fetched (checked before anything is written), or None."""
    why = package_fn_problem(fn)
    if why:
        return f"unsafe package file name: {why}"
    for key, pattern, digits in (("sha256", _HEX64, 64), ("md5", _HEX32, 32)):
        value = rec.get(key)
        if value is not None and not (isinstance(value, str) and pattern.fullmatch(value)):
            return f"its {key} is not {digits} hex digits: {str(value)[:80]!r}"
    return None


class _RepodataRecord:
    """A repodata entry as :class:`~.match.SpecMatcher` sees a record, so names, globs and
    MatchSpecs (``'demo-lib>=1.1'``) select from a repodata exactly as from a cache."""

    def __init__(self, fn: str, rec: dict, subdir: str | None):
        self.fn = fn
        self.data = rec
        self.name = str(rec.get("name") or "")
        self.version = str(rec.get("version") or "")
        self.build = str(rec.get("build") or "")
        self.build_number = rec.get("build_number") or 0
        self.subdir = rec.get("subdir") or subdir or ""
        self.channel = str(rec.get("channel") or "")
        self.basename = strip_package_extension(fn)[0]
        self.extracted_package_dir = self.basename


def _pick_format(fns: list[str]) -> str:
    """One archive per package, as conda picks: the ``.conda`` when the repodata has both."""
    return min(fns, key=lambda fn: (not fn.endswith(".conda"), fn))


def refs_from_repodata(repodata: dict, base_url: str, patterns: list[str]) -> list[PackageRef]:
    """Entries of a repodata selected by each pattern: a file name (that archive), or a
    ``name-version-build``, name, glob or MatchSpec (the ``.conda`` of each matching package,
    else its ``.tar.bz2``: never both into one entry). Every pattern must match something."""
    from .match import SpecMatcher

    entries: dict[str, dict] = {}
    for key in ("packages", "packages.conda"):
        group = repodata.get(key) or {}
        if not isinstance(group, dict):
            continue
        for fn, rec in group.items():
            if isinstance(rec, dict):
                entries[fn] = rec
    info = repodata.get("info")
    subdir = info.get("subdir") if isinstance(info, dict) else None
    records = {fn: _RepodataRecord(fn, rec, subdir) for fn, rec in entries.items()}
    named: dict[str, str] = {}  # dist -> the archive a pattern named by its file name
    picked: dict[str, list[str]] = {}  # dist -> archives a name/glob/spec selected
    for pattern in patterns:
        if package_extension(pattern):  # an archive named: that format, or nothing
            exact = [fn for fn in entries if fnmatch.fnmatchcase(fn, pattern)]
            if not exact:
                raise InvalidSpecError(pattern, "matches no package in the repodata")
            for fn in exact:
                named.setdefault(records[fn].basename, fn)
            continue
        hits = [
            fn
            for fn, r in records.items()
            if fnmatch.fnmatchcase(r.basename, pattern) or r.name == pattern
        ]
        if not hits:
            try:
                matcher = SpecMatcher(pattern)
            except InvalidSpecError:
                matcher = None
            if matcher is not None:
                hits = [fn for fn, r in records.items() if matcher.match(r)]
        if not hits:
            raise InvalidSpecError(pattern, "matches no package in the repodata")
        for fn in hits:
            picked.setdefault(records[fn].basename, []).append(fn)
    chosen = dict(named)
    for dist, fns in picked.items():
        chosen.setdefault(dist, _pick_format(fns))
    out: list[PackageRef] = []
    for fn in sorted(chosen.values()):
        rec = dict(entries[fn])
        why = _repodata_entry_problem(fn, rec)
        if why:
            # refused here, reported with the results; the other entries are still fetched
            out.append(
                PackageRef(url=f"{base_url}/{urllib.parse.quote(fn, safe='')}", fn=fn, refused=why)
            )
            continue
        if subdir and not rec.get("subdir"):
            rec["subdir"] = subdir
        size = rec.get("size")
        out.append(
            PackageRef(
                url=f"{base_url}/{urllib.parse.quote(fn)}",
                fn=fn,
                md5=rec.get("md5"),
                sha256=rec.get("sha256"),
                size=size if isinstance(size, int) else None,
                extra=rec,
            )
        )
    return out


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


def describe_plan(p: FetchPlan) -> str:
    """The plan for people (``--dry-run``)."""
    verbs = {
        NONE: "keep",
        EXTRACT: "extract",
        COPY: "copy+extract",
        DOWNLOAD: "download+extract",
    }
    from .output import table, width, wrap

    rows = [
        [
            verbs[item.action],
            item.ref.fn,
            human_bytes(item.ref.size) if item.ref.size is not None else "?",
        ]
        for item in p.items
    ]
    lines = []
    table_lines = table(["Action", "Package", "Size"], rows, right={2}, shrink=(1,), indent=2)
    for n, line in enumerate(table_lines.splitlines()):
        why = "Why" if n == 0 else p.items[n - 1].reason
        if len(line) + 4 + len(why) <= width():
            lines.append(f"  {line}  {why}")
        else:  # a long reason goes under its row rather than past the 80th column
            lines += [f"  {line}", wrap(f"      {why}", "      ")]
    c = p.counts()
    head = wrap(
        f"{len(p.items)} package(s): {c[NONE]} already in the cache, {c[DOWNLOAD]} to download "
        f"({p.download_size_text()}), {c[COPY]} to copy, {c[EXTRACT]} to extract only.",
        "  ",
    )
    if p.target:
        head += f"\nTarget cache: {p.target}" + (" (will be created)" if p.create_target else "")
    return "\n".join([head, *lines])


# -- execution -------------------------------------------------------------------------------------
@dataclass
class ItemResult:
    fn: str
    url: str
    action: str
    outcome: str = CANCELLED
    pkgs_dir: str = ""
    extracted_dir: str | None = None
    transferred: int = 0
    resumed_from: int = 0
    extracted: bool = False
    error: str | None = None
    error_type: str | None = None
    note: str | None = None

    def to_json(self) -> dict:
        return {
            "fn": self.fn,
            "url": self.url,
            "action": self.action,
            "outcome": self.outcome,
            "pkgs_dir": self.pkgs_dir,
            "extracted_dir": self.extracted_dir,
            "bytes_downloaded": self.transferred,
            "bytes_resumed": self.resumed_from,
            "extracted": self.extracted,
            "error": self.error,
            "error_type": self.error_type,
            "note": self.note,
        }


@dataclass
class FetchSummary:
    items: list[ItemResult] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    def count(self, outcome: str) -> int:
        return sum(1 for i in self.items if i.outcome == outcome)

    @property
    def failures(self) -> list[ItemResult]:
        return [i for i in self.items if i.outcome == FAILED]

    @property
    def bytes_downloaded(self) -> int:
        return sum(i.transferred for i in self.items)

    @property
    def bytes_resumed(self) -> int:
        return sum(i.resumed_from for i in self.items)

    @property
    def extractions(self) -> int:
        return sum(1 for i in self.items if i.extracted)

    def to_json(self) -> dict:
        return {
            "counts": {o: self.count(o) for o in OUTCOMES},
            "total": len(self.items),
            "extractions": self.extractions,
            "bytes_downloaded": self.bytes_downloaded,
            "bytes_resumed": self.bytes_resumed,
            "seconds": round(self.seconds, 3),
            "interrupted": self.interrupted,
        }


def record_for(ref: PackageRef, url: str, digests: tuple[int, str, str]) -> dict:
    """The fields that go into ``info/repodata_record.json`` on top of ``info/index.json``."""
    rec = dict(ref.extra or {})
    size, sha, md5 = digests
    base = url.rsplit("/", 1)[0]
    rec.update(fn=ref.fn, url=url, md5=md5, sha256=sha, size=size)
    # conda records a URL-fetched package's channel as the URL's directory (subdir included).
    rec.setdefault("channel", base)
    subdir = base.rsplit("/", 1)[-1]
    if is_subdir_name(subdir):
        rec.setdefault("subdir", subdir)
    return rec


def _entry_agrees(layout: CacheLayout, ref: PackageRef) -> bool:
    """After taking the lock: did another process already put this package here?"""
    try:
        with open(layout.record_json(ref.dist), "rb") as fh:
            data = json.load(fh)
    except (OSError, ValueError, RecursionError):
        return False
    if not isinstance(data, dict) or not data.get("url"):
        return False
    if not os.path.isfile(layout.index_json(ref.dist)):
        return False
    if not expected_checksum(ref.sha256, ref.md5) and ref.size is None:
        return data.get("fn") == ref.fn
    return _agrees(ref, data)


class _Progress:
    """Per-package bars plus one overall bar, through the run's reporter."""

    def __init__(self, run, items: list[PlanItem]):
        self.run = run
        self.lock = threading.Lock()
        self.total = sum(i.ref.size or 0 for i in items if i.action != NONE) or 1
        self.count = sum(1 for i in items if i.action != NONE)
        self.parts: dict[str, float] = {}
        self.cm = None
        self._cm_owner = None
        self.overall = None
        self.enabled = not (run.json or run.quiet or run.verbose)

    def __enter__(self):
        if self.run.conda or self.run.out.live:
            self._cm_owner = self.run.out.progress_group()
            self.cm = self._cm_owner.__enter__()
            expect = getattr(self.cm, "expect", None)
            if expect is not None:  # the live overall line: "3 of 20, 1.2 MiB of 40.0 MiB"
                expect(self.count, self.total if self.total > 1 else None)
        return self

    def __exit__(self, *exc):
        if self.overall is not None:
            self.overall.close()
        if self._cm_owner is not None:
            self._cm_owner.__exit__(*exc)

    def bar(self, item: PlanItem):
        ref = item.ref
        name = ref.dist
        size = human_bytes(ref.size) if ref.size is not None else ""
        desc = f"{name:<20.20} | " + (f"{size:<9} | " if size else "")
        kwargs = {"position": None, "leave": False}
        if ref.size is not None:
            kwargs["size"] = ref.size  # exact bytes for plain's totals; other backends ignore it
        if self.cm is not None:
            kwargs["context_manager"] = self.cm
        if not self.enabled:
            kwargs["enabled"] = False
        if self.run.out.live:
            kwargs["label"] = name  # the whole name: the live line fits it to the terminal
        return self.run.out.progress_bar(desc, **kwargs)

    def start_overall(self):
        # the plain backend sums up every bar itself; a "Total" bar there would count as a package
        # and the live renderer draws its own overall line
        if (
            self.overall is None
            and self.total > 1
            and self.run.console != "plain"
            and not self.run.out.live
        ):
            kwargs = {"position": None, "leave": False}
            if self.cm is not None:
                kwargs["context_manager"] = self.cm
            if not self.enabled:
                kwargs["enabled"] = False
            self.overall = self.run.out.progress_bar(f"{'Total':<20} | {'':<9} | ", **kwargs)

    def update(self, fn: str, weight: int, fraction: float) -> None:
        with self.lock:
            self.parts[fn] = weight * fraction
            if self.overall is not None:
                self.overall.update_to(min(sum(self.parts.values()) / self.total, 1.0))


def _acquire(path: str, cancel: threading.Event) -> FileLock:
    """Our per-archive lock, waiting as long as needed but giving up on Ctrl-C. Only a busy
    lock is waited for: one that cannot be taken at all (an unwritable locks dir, a name the
    file system refuses, a planted link) fails the package with its reason."""
    while True:
        if cancel.is_set():
            raise DownloadCancelled(path)
        try:
            return FileLock(path, timeout=0.5).acquire()
        except LockTimeoutError:
            continue


def _close_bar(bar, refused: bool) -> None:
    if bar is None:
        return
    if refused:
        getattr(bar, "fail", bar.close)("refused")
    else:
        bar.close()


def _remove_refused(layout: CacheLayout, ref: PackageRef, archive: str) -> bool:
    """Remove an archive fetch refused (hostile or unreadable), with its urls.txt line, so it
    neither stays in the cache nor gets counted by a later verify. Only files of this cache."""
    if os.path.dirname(os.path.abspath(archive)) != os.path.abspath(layout.root):
        return False
    try:
        os.unlink(archive)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    try:
        from .urls import remove_urls

        remove_urls(layout, [ref.fn])
    except (OSError, CachePlusError):
        pass
    return True


def execute(
    fetch_plan: FetchPlan,
    run,
    *,
    download_workers: int | None = None,
    extract_workers: int | None = None,
    cancel: threading.Event | None = None,
) -> FetchSummary:
    from .extract import ensure_cache_dir, install_entry

    started = time.monotonic()
    cancel = cancel or threading.Event()
    items = fetch_plan.items
    results = {
        i.ref.fn: ItemResult(i.ref.fn, strip_fragment(i.ref.url), i.action, pkgs_dir=i.pkgs_dir)
        for i in items
    }
    summary = FetchSummary(items=[results[i.ref.fn] for i in items])
    for item in items:
        if item.action == NONE:
            res = results[item.ref.fn]
            res.outcome = REUSED
            res.extracted_dir = item.layout.extracted(item.ref.dist)
    work = [i for i in items if i.action != NONE]
    if not work:
        summary.seconds = time.monotonic() - started
        return summary

    n_ex = max(1, extract_workers or default_extract_workers())
    # Before any lock or thread of this run: the children get neither.
    procs = _extract_processes(n_ex, sum(1 for i in work))
    if procs is not None:
        install_entry = _in_process(procs, install_entry)
    cache_locks: list[FileLock] = []
    try:
        for pkgs_dir in dict.fromkeys(i.pkgs_dir for i in work):
            layout = CacheLayout(pkgs_dir)
            try:
                ensure_cache_dir(layout)
                cache_locks.append(
                    FileLock(
                        layout.cache_lock,
                        shared=True,
                        timeout=None,
                        on_wait=run.out.message,
                    ).acquire()
                )
            except (OSError, CachePlusError) as exc:
                # this cache cannot be written safely: each of its packages fails with the reason
                if isinstance(exc, OSError):
                    exc = LockUnavailableError(pkgs_dir, exc.strerror or str(exc))
                for item in work:
                    if item.pkgs_dir == pkgs_dir:
                        res = results[item.ref.fn]
                        res.outcome = FAILED
                        res.error = str(exc)
                        res.error_type = type(exc).__name__
                work = [i for i in work if i.pkgs_dir != pkgs_dir]
        if work:
            _run_pipeline(
                work, results, run, cancel, install_entry, download_workers, n_ex, summary
            )
    finally:
        if procs is not None:
            procs.shutdown(wait=True, cancel_futures=True)
        for lock in reversed(cache_locks):
            lock.release()
    if not summary.interrupted:
        # "not done" is only ever the answer to Ctrl-C: anything else left undone is a failure
        for res in summary.items:
            if res.outcome == CANCELLED:
                res.outcome = FAILED
                res.error = res.error or "not done (stopped without a reason; please report this)"
                res.error_type = res.error_type or "InternalError"
    summary.seconds = time.monotonic() - started
    return summary


def default_extract_workers() -> int:
    """Parallel extractions: one process per CPU plus one (a worker waiting on the disk leaves
    its CPU to another), or 4 threads per CPU, at most 8, where there are no processes."""
    cpus = os.cpu_count() or 1
    return min(cpus + 1, 8) if _FORK_OK else min(8, 4 * cpus)


_FORK_OK = sys.platform.startswith("linux")


def _child_init() -> None:
    # Ctrl-C reaches the whole process group: the parent decides (it lets a running extraction
    # finish, as the thread pool did). And a child must not outlive a parent that was killed.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _ready() -> int:
    return os.getpid()


def _extract_processes(n: int, jobs: int) -> cf.ProcessPoolExecutor | None:
    """Forked extraction workers, all started now; None where threads must do the work."""
    if not _FORK_OK or jobs < 2 or n < 2 or threading.active_count() > 1:
        # One package is not worth a fork; and forking a process that runs other threads
        # (an embedding application's) could copy a lock one of them holds.
        return None
    import multiprocessing

    try:
        pool = cf.ProcessPoolExecutor(
            min(n, jobs), mp_context=multiprocessing.get_context("fork"), initializer=_child_init
        )
        # With "fork" every worker is started at the first submit, before this run's threads.
        pool.submit(_ready).result()
    except (OSError, cf.process.BrokenProcessPool):
        return None
    return pool


def _in_process(pool: cf.ProcessPoolExecutor, install_entry):
    def run_in_child(layout: CacheLayout, entry: str, archive: str, record: dict | None):
        return pool.submit(install_entry, layout, entry, archive, record).result()

    return run_in_child


def _run_pipeline(work, results, run, cancel, install_entry, n_dl, n_ex, summary) -> None:
    n_dl = max(1, n_dl or run.fetch_threads or 5)
    extract_q: queue.Queue = queue.Queue()  # futures of extractions, handed to the main loop
    progress = _Progress(run, work)

    def fail(item: PlanItem, exc: BaseException) -> None:
        res = results[item.ref.fn]
        if isinstance(exc, DownloadCancelled):
            res.outcome = CANCELLED
            return
        res.outcome = FAILED
        res.error = str(exc)
        res.error_type = type(exc).__name__

    def extract_job(item: PlanItem, lock: FileLock, archive: str, url: str, digests, bar, done):
        refused = False
        try:
            if cancel.is_set():
                raise DownloadCancelled(archive)
            record = record_for(item.ref, url, digests)
            try:
                path = install_entry(item.layout, item.ref.dist, archive, record)
            except ArchiveError as exc:
                refused = True
                removed = _remove_refused(item.layout, item.ref, archive)
                raise RefusedArchiveError(archive, exc.reason, removed) from None
            res = results[item.ref.fn]
            res.extracted = True
            res.extracted_dir = path
            res.outcome = done
            progress.update(item.ref.fn, item.ref.size or 0, 1.0)
            bar.update_to(1.0)
        except Exception as exc:
            fail(item, exc)
        finally:
            lock.release()
            _close_bar(bar, refused)

    def fetch_job(item: PlanItem):
        ref = item.ref
        layout = item.layout
        res = results[ref.fn]
        lock = None
        bar = None
        try:
            check_package_fn(ref.fn, ref.url)  # also for references built by API callers
            lock = _acquire(layout.entry_lock(ref.fn), cancel)
            if not item.forced and _entry_agrees(layout, ref):
                res.outcome = REUSED
                res.note = "completed meanwhile by another process"
                res.extracted_dir = layout.extracted(ref.dist)
                progress.update(ref.fn, ref.size or 0, 1.0)
                lock.release()
                return None
            bar = progress.bar(item)
            archive = layout.archive(ref.fn)
            url = strip_fragment(ref.url)
            outcome = EXTRACTED
            digests = None
            if item.action == EXTRACT:
                archive = item.source or archive
                digests = item.digests or archive_digests(archive)
            else:
                if (
                    not item.forced
                    and os.path.isfile(archive)
                    and expected_checksum(ref.sha256, ref.md5)
                ):
                    # Another process (conda, mamba, ours) put it there after we planned.
                    digests = _archive_ok(ref, archive, {})
                if digests is None and item.action == COPY:
                    url = item.source_url or url
                    copy_or_link(item.source, archive)
                    digests = archive_digests(archive)
                    try:
                        _check(ref, archive, digests)
                    except CachePlusError:
                        os.unlink(archive)
                        raise
                    from .urls import append_urls

                    append_urls(layout, [url])
                    outcome = COPIED
                elif digests is None:

                    def on_progress(fraction: float, _bar=bar, _ref=ref) -> None:
                        # 100% means in the cache: extraction is the last tenth
                        _bar.update_to(fraction * 0.9)
                        progress.update(_ref.fn, _ref.size or 0, fraction * 0.9)

                    # live bars show bytes; without a size in the input, the server says it
                    on_progress.total_known = getattr(bar, "set_size", None)

                    got = download(
                        url,
                        archive,
                        size=ref.size,
                        sha256=ref.sha256,
                        md5=ref.md5,
                        progress=on_progress,
                        run=run,
                        cancel=cancel,
                    )
                    digests = (got.size, got.sha256, got.md5)
                    res.transferred = got.transferred
                    res.resumed_from = got.resumed_from
                    outcome = DOWNLOADED
                    if got.reused:
                        res.note = "downloaded meanwhile by another process"
                        outcome = EXTRACTED
            extract_q.put(
                pool_ex.submit(extract_job, item, lock, archive, url, digests, bar, outcome)
            )
            return None
        except BaseException as exc:
            if lock is not None:
                lock.release()
            if bar is not None:
                bar.close()
            fail(item, exc)
            return None

    interrupted = False
    with progress:
        progress.start_overall()
        pool_dl = cf.ThreadPoolExecutor(n_dl, thread_name_prefix="cpx-fetch")
        pool_ex = cf.ThreadPoolExecutor(n_ex, thread_name_prefix="cpx-extract")
        pending: set[cf.Future] = set()
        try:
            # Extract-only work first: it needs no network and keeps the extractors busy while
            # the first downloads arrive. Downloads largest first (the plan is sorted so).
            for item in sorted(work, key=lambda i: i.action != EXTRACT):
                pending.add(pool_dl.submit(fetch_job, item))
            while pending or not extract_q.empty():
                while not extract_q.empty():
                    pending.add(extract_q.get_nowait())
                if not pending:
                    continue
                _done, pending = cf.wait(pending, timeout=0.2, return_when=cf.FIRST_COMPLETED)
        except KeyboardInterrupt:
            interrupted = True
            cancel.set()
            # Transfers stop at their next chunk (partials stay resumable); fetch jobs not yet
            # started are dropped. Queued extractions still run but see the flag and only release
            # their locks; a running extraction finishes (it is atomic either way).
            pool_dl.shutdown(wait=True, cancel_futures=True)
        finally:
            pool_dl.shutdown(wait=True)
            pool_ex.shutdown(wait=True)
    summary.interrupted = interrupted or cancel.is_set()


def _check(ref: PackageRef, path: str, digests: tuple[int, str, str]) -> None:
    size, sha, md5 = digests
    want = expected_checksum(ref.sha256, ref.md5)
    if want is not None:
        actual = sha if want[0] == "sha256" else md5
        if actual != want[1]:
            raise ChecksumMismatchError(ref.url, path, want[0], want[1], actual)
    if ref.size is not None and size != ref.size:
        raise SizeMismatchError(ref.url, path, ref.size, size)
