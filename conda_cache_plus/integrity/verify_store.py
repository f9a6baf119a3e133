"""What verify remembers about a cache, so a re-run re-checks only what changed.

One ``marshal`` file per cache maps each entry to what its last check established:

- the fingerprints (inode, size, mtime_ns, ctime_ns) of the entry's metadata files, and the
  check plan parsed from them (the paths of ``paths.json`` with their types, sizes and hashes,
  and the record). The plan is reused only while every metadata fingerprint is unchanged, so an
  edited, replaced or deleted ``paths.json`` is parsed again;
- the fingerprint of every file that passed, and whether it passed a hash check. A re-run still
  ``lstat``s every file and skips one only when its fingerprint is exactly the remembered one:
  the state never stands in for the files, it only saves reading them again;
- for archives and symlink targets, the fingerprint at which they last hashed right.

It lives in the user's cache directory (``$XDG_CACHE_HOME/conda-cache-plus``), for every cache
(issue 24): a cache may be shared, and what one user remembers must never make another user's
check skip a file (whoever may write a shared cache could otherwise write "this file hashed
right" for a file they changed), nor should a check write into the cache it checks. Each user's
first ``--full`` of a shared cache hashes everything. One file per cache, not per entry: a
re-run of an unchanged cache then costs one read, not one open per entry. marshal, unlike
pickle, cannot run code; a file that does not parse is ignored (it only costs speed).

Each entry's state stays in the file's form, a ``bytes`` of marshal, until that entry is
checked (:func:`decode`), and an entry whose state did not change is written back as the same
bytes: loaded whole as objects, the state of 10^5 entries was about 50 objects an entry and the
largest part of verify's peak memory. The file is written in frames
(:func:`~..gateways.statefile.write_chunked`), so neither reading nor writing holds the whole
file beside its entries. Each entry's bytes carry their CRC-32: bytes damaged on disk, or that
do not decode to a state of the right shape, read as nothing remembered, and that entry is
checked in full, never skipped.
"""

from __future__ import annotations

import marshal
import os
from zlib import crc32

from ..gateways import statefile

# 3: {entry: marshal bytes of its state}, framed; 2 was {entry: state tuple}, one marshal.
# The format is in the file's header: a file of another format reads as nothing remembered.
FORMAT = 3
STATE_NAME = "state.marshal"
# The directory keeps the name it had at format 2, whatever the state's format: judgement.py
# keeps its findings beside the state (what a --full run found, shown by later fast runs until
# the path changes), and a new state format must not lose them.
DIR_FORMAT = 2


def store_dir(pkgs_dir: str, writable: bool | None = None) -> str:
    """The user's directory of what verify remembers about ``pkgs_dir`` (``writable`` is no
    longer consulted: the state is the user's whatever the cache)."""
    # a directory per cache (not a file): judgement.py keeps its findings beside the state
    return os.path.splitext(statefile.user_state_path("verify", DIR_FORMAT, pkgs_dir))[0]


def state_path(directory: str) -> str:
    return os.path.join(directory, STATE_NAME)


def load(directory: str, pkgs_dir: str) -> dict:
    """``{entry: encoded state}`` (:func:`decode` each when its entry is checked); empty when
    absent or unusable."""
    return statefile.read_chunked(state_path(directory), FORMAT, pkgs_dir)


def save(directory: str, pkgs_dir: str, entries: dict) -> bool:
    """Atomic write of ``{entry: encoded state}``; a failure only costs speed next time."""
    return statefile.write_chunked(state_path(directory), FORMAT, pkgs_dir, entries)


def encode(state: tuple) -> bytes:
    blob = marshal.dumps(state)
    return crc32(blob).to_bytes(4, "little") + blob


# An entry's state (tree.py): (meta fingerprints, plan, file fingerprints, hashed flags,
# {link: (target, fingerprint)}, {archive fn: (fingerprint, algorithm)}); the plan is
# metadata.Plan.to_state(), whose 4th to 6th items (files, sizes, shas) align with the
# fingerprints and flags.
_SHAPE = (tuple, tuple, list, list, dict, dict)
_PLAN_SHAPE = (str, dict, str, list, list, list, list, list, list, list, int)


def decode(blob) -> tuple | None:
    """The state :func:`encode` made, or None when ``blob`` is not one (a damaged or foreign
    file): its entry is then checked as if nothing were remembered."""
    if not isinstance(blob, bytes):
        return None
    body = memoryview(blob)[4:]
    if blob[:4] != crc32(body).to_bytes(4, "little"):
        return None
    try:
        state = marshal.loads(body)
    except (EOFError, ValueError, TypeError):
        return None
    if not (
        isinstance(state, tuple)
        and len(state) == len(_SHAPE)
        and all(isinstance(x, t) for x, t in zip(state, _SHAPE, strict=True))
    ):
        return None
    plan, fps, hashed = state[1], state[2], state[3]
    if not (
        len(plan) == len(_PLAN_SHAPE)
        and all(isinstance(x, t) for x, t in zip(plan, _PLAN_SHAPE, strict=True))
        and len(fps) == len(hashed) == len(plan[3]) == len(plan[4]) == len(plan[5])
    ):
        return None
    return state


def forget_entry(pkgs_dir: str, entry: str) -> None:
    """Drop what is remembered about one entry (wherever it is kept). Not needed for safety
    (nothing remembered outlives a changed fingerprint), only to keep the state small."""
    directory = store_dir(pkgs_dir)
    entries = load(directory, pkgs_dir)
    if entry in entries:
        del entries[entry]
        save(directory, pkgs_dir, entries)
