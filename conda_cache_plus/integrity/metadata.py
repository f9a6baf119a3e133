"""An entry's expected contents: parsed from info/paths.json (or the legacy info/files) into a
plan of paths, types, sizes, hashes and link targets."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

from ..layouts.rattler_cache import has_sidecar
from ..model.filenames import CONDA_EXT, TARBZ2_EXT
from .archive_facts import (
    DIRECTORY,
    HARDLINK,
    SOFTLINK,
    all_safe,
    archive_has_member,
    archive_lists_paths_json,
    meta_kind,
    read_json,
    safe_rel,
)
from .findings import META_INVALID, META_MISSING, EntryFindings

# Fields of repodata_record.json that must agree with info/index.json.
CONSISTENT_FIELDS = ("name", "version", "build", "build_number", "subdir")


# Fingerprinted metadata files, in this order; a legacy entry (no paths.json) also depends on
# the last two.
META_NAMES = ("paths.json", "index.json", "repodata_record.json", "files", "has_prefix")


META_PATHS = tuple("info/" + n for n in META_NAMES)


N_META_MODERN = 3


ARCHIVE_EXTS = (CONDA_EXT, TARBZ2_EXT)


_RECORD_KEYS = ("name", "version", "build", "fn", "url", "size", "sha256", "md5")


@dataclass
class Plan:
    """What an entry must contain, parsed once from its metadata (and then remembered)."""

    source: str = "none"  # paths.json | info/files | none
    record: dict = field(default_factory=dict)
    record_source: str = ""
    files: list = field(default_factory=list)  # hardlink paths
    sizes: list = field(default_factory=list)  # their sizes (None: not recorded)
    shas: list = field(default_factory=list)  # their sha256 (None: not recorded)
    links: list = field(default_factory=list)  # (rel, size, sha) of softlinks
    dirs: list = field(default_factory=list)  # paths of type directory
    anys: list = field(default_factory=list)  # legacy paths: existence only
    parents: list = field(default_factory=list)  # every directory above a path, shallow first
    count: int = 0  # paths listed

    def to_state(self) -> tuple:
        return (
            self.source,
            self.record,
            self.record_source,
            self.files,
            self.sizes,
            self.shas,
            self.links,
            self.dirs,
            self.anys,
            self.parents,
            self.count,
        )

    @classmethod
    def from_state(cls, t: tuple) -> Plan:
        return cls(*t)


@functools.lru_cache(maxsize=64)
def _kind_requires_record(pkgs_dir: str, _ino: int, _mtime_ns: int) -> bool:
    from ..layouts.kinds import detect

    return detect(pkgs_dir).record_required


def _record_required(pkgs_dir: str) -> bool:
    """Whether the cache's layout keeps ``repodata_record.json`` (rattler's does not)."""
    try:
        st = os.stat(pkgs_dir)
    except OSError:
        return True
    return _kind_requires_record(pkgs_dir, st.st_ino, st.st_mtime_ns)


def parse_metadata(root: str, efd: int, f: EntryFindings) -> Plan:
    """The plan of one entry from its metadata files; problems go into ``f``."""
    plan = Plan()
    info = os.path.join(root, "info")
    index, err, exists = read_json("info/index.json", efd)
    if not exists:
        f.add(META_MISSING, "info/index.json")
    elif err or not isinstance(index, dict):
        f.add(meta_kind(err), "info/index.json", detail=err or "not a JSON object")
        index = None
    record, err, exists = read_json("info/repodata_record.json", efd)
    if not exists:
        if _record_required(f.pkgs_dir) and not has_sidecar(root):
            # (an entry rattler wrote into a conda cache has its sidecar instead)
            f.add(META_MISSING, "info/repodata_record.json")
        record = None
    elif err or not isinstance(record, dict):
        f.add(meta_kind(err), "info/repodata_record.json", detail=err or "not a JSON object")
        record = None
    if isinstance(record, dict) and isinstance(index, dict):
        for key in CONSISTENT_FIELDS:
            if key in index and record.get(key) != index.get(key):
                f.add(
                    META_INVALID,
                    "info/repodata_record.json",
                    expected=index.get(key),
                    actual=record.get(key),
                    detail=f"{key} differs from info/index.json",
                )
    src = record if isinstance(record, dict) else (index if isinstance(index, dict) else {})
    plan.record_source = "repodata_record" if isinstance(record, dict) else ("index" if src else "")
    plan.record = {
        k: src.get(k)
        for k in _RECORD_KEYS
        if isinstance(src.get(k), (str, int)) and not isinstance(src.get(k), bool)
    }
    if not _paths_json_plan(root, efd, f, plan):
        _legacy_plan(root, info, f, plan)
    direct = {rel.rpartition("/")[0] for rel in plan.files}
    direct.update(rel.rpartition("/")[0] for rel in plan.anys)
    direct.update(rel.rpartition("/")[0] for rel in plan.dirs)
    direct.update(item[0].rpartition("/")[0] for item in plan.links)
    parents: set[str] = set()
    for parent in direct:  # far fewer directories than paths: walk up from each once
        while parent and parent not in parents:
            parents.add(parent)
            parent = parent.rpartition("/")[0]
    plan.parents = sorted(parents, key=lambda p: (p.count("/"), p))
    return plan


def _paths_json_plan(root: str, efd: int, f: EntryFindings, plan: Plan) -> bool:
    """Fill ``plan`` from paths.json; False when there is none (a legacy package or a lost file)."""
    data, err, exists = read_json("info/paths.json", efd)
    if exists and not err:
        if not isinstance(data, dict) or data.get("paths_version") != 1:
            version = data.get("paths_version") if isinstance(data, dict) else None
            f.add(META_INVALID, "info/paths.json", 1, version, "unknown paths_version")
            return True
        raw = data.get("paths")
        if not isinstance(raw, list):
            f.add(META_INVALID, "info/paths.json", detail="no list of paths")
            return True
        plan.source = f.metadata = "paths.json"
        if all_safe(raw):
            # The usual case, in bulk: one check over all the paths, a comprehension per column.
            hard = [item for item in raw if item.get("path_type", HARDLINK) == HARDLINK]
            sizes = [item.get("size_in_bytes") for item in hard]
            shas = [item.get("sha256") for item in hard]
            if all(v.__class__ is int for v in sizes) and all(v.__class__ is str for v in shas):
                plan.files = [item["_path"] for item in hard]
                plan.sizes, plan.shas = sizes, shas
                plan.count = len(raw)
                if len(hard) != len(raw):
                    for item in raw:
                        ptype = item.get("path_type", HARDLINK)
                        if ptype == SOFTLINK:
                            plan.links.append(_link_item(item))
                        elif ptype == DIRECTORY:
                            plan.dirs.append(item["_path"])
                return True
        files, sizes, shas = plan.files, plan.sizes, plan.shas
        # Path by path, when something is off (or unusual).
        each = not all_safe(raw)
        for item in raw:
            rel = item.get("_path") if item.__class__ is dict else None
            if each and not safe_rel(rel):
                f.add(META_INVALID, "info/paths.json", detail=f"bad path {rel!r}")
                continue
            size = item.get("size_in_bytes")
            if size.__class__ is not int:  # also refuses bool
                size = None
            sha = item.get("sha256")
            if sha.__class__ is not str:
                sha = None
            ptype = item.get("path_type", HARDLINK)
            plan.count += 1
            if ptype == HARDLINK:
                files.append(rel)
                sizes.append(size)
                shas.append(sha)
            elif ptype == SOFTLINK:
                plan.links.append((rel, size, sha))  # same as _link_item
            elif ptype == DIRECTORY:
                plan.dirs.append(rel)
            # Other path types (entry points, pyc files) are made at link time, not packaged.
        return True
    if exists:
        f.add(meta_kind(err), "info/paths.json", detail=err)
        return True
    # No paths.json: a legacy package, or a deleted file. Only the archive can tell.
    for ext in (CONDA_EXT, TARBZ2_EXT):
        archive = root + ext
        if os.path.isfile(archive) and archive_lists_paths_json(archive):
            f.add(
                META_MISSING,
                "info/paths.json",
                detail=f"{os.path.basename(archive)} has it; the extraction lost it",
            )
            break
    return False


def _link_item(item: dict) -> tuple:
    size = item.get("size_in_bytes")
    sha = item.get("sha256")
    return (
        item["_path"],
        size if size.__class__ is int else None,
        sha if sha.__class__ is str else None,
    )


def _legacy_plan(root: str, info: str, f: EntryFindings, plan: Plan) -> None:
    names: dict[str, None] = {}
    for fname in ("files", "has_prefix"):
        try:
            with open(os.path.join(info, fname), encoding="utf-8", errors="replace") as fh:
                lines = fh.read().splitlines()
        except (FileNotFoundError, NotADirectoryError):
            if fname == "files":
                if f.metadata == "none":
                    _no_file_list(root, f)
                return
            continue
        except OSError:
            continue
        if f.metadata == "none":
            f.metadata = "info/files"
        plan.source = f.metadata
        for line in lines:
            line = line.strip()
            if not line:
                continue
            if fname == "has_prefix":
                parts = line.split(None, 2)
                line = parts[-1] if len(parts) == 3 else parts[0]
                line = line.strip('"')
            if safe_rel(line):
                names.setdefault(line, None)
    # Existence only: legacy metadata records neither types nor sizes.
    plan.anys = list(names)
    plan.count = len(plan.anys)


def _no_file_list(root: str, f: EntryFindings) -> None:
    """Neither info/paths.json nor info/files. conda then treats the package as having no
    files, and so do we -- unless something shows a list was lost: the archive has one, or
    (with no archive to ask) the entry holds files outside info/."""
    archives = [root + ext for ext in (CONDA_EXT, TARBZ2_EXT) if os.path.isfile(root + ext)]
    for archive in archives:
        for name in ("info/paths.json", "info/files"):
            if archive_has_member(archive, name):
                f.add(
                    META_MISSING,
                    name,
                    detail=f"{os.path.basename(archive)} has it; the extraction lost it",
                )
                return
    if archives:
        return
    try:
        payload = [n for n in os.listdir(root) if n != "info"]
    except OSError:
        payload = []
    if payload:
        f.add(
            META_MISSING,
            "info/paths.json",
            detail="and no info/files, but the entry holds files: they cannot be checked",
        )
