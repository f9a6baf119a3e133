"""Remembered state (scan indexes, environment indexes, verify fingerprints) on disk.

One format for all of them: ``marshal`` of ``(format, owner, data)``, where ``owner`` is the real
path of what the state describes. marshal is fast to load and, unlike pickle, cannot run code if
someone else wrote the file. Writes are atomic (temp file + rename) and failures are ignored:
state is only a speed-up, and any file that does not parse, or describes another owner or format,
reads as empty.
"""

from __future__ import annotations

import marshal
import os
from itertools import islice

from ..model.config import user_cache_dir
from .safefs import shared_bits

# A file whose mtime is this recent when read may still change within the same coarse clock tick
# without changing its fingerprint (the racy-git problem): such reads are never remembered.
RACY_SECONDS = 2.0


def user_state_path(kind: str, fmt: int, owner: str) -> str:
    """``<user cache>/<kind>-v<fmt>/<hash of owner>.idx``: state kept outside what it describes."""
    real = os.path.realpath(owner)
    digest = _sha256()(real.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return os.path.join(user_cache_dir(), f"{kind}-v{fmt}", digest + ".idx")


def _sha256():
    """CPython's own SHA-256 (the same digests as hashlib's): every scan names its index file
    with it, and ``import hashlib`` loads OpenSSL, a tenth of an empty ``info``'s whole run."""
    try:
        from _sha2 import sha256  # Python >= 3.12
    except ImportError:
        try:
            from _sha256 import sha256  # Python 3.10, 3.11
        except ImportError:  # a Python built without them
            from hashlib import sha256
    return sha256


def read(path: str, fmt: int, owner: str) -> dict:
    try:
        with open(path, "rb") as fh:
            # loads() on the whole file: load() from a file object reads in tiny pieces.
            blob = marshal.loads(fh.read())
    except (OSError, EOFError, ValueError, TypeError):
        return {}
    return blob[2] if _is_ours(blob, fmt, owner, dict) else {}


def _is_ours(head, fmt: int, owner: str, payload: type) -> bool:
    """Whether ``head`` is ``(fmt, owner's real path, <payload>)``: state of this format, for
    this owner (anything else, or another tool's file, reads as empty)."""
    return (
        isinstance(head, tuple)
        and len(head) == 3
        and head[0] == fmt
        and head[1] == os.path.realpath(owner)
        and isinstance(head[2], payload)
    )


def write(path: str, fmt: int, owner: str, data: dict) -> bool:
    """Write atomically; returns whether it worked."""
    return _write_atomic(
        path, lambda fh: fh.write(marshal.dumps((fmt, os.path.realpath(owner), data)))
    )


# Large state (a scan index at 10^5 entries is tens of MB) is written and read in frames of this
# many dict items, so neither side ever holds the whole file's bytes beside the objects.
CHUNK_ITEMS = 4096
_FRAME_HEAD = 4  # bytes: little-endian length of the marshal data that follows


def write_chunked(path: str, fmt: int, owner: str, data: dict) -> bool:
    """:func:`write` for a large dict: a header frame ``(format, owner, item count)``, then the
    items in frames of :data:`CHUNK_ITEMS` (each a marshal dict). Read with
    :func:`read_chunked`; returns whether it worked."""

    def dump(fh) -> None:
        _write_frame(fh, (fmt, os.path.realpath(owner), len(data)))
        items = iter(data.items())
        while batch := dict(islice(items, CHUNK_ITEMS)):
            _write_frame(fh, batch)

    return _write_atomic(path, dump)


def read_chunked(path: str, fmt: int, owner: str) -> dict:
    """What :func:`write_chunked` wrote; empty for anything else (see :func:`read`), including a
    file with fewer items than its header promises."""
    out: dict = {}
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = _read_frame(fh, size)
            if not _is_ours(head, fmt, owner, int):
                return {}
            while (batch := _read_frame(fh, size)) is not None:
                if not isinstance(batch, dict):
                    return {}
                out.update(batch)
    except (OSError, EOFError, ValueError, TypeError, MemoryError):
        return {}
    return out if len(out) == head[2] else {}


def _write_frame(fh, obj) -> None:
    blob = marshal.dumps(obj)
    fh.write(len(blob).to_bytes(_FRAME_HEAD, "little"))
    fh.write(blob)


def _read_frame(fh, file_size: int):
    """The next frame's object; None at the end of the file."""
    head = fh.read(_FRAME_HEAD)
    if not head:
        return None
    size = int.from_bytes(head, "little")
    if len(head) != _FRAME_HEAD or size > file_size - fh.tell():
        raise ValueError("truncated state file")  # or not ours: never read a made-up length
    return marshal.loads(fh.read(size))


def _write_atomic(path: str, dump) -> bool:
    """Run ``dump(file)`` on a temp file beside ``path``, then rename it into place."""
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
                dump(fh)
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
