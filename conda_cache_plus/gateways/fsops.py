"""Removing a path inside a cache: moved out of sight first, never through a link, counted."""

from __future__ import annotations

import os

from ..exceptions import CachePlusError
from ..model.plainclass import FieldsEq
from .safefs import check_private_dir, split_private


# --- execution ---------------------------------------------------------------------------------
class RemovalStats(FieldsEq):
    """What was actually deleted (uv's ``Removal``): sums over items, idempotent.

    Not a dataclass, and shutil is imported where a tree is removed: a ``clean --dry-run``
    imports this module and needs neither (dataclasses brings inspect; shutil, bz2 and lzma)."""

    FIELDS = ("files", "dirs", "bytes", "items", "already_gone", "failed", "skipped", "urls_lines")

    def __init__(
        self,
        files: int = 0,
        dirs: int = 0,
        bytes: int = 0,  # apparent bytes of what was deleted (files, links and directories)
        items: int = 0,
        already_gone: int = 0,
        failed: int = 0,
        skipped: int = 0,
        urls_lines: int = 0,
    ):
        self.files = files
        self.dirs = dirs
        self.bytes = bytes
        self.items = items
        self.already_gone = already_gone
        self.failed = failed
        self.skipped = skipped
        self.urls_lines = urls_lines

    def to_json(self) -> dict:
        return dict(self.__dict__)


def remove_path(path: str, stats: RemovalStats, trash_dir: str) -> bool:
    """Delete one file or tree; returns False when it was already gone."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not os.path.isdir(path) or os.path.islink(path):
        os.unlink(path)
        stats.files += 1
        stats.bytes += st.st_size
        return True
    # Move the directory out of sight first, so no scan sees a half-deleted entry.
    target = path
    try:
        where = split_private(os.path.join(trash_dir, "x"))
        if where is not None:
            check_private_dir(where[0], *where[1])  # our tmp dir, never a planted link
        else:
            os.makedirs(trash_dir, exist_ok=True)  # the pkgs dir itself (rattler caches)
        # hidden: what a crash leaves is a leftover to every scanner, never an entry
        target = os.path.join(trash_dir, f".{os.path.basename(path)}.cpx-trash-{os.getpid()}")
        if os.path.lexists(target):
            import shutil

            shutil.rmtree(target, ignore_errors=True)
        os.rename(path, target)
    except (OSError, CachePlusError):
        target = path
    for root, dirs, files in os.walk(target, topdown=False):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            p = os.path.join(root, name)
            try:
                size = os.lstat(p).st_size
                os.unlink(p)
            except FileNotFoundError:
                continue
            stats.files += 1
            stats.bytes += size
        for name in dirs:
            p = os.path.join(root, name)
            if os.path.islink(p):
                continue
            try:
                size = os.lstat(p).st_size
                os.rmdir(p)
            except FileNotFoundError:
                continue
            stats.dirs += 1
            stats.bytes += size
    os.rmdir(target)
    stats.dirs += 1
    stats.bytes += st.st_size
    return True
