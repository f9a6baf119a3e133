"""What verify remembers about an entry, so a re-run skips files unchanged since they passed.

One small ``marshal`` file per entry holds the fingerprints (inode, size, mtime_ns, ctime_ns) of
the entry's metadata files and of every file that passed, with whether it passed a hash check.
A file is skipped only when its fingerprint on disk is exactly the remembered one; the metadata
fingerprints gate the whole file, so an edited ``paths.json`` discards everything remembered.

It lives in the cache's private area when the cache is writable (it travels with the cache,
and ``conda cache clean`` can drop it with the entry), else in the user's cache directory.
marshal, unlike pickle, cannot run code if someone else wrote the file.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import tempfile

from .config import user_cache_dir
from .layout import CacheLayout

FORMAT = 1


def store_dir(pkgs_dir: str, writable: bool | None) -> str:
    if writable:
        return os.path.join(CacheLayout(pkgs_dir).private, f"verify-v{FORMAT}")
    real = os.path.realpath(pkgs_dir)
    digest = hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return os.path.join(user_cache_dir(), f"verify-v{FORMAT}", digest)


def store_path(directory: str, entry: str) -> str:
    return os.path.join(directory, entry.replace("/", "%") + ".fp")


def load(path: str) -> dict | None:
    """``{"meta": tuple, "files": {rel: (fp, hashed)}, "archives": {fn: (fp, hashed)}}``."""
    try:
        with open(path, "rb") as fh:
            # loads() on the whole file: load() from a file object reads in tiny pieces.
            blob = marshal.loads(fh.read())
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if not isinstance(blob, tuple) or len(blob) != 2 or blob[0] != FORMAT:
        return None
    data = blob[1]
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        return None
    return data


def save(path: str, data: dict) -> bool:
    """Atomic write; a failure only costs speed next time."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".fp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                marshal.dump((FORMAT, data), fh)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    except (OSError, ValueError):
        return False
    return True


def forget(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
