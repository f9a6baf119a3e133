"""What ``clean`` and ``remove`` decide (policies.py): the policy asked for, and the plan it
gives: what goes, what stays and why. Plain records, not dataclasses: dataclasses (and inspect)
were a fifth of an empty ``usage`` or ``clean`` (model/plainclass.py)."""

from __future__ import annotations

from ..model.plainclass import FieldsEq
from .footprint import Bytes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..model.match import SpecMatcher
    from ..model.records import PackageCacheRecord

PART_ENTRY = "entry"


class Policy(FieldsEq):
    # not a dataclass (nor the other usage/ records): env_records.EnvPackage says why
    FIELDS = (
        "unused",
        "older_than",
        "keep_latest",
        "max_size",
        "part",
        "temp",
        "index_cache",
        "keep_history",
        "specs",
        "grace",
    )

    def __init__(
        self,
        unused: bool = False,
        older_than: float | None = None,  # seconds
        keep_latest: int | None = None,
        max_size: int | None = None,
        part: str = PART_ENTRY,
        temp: bool = False,
        index_cache: bool = False,
        keep_history: bool = False,
        specs: list[SpecMatcher] | None = None,
        grace: float | None = None,  # seconds; None: no grace period (an explicit remove)
    ):
        self.unused = unused
        self.older_than = older_than
        self.keep_latest = keep_latest
        self.max_size = max_size
        self.part = part
        self.temp = temp
        self.index_cache = index_cache
        self.keep_history = keep_history
        self.specs = [] if specs is None else specs
        self.grace = grace

    @property
    def selects_packages(self) -> bool:
        return (
            self.unused
            or self.older_than is not None
            or self.keep_latest is not None
            or self.max_size is not None
            or self.part != PART_ENTRY
            or bool(self.specs)
        )

    def to_json(self) -> dict:
        return {
            "unused": self.unused,
            "older_than_seconds": self.older_than,
            "keep_latest": self.keep_latest,
            "max_size": self.max_size,
            "part": self.part,
            "temp": self.temp,
            "index_cache": self.index_cache,
            "keep_history": self.keep_history,
            "specs": [m.spec for m in self.specs],
            "grace_seconds": self.grace,
        }


class PlanItem(FieldsEq):
    FIELDS = (
        "kind",
        "pkgs_dir",
        "name",
        "paths",
        "reasons",
        "record",
        "last_used",
        "url_basenames",
        "bytes",
        "status",
        "error",
        "grace",
        "now",
        "check_links",
        "siblings",
    )

    def __init__(
        self,
        kind: str,
        pkgs_dir: str,
        name: str,
        paths: list[str],
        reasons: list[str] | None = None,
        record: PackageCacheRecord | None = None,
        last_used: float | None = None,
        url_basenames: list[str] | None = None,
        bytes: Bytes | None = None,
        status: str = "planned",
        error: str | None = None,
        # screened while measured (measure_plan): files changed within ``grace`` seconds of
        # ``now``, hard links nothing we know accounts for (``siblings``: the same package in
        # other caches)
        grace: float | None = None,
        now: float = 0.0,
        check_links: bool = False,
        siblings: list[str] | None = None,
    ):
        self.kind = kind
        self.pkgs_dir = pkgs_dir
        self.name = name
        self.paths = paths
        self.reasons = [] if reasons is None else reasons
        self.record = record
        self.last_used = last_used
        self.url_basenames = [] if url_basenames is None else url_basenames
        self.bytes = Bytes() if bytes is None else bytes
        self.status = status
        self.error = error
        self.grace = grace
        self.now = now
        self.check_links = check_links
        self.siblings = [] if siblings is None else siblings

    def to_json(self) -> dict:
        out = {
            "kind": self.kind,
            "pkgs_dir": self.pkgs_dir,
            "name": self.name,
            "paths": list(self.paths),
            "reasons": list(self.reasons),
            "last_used": self.last_used,
            "bytes": self.bytes.to_json(),
            "status": self.status,
        }
        if self.record is not None:
            r = self.record
            out["package"] = {
                "name": r.name,
                "version": r.version,
                "build": r.build,
                "channel": r.channel,
                "fn": r.fn,
            }
        if self.error:
            out["error"] = self.error
        return out


READ_ONLY_REASON = "read-only cache"


class Skipped(FieldsEq):
    FIELDS = ("kind", "pkgs_dir", "name", "reason", "used_by", "paths")

    def __init__(
        self,
        kind: str,
        pkgs_dir: str,
        name: str,
        reason: str,
        used_by: list[str] | None = None,
        paths: list[str] | None = None,  # measured for read-only caches
    ):
        self.kind = kind
        self.pkgs_dir = pkgs_dir
        self.name = name
        self.reason = reason
        self.used_by = [] if used_by is None else used_by
        self.paths = [] if paths is None else paths

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "pkgs_dir": self.pkgs_dir,
            "name": self.name,
            "reason": self.reason,
            "used_by": list(self.used_by),
        }


class Plan(FieldsEq):
    FIELDS = ("items", "skipped", "read_only", "notes", "still_linked", "read_only_freed")

    def __init__(
        self,
        items: list[PlanItem] | None = None,
        skipped: list[Skipped] | None = None,
        read_only: list[str] | None = None,
        notes: list[str] | None = None,
        still_linked: int = 0,
        # pkgs_dir -> (entries, bytes) that the policy selects in read-only caches: left alone,
        # but an administrator of the shared cache may want to know what cleaning it would free
        read_only_freed: dict[str, tuple[int, int]] | None = None,
    ):
        self.items = [] if items is None else items
        self.skipped = [] if skipped is None else skipped
        self.read_only = [] if read_only is None else read_only
        self.notes = [] if notes is None else notes
        self.still_linked = still_linked
        self.read_only_freed = {} if read_only_freed is None else read_only_freed

    def totals(self) -> dict:
        total = Bytes()
        for item in self.items:
            total.add(item.bytes)
        out = total.to_json()
        out["items"] = len(self.items)
        out["still_linked"] = self.still_linked
        return out

    def to_json(self) -> dict:
        return {
            "items": [i.to_json() for i in self.items],
            "skipped": [s.to_json() for s in self.skipped],
            "read_only": list(self.read_only),
            "read_only_would_free": [
                {"pkgs_dir": d, "items": n, "freed": freed}
                for d, (n, freed) in self.read_only_freed.items()
            ],
            "notes": list(self.notes),
            "totals": self.totals(),
        }
