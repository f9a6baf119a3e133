"""Carry out a removal plan: each item under its cache's write lock, moved aside then deleted,
with statistics that add up."""

from __future__ import annotations

from collections.abc import Callable

from ..exceptions import CachePlusError
from ..gateways.fsops import RemovalStats, remove_path
from ..model.cache_paths import CacheLayout
from ..model.filenames import CONDA_EXT, TARBZ2_EXT
from .policies import KIND_ARCHIVE, KIND_EXTRACTED, KIND_PACKAGE, Plan, PlanItem


def execute_plan(plan: Plan, *, on_item: Callable[[PlanItem], None] | None = None) -> RemovalStats:
    """Remove exactly the plan's items (call with the caches' write locks held)."""
    from ..gateways.locks import lock_held
    from ..gateways.urls import remove_urls
    from ..layouts import scan_index
    from ..layouts.kinds import detect

    stats = RemovalStats()
    urls_by_cache: dict[str, list[str]] = {}
    touched: set[str] = set()
    trash_dirs: dict[str, str] = {}
    for item in plan.items:
        layout = CacheLayout(item.pkgs_dir)
        if item.pkgs_dir not in trash_dirs:
            trash_dirs[item.pkgs_dir] = detect(item.pkgs_dir).trash_dir(item.pkgs_dir)
        if item.kind in (KIND_PACKAGE, KIND_EXTRACTED, KIND_ARCHIVE) and lock_held(
            layout.entry_lock(item.name)
        ):
            item.status = "skipped"
            item.error = "being written (locked)"
            stats.skipped += 1
            continue
        removed_any = False
        try:
            for path in item.paths:
                removed_any |= remove_path(path, stats, trash_dirs[item.pkgs_dir])
        except OSError as exc:
            item.status = "failed"
            item.error = f"{exc.strerror or exc}: {getattr(exc, 'filename', '') or ''}".strip()
            stats.failed += 1
        else:
            item.status = "removed" if removed_any else "already gone"
            stats.items += 1
            if not removed_any:
                stats.already_gone += 1
            urls_by_cache.setdefault(item.pkgs_dir, []).extend(item.url_basenames)
            _drop_lock_files(layout, item)
        touched.add(item.pkgs_dir)
        if on_item is not None:
            on_item(item)
    for pkgs_dir, basenames in urls_by_cache.items():
        if basenames:
            stats.urls_lines += remove_urls(CacheLayout(pkgs_dir), basenames)
    for pkgs_dir in touched:
        scan_index.forget(pkgs_dir)
    return stats


def _drop_lock_files(layout: CacheLayout, item: PlanItem) -> None:
    """Our lock files of what went (the entry's, its archives'): they would pile up forever in
    the private locks dir otherwise. One still held stays (see locks.remove_lock_file)."""
    from ..gateways.locks import remove_lock_file

    names = []
    if item.kind in (KIND_PACKAGE, KIND_EXTRACTED):
        names.append(item.name)
    if item.kind in (KIND_PACKAGE, KIND_ARCHIVE):
        names += [item.name + ext for ext in (CONDA_EXT, TARBZ2_EXT)]
    for name in names:
        try:
            remove_lock_file(layout.entry_lock(name))
        except (CachePlusError, ValueError, OSError):  # a name the layout refuses: no lock
            continue
