"""The kinds of package cache we understand, and which one a directory is.

A kind answers the questions where the layouts differ: how to scan it, when it is writable,
whether an entry must carry ``info/repodata_record.json``, what removing an entry deletes, and
which lock keeps the tool that owns the cache out while we remove. Everything else (verify's
file checks, usage, the policies of ``clean``) is the same for every kind.

- ``conda``: conda's flat layout and mamba's nested one (``conda_pkgs.py``; which of the two
  is told by the scan), magic file ``urls.txt``;
- ``rattler``: rattler's and pixi's (``rattler_cache.py``).

Detection: ``urls.txt`` means conda (conda's own rule for a package cache, and a directory
conda and pixi both use stays usable by conda); else rattler's global lock or a ``<entry>.lock``
sidecar beside its entry means rattler; else conda (an empty or new directory becomes a conda
cache when we fetch into it).
"""

from __future__ import annotations

import gc
import os
from contextlib import contextmanager

from ..model.cache_paths import CacheLayout
from ..model.filenames import (
    MAGIC_FILE,
)
from . import rattler_cache
from .scan_result import ScanResult

CONDA = "conda"
RATTLER = "rattler"


class CacheKind:
    name = CONDA
    # verify: an entry without info/repodata_record.json lacks metadata
    record_required = True
    # fetch/repair may add entries in this layout (we write conda's layout only)
    fetch_target = True
    # usage: a file hard-linked from outside the entry means an environment we were not told of
    # uses it. conda's caches leave that to the environments conda registers.
    unnamed_links_in_use = False
    # repair: the cache itself knows where its entries came from (repodata_record.json, urls.txt)
    keeps_urls = True

    def scan(self, pkgs_dir: str, use_index: bool):
        from .conda_pkgs import scan_pkgs_dir

        return scan_pkgs_dir(pkgs_dir, use_index)

    def writability(self, pkgs_dir: str) -> tuple[bool | None, str]:
        from .conda_pkgs import conda_writability

        return conda_writability(pkgs_dir)

    def entry_paths(self, record) -> list[str]:
        """Everything removing the whole entry deletes."""
        return [record.archive_path(ext) for ext in record.archives] + (
            [record.extracted_package_dir] if record.has_dir else []
        )

    def trash_dir(self, pkgs_dir: str) -> str:
        """Where a directory is moved before it is deleted (same file system, out of sight)."""
        return CacheLayout(pkgs_dir).tmp_dir

    @contextmanager
    def write_lock(self, pkgs_dir: str, *, timeout: float | None = 60.0, on_wait=None):
        from ..gateways.locks import cache_write_lock

        with cache_write_lock(CacheLayout(pkgs_dir), timeout=timeout, on_wait=on_wait):
            yield

    def describe(self, result) -> str:
        return "nested" if result.nested else "flat"


class RattlerKind(CacheKind):
    name = RATTLER
    record_required = False
    fetch_target = False
    # pixi registers no environments anywhere, and rattler hard-links by default
    unnamed_links_in_use = True
    keeps_urls = False

    def scan(self, pkgs_dir: str, use_index: bool):
        return rattler_cache.scan(pkgs_dir, use_index)

    def writability(self, pkgs_dir: str) -> tuple[bool | None, str]:
        return rattler_cache.writability(pkgs_dir)

    def entry_paths(self, record) -> list[str]:
        paths = super().entry_paths(record)
        return [*paths, rattler_cache.sidecar_of(record.extracted_package_dir)]

    def trash_dir(self, pkgs_dir: str) -> str:
        # the cache root, under a hidden name as rattler's own temp dirs: nothing of ours is
        # created inside a cache pixi owns
        return pkgs_dir

    @contextmanager
    def write_lock(self, pkgs_dir: str, *, timeout: float | None = 60.0, on_wait=None):
        # rattler's global lock alone: it keeps every pixi/rattler install out of the cache while
        # we remove, and our own verbs take it too for such a cache. (Ours would also need a
        # private directory inside a cache pixi owns.)
        with rattler_cache.global_lock(pkgs_dir, timeout=timeout, on_wait=on_wait):
            yield

    def describe(self, result) -> str:
        return "rattler"


KINDS = {CONDA: CacheKind(), RATTLER: RattlerKind()}


_memo: dict[tuple, CacheKind] = {}


def detect(pkgs_dir: str) -> CacheKind:
    """The kind of cache ``pkgs_dir`` is (see the module docstring)."""
    try:
        st = os.stat(pkgs_dir)
    except OSError:
        return KINDS[CONDA]
    # a directory's mtime changes when an entry is added or removed: the answer holds till then
    key = (pkgs_dir, st.st_ino, st.st_mtime_ns)
    kind = _memo.get(key)
    if kind is None:
        if os.path.isfile(os.path.join(pkgs_dir, MAGIC_FILE)):
            kind = KINDS[CONDA]
        elif rattler_cache.looks_like_rattler(pkgs_dir):
            kind = KINDS[RATTLER]
        else:
            kind = KINDS[CONDA]
        _memo[key] = kind
    return kind


def resolve_cache_dir(path: str) -> tuple[str, str | None]:
    """A directory the user named → the package cache to use, and a note when it is not the
    directory itself: a rattler/pixi cache *root* (``~/.cache/rattler/cache``) holds its
    packages in ``pkgs/`` (``rattler_cache::PACKAGE_CACHE_DIR``)."""
    pkgs = os.path.join(path, rattler_cache.PKGS_SUBDIR)
    if (
        not os.path.isfile(os.path.join(path, MAGIC_FILE))
        and not rattler_cache.looks_like_rattler(path)
        and os.path.isdir(pkgs)
        and detect(pkgs).name == RATTLER
    ):
        return pkgs, f"{path} is a rattler cache root: using its package cache {pkgs}"
    return path, None


def scan(pkgs_dir: str, *, use_index: bool = True) -> ScanResult:
    """Scan one pkgs dir. Pure: reads only (the optional index lives outside the cache)."""
    pkgs_dir = os.path.abspath(pkgs_dir)
    # A scan allocates one small object graph per entry and frees nothing: the cyclic GC would
    # re-walk the growing heap many times over (a third of the time at 20k entries).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        kind = detect(pkgs_dir)
        result = kind.scan(pkgs_dir, use_index)
        result.layout = kind.describe(result)
        return result
    finally:
        if gc_was_enabled:
            gc.enable()


def writability(pkgs_dir: str) -> tuple[bool | None, str]:
    """(writable, why). ``None`` when the directory is not (yet) a package cache. The rule is
    the cache kind's."""
    return detect(pkgs_dir).writability(pkgs_dir)
