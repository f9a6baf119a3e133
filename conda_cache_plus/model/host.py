"""conda, when it hosts us: the one door through which code below the conda layer reaches it.

Only :mod:`conda_cache_plus.conda_layer` imports conda. When conda runs the plugin (``conda
cache``, doctor) or is importable for the standalone CLI, the conda layer installs a
:class:`CondaHost` here (``conda_layer.compat.install_host``); code below asks
:func:`conda_host` and uses conda's answers, or its own defaults when nothing is installed.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs every command its import (bench_startup): checkers only
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Protocol
else:
    Protocol = object


class CondaHost(Protocol):
    """What code below the conda layer may ask of conda."""

    def context(self) -> Any:
        """conda's context: its settings (pkgs_dirs, envs_dirs, timeouts, offline, ...)."""

    def match_spec(self, spec: str) -> Any:
        """conda's ``MatchSpec(spec)``."""

    def http_get(self, url: str, headers: dict, timeouts: tuple[float, float]) -> Any:
        """A streamed GET through conda's session (its auth, proxies and TLS settings)."""

    def translate_error(self, exc: BaseException, url: str) -> BaseException | None:
        """conda's or requests' error as one of ours, or None when it is neither."""

    def render_json(self, data: Any) -> None:
        """Print the verb's JSON document through conda's reporter backend."""

    def render_text(self, text: str) -> str:
        """``text`` as conda's active reporter backend renders it."""

    def progress_bar(self, description: str, **kwargs) -> Any: ...

    def progress_group(self) -> Any: ...

    def spinner(self, message: str, fail_message: str) -> Any: ...

    def prompt(self, message: str, choices: tuple[str, ...], default: str) -> str: ...


_host: CondaHost | None = None
# A host made on first use: the standalone CLI may use conda when it is importable, but must not
# pay for importing conda unless something asks.
_factory: Callable[[], CondaHost | None] | None = None


def conda_host() -> CondaHost | None:
    """The installed conda host, or None when we run without conda."""
    global _host, _factory
    if _factory is not None:
        make, _factory = _factory, None
        _host = make()
    return _host


def require_conda_host() -> CondaHost:
    """The installed conda host; asking for conda's settings without one is a bug of ours."""
    host = conda_host()
    if host is None:
        raise RuntimeError("conda's settings were asked for, but no conda host is installed")
    return host


def install_host(host: CondaHost | None = None, *, factory=None) -> None:
    """Install ``host`` (None: run without conda), or a ``factory`` that makes it on first use."""
    global _host, _factory
    _host, _factory = host, factory
