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

It lives in the cache's private area when the cache is writable (it travels with the cache)
and in the user's cache directory otherwise. One file per cache, not per entry: a re-run of an
unchanged cache then costs one read, not one open per entry. marshal, unlike pickle, cannot run
code if someone else wrote the file; a file that does not parse is ignored (it only costs speed).
"""

from __future__ import annotations

import os

from ..gateways import statefile
from ..model.cache_paths import CacheLayout

FORMAT = 2
STATE_NAME = "state.marshal"


def store_dir(pkgs_dir: str, writable: bool | None) -> str:
    from ..layouts.kinds import detect

    # never inside a cache another tool owns the layout of (rattler's): it stays as pixi made it
    if writable and detect(pkgs_dir).record_required:
        return os.path.join(CacheLayout(pkgs_dir).private, f"verify-v{FORMAT}")
    # a directory per cache (not a file): the state file keeps one name wherever it lives
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
    for writable in (True, False):
        directory = store_dir(pkgs_dir, writable)
        entries = load(directory, pkgs_dir)
        if entry in entries:
            del entries[entry]
            save(directory, pkgs_dir, entries)
