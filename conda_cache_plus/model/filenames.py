"""Names and paths of a package cache, built in one place.

Nothing else in the package concatenates cache paths: it asks :class:`CacheLayout` for them.
The names follow conda's on-disk protocol (conda's ``conda/core/package_cache_data.py``) so conda,
mamba and we share a cache.
"""

from __future__ import annotations

CONDA_EXT = ".conda"


TARBZ2_EXT = ".tar.bz2"


PACKAGE_EXTENSIONS = (CONDA_EXT, TARBZ2_EXT)


PARTIAL_EXT = ".partial"


HOLD_EXT = ".c~"


MAGIC_FILE = "urls.txt"


LEGACY_URLS_FILE = "urls"


CACHEDIR_TAG = "CACHEDIR.TAG"


CACHEDIR_TAG_CONTENT = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by conda-cache-plus.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)


# Our private area inside a pkgs dir. conda only treats top-level dirs holding info/ as
# packages, so temp extractions and locks kept here are invisible to it.
PRIVATE_DIR = ".conda-cache-plus"


# Top-level names that belong to the cache machinery of conda, mamba or rattler, not packages.
META_NAMES = frozenset(
    {
        MAGIC_FILE,
        LEGACY_URLS_FILE,
        CACHEDIR_TAG,
        PRIVATE_DIR,
        "cache",  # repodata index cache
        ".logs",
        ".trash",
        "pkgs.lock",  # mamba's whole-cache lock
        ".cache.lock",  # rattler's global lock
        ".DS_Store",
    }
)


# mamba >= 2 nests entries under the URL: pkgs/<scheme>/<host>/<channel path>/<subdir>/<pkg>.
URL_SCHEME_DIRS = frozenset({"http", "https", "file", "ftp", "s3", "oci", "gs"})


KNOWN_SUBDIR_PREFIXES = (
    "linux-",
    "osx-",
    "win-",
    "emscripten-",
    "wasi-",
    "zos-",
    "freebsd-",
)


def is_subdir_name(name: str) -> bool:
    return name == "noarch" or name.startswith(KNOWN_SUBDIR_PREFIXES)


def package_extension(name: str) -> str | None:
    """The package extension of ``name`` (case-insensitive, like conda), or None."""
    lower = name.lower()
    for ext in PACKAGE_EXTENSIONS:
        if lower.endswith(ext):
            return ext
    return None


def strip_package_extension(name: str) -> tuple[str, str | None]:
    ext = package_extension(name)
    return (name[: -len(ext)], ext) if ext else (name, None)


def leftover_kind(name: str) -> str | None:
    """What kind of leftover a top-level name is (a crash or Ctrl-C remnant), or None."""
    if name.endswith(PARTIAL_EXT):
        return "partial"
    if name.endswith(HOLD_EXT):
        return "hold"
    if ".conda_trash" in name or name.endswith(".mamba_trash") or name.endswith(".trash"):
        return "trash"
    if name.endswith(".lock"):
        return "lock"
    return None


def split_dist(dist: str) -> tuple[str, str, str] | None:
    """``name-version-build`` → its three parts, or None if it does not look like one."""
    parts = dist.rsplit("-", 2)
    if len(parts) != 3 or not all(parts):
        return None
    return parts[0], parts[1], parts[2]
