"""What verify finds, as data: the levels and statuses, each kind of problem, an entry's
findings and the report over every cache."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..model.cache_paths import pkgs_dir_problem
from ..model.sizes import human_bytes

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


@dataclass(slots=True)  # one per entry, all held until the report is written
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
    # The judgement's (judgement.py), declared here: the class has no __dict__ to add them to.
    verdict: str = "ok"
    remedy: dict | None = None
    own: list = field(default_factory=list)  # the problems that are the package's own

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


def _why_not_a_cache(path: str) -> str:
    return pkgs_dir_problem(path) or "is not a directory"
