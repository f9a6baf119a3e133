"""Typed paths inside one pkgs dir, built in one place: nothing else concatenates cache paths."""

from __future__ import annotations

import os

from .filenames import CACHEDIR_TAG, LEGACY_URLS_FILE, MAGIC_FILE, PARTIAL_EXT, PRIVATE_DIR
from .plainclass import FrozenFields


class CacheLayout(FrozenFields):
    """Typed paths inside one pkgs dir (not a dataclass: model/plainclass.py says why)."""

    __slots__ = ("root",)
    FIELDS = ("root",)

    def __init__(self, root: str):
        object.__setattr__(self, "root", root)

    @property
    def urls_txt(self) -> str:
        return os.path.join(self.root, MAGIC_FILE)

    @property
    def legacy_urls(self) -> str:
        return os.path.join(self.root, LEGACY_URLS_FILE)

    @property
    def cachedir_tag(self) -> str:
        return os.path.join(self.root, CACHEDIR_TAG)

    @property
    def private(self) -> str:
        return os.path.join(self.root, PRIVATE_DIR)

    @property
    def tmp_dir(self) -> str:
        return os.path.join(self.root, PRIVATE_DIR, "tmp")

    @property
    def locks_dir(self) -> str:
        return os.path.join(self.root, PRIVATE_DIR, "locks")

    @property
    def cache_lock(self) -> str:
        """Our whole-cache lock, taken by verbs that remove things."""
        return os.path.join(self.root, PRIVATE_DIR, "cache.lock")

    @property
    def mamba_lock(self) -> str:
        return os.path.join(self.root, "pkgs.lock")

    @property
    def rattler_lock(self) -> str:
        return os.path.join(self.root, ".cache.lock")

    @property
    def index_cache(self) -> str:
        return os.path.join(self.root, "cache")

    def archive(self, fn: str) -> str:
        return os.path.join(self.root, _safe_relpath(fn))

    def partial(self, fn: str) -> str:
        return self.archive(fn) + PARTIAL_EXT

    def extracted(self, entry: str) -> str:
        return os.path.join(self.root, _safe_relpath(entry))

    def entry_lock(self, entry: str) -> str:
        return os.path.join(self.locks_dir, _safe_relpath(entry).replace(os.sep, "%") + ".lock")

    def record_json(self, entry: str) -> str:
        return os.path.join(self.extracted(entry), "info", "repodata_record.json")

    def index_json(self, entry: str) -> str:
        return os.path.join(self.extracted(entry), "info", "index.json")

    def paths_json(self, entry: str) -> str:
        return os.path.join(self.extracted(entry), "info", "paths.json")


def _safe_relpath(rel: str) -> str:
    """Refuse names that would leave the cache (a hostile URL basename, '..', absolute paths);
    the rules are in :mod:`.names`, the one place that decides."""
    from .names import check_relpath

    return os.path.join(*check_relpath(rel).split("/"))


def pkgs_dir_problem(path: str) -> str | None:
    """Why ``path`` cannot be a package cache directory, or None: the one wording every verb
    uses for a ``--pkgs-dir`` (or a configured cache) that is not a directory."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.lexists(path):
            return "does not exist (a symbolic link to nothing)"
        return "does not exist"
    except NotADirectoryError:
        return "does not exist (a part of its path is a file)"
    except OSError as exc:
        return f"cannot be reached ({exc.strerror or exc})"
    import stat

    if stat.S_ISDIR(st.st_mode):
        return None
    return "is a file, not a directory" if stat.S_ISREG(st.st_mode) else "is not a directory"
