"""What removing paths would release on disk, counting hard links right.

A file's blocks are released only when its *last* link goes. conda's ``clean`` skips any file with
``st_nlink > 1`` (so it never counts shared bytes, and calls a package hard-linked to itself
"in use", conda#7597); we count links instead: an inode is freed by the item that removes the last
of its links, and bytes whose inode keeps a link elsewhere (an environment, another cache) are
reported as shared, not freed. Adding items one after another attributes each freed inode to
exactly one item, so per-item figures add up to the total.
"""

from __future__ import annotations

import os
import stat

from ..model.plainclass import FieldsEq
from ..model.sizes import walk_stats


class Bytes(FieldsEq):
    # usage/ records are not dataclasses: dataclasses (and inspect) were a fifth of an empty
    # `usage` or `clean` (model/plainclass.py)
    FIELDS = ("apparent", "disk", "freed", "files", "dirs", "errors")

    def __init__(
        self,
        apparent: int = 0,  # sum of sizes, every link counted (du --apparent-size -l)
        disk: int = 0,  # allocated blocks, each inode once within this item
        freed: int = 0,  # blocks released if this item goes (after the items added before it)
        files: int = 0,
        dirs: int = 0,
        errors: list[str] | None = None,
    ):
        self.apparent = apparent
        self.disk = disk
        self.freed = freed
        self.files = files
        self.dirs = dirs
        self.errors = [] if errors is None else errors

    @property
    def shared(self) -> int:
        """Blocks of this item that stay on disk because another link to them survives."""
        return max(self.disk - self.freed, 0)

    def add(self, other: Bytes) -> None:
        self.apparent += other.apparent
        self.disk += other.disk
        self.freed += other.freed
        self.files += other.files
        self.dirs += other.dirs
        self.errors += other.errors

    def to_json(self) -> dict:
        return {
            "apparent": self.apparent,
            "disk": self.disk,
            "freed": self.freed,
            "shared": self.shared,
            "files": self.files,
            "dirs": self.dirs,
        }


def _blocks(st: os.stat_result) -> int:
    blocks = getattr(st, "st_blocks", None)
    return blocks * 512 if blocks is not None else st.st_size


class Footprint:
    """Accumulates items (lists of paths) and says what each one frees."""

    def __init__(self):
        # (dev, ino) -> [links seen so far, nlink, blocks]
        self._multi: dict[tuple[int, int], list[int]] = {}

    def add(self, paths: list[str]) -> Bytes:
        out = Bytes()
        local: set[tuple[int, int]] = set()
        for path in paths:
            self._walk(path, out, local)
        return out

    def add_stats(self, stats, errors: list[str] = ()) -> Bytes:
        """Like :meth:`add`, for ``lstat`` results a caller has walked already."""
        out = Bytes(errors=list(errors))
        local: set[tuple[int, int]] = set()
        for st in stats:
            self._account(st, out, local)
        return out

    def _walk(self, path: str, out: Bytes, local: set) -> None:
        if not os.path.lexists(path):
            return  # already gone: nothing to count, and not an error
        for st, _is_dir in walk_stats(path, out.errors):
            self._account(st, out, local)

    def _account(self, st: os.stat_result, out: Bytes, local: set) -> None:
        out.apparent += st.st_size
        if stat.S_ISDIR(st.st_mode):
            out.dirs += 1
        else:
            out.files += 1
        blocks = _blocks(st)
        if st.st_nlink <= 1 or stat.S_ISDIR(st.st_mode):
            # a directory's link count is its subdirectories, not other names for it
            out.disk += blocks
            out.freed += blocks
            return
        key = (st.st_dev, st.st_ino)
        if key not in local:
            local.add(key)
            out.disk += blocks
        entry = self._multi.get(key)
        if entry is None:
            entry = self._multi[key] = [0, st.st_nlink, blocks]
        entry[0] += 1
        if entry[0] == entry[1]:
            out.freed += blocks

    def still_linked(self) -> int:
        """Blocks of the inodes seen so far that keep a link outside everything added."""
        return sum(b for seen, nlink, b in self._multi.values() if seen < nlink)


def measure(paths: list[str]) -> Bytes:
    """One item on its own: ``freed`` is what removing just these paths would release."""
    return Footprint().add(paths)
