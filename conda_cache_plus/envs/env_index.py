"""A remembered usage scan of one environment, so a repeated ``usage``/``clean`` skips the JSON.

For each environment we keep what ``usage.py`` took from its ``conda-meta``: the listing of
``*.json`` records (keyed by the directory's (inode, mtime_ns, ctime_ns)), each record reduced to
the few fields matching needs (keyed by the record's (inode, size, mtime_ns, ctime_ns)), the
``history`` dists (keyed the same way) and what the sampled linked file showed. Every key is
compared with the file on disk before anything remembered is used, so the index is never
trusted over the files; anything modified within ``RACY_SECONDS`` of being read is not
remembered at all (a change in the same coarse clock tick would keep its fingerprint), the rule
``layouts/conda_pkgs.py`` and git use.

It lives in the user's cache directory, one file per environment, never in the environment.
``marshal``: fast to load and unable to run code if someone else wrote it.
"""

from __future__ import annotations

from ..gateways import statefile

# 2: fingerprints as bytes (usage/env_records.py's record_fp), where 1 had tuples of ints
FORMAT = 2


def index_path(prefix: str) -> str:
    return statefile.user_state_path("usage", FORMAT, prefix)


def load(prefix: str) -> dict:
    return statefile.read(index_path(prefix), FORMAT, prefix)


def save(prefix: str, data: dict) -> None:
    """Write atomically; failures are ignored (the index is only a speed-up)."""
    statefile.write(index_path(prefix), FORMAT, prefix, data)


def forget(prefix: str) -> None:
    statefile.forget(index_path(prefix))
