"""Which names may become files in a package cache: the one place that decides.

A package file name comes from a URL, an @EXPLICIT line or a repodata key, that is, from whoever
controls the channel. conda derives the extracted directory by stripping the extension, so
``...conda`` names the directory ``..`` and ``..tar.bz2`` names ``.``: conda's next scan then
treats the cache's parent (or the cache itself) as a package directory and may delete it
(``PackageCacheData.load`` in conda's ``conda/core/package_cache_data.py``). Every name is checked
here before any byte is written, and scans use the same rules to report such entries as hostile
instead of treating them as packages.

Refused: empty names, ``.`` and ``..``, path separators (``/`` and ``\\``), NUL and other control
characters (C0, DEL and C1), names that are not valid UTF-8 (no channel can serve one: repodata is
JSON), and names the file system cannot hold with our suffixes (255 bytes for a path component,
with room for ``.partial`` and ``.lock``).

A name read from the disk that is not UTF-8 arrives here as Python's ``surrogateescape`` form
(each undecodable byte 0xNN as U+DCNN); such a name in a cache is hostile, never a package.
"""

from __future__ import annotations

from ..exceptions import UnsafeNameError
from .filenames import (
    META_NAMES,
    PACKAGE_EXTENSIONS,
    PARTIAL_EXT,
    package_extension,
    strip_package_extension,
)

MAX_COMPONENT_BYTES = 255
# The longest suffix we add to a package file name on disk (``<fn>.partial``, ``<fn>.lock``).
_SUFFIX_ROOM = max(len(PARTIAL_EXT), len(".lock"))


def _is_control(c: str) -> bool:
    """C0 controls, DEL and C1 controls (U+0080-U+009F: some terminals act on them too)."""
    o = ord(c)
    return o < 32 or 0x7F <= o <= 0x9F


def has_control(name: str) -> bool:
    """Whether ``name`` has a control character (C0, DEL or C1); scans ask it of every entry."""
    if name.isascii() and name.isprintable():  # the usual name, answered in C: none of them
        return False
    return any(_is_control(c) for c in name)


def is_valid_unicode(name: str) -> bool:
    """False for a name holding surrogates (bytes that were not UTF-8, read as surrogateescape)."""
    if name.isascii():
        return True
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def component_problem(name: object) -> str | None:
    """Why ``name`` cannot be one path component in the cache, or None when it can."""
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not a string"
    if name in ("", ".", ".."):
        return "is empty, '.' or '..'"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    if has_control(name):
        return "contains NUL or control characters"
    if not is_valid_unicode(name):
        return "is not valid UTF-8"
    size = len(name.encode("utf-8"))
    if size > MAX_COMPONENT_BYTES:
        return f"is {size} bytes long (a file name holds at most {MAX_COMPONENT_BYTES})"
    return None


def package_fn_problem(fn: object) -> str | None:
    """Why ``fn`` cannot be a package archive's file name in the cache, or None."""
    why = component_problem(fn)
    if why:
        return why
    assert isinstance(fn, str)
    if not package_extension(fn):
        return "does not end in .conda or .tar.bz2"
    dist = strip_package_extension(fn)[0]
    if dist in ("", ".", ".."):
        return f"would make the extracted directory {dist or '(empty)'!r}"
    if dist.startswith(".") or dist in META_NAMES:
        # '.name' directories and these names are where conda, mamba, rattler and we keep our
        # own state (.trash, .logs, rattler's temp dirs, our private area, the index cache)
        return f"would make the extracted directory {dist!r}, reserved for the cache's own files"
    if len(fn.encode("utf-8")) + _SUFFIX_ROOM > MAX_COMPONENT_BYTES:
        return f"is too long for the cache (at most {MAX_COMPONENT_BYTES - _SUFFIX_ROOM} bytes)"
    return None


def check_package_fn(fn: object, source: str | None = None) -> str:
    """``fn`` when it is a safe package file name, else :class:`UnsafeNameError`."""
    why = package_fn_problem(fn)
    if why:
        raise UnsafeNameError(str(fn), why, source)
    return fn  # type: ignore[return-value]


def relpath_problem(rel: object) -> str | None:
    """Why a cache-relative path (an entry of mamba's nested layout may have several parts)
    cannot be used, or None."""
    if not isinstance(rel, str) or not rel or rel.startswith(("/", "\\")):
        return "is not a path relative to the cache"
    for part in rel.split("/"):
        why = component_problem(part)
        if why:
            return f"has a part that {why}"
    return None


def check_relpath(rel: object, source: str | None = None) -> str:
    why = relpath_problem(rel)
    if why:
        raise UnsafeNameError(str(rel), why, source)
    return rel  # type: ignore[return-value]


def hostile_entry_problem(name: str) -> str | None:
    """For scans: why a name found in a pkgs dir is hostile (never a package), or None.

    Stricter than ``component_problem`` only where a name would make a scan, conda's included,
    step outside the entry: an archive whose dist is '.', '..' or empty. Merely unusual names
    (long, hidden, odd characters other than control characters) are left to the normal rules.
    A name that is not UTF-8 is hostile too: no channel can have served it, so no tool made it
    as a package, and a record or a JSON document could not carry it faithfully.
    """
    # a scan asks this of every name: the usual one (printable ASCII) is answered without
    # calling the general checks
    if not (name.isascii() and name.isprintable()):
        if has_control(name) or "\\" in name:
            return "contains control characters or a backslash"
        if not is_valid_unicode(name):
            return "is not valid UTF-8"
    elif "\\" in name:
        return "contains control characters or a backslash"
    if not name.lower().endswith(PACKAGE_EXTENSIONS):
        return None
    ext = package_extension(name)
    if ext and strip_package_extension(name)[0] in ("", ".", ".."):
        return f"an archive whose extracted directory would be {name[: -len(ext)] or '(empty)'!r}"
    return None
