"""A remembered scan of a pkgs dir, so a repeated ``list`` costs one ``stat`` per entry.

Each remembered entry carries the fingerprint (inode, size, mtime_ns, ctime_ns) of the metadata
file it was read from. A scan re-reads an entry whenever that fingerprint differs from the file on
disk, so the index is never trusted over the files. It lives in the user's cache directory, not in
the pkgs dir, so a scan writes nothing into a cache (and works the same for read-only caches).

The file is ``marshal`` data: fast to load and, unlike pickle, unable to run code if someone else
wrote it; written and read in frames (``statefile.write_chunked``), so at 10^5 entries neither
side holds the file's bytes beside the entries.
"""

from __future__ import annotations

from ..gateways import statefile

FORMAT = 7  # 5: hostile names and planted links are leftovers, not entries; 6: in frames;
# 7: a record's data as one payload, decoded when asked for (records.pack_payload)


def index_path(pkgs_dir: str) -> str:
    return statefile.user_state_path("scan", FORMAT, pkgs_dir)


def load(pkgs_dir: str) -> dict:
    return statefile.read_chunked(index_path(pkgs_dir), FORMAT, pkgs_dir)


def save(pkgs_dir: str, entries: dict) -> None:
    """Write atomically; failures are ignored (the index is only a speed-up)."""
    statefile.write_chunked(index_path(pkgs_dir), FORMAT, pkgs_dir, entries)


def forget(pkgs_dir: str) -> None:
    statefile.forget(index_path(pkgs_dir))
