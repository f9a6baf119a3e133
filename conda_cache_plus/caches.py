"""Several pkgs dirs in conda's order: writable first, then read-only, then not-yet-caches."""

from __future__ import annotations

from .exceptions import NoWritableCacheError
from .match import SpecMatcher, match_any
from .pkgs_dir import PackageCacheData
from .records import PackageCacheRecord


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
