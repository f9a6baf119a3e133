"""A remembered usage scan of one environment, so a repeated ``usage``/``clean`` skips the JSON.

For each environment we keep what ``usage.py`` took from its ``conda-meta``: the listing of
``*.json`` records (keyed by the directory's (inode, mtime_ns, ctime_ns)), each record reduced to
the few fields matching needs (keyed by the record's (inode, size, mtime_ns, ctime_ns)), the
``history`` dists (keyed the same way) and what the sampled linked file showed. Every key is
compared with the file on disk before anything remembered is used, so the index is never
trusted over the files; anything modified within ``RACY_SECONDS`` of being read is not
remembered at all (a change in the same coarse clock tick would keep its fingerprint), the rule
``pkgs_dir.py`` and git use.

It lives in the user's cache directory, one file per environment, never in the environment.
``marshal``: fast to load and unable to run code if someone else wrote it.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import tempfile

from .config import user_cache_dir

FORMAT = 1
RACY_SECONDS = 2.0


def index_path(prefix: str) -> str:
    real = os.path.realpath(prefix)
    digest = hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return os.path.join(user_cache_dir(), f"usage-v{FORMAT}", digest + ".idx")


def load(prefix: str) -> dict:
    try:
        with open(index_path(prefix), "rb") as fh:
            blob = marshal.loads(fh.read())
    except (OSError, EOFError, ValueError, TypeError):
        return {}
    if (
        not isinstance(blob, tuple)
        or len(blob) != 3
        or blob[0] != FORMAT
        or blob[1] != os.path.realpath(prefix)
        or not isinstance(blob[2], dict)
    ):
        return {}
    return blob[2]


def save(prefix: str, data: dict) -> None:
    """Write atomically; failures are ignored (the index is only a speed-up)."""
    path = index_path(prefix)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".idx-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(marshal.dumps((FORMAT, os.path.realpath(prefix), data)))
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    except (OSError, ValueError):
        pass


def forget(prefix: str) -> None:
    try:
        os.unlink(index_path(prefix))
    except OSError:
        pass
