"""Setting up a pkgs dir so conda, mamba and we all recognise it as a writable package cache."""

from __future__ import annotations

import os

from ..model.cache_paths import CacheLayout
from ..model.filenames import CACHEDIR_TAG_CONTENT, PRIVATE_DIR
from .safefs import check_private_dir


def _touch(path: str) -> bool:
    """Create ``path`` empty if missing (never truncating it); True if it was created."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def ensure_cache_dir(layout: CacheLayout) -> bool:
    """Make ``layout.root`` a package cache: ``urls.txt`` (conda's magic file), the legacy empty
    ``urls``, and our private tmp area. Idempotent; returns True when the cache was initialised
    by this call, and only then writes ``CACHEDIR.TAG`` (backup tools skip tagged dirs, which
    should not change under an existing cache the user already backs up)."""
    os.makedirs(layout.root, exist_ok=True)
    created = _touch(layout.urls_txt)
    _touch(layout.legacy_urls)
    if created and not os.path.exists(layout.cachedir_tag):
        tmp = f"{layout.cachedir_tag}.{os.getpid()}.tmp"
        with open(tmp, "w") as fh:
            fh.write(CACHEDIR_TAG_CONTENT)
        os.replace(tmp, layout.cachedir_tag)  # readers never see a half-written tag
    # our private dirs are created and checked without following a planted link (safefs)
    check_private_dir(layout.root, PRIVATE_DIR, "tmp")
    # created group-writable where the cache is (safefs.shared_bits), whatever our umask
    check_private_dir(layout.root, PRIVATE_DIR, "locks")
    return created
