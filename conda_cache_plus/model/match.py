"""Matching cache records against package specs.

Under conda, conda's own ``MatchSpec`` decides (``conda cache list "numpy>=2"``). Without conda we
understand the common forms: ``name``, name globs (``num*``), ``channel::name``, ``name=1.2``,
``name=1.2=build*``, ``name==1.2``, ``name 1.2 build``, and comparisons joined by ``,`` (and) or
``|`` (or): ``name>=1.2,<2``. Versions compare like conda's ``VersionOrder``
and versions match like its ``VersionSpec`` (both in :mod:`.versions`).
"""

from __future__ import annotations

import fnmatch
import re

from ..exceptions import InvalidSpecError
from .host import conda_host, require_conda_host
from .versions import (
    InvalidVersion,
    version_compare,
    version_matches,
    version_sort_keys,
    version_spec,
)

__all__ = ["SpecMatcher", "match_any", "matchers", "version_compare", "version_sort_keys"]

_OPS = ("==", "!=", ">=", "<=", "~=", ">", "<", "=")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.*?\[\]-]+$")


def _match_version(version: str, constraint: str) -> bool:
    return version_matches(version, constraint)


_DIST_RE = re.compile(r"^[A-Za-z0-9_.+-]+-[^-\s=<>!~*?\[\],|]+-[^-\s=<>!~*?\[\],|]+$")
_ARCHIVE_EXTS = (".conda", ".tar.bz2")


def _innermost(message: str, spec: str) -> str:
    """conda wraps its reason in "Invalid spec 'X': " once per parsing layer; say it once."""
    prefix = f"Invalid spec '{spec}': "
    while message.startswith(prefix):
        message = message[len(prefix) :]
    return message


def _strip_archive(name: str) -> str:
    for ext in _ARCHIVE_EXTS:
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def _looks_like_path(spec: str) -> bool:
    if "::" in spec:
        return False
    import os

    return spec.startswith(("/", "./", "../", "~")) or (
        os.sep in spec and os.path.exists(os.path.expanduser(spec))
    )


class SpecMatcher:
    """``SpecMatcher(spec).match(record)``; conda's MatchSpec when conda is importable.

    What every verb prints is accepted too: an entry's name (``demo-lib-1.0-0``, also with an
    archive extension), with a channel (``conda-forge::demo-lib-1.0-0``, or the full
    ``channel/subdir::…`` of ``dist_str``), and an entry's path (its directory or archive).
    """

    def __init__(self, spec: str, *, use_conda: bool | None = None):
        self.spec = spec.strip()
        if not self.spec:
            raise InvalidSpecError(spec, "empty")
        self._conda = None
        self.path: str | None = None
        self.dist: str | None = None
        self.dist_channel: str | None = None
        if _looks_like_path(self.spec):
            import os

            full = os.path.realpath(os.path.abspath(os.path.expanduser(self.spec)))
            self.path = _strip_archive(full)
            self.name_glob = "*"
            return
        channel, _, bare = self.spec.rpartition("::")
        if _DIST_RE.match(_strip_archive(bare)):
            self.dist = _strip_archive(bare)
            self.dist_channel = channel or None
        host = conda_host()
        if use_conda is None:
            use_conda = host is not None
        try:
            if use_conda:
                try:
                    self._conda = require_conda_host().match_spec(self.spec)
                except Exception as exc:
                    raise InvalidSpecError(spec, _innermost(str(exc), self.spec)) from None
                self.name_glob = str(self._conda.get_exact_value("name") or self._conda.name or "*")
            else:
                self._parse()
        except InvalidSpecError:
            if self.dist is None:
                raise
            self._conda = None  # only an entry name: match it as one
            self.name_glob = None

    def _parse(self) -> None:
        spec = self.spec
        self.channel = None
        if "::" in spec:
            self.channel, spec = spec.split("::", 1)
        self.build = None
        if "[" in spec:
            raise InvalidSpecError(self.spec, "bracket syntax needs conda's MatchSpec")
        m = re.match(r"^([^\s=<>!~]+)\s*(.*)$", spec)
        if not m or not _NAME_RE.match(m.group(1)):
            raise InvalidSpecError(self.spec, "expected a package name first")
        self.name_glob, rest = m.group(1), m.group(2).strip()
        self.version = None
        if rest:
            if (" " in rest and not any(rest.startswith(o) for o in _OPS[:-1])) or (
                " " in rest and rest.split()[0][:1].isdigit()
            ):
                pieces = rest.split()
                self.version = pieces[0]
                self.build = pieces[1] if len(pieces) > 1 else None
            elif rest.startswith("=") and not rest.startswith("=="):
                pieces = rest[1:].split("=", 1)
                # conda: name=1.2 is 1.2.*, but name=1.2=build is exactly 1.2
                exact = len(pieces) > 1
                self.version = (pieces[0] if exact else "=" + pieces[0]) if pieces[0] else None
                self.build = pieces[1] if exact else None
            else:
                self.version = rest.replace(" ", "")
        if self.version and self.version != "*":
            try:
                version_spec(self.version)
            except InvalidVersion as exc:
                raise InvalidSpecError(self.spec, exc.reason) from None

    def _match_dist(self, record) -> bool:
        if record.basename != self.dist:
            return False
        if not self.dist_channel:
            return True
        want = self.dist_channel.rstrip("/")
        channel = record.channel
        subdir = getattr(record, "subdir", "") or ""
        return want in (
            channel,
            channel.rstrip("/").rsplit("/", 1)[-1],
            f"{channel}/{subdir}",
            f"{channel.rstrip('/').rsplit('/', 1)[-1]}/{subdir}",
        )

    def match(self, record) -> bool:
        if self.path is not None:
            import os

            return os.path.realpath(record.extracted_package_dir) == self.path
        if self.dist is not None and self._match_dist(record):
            return True
        if self.name_glob is None:
            return False
        if not fnmatch.fnmatchcase(record.name, self.name_glob):
            return False
        if self._conda is not None:
            return self._match_conda(record)
        if self.channel and self.channel not in (record.channel, record.channel.rsplit("/", 1)[-1]):
            return False
        if self.version and not _match_version(record.version, self.version):
            return False
        return not (self.build and not fnmatch.fnmatchcase(record.build, self.build))

    def _match_conda(self, record) -> bool:
        data = dict(record.data)
        data.setdefault("name", record.name)
        data.setdefault("version", record.version)
        data.setdefault("build", record.build)
        data.setdefault("build_number", record.build_number)
        data.setdefault("channel", record.data.get("channel") or record.channel)
        try:
            return bool(self._conda.match(data))
        except Exception:
            # A record conda cannot model (missing fields): compare what we can.
            return fnmatch.fnmatchcase(record.name, self.name_glob)


def matchers(specs: list[str] | None) -> list[SpecMatcher]:
    return [SpecMatcher(s) for s in (specs or [])]


def match_any(record, specs: list[SpecMatcher]) -> bool:
    return not specs or any(m.match(record) for m in specs)
