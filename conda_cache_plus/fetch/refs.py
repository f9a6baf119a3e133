"""Package references: from @EXPLICIT files, URLs and repodata, with their checksums."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import urllib.parse
from dataclasses import dataclass

from ..exceptions import (
    InputError,
    InvalidSpecError,
)
from ..gateways.download import (
    path_to_url,
    read_url_bytes,
    strip_fragment,
)
from ..model.filenames import package_extension, strip_package_extension
from ..model.names import check_package_fn, package_fn_problem

_HEX32 = re.compile(r"[0-9a-fA-F]{32}")


_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


# -- references ---------------------------------------------------------------------------------
@dataclass
class PackageRef:
    """One package to have in the cache: where it comes from and what it must hash to."""

    url: str
    fn: str
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None
    extra: dict | None = None  # further record fields (from repodata), written into the record
    refused: str | None = None  # why this reference is not fetched at all (checked up front)

    @property
    def dist(self) -> str:
        return strip_package_extension(self.fn)[0]

    @property
    def ext(self) -> str:
        return package_extension(self.fn) or ""

    def to_json(self) -> dict:
        return {
            "url": self.url,
            "fn": self.fn,
            "md5": self.md5,
            "sha256": self.sha256,
            "size": self.size,
        }


def _parse_fragment(frag: str, line: str) -> dict:
    frag = frag.strip()
    for prefix in ("sha256:", "sha256="):
        if frag.lower().startswith(prefix):
            value = frag[len(prefix) :]
            if not _HEX64.fullmatch(value):
                raise InvalidSpecError(line, "the sha256 after '#' is not 64 hex digits")
            return {"sha256": value.lower()}
    for prefix in ("md5:", "md5="):
        if frag.lower().startswith(prefix):
            value = frag[len(prefix) :]
            if not _HEX32.fullmatch(value):
                raise InvalidSpecError(line, "the md5 after '#' is not 32 hex digits")
            return {"md5": value.lower()}
    if _HEX64.fullmatch(frag):
        return {"sha256": frag.lower()}
    if _HEX32.fullmatch(frag):
        return {"md5": frag.lower()}
    raise InvalidSpecError(line, f"cannot read the checksum {frag!r} after '#'")


def ref_from_url(line: str, source: str | None = None) -> PackageRef:
    """A package URL (or local path), optionally with ``#md5``, ``#sha256``, ``#sha256:...``.
    ``source`` names where the line came from (an @EXPLICIT file) in errors."""
    text = line.strip()
    url, _, frag = text.partition("#")
    if "://" not in url:
        url = path_to_url(os.path.expanduser(url))
    try:
        path = urllib.parse.urlsplit(url).path
    except ValueError as exc:  # e.g. "Invalid IPv6 URL"
        raise InvalidSpecError(text, f"not a valid URL ({exc})") from None
    fn = urllib.parse.unquote(path.rstrip("/").rsplit("/", 1)[-1])
    if not package_extension(fn):
        raise InvalidSpecError(text, "not a package URL (must end in .conda or .tar.bz2)")
    check_package_fn(fn, source or text)  # before anything is written (names.py)
    checks = _parse_fragment(frag, text) if frag else {}
    return PackageRef(url=url, fn=fn, **checks)


def refs_from_urls(urls) -> list[PackageRef]:
    return [ref_from_url(u) for u in urls]


def parse_explicit(path_or_text: str) -> list[PackageRef]:
    """The packages of an ``@EXPLICIT`` file (a path, or the text itself).

    Reads what ``conda list --explicit [--md5|--sha256]`` and conda-lock's explicit render
    write: comments, the ``@EXPLICIT`` marker, then one URL per line with an optional checksum.
    """
    source = None
    if "\n" not in path_or_text and os.path.isfile(path_or_text):
        source = path_or_text
        text = read_text_file(path_or_text, "an @EXPLICIT file")
    else:
        text = path_or_text
    refs = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith("@"):
            continue
        refs.append(ref_from_url(line, source))
    return refs


def read_text_file(path: str, what: str) -> str:
    """A small UTF-8 input file, or a one-line InputError naming it."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise InputError(path, f"cannot read {what}: {exc.strerror or exc}") from None
    return decode_utf8(raw, path, what)


def decode_utf8(raw: bytes, source: str, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            source, f"{what} must be UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        ) from None


def load_repodata(source: str, run=None) -> tuple[dict, str]:
    """(repodata, base URL of its packages) from a file path or URL of a ``repodata.json``."""
    url = source if "://" in source else path_to_url(os.path.expanduser(source))
    raw = read_url_bytes(url, run)
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InputError(source, f"not a repodata.json ({str(exc) or 'nested too deeply'})")
    if not isinstance(data, dict):
        raise InputError(source, "not a repodata.json (not a JSON object)")
    info = data.get("info")
    if info is not None and not isinstance(info, dict):
        raise InputError(source, "not a repodata.json ('info' is not an object)")
    base = (info or {}).get("base_url") or strip_fragment(url).rsplit("/", 1)[0]
    if not isinstance(base, str):
        raise InputError(source, "not a repodata.json ('info.base_url' is not a string)")
    return data, base.rstrip("/")


def _repodata_entry_problem(fn: str, rec: dict) -> str | None:
    """Why a repodata entry cannot be fetched (checked before anything is written), or None."""
    why = package_fn_problem(fn)
    if why:
        return f"unsafe package file name: {why}"
    for key, pattern, digits in (("sha256", _HEX64, 64), ("md5", _HEX32, 32)):
        value = rec.get(key)
        if value is not None and not (isinstance(value, str) and pattern.fullmatch(value)):
            return f"its {key} is not {digits} hex digits: {str(value)[:80]!r}"
    return None


class _RepodataRecord:
    """A repodata entry as :class:`~.match.SpecMatcher` sees a record, so names, globs and
    MatchSpecs (``'demo-lib>=1.1'``) select from a repodata exactly as from a cache."""

    def __init__(self, fn: str, rec: dict, subdir: str | None):
        self.fn = fn
        self.data = rec
        self.name = str(rec.get("name") or "")
        self.version = str(rec.get("version") or "")
        self.build = str(rec.get("build") or "")
        self.build_number = rec.get("build_number") or 0
        self.subdir = rec.get("subdir") or subdir or ""
        self.channel = str(rec.get("channel") or "")
        self.basename = strip_package_extension(fn)[0]
        self.extracted_package_dir = self.basename


def _pick_format(fns: list[str]) -> str:
    """One archive per package, as conda picks: the ``.conda`` when the repodata has both."""
    return min(fns, key=lambda fn: (not fn.endswith(".conda"), fn))


def refs_from_repodata(repodata: dict, base_url: str, patterns: list[str]) -> list[PackageRef]:
    """Entries of a repodata selected by each pattern: a file name (that archive), or a
    ``name-version-build``, name, glob or MatchSpec (the ``.conda`` of each matching package,
    else its ``.tar.bz2``: never both into one entry). Every pattern must match something."""
    from ..model.match import SpecMatcher

    entries: dict[str, dict] = {}
    for key in ("packages", "packages.conda"):
        group = repodata.get(key) or {}
        if not isinstance(group, dict):
            continue
        for fn, rec in group.items():
            if isinstance(rec, dict):
                entries[fn] = rec
    info = repodata.get("info")
    subdir = info.get("subdir") if isinstance(info, dict) else None
    records = {fn: _RepodataRecord(fn, rec, subdir) for fn, rec in entries.items()}
    named: dict[str, str] = {}  # dist -> the archive a pattern named by its file name
    picked: dict[str, list[str]] = {}  # dist -> archives a name/glob/spec selected
    for pattern in patterns:
        if package_extension(pattern):  # an archive named: that format, or nothing
            exact = [fn for fn in entries if fnmatch.fnmatchcase(fn, pattern)]
            if not exact:
                raise InvalidSpecError(pattern, "matches no package in the repodata")
            for fn in exact:
                named.setdefault(records[fn].basename, fn)
            continue
        hits = [
            fn
            for fn, r in records.items()
            if fnmatch.fnmatchcase(r.basename, pattern) or r.name == pattern
        ]
        if not hits:
            try:
                matcher = SpecMatcher(pattern)
            except InvalidSpecError:
                matcher = None
            if matcher is not None:
                hits = [fn for fn, r in records.items() if matcher.match(r)]
        if not hits:
            raise InvalidSpecError(pattern, "matches no package in the repodata")
        for fn in hits:
            picked.setdefault(records[fn].basename, []).append(fn)
    chosen = dict(named)
    for dist, fns in picked.items():
        chosen.setdefault(dist, _pick_format(fns))
    out: list[PackageRef] = []
    for fn in sorted(chosen.values()):
        rec = dict(entries[fn])
        why = _repodata_entry_problem(fn, rec)
        if why:
            # refused here, reported with the results; the other entries are still fetched
            out.append(
                PackageRef(url=f"{base_url}/{urllib.parse.quote(fn, safe='')}", fn=fn, refused=why)
            )
            continue
        if subdir and not rec.get("subdir"):
            rec["subdir"] = subdir
        size = rec.get("size")
        out.append(
            PackageRef(
                url=f"{base_url}/{urllib.parse.quote(fn)}",
                fn=fn,
                md5=rec.get("md5"),
                sha256=rec.get("sha256"),
                size=size if isinstance(size, int) else None,
                extra=rec,
            )
        )
    return out
