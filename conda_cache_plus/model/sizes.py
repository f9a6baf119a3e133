"""Byte accounting that understands hard links.

``apparent`` adds every path's size (what ``du --apparent-size -l`` says); ``disk`` counts each
inode once by its allocated blocks (what ``du`` says), so packages hard-linked into environments,
or into another cache, are not counted twice.
"""

from __future__ import annotations

import os
import stat

from .plainclass import FieldsEq


class TreeSize(FieldsEq):
    """What one walk counted (not a dataclass: model/plainclass.py says why)."""

    FIELDS = ("apparent", "disk", "files", "dirs", "shared", "errors")

    def __init__(
        self,
        apparent: int = 0,
        disk: int = 0,
        files: int = 0,
        dirs: int = 0,
        shared: int = 0,
        errors: list[str] | None = None,
    ):
        self.apparent = apparent
        self.disk = disk
        self.files = files
        self.dirs = dirs
        # bytes on disk of inodes that have links outside what was walked (envs or copies)
        self.shared = shared
        self.errors = [] if errors is None else errors

    def add(self, other: TreeSize) -> None:
        self.apparent += other.apparent
        self.disk += other.disk
        self.files += other.files
        self.dirs += other.dirs
        self.shared += other.shared
        self.errors += other.errors


class InodeSet:
    """Inodes already counted, shared across trees so hard links count once."""

    def __init__(self):
        self.seen: dict[tuple[int, int], int] = {}  # (dev, ino) -> links seen so far
        # (dev, ino) -> (st_nlink, bytes on disk, tag of the walk that saw it first), so a caller
        # can tell inodes linked from outside what was walked (environments) from the rest
        self.meta: dict[tuple[int, int], tuple[int, int, str]] = {}
        self.tag = ""

    def linked_outside(self, tag: str | None = None) -> int:
        """Bytes on disk of inodes (first seen under ``tag``, or any) with links not walked."""
        return sum(
            blocks
            for key, (nlink, blocks, t) in self.meta.items()
            if (tag is None or t == tag) and self.seen.get(key, 0) < nlink
        )


def _blocks(st: os.stat_result) -> int:
    blocks = getattr(st, "st_blocks", None)
    return blocks * 512 if blocks is not None else st.st_size


def walk_stats(path: str, errors: list[str]):
    """``lstat`` results of ``path`` and of everything below it, never following symlinks.

    The one tree walk behind every byte count; what cannot be read is added to ``errors``.
    Yields ``(stat_result, is_dir)``; a missing ``path`` yields nothing and is an error.
    """
    for _path, st, is_dir in walk_paths(path, errors):
        yield st, is_dir


def walk_paths(path: str, errors: list[str]):
    """:func:`walk_stats` with the path of each: ``(path, stat_result, is_dir)``."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        errors.append(f"{path}: {exc.strerror or exc}")
        return
    is_dir = stat.S_ISDIR(st.st_mode)
    yield path, st, is_dir
    if not is_dir:
        return
    stack = [path]
    while stack:
        current = stack.pop()
        try:
            it = os.scandir(current)
        except OSError as exc:
            errors.append(f"{current}: {exc.strerror or exc}")
            continue
        with it:
            for de in it:
                try:
                    st = de.stat(follow_symlinks=False)
                except OSError as exc:
                    errors.append(f"{de.path}: {exc.strerror or exc}")
                    continue
                is_dir = stat.S_ISDIR(st.st_mode)
                yield de.path, st, is_dir
                if is_dir:
                    stack.append(de.path)


def path_size(path: str, inodes: InodeSet | None = None) -> TreeSize:
    """Size of a file or a directory tree, never following symlinks."""
    inodes = inodes or InodeSet()
    total = TreeSize()
    for st, is_dir in walk_stats(path, total.errors):
        total.dirs += is_dir
        _account(total, st, inodes)
    return total


def _account(total: TreeSize, st: os.stat_result, inodes: InodeSet) -> None:
    total.apparent += st.st_size
    if not stat.S_ISDIR(st.st_mode):
        total.files += 1
    key = (st.st_dev, st.st_ino)
    # a directory's link count is its subdirectories, not other names for it
    if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
        seen = inodes.seen.get(key, 0)
        inodes.seen[key] = seen + 1
        if seen:
            return
        inodes.meta[key] = (st.st_nlink, _blocks(st), inodes.tag)
        total.disk += _blocks(st)
        total.shared += _blocks(st)
        return
    total.disk += _blocks(st)


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int:
    """``500M``, ``20G``, ``1.5GiB``, ``1024`` → bytes (binary units, as du and conda print)."""
    s = text.strip().lower().replace(" ", "")
    for suffix in ("ib", "b"):
        if s.endswith(suffix) and len(s) > len(suffix) and not s[: -len(suffix)][-1:].isdigit():
            s = s[: -len(suffix)]
            break
    if s.endswith("b") and s[:-1].replace(".", "", 1).isdigit():
        s = s[:-1]
    unit = s[-1] if s and s[-1] in _UNITS else ""
    number = s[:-1] if unit else s
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"not a size: {text!r} (try 500M, 20G)") from None
    total = value * _UNITS[unit]
    if not (0 <= total < 2**63):  # also nan and inf ("1e999")
        raise ValueError(f"not a size: {text!r} (between 0 and 8 EiB, e.g. 500M, 20G)")
    return int(total)
