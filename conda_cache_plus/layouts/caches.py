"""Several pkgs dirs in conda's order: writable first, then read-only, then not-yet-caches."""

from __future__ import annotations

import os

from ..exceptions import NoWritableCacheError
from ..gateways.urls import UrlsData
from ..model.cache_paths import CacheLayout
from ..model.config import dedupe_paths, expand_path, pkgs_dirs_without_conda
from ..model.host import require_conda_host
from ..model.match import SpecMatcher, match_any
from ..model.records import (
    PackageCacheRecord,
)
from .kinds import scan, writability
from .scan_result import ScanResult


class PackageCaches:
    def __init__(self, pkgs_dirs: list[str], *, use_index: bool = True, origin: str = ""):
        self.pkgs_dirs = list(pkgs_dirs)
        self.origin = origin
        self.caches = [PackageCacheData(p, use_index=use_index) for p in self.pkgs_dirs]

    def writable_first(self) -> list[PackageCacheData]:
        """conda's ``all_caches_writable_first`` but keeping dirs that are not caches yet last,
        so they are still shown."""
        order = {True: 0, False: 1, None: 2}
        return sorted(self.caches, key=lambda c: order[c.is_writable])

    def writable(self) -> list[PackageCacheData]:
        return [c for c in self.caches if c.is_writable]

    def read_only(self) -> list[PackageCacheData]:
        return [c for c in self.caches if c.is_writable is False]

    def first_writable(self) -> PackageCacheData:
        """The first writable cache, in configured order (where new packages go). Creating a cache
        that does not exist yet is the fetch engine's job (it needs the write lock)."""
        for cache in self.caches:
            if cache.is_writable:
                return cache
        raise NoWritableCacheError(self.pkgs_dirs)

    def records(self) -> list[PackageCacheRecord]:
        out: list[PackageCacheRecord] = []
        for cache in self.writable_first():
            out.extend(cache.records)
        return out

    def query(self, specs: list[SpecMatcher] | None = None) -> list[PackageCacheRecord]:
        return [r for r in self.records() if match_any(r, specs or [])]

    def find(self, key) -> list[PackageCacheRecord]:
        """Every cached copy of one package identity, writable caches first."""
        return [r for r in self.records() if r.key == key]

    def by_fn(self, fn: str) -> list[PackageCacheRecord]:
        return [
            r
            for r in self.records()
            if r.fn == fn or fn in (r.basename + ext for ext in r.archives)
        ]


def resolve_pkgs_dirs(cli_dirs: list[str] | None, *, use_conda: bool) -> tuple[list[str], str]:
    if cli_dirs:
        from .kinds import resolve_cache_dir

        # a pixi/rattler cache root stands for its package cache (<root>/pkgs)
        return dedupe_paths(resolve_cache_dir(expand_path(d))[0] for d in cli_dirs), "--pkgs-dir"
    if use_conda:
        return dedupe_paths(require_conda_host().context().pkgs_dirs), "conda"
    return pkgs_dirs_without_conda()


class PackageCacheData:
    """A pkgs dir with its records, loaded lazily. Not memoised across instances on purpose:
    conda's per-path singleton is what makes its tests reset state by hand."""

    def __init__(self, pkgs_dir: str, *, use_index: bool = True):
        self.pkgs_dir = os.path.abspath(os.path.expanduser(pkgs_dir))
        self.layout = CacheLayout(self.pkgs_dir)
        self.use_index = use_index
        self._kind = None
        self._result: ScanResult | None = None
        self._writable: tuple[bool | None, str] | None = None

    @property
    def kind(self):
        """The cache kind (layouts/kinds.py): what differs between conda's and rattler's layouts."""
        if self._kind is None:
            from .kinds import detect

            self._kind = detect(self.pkgs_dir)
        return self._kind

    @property
    def is_writable(self) -> bool | None:
        if self._writable is None:
            self._writable = writability(self.pkgs_dir)
        return self._writable[0]

    @property
    def writable_reason(self) -> str:
        self.is_writable  # noqa: B018 - fills the memo
        return self._writable[1]  # type: ignore[index]

    def load(self) -> ScanResult:
        if self._result is None:
            self._result = scan(self.pkgs_dir, use_index=self.use_index)
        return self._result

    def release(self) -> None:
        """Drop the loaded scan (a caller that took what it needs from it: at 10^5 entries its
        records are about 100 MiB); the next :meth:`load` scans again."""
        self._result = None

    def reload(self) -> ScanResult:
        self._result = None
        self._writable = None
        self._kind = None
        return self.load()

    @property
    def records(self) -> list[PackageCacheRecord]:
        return self.load().records

    def iter_records(self):
        return iter(self.records)

    def get(self, entry: str) -> PackageCacheRecord | None:
        for rec in self.records:
            if rec.entry == entry or rec.basename == entry:
                return rec
        return None

    def query(self, spec) -> list[PackageCacheRecord]:
        from ..model.match import SpecMatcher

        matcher = spec if isinstance(spec, SpecMatcher) else SpecMatcher(spec)
        return [r for r in self.records if matcher.match(r)]

    @property
    def urls_data(self) -> UrlsData:
        return UrlsData(self.pkgs_dir)

    def __repr__(self) -> str:
        return f"PackageCacheData({self.pkgs_dir!r})"
