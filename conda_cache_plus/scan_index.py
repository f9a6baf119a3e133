"""A remembered scan of a pkgs dir, so a repeated ``list`` costs one ``stat`` per entry.

Each remembered entry carries the fingerprint (inode, size, mtime_ns, ctime_ns) of the metadata
file it was read from. A scan re-reads an entry whenever that fingerprint differs from the file on
disk, so the index is never trusted over the files. It lives in the user's cache directory, not in
the pkgs dir, so a scan writes nothing into a cache (and works the same for read-only caches).

The file is ``marshal`` data: fast to load and, unlike pickle, unable to run code if someone else
wrote it.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import tempfile

from .config import user_cache_dir

FORMAT = 4


def index_path(pkgs_dir: str) -> str:
    real = os.path.realpath(pkgs_dir)
    digest = hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return os.path.join(user_cache_dir(), f"scan-v{FORMAT}", digest + ".idx")


def load(pkgs_dir: str) -> dict:
    try:
        with open(index_path(pkgs_dir), "rb") as fh:
            blob = marshal.loads(fh.read())
    except (OSError, EOFError, ValueError, TypeError):
        return {}
    if (
        not isinstance(blob, tuple)
        or len(blob) != 3
        or blob[0] != FORMAT
        or blob[1] != os.path.realpath(pkgs_dir)
        or not isinstance(blob[2], dict)
    ):
        return {}
    return blob[2]


def save(pkgs_dir: str, entries: dict) -> None:
    """Write atomically; failures are ignored (the index is only a speed-up)."""
    path = index_path(pkgs_dir)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".idx-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(marshal.dumps((FORMAT, os.path.realpath(pkgs_dir), entries)))
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    except (OSError, ValueError):
        pass


def forget(pkgs_dir: str) -> None:
    try:
        os.unlink(index_path(pkgs_dir))
    except OSError:
        pass
