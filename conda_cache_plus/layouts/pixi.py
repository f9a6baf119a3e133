"""Where pixi and rattler keep their package caches and their environments.

Cache directories, in pixi's order (``pixi_config::get_cache_dir``; rattler's
``rattler_cache::default_cache_dir`` is the last two steps): ``PIXI_CACHE_DIR``, else
``RATTLER_CACHE_DIR``, else ``$XDG_CACHE_HOME/pixi`` when it exists, else the platform cache
directory (``dirs::cache_dir()``: ``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux,
``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%`` on Windows) + ``rattler/cache``. Packages live
in ``<cache dir>/pkgs``. Every candidate is listed with where it came from, the one pixi uses
first.

Environments that link from such a cache: each pixi workspace's ``.pixi/envs/<name>`` (found
under the ``--workspaces`` search roots), ``pixi global`` environments in
``$PIXI_HOME/envs/<name>`` (``~/.pixi``), and ``pixi exec``'s cached environments in
``<cache dir>/cached-envs-v0/<name>``. Environments elsewhere (a detached-environments dir, a
prefix made by py-rattler) are named with ``--env``; the ones nobody names are still seen when
they hard-link the entry (rattler's default), not when they reflink or copy it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping

from ..model.plainclass import FrozenFields
from .rattler_cache import PKGS_SUBDIR

# Said by clean/remove when a rattler cache is involved: what its "in use" can and cannot see.
VISIBILITY_NOTE = (
    "pixi/rattler cache: pixi records no environments; known are pixi global and pixi exec "
    "environments, the workspaces under --workspaces DIR and --env PREFIX. Others are seen "
    "only through hard links (rattler's default); reflinked (copy-on-write) or copied ones "
    "leave no trace: name them with --workspaces or --env"
)
SOURCE_PIXI_GLOBAL = "pixi global"
SOURCE_PIXI_WORKSPACE = "pixi workspace"
SOURCE_PIXI_EXEC = "pixi exec"
CACHED_ENVS_DIR = "cached-envs-v0"
# Never worth descending into while looking for workspaces.
_SKIP_DIRS = frozenset({"node_modules", ".git", ".hg", ".svn", "__pycache__", ".venv", ".tox"})
MAX_WORKSPACE_DEPTH = 6


class CacheDir(FrozenFields):
    """One rattler/pixi cache (not a dataclass: model/plainclass.py says why)."""

    __slots__ = ("root", "source")
    FIELDS = ("root", "source")

    def __init__(self, root: str, source: str):
        object.__setattr__(self, "root", root)  # the rattler/pixi cache root
        object.__setattr__(self, "source", source)  # where it came from, in words

    @property
    def pkgs_dir(self) -> str:
        return os.path.join(self.root, PKGS_SUBDIR)

    def to_json(self) -> dict:
        pkgs = self.pkgs_dir
        exists = os.path.isdir(pkgs)
        return {"path": pkgs, "root": self.root, "source": self.source, "exists": exists}


def platform_cache_dir(environ: Mapping[str, str] | None = None) -> str | None:
    """``dirs::cache_dir()``."""
    env = os.environ if environ is None else environ
    home = env.get("HOME") or os.path.expanduser("~")
    if sys.platform == "darwin":
        return os.path.join(home, "Library", "Caches")
    if sys.platform == "win32":
        return env.get("LOCALAPPDATA") or None
    xdg = env.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return xdg
    return os.path.join(home, ".cache") if home else None


def cache_dirs(environ: Mapping[str, str] | None = None) -> list[CacheDir]:
    """Every rattler/pixi cache root the environment points at, pixi's choice first."""
    env = os.environ if environ is None else environ
    found: list[CacheDir] = []
    for var in ("PIXI_CACHE_DIR", "RATTLER_CACHE_DIR"):
        if env.get(var):
            found.append(CacheDir(os.path.abspath(os.path.expanduser(env[var])), var))
    xdg = env.get("XDG_CACHE_HOME")
    if xdg and os.path.isdir(os.path.join(xdg, "pixi")):
        found.append(CacheDir(os.path.join(xdg, "pixi"), "$XDG_CACHE_HOME/pixi (pixi)"))
    base = platform_cache_dir(env)
    if base:
        default = os.path.join(base, "rattler", "cache")
        found.append(CacheDir(default, "platform cache dir + rattler/cache (default)"))
    out: list[CacheDir] = []
    seen: set[str] = set()
    for c in found:
        if c.root not in seen:
            seen.add(c.root)
            out.append(c)
    return out


def pixi_home(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    if env.get("PIXI_HOME"):
        return os.path.abspath(os.path.expanduser(env["PIXI_HOME"]))
    return os.path.join(env.get("HOME") or os.path.expanduser("~"), ".pixi")


def _env_dirs(parent: str) -> list[str]:
    try:
        with os.scandir(parent) as it:
            return sorted(de.path for de in it if de.is_dir(follow_symlinks=False))
    except OSError:
        return []


def workspace_envs(roots: Iterable[str], max_depth: int = MAX_WORKSPACE_DEPTH) -> list[str]:
    """``<workspace>/.pixi/envs/<env>`` under each search root (the root itself may be a
    workspace). Symlinked directories are not followed, so a search cannot loop."""
    found: list[str] = []
    for root in roots:
        root = os.path.abspath(os.path.expanduser(root))
        stack = [(root, 0)]
        while stack:
            path, depth = stack.pop()
            envs = os.path.join(path, ".pixi", "envs")
            if os.path.isdir(envs):
                found += _env_dirs(envs)
            if depth >= max_depth:
                continue
            try:
                with os.scandir(path) as it:
                    children = [
                        de.path
                        for de in it
                        if de.name not in _SKIP_DIRS
                        and not de.name.startswith(".")
                        and de.is_dir(follow_symlinks=False)
                    ]
            except OSError:
                continue
            stack += [(c, depth + 1) for c in sorted(children, reverse=True)]
    return found


def known_prefixes(
    workspaces: Iterable[str] = (), environ: Mapping[str, str] | None = None
) -> list[tuple[str, str]]:
    """(prefix, source) of every pixi environment we can find without being told."""
    out = [(p, SOURCE_PIXI_GLOBAL) for p in _env_dirs(os.path.join(pixi_home(environ), "envs"))]
    for c in cache_dirs(environ):
        out += [(p, SOURCE_PIXI_EXEC) for p in _env_dirs(os.path.join(c.root, CACHED_ENVS_DIR))]
    out += [(p, SOURCE_PIXI_WORKSPACE) for p in workspace_envs(workspaces)]
    return out
