"""Repairing an entry of a rattler/pixi cache the way rattler itself would refill it."""

from __future__ import annotations

import os

from ..layouts.rattler_cache import global_lock, read_sidecar, sidecar_of, write_sidecar


def refetch_entry(pkgs_dir: str, entry: str, url: str, sha256: str, run=None) -> None:
    """Re-fetch an entry the way rattler does: download (checked against ``sha256``) and extract
    into a ``.<entry>XXXXXX`` directory of the cache root, then, under the global lock, swap it
    in and bump the sidecar's revision so a running rattler process re-validates the entry."""
    import shutil
    import tempfile

    from ..gateways.download import download, strip_fragment
    from ..gateways.extract import extract_archive

    final = os.path.join(pkgs_dir, entry)
    tmp = tempfile.mkdtemp(prefix=f".{entry}", dir=pkgs_dir)
    try:
        archive = os.path.join(tmp, strip_fragment(url).rsplit("/", 1)[-1])
        download(url, archive, sha256=sha256, run=run, record_url=False)
        new = os.path.join(tmp, "new")
        extract_archive(archive, new)
        os.unlink(archive)
        with global_lock(pkgs_dir):
            side = read_sidecar(sidecar_of(final))
            if os.path.lexists(final):
                os.rename(final, os.path.join(tmp, "old"))
            os.rename(new, final)
            write_sidecar(sidecar_of(final), (side.revision if side else 0) + 1, sha256)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
