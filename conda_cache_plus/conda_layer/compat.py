"""conda, imported lazily and feature-detected: what it supports, and the host it provides.

The layers below reach conda only through the :class:`~conda_cache_plus.model.host.CondaHost`
installed here, so the package works (and is tested) where conda cannot be imported.
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


class _CondaHost:
    """The :class:`~conda_cache_plus.model.host.CondaHost` backed by the conda we run in."""

    def context(self):
        return conda_context()

    def match_spec(self, spec: str):
        from conda.models.match_spec import MatchSpec

        return MatchSpec(spec)

    def http_get(self, url: str, headers: dict, timeouts: tuple[float, float]):
        from conda.gateways.connection.session import get_session

        session = get_session(url)
        return session.get(
            url, stream=True, headers=headers, proxies=session.proxies, timeout=timeouts
        )

    def translate_error(self, exc: BaseException, url: str) -> BaseException | None:
        return translate_download_error(exc, url)

    def render_json(self, data) -> None:
        from conda.reporters import render

        render(data)

    def render_text(self, text: str) -> str:
        # conda.reporters.render(text) returns nothing; the private _get_render_func is the one
        # way to get the rendered text, so it is used here alone (every conda we support has it)
        from conda.reporters import _get_render_func

        return _get_render_func()(text)

    def progress_bar(self, description: str, **kwargs):
        from conda.reporters import get_progress_bar

        return get_progress_bar(description, **kwargs)

    def progress_group(self):
        from conda.reporters import get_progress_bar_context_manager

        return get_progress_bar_context_manager()

    def spinner(self, message: str, fail_message: str):
        from conda.reporters import get_spinner

        return get_spinner(message, fail_message)

    def prompt(self, message: str, choices: tuple[str, ...], default: str) -> str:
        from conda.reporters import _get_render_func

        return _get_render_func("prompt")(message, choices=choices, default=default)


def install_host() -> None:
    """Let the layers below ask conda (its settings, MatchSpec, session, reporters): conda is
    running us."""
    from ..model.host import install_host as install

    install(_CondaHost())


def install_host_if_importable() -> None:
    """The standalone CLI: use conda's MatchSpec where conda is importable (and not turned off
    with ``CONDA_CACHE_PLUS_NO_CONDA``), decided, and conda imported, only when first asked."""
    from ..model.host import install_host as install

    install(factory=lambda: _CondaHost() if conda_importable() else None)


def translate_download_error(exc: BaseException, url: str) -> BaseException | None:
    """conda/requests errors as ours, or None when ``exc`` is not one of theirs."""
    from ..exceptions import DownloadError, OfflineError

    try:
        import requests
    except ImportError:
        return None
    try:  # conda.exceptions.OfflineError is newer than conda 24.11
        from conda.exceptions import OfflineError as CondaOfflineError
    except ImportError:
        CondaOfflineError = ()  # isinstance(x, ()) is always False
    if isinstance(exc, CondaOfflineError):
        return OfflineError(url)
    if isinstance(exc, requests.exceptions.SSLError):
        return DownloadError(url, f"SSL error ({exc}); check ssl_verify / the CA bundle")
    if isinstance(exc, requests.exceptions.Timeout):
        return DownloadError(url, f"timed out ({exc})")
    if isinstance(exc, requests.exceptions.RequestException):
        return DownloadError(url, str(exc) or type(exc).__name__)
    try:
        import urllib3
    except ImportError:
        return None
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
        return DownloadError(url, f"timed out ({exc}); can be resumed")
    if isinstance(exc, urllib3.exceptions.HTTPError):
        return DownloadError(url, f"{type(exc).__name__}: {exc}; can be resumed")
    return None
