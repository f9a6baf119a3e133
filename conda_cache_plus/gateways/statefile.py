"""Remembered state (scan indexes, environment indexes, verify fingerprints) on disk.

One format for all of them: ``marshal`` of ``(format, owner, data)``, where ``owner`` is the real
path of what the state describes. marshal is fast to load and, unlike pickle, cannot run code if
someone else wrote the file. Writes are atomic (temp file + rename) and failures are ignored:
state is only a speed-up, and any file that does not parse, or describes another owner or format,
reads as empty.
"""

from __future__ import annotations

import hashlib
import marshal
import os

from ..model.config import user_cache_dir
from .safefs import shared_bits

# A file whose mtime is this recent when read may still change within the same coarse clock tick
# without changing its fingerprint (the racy-git problem): such reads are never remembered.
RACY_SECONDS = 2.0


def user_state_path(kind: str, fmt: int, owner: str) -> str:
    """``<user cache>/<kind>-v<fmt>/<hash of owner>.idx``: state kept outside what it describes."""
    real = os.path.realpath(owner)
    digest = hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return os.path.join(user_cache_dir(), f"{kind}-v{fmt}", digest + ".idx")


def read(path: str, fmt: int, owner: str) -> dict:
    try:
        with open(path, "rb") as fh:
            # loads() on the whole file: load() from a file object reads in tiny pieces.
            blob = marshal.loads(fh.read())
    except (OSError, EOFError, ValueError, TypeError):
        return {}
    if (
        not isinstance(blob, tuple)
        or len(blob) != 3
        or blob[0] != fmt
        or blob[1] != os.path.realpath(owner)
        or not isinstance(blob[2], dict)
    ):
        return {}
    return blob[2]


def write(path: str, fmt: int, owner: str, data: dict) -> bool:
    """Write atomically; returns whether it worked."""
    import tempfile  # only a run that has something new to remember writes

    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".state-")
        try:
            extra = shared_bits(os.stat(directory).st_mode, directory=False)
            if extra:  # state kept inside a group's shared cache: the group's too
                os.fchmod(fd, 0o600 | extra)
            with os.fdopen(fd, "wb") as fh:
                fh.write(marshal.dumps((fmt, os.path.realpath(owner), data)))
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
