"""The cache record: our equivalent of conda's ``PackageCacheRecord``.

A record holds every field of ``info/repodata_record.json`` (unknown keys are kept, so writing a
record back loses nothing) plus where the package lives in the cache. Its identity is conda's:
(channel, subdir, name, version, build_number, build).
"""

from __future__ import annotations

import marshal
import os
import sys

from .filenames import CONDA_EXT, TARBZ2_EXT, split_dist

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Where a record's metadata came from, best first. Only "repodata_record" is complete: the others
# lack fields that come from the channel (sha256, url, channel, ...), as conda's do.
SOURCE_RECORD = "repodata_record"
SOURCE_INDEX = "index_json"
SOURCE_FILENAME = "filename"
# rattler's layout keeps no record: index.json plus the sidecar's sha256 is all it has, and all it
# needs (rattler_cache.py), so such a record is complete for its layout.
SOURCE_RATTLER = "rattler"
COMPLETE_SOURCES = frozenset({SOURCE_RECORD, SOURCE_RATTLER})

# Field types we rely on; a record whose fields have other types is repaired on read
# (the wrong field dropped and a problem noted) rather than crashing a scan.
_STR_FIELDS = (
    "name",
    "version",
    "build",
    "channel",
    "subdir",
    "fn",
    "md5",
    "sha256",
    "url",
    "license",
    "noarch",
    "platform",
    "arch",
)
_INT_FIELDS = ("build_number", "size", "timestamp")
_LIST_FIELDS = ("depends", "constrains", "track_features")


_CHECKED = _STR_FIELDS + _INT_FIELDS + _LIST_FIELDS
_WANTED = (str,) * len(_STR_FIELDS) + (int,) * len(_INT_FIELDS) + (list,) * len(_LIST_FIELDS)
_NONE_TYPE = type(None)
# The types of the checked fields (in _CHECKED's order) of records already found well formed:
# a cache's records share a handful of these, so most records are checked by one set lookup.
_good_shapes: set[tuple] = set()


def sanitize(data: Any, *, intern_keys: bool = True) -> tuple[dict[str, Any], list[str]]:
    """Coerce a parsed JSON record into the shape we rely on, reporting what was wrong.

    The result is ``data`` itself when nothing needs changing and ``intern_keys`` is false (a
    caller that splits the record for the remembered index interns what it keeps).
    """
    if type(data) is dict:
        shape = tuple(map(type, map(data.get, _CHECKED)))
        if shape in _good_shapes or _is_good_shape(shape):
            try:
                # each list field (a list or None by its shape) holds only strings: str.join
                # checks that in C, raising TypeError otherwise
                for key in _LIST_FIELDS:
                    items = data.get(key)
                    if items:
                        _join(items)
            except TypeError:
                return _sanitize_slowly(data)
            if not intern_keys:
                return data, []
            # Interned keys let the remembered index (marshal) store each key once.
            return dict(zip(map(sys.intern, data), data.values(), strict=True)), []
    return _sanitize_slowly(data)


_join = "".join


def _is_good_shape(shape: tuple) -> bool:
    good = all(t is want or t is _NONE_TYPE for t, want in zip(shape, _WANTED, strict=True))
    if good and len(_good_shapes) < 256:
        _good_shapes.add(shape)
    return good


def _sanitize_slowly(data: Any) -> tuple[dict[str, Any], list[str]]:
    """:func:`sanitize` field by field, for a record that is not plainly well formed."""
    if not isinstance(data, dict):
        return {}, [f"metadata is a JSON {type(data).__name__}, not an object"]
    problems = []
    # Interned keys let the remembered index (marshal) store each key once, not once per record.
    clean = {sys.intern(k): v for k, v in data.items()}
    for key in _STR_FIELDS:
        if key in clean and clean[key] is not None and not isinstance(clean[key], str):
            problems.append(f"field {key!r} is {type(clean[key]).__name__}, expected a string")
            del clean[key]
    for key in _INT_FIELDS:
        value = clean.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            if isinstance(value, str) and value.isdigit():
                clean[key] = int(value)
            else:
                problems.append(f"field {key!r} is {type(value).__name__}, expected an integer")
                del clean[key]
    for key in _LIST_FIELDS:
        value = clean.get(key)
        if value is not None and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            problems.append(f"field {key!r} is not a list of strings")
            del clean[key]
    return clean, problems


def channel_name(channel: str | None, url: str | None = None) -> str:
    """A short channel name for display and identity, like conda's canonical name.

    ``https://conda.anaconda.org/conda-forge/linux-64`` and ``conda-forge`` both give
    ``conda-forge``; other URLs keep their host and path without the subdir.
    """
    value = channel or ""
    if not value and url:
        value = url.rsplit("/", 1)[0]
    if not value:
        return "<unknown>"
    if type(value) is not str:
        return _channel_name(value)
    # a cache names a handful of channels, its listing asks once per record: parse each once
    name = _channel_names.get(value)
    if name is None:
        if len(_channel_names) > 4096:
            _channel_names.clear()
        name = _channel_names[value] = _channel_name(value)
    return name


_channel_names: dict[str, str] = {}


def _channel_name(value: str) -> str:
    if "://" not in value:
        return value.rstrip("/")
    scheme, rest = value.split("://", 1)
    if "@" in rest.split("/", 1)[0]:  # never show credentials
        rest = rest.split("@", 1)[1]
    parts = [p for p in rest.split("/") if p]
    if parts and parts[-1].endswith((CONDA_EXT, TARBZ2_EXT)):
        parts = parts[:-1]
    if parts and (parts[-1] == "noarch" or ("-" in parts[-1] and _looks_like_subdir(parts[-1]))):
        parts = parts[:-1]
    if parts and parts[0] in ("conda.anaconda.org", "repo.anaconda.com"):
        parts = parts[1:]
        if parts and parts[0] == "t" and len(parts) > 2:  # token URLs: /t/<token>/<channel>
            parts = parts[2:]
    if not parts:
        return value
    if scheme == "file":
        return "file:///" + "/".join(parts)
    return "/".join(parts) if len(parts) == 1 else f"{scheme}://" + "/".join(parts)


def _looks_like_subdir(name: str) -> bool:
    from .filenames import is_subdir_name

    return is_subdir_name(name)


# The fields a listing needs, kept as a plain tuple in the remembered index so a repeated scan
# does not rebuild a dict per record; the rest of the record is decoded only when asked for.
CORE_FIELDS = (
    "name",
    "version",
    "build",
    "build_number",
    "channel",
    "subdir",
    "fn",
    "url",
    "md5",
    "sha256",
    "size",
    "timestamp",
)
_CORE_INDEX = {k: i for i, k in enumerate(CORE_FIELDS)}


def split_core(data: dict[str, Any]) -> tuple[tuple, bytes]:
    """(core tuple, marshal blob of the other fields) for the remembered index."""
    core = tuple(map(data.get, CORE_FIELDS))
    channel, subdir = core[4], core[5]
    if type(channel) is str and type(subdir) is str:
        # a cache names a handful of channels and subdirs: one string object for each, in
        # memory and in the index (marshal writes an object shared by several entries once)
        core = (*core[:4], _shared(channel), _shared(subdir), *core[6:])
    # interned keys: marshal writes them so, and a decoded record shares them with the others
    rest = {sys.intern(k): v for k, v in data.items() if k not in _CORE_INDEX}
    missing = tuple(k for k in CORE_FIELDS if k not in data)
    return core, marshal.dumps((rest, missing))


def pack_payload(data: dict[str, Any]) -> bytes:
    """A record's data as the remembered index keeps it: one marshal blob of :func:`split_core`'s
    pair, decoded (:func:`unpack_payload`) only when a field is asked for. A scan that only
    counts, sizes or checks entries (``info``, ``clean``'s plans) then makes no object from it."""
    return marshal.dumps(split_core(data))


def unpack_payload(payload: bytes) -> tuple[tuple, bytes]:
    """(core tuple, blob of the other fields) from :func:`pack_payload`'s bytes."""
    return marshal.loads(payload)


_new_object = object.__new__
_SHARED_LIMIT = 4096
_shared_strings: dict[str, str] = {}


def _shared(value: str) -> str:
    """One string object per distinct value (sys.intern without the process-wide table)."""
    got = _shared_strings.get(value)
    if got is None:
        if len(_shared_strings) > _SHARED_LIMIT:
            _shared_strings.clear()
        got = _shared_strings[value] = value
    return got


class PackageCacheRecord:
    """One package in one cache: metadata plus location and state.

    ``data`` holds every field of the record (unknown keys kept). ``entry`` is the extracted
    directory's path relative to the pkgs dir (``zlib-1.2.11-h_3``, or
    ``https/host/channel/linux-64/zlib-1.2.11-h_3`` in mamba's nested layout). ``archives`` maps
    each archive extension present (``.conda``, ``.tar.bz2``) to its size.
    """

    __slots__ = (
        "__dict__",
        "_blob",
        "_core",
        "_data",
        "_payload",
        "archives",
        "entry",
        "has_dir",
        "is_extracted",
        "mtime",
        "pkgs_dir",
        "problems",
        "source",
    )

    def __init__(
        self,
        data: dict[str, Any] | None = None,
        pkgs_dir: str = "",
        entry: str = "",
        archives: dict[str, int] | None = None,
        is_extracted: bool = False,
        has_dir: bool = False,
        source: str = SOURCE_RECORD,
        problems: list[str] | None = None,
        mtime: float | None = None,
        *,
        core: tuple | None = None,
        blob: bytes | None = None,
    ):
        self._data = data if data is not None or core is not None else {}
        self._core = core
        self._blob = blob
        self._payload = None
        self.pkgs_dir = pkgs_dir
        self.entry = entry
        self.archives = archives if archives is not None else {}
        self.is_extracted = is_extracted
        self.has_dir = has_dir
        self.source = source
        self.problems = problems if problems is not None else []
        self.mtime = mtime

    @classmethod
    def lazy(
        cls,
        pkgs_dir: str,
        entry: str,
        archives: dict[str, int],
        core: tuple | None,
        blob: bytes | None,
        source: str,
        problems,
        is_extracted: bool,
        mtime: float | None,
        data: dict[str, Any] | None = None,
    ) -> PackageCacheRecord:
        """A record of an entry with a directory, from the remembered form of its data (the
        core tuple and the marshal blob of :func:`split_core`, decoded only when asked for), or
        from ``data`` itself when given. Made without ``__init__``'s keyword handling: a scan
        makes one per entry."""
        self = _new_object(cls)
        self._data = data
        self._core = core
        self._blob = blob
        self._payload = None
        self.pkgs_dir = pkgs_dir
        self.entry = entry
        self.archives = archives
        self.is_extracted = is_extracted
        self.has_dir = True
        self.source = source
        self.problems = list(problems)
        self.mtime = mtime
        return self

    @classmethod
    def remembered(
        cls,
        pkgs_dir: str,
        entry: str,
        archives: dict[str, int],
        payload: bytes,
        source: str,
        problems,
        is_extracted: bool,
        mtime: float | None,
    ) -> PackageCacheRecord:
        """:meth:`lazy` from :func:`pack_payload`'s bytes: nothing of the data is decoded until
        a field is asked for."""
        self = cls.lazy(
            pkgs_dir, entry, archives, None, None, source, problems, is_extracted, mtime
        )
        self._payload = payload
        return self

    def _unpack(self) -> tuple:
        payload = self._payload
        if payload is None:  # another thread decoded it since this one looked: its result
            return self._core
        core, self._blob = unpack_payload(payload)
        self._core = core  # after _blob, and both before the payload goes: a thread that sees
        self._payload = None  # no payload finds both (memory at 10^5 records: bytes let go)
        return core

    @property
    def data(self) -> dict[str, Any]:
        if self._data is None:
            if self._core is None:
                self._unpack()
            rest, missing = marshal.loads(self._blob) if self._blob else ({}, ())
            data = {k: v for k, v in zip(CORE_FIELDS, self._core, strict=False) if k not in missing}
            data.update(rest)
            self._data = data
        return self._data

    @data.setter
    def data(self, value: dict[str, Any]) -> None:
        self._data = value
        self.__dict__.pop("_channel", None)

    def _get(self, key: str):
        if self._data is None:
            i = _CORE_INDEX.get(key)
            if i is not None:
                return (self._core or self._unpack())[i]
        return self.data.get(key)

    # --- metadata --------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._get("name") or self._dist_part(0)

    @property
    def version(self) -> str:
        return self._get("version") or self._dist_part(1)

    @property
    def build(self) -> str:
        return self._get("build") or self._dist_part(2)

    @property
    def build_number(self) -> int:
        value = self._get("build_number")
        return value if isinstance(value, int) else 0

    @property
    def subdir(self) -> str:
        return self._get("subdir") or ""

    @property
    def url(self) -> str | None:
        return self._get("url")

    @property
    def md5(self) -> str | None:
        return self._get("md5")

    @property
    def sha256(self) -> str | None:
        return self._get("sha256")

    @property
    def size(self) -> int | None:
        """The archive size the channel declared (``size`` in the record)."""
        value = self._get("size")
        return value if isinstance(value, int) else None

    @property
    def timestamp(self) -> int | None:
        value = self._get("timestamp")
        return value if isinstance(value, int) else None

    @property
    def channel(self) -> str:
        # memoised: a listing asks for it several times per record, and it parses a URL
        try:
            return self.__dict__["_channel"]
        except KeyError:
            name = self.__dict__["_channel"] = channel_name(self._get("channel"), self.url)
            return name

    @property
    def fn(self) -> str:
        fn = self._get("fn")
        if fn:
            return fn
        if self.archives:
            return self.basename + next(iter(self.archives))
        return self.basename + CONDA_EXT

    @property
    def dist_str(self) -> str:
        return f"{self.channel}/{self.subdir}::{self.name}-{self.version}-{self.build}"

    def _dist_part(self, index: int) -> str:
        parts = split_dist(self.basename)
        return parts[index] if parts else (self.basename if index == 0 else "")

    # --- identity (conda's _pkey) ------------------------------------------------------------
    @property
    def key(self) -> tuple[str, str, str, str, int, str]:
        return (self.channel, self.subdir, self.name, self.version, self.build_number, self.build)

    # --- location ----------------------------------------------------------------------------
    @property
    def basename(self) -> str:
        return os.path.basename(self.entry)

    @property
    def extracted_package_dir(self) -> str:
        return os.path.join(self.pkgs_dir, self.entry)

    @property
    def package_tarball_full_path(self) -> str:
        """The preferred archive (``.conda`` over ``.tar.bz2``), as conda picks it."""
        for ext in (CONDA_EXT, TARBZ2_EXT):
            if ext in self.archives:
                return self.extracted_package_dir + ext
        return self.extracted_package_dir + (
            TARBZ2_EXT if self.fn.endswith(TARBZ2_EXT) else CONDA_EXT
        )

    def archive_path(self, ext: str) -> str:
        return self.extracted_package_dir + ext

    @property
    def is_fetched(self) -> bool:
        return bool(self.archives)

    @property
    def tarball_basename(self) -> str:
        return os.path.basename(self.package_tarball_full_path)

    @property
    def formats(self) -> list[str]:
        """What is present: ``.conda``, ``.tar.bz2`` and/or ``dir``."""
        found = [ext for ext in (CONDA_EXT, TARBZ2_EXT) if ext in self.archives]
        if self.is_extracted:
            found.append("dir")
        return found

    @property
    def archive_bytes(self) -> int:
        return sum(self.archives.values())

    @property
    def is_complete(self) -> bool:
        return self.source in COMPLETE_SOURCES

    @property
    def is_broken(self) -> bool:
        """A dir is present but unusable (no readable metadata)."""
        return self.has_dir and not self.is_extracted

    def to_json(self) -> dict[str, Any]:
        """The documented ``list --json`` shape (docs/json-schemas.md)."""
        return {
            "name": self.name,
            "version": self.version,
            "build": self.build,
            "build_number": self.build_number,
            "channel": self.channel,
            "subdir": self.subdir,
            "fn": self.fn,
            "url": self.url,
            "md5": self.md5,
            "sha256": self.sha256,
            "size": self.size,
            "timestamp": self.timestamp,
            "pkgs_dir": self.pkgs_dir,
            "entry": self.entry,
            "extracted_package_dir": self.extracted_package_dir,
            "formats": self.formats,
            "archives": {ext: size for ext, size in self.archives.items()},
            "is_extracted": self.is_extracted,
            "is_fetched": self.is_fetched,
            "source": self.source,
            "problems": list(self.problems),
            "mtime": self.mtime,
        }

    def __repr__(self) -> str:
        return f"PackageCacheRecord({self.pkgs_dir!r}, {self.entry!r}, {self.formats})"
