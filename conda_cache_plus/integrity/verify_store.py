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
"""

from __future__ import annotations

import os

from ..gateways import statefile

FORMAT = 2
STATE_NAME = "state.marshal"


def store_dir(pkgs_dir: str, writable: bool | None = None) -> str:
    """The user's directory of what verify remembers about ``pkgs_dir`` (``writable`` is no
    longer consulted: the state is the user's whatever the cache)."""
    # a directory per cache (not a file): judgement.py keeps its findings beside the state
    return os.path.splitext(statefile.user_state_path("verify", FORMAT, pkgs_dir))[0]


def state_path(directory: str) -> str:
    return os.path.join(directory, STATE_NAME)


def load(directory: str, pkgs_dir: str) -> dict:
    """``{entry: state tuple}`` (see :mod:`.verify`); empty when absent or unusable."""
    return statefile.read(state_path(directory), FORMAT, pkgs_dir)


def save(directory: str, pkgs_dir: str, entries: dict) -> bool:
    """Atomic write; a failure only costs speed next time."""
    return statefile.write(state_path(directory), FORMAT, pkgs_dir, entries)


def forget_entry(pkgs_dir: str, entry: str) -> None:
    """Drop what is remembered about one entry (wherever it is kept). Not needed for safety
    (nothing remembered outlives a changed fingerprint), only to keep the state small."""
    directory = store_dir(pkgs_dir)
    entries = load(directory, pkgs_dir)
    if entry in entries:
        del entries[entry]
        save(directory, pkgs_dir, entries)
