"""Where the package caches are, with and without conda.

Order (first that gives anything wins; documented in README "Configuration"):

1. ``--pkgs-dir DIR`` on the command line (repeatable);
2. under conda: ``context.pkgs_dirs`` (which already folds in ``CONDA_PKGS_DIRS`` and .condarc);
3. without conda: ``CONDA_PKGS_DIRS`` (comma-separated, like conda), then ``pkgs_dirs`` from the
   usual .condarc files (higher-priority files first, like conda's sequence merge), then conda's
   defaults: ``<root prefix>/pkgs`` and ``~/.conda/pkgs``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping


def expand_path(path: str) -> str:
    return os.path.abspath(os.path.expandvars(os.path.expanduser(path.strip())))


def dedupe_paths(paths: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for p in paths:
        if p and p.strip():
            seen.setdefault(expand_path(p), None)
    return list(seen)


def root_prefix(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    for var in ("CONDA_ROOT", "MAMBA_ROOT_PREFIX"):
        if env.get(var):
            return expand_path(env[var])
    if env.get("CONDA_EXE"):
        # <root>/bin/conda or <root>/condabin/conda
        return os.path.dirname(os.path.dirname(expand_path(env["CONDA_EXE"])))
    return sys.prefix


def condarc_files(environ: Mapping[str, str] | None = None) -> list[str]:
    """conda's search path for .condarc, lowest priority first."""
    env = os.environ if environ is None else environ
    home = os.path.expanduser("~")
    root = root_prefix(env)
    xdg = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    candidates = [
        "/etc/conda/.condarc",
        "/etc/conda/condarc",
        "/etc/conda/condarc.d/",
        "/var/lib/conda/.condarc",
        "/var/lib/conda/condarc",
        "/var/lib/conda/condarc.d/",
        os.path.join(root, ".condarc"),
        os.path.join(root, "condarc"),
        os.path.join(root, "condarc.d/"),
        os.path.join(xdg, "conda", ".condarc"),
        os.path.join(xdg, "conda", "condarc"),
        os.path.join(xdg, "conda", "condarc.d/"),
        os.path.join(home, ".config", "conda", ".condarc"),
        os.path.join(home, ".conda", ".condarc"),
        os.path.join(home, ".conda", "condarc"),
        os.path.join(home, ".conda", "condarc.d/"),
        os.path.join(home, ".condarc"),
    ]
    if env.get("CONDA_PREFIX"):
        candidates += [
            os.path.join(env["CONDA_PREFIX"], ".condarc"),
            os.path.join(env["CONDA_PREFIX"], "condarc"),
            os.path.join(env["CONDA_PREFIX"], "condarc.d/"),
        ]
    if env.get("CONDARC"):
        candidates.append(expand_path(env["CONDARC"]))
    files: list[str] = []
    for cand in _dedupe_keep_slash(candidates):
        if cand.endswith("/"):
            try:
                names = sorted(os.listdir(cand))
            except OSError:
                continue
            files += [os.path.join(cand, n) for n in names if n.endswith((".yml", ".yaml"))]
        elif os.path.isfile(cand):
            files.append(cand)
    return files


def _dedupe_keep_slash(paths: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for p in paths:
        seen.setdefault(p, None)
    return list(seen)


def read_condarc_list(path: str, key: str) -> list[str] | None:
    """The list under ``key`` in a .condarc file, or None when the key is absent.

    Uses a YAML library when one is importable; otherwise understands the two forms a
    ``pkgs_dirs`` entry takes in practice (a block list and a flow list). A file that cannot be
    read or parsed is skipped, as conda would warn and go on.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError):
        return None
    try:
        import yaml  # type: ignore[import-untyped]

        data = yaml.safe_load(text)
        if isinstance(data, dict):
            value = data.get(key)
            if isinstance(value, str):
                return [value]
            if isinstance(value, list):
                return [str(v) for v in value if v is not None]
            return None
        return None
    except ImportError:
        pass
    except Exception:  # PyYAML raises YAMLError, ValueError (a bad date), RecursionError (nesting)
        return None
    return _parse_simple_yaml_list(text, key)


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _strip_comment(line: str) -> str:
    if " #" in line:
        line = line.split(" #", 1)[0]
    return line.rstrip()


def _parse_simple_yaml_list(text: str, key: str) -> list[str] | None:
    lines = text.splitlines()
    for i, raw in enumerate(lines):
        line = _strip_comment(raw)
        if not line.startswith(key + ":"):
            continue
        rest = line[len(key) + 1 :].strip()
        if rest.startswith("["):
            inner = rest.strip("[]")
            return [_unquote(v) for v in inner.split(",") if v.strip()]
        if rest:
            return [_unquote(rest)]
        items = []
        for follow in lines[i + 1 :]:
            stripped = _strip_comment(follow).strip()
            if not stripped:
                continue
            if stripped.startswith("- "):
                items.append(_unquote(stripped[2:]))
            elif follow[:1] in (" ", "\t"):
                continue
            else:
                break
        return items
    return None


def default_pkgs_dirs(environ: Mapping[str, str] | None = None) -> list[str]:
    return dedupe_paths(
        [os.path.join(root_prefix(environ), "pkgs"), os.path.join("~", ".conda", "pkgs")]
    )


def pkgs_dirs_without_conda(environ: Mapping[str, str] | None = None) -> tuple[list[str], str]:
    """The pkgs dirs and a word saying where they came from."""
    env = os.environ if environ is None else environ
    if env.get("CONDA_PKGS_DIRS"):
        return dedupe_paths(env["CONDA_PKGS_DIRS"].split(",")), "CONDA_PKGS_DIRS"
    merged: list[str] = []
    # Sequences from higher-priority files come first (conda's merge order).
    for path in reversed(condarc_files(env)):
        value = read_condarc_list(path, "pkgs_dirs")
        if value:
            merged += value
    if merged:
        return dedupe_paths(merged), "condarc"
    return default_pkgs_dirs(env), "defaults"


def user_cache_dir() -> str:
    """Where we keep state for caches we may not write to (scan indexes, verify fingerprints)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "conda-cache-plus")
