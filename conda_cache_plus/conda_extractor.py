"""Our extractor as a conda package extractor plugin (conda >= 26.1), behind a setting.

conda picks the extractor of an extension from its plugins sorted by name, the last one winning
(conda-facts §2.5), so the name sorts after conda's own ``conda-package``. Taking over ``.conda``
and ``.tar.bz2`` also makes conda give up its extraction process pool for thread workers; it is
on by default all the same, because conda's own pipeline is faster with it (``conda create`` of
50 packages: 0.80x the time on disk, 0.83x on tmpfs, in every interleaved round; see
docs/benchmarks.md), and it makes conda's extraction atomic and hostile-safe. The
``cache_plus_extractor`` setting turns it off.
"""

from __future__ import annotations

import os

SETTING_NAME = "cache_plus_extractor"
EXTRACTOR_NAME = "conda-package-cache-plus"
EXTENSIONS = [".conda", ".tar.bz2"]
SETTING_DESCRIPTION = (
    "Extract .conda and .tar.bz2 packages with conda-cache-plus's extractor (atomic: a crash "
    "never leaves a half-extracted package; refuses hostile archives) instead of "
    "conda-package-handling."
)


def enabled() -> bool:
    """The setting's value (True unless turned off); False whenever conda's context cannot
    answer, so a broken configuration leaves conda with its own extractor."""
    try:
        from conda.base.context import context

        return bool(getattr(context.plugins, SETTING_NAME, True))
    except Exception:
        return False


def extract(source_full_path, destination_directory) -> None:
    """conda's ``PackageExtract``: ``(archive, destination dir) -> None``."""
    from .exceptions import ArchiveError
    from .extract import extract_atomic

    try:
        extract_atomic(os.fspath(source_full_path), os.fspath(destination_directory))
    except ArchiveError as exc:
        # conda's cache scan deletes archives that raise cph's InvalidArchiveError; keep that.
        try:
            from conda_package_handling.exceptions import InvalidArchiveError
        except ImportError:
            raise
        raise InvalidArchiveError(os.fspath(source_full_path), exc.reason) from exc
