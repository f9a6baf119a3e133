"""The only module that imports conda, always lazily, with feature detection.

Everything else asks here whether conda is present and what it supports, so the package works
(and is tested) where conda cannot be imported.
"""

from __future__ import annotations

import os
from functools import cache

# Set to 1 to make the standalone CLI ignore an importable conda (used by tests and by users who
# want the conda-less behaviour on a machine that has conda).
NO_CONDA_ENV = "CONDA_CACHE_PLUS_NO_CONDA"


@cache
def conda_importable() -> bool:
    if os.environ.get(NO_CONDA_ENV, "") not in ("", "0"):
        return False
    try:
        import conda.base.context  # noqa: F401
    except Exception:
        return False
    return True


def conda_context():
    from conda.base.context import context

    return context


def conda_version() -> str | None:
    try:
        import conda

        return conda.__version__
    except Exception:
        return None


@cache
def conda_version_tuple() -> tuple[int, ...]:
    version = conda_version() or "0"
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def health_check_has_fixer() -> bool:
    """conda >= 26.1: ``CondaHealthCheck`` takes ``fixer``, ``summary`` and ``fix``."""
    try:
        import dataclasses

        from conda.plugins.types import CondaHealthCheck

        return "fixer" in {f.name for f in dataclasses.fields(CondaHealthCheck)}
    except Exception:
        return False


def has_reporter_backends() -> bool:
    try:
        from conda.plugins.types import CondaReporterBackend  # noqa: F401
    except Exception:
        return False
    return True


def has_package_extractors() -> bool:
    try:
        from conda.plugins.types import CondaPackageExtractor  # noqa: F401
    except Exception:
        return False
    return True


def match_spec(spec: str):
    """conda's MatchSpec for ``spec``, or None when conda is not importable."""
    if not conda_importable():
        return None
    from conda.models.match_spec import MatchSpec

    return MatchSpec(spec)
