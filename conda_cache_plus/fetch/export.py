"""The cache as a channel: plan (pure) and write (thin) for ``conda cache export DIR``.

:func:`plan_export` reads the caches and the target directory and decides, for every selected
cache entry, what the channel gets: the archive under ``<subdir>/`` and a ``repodata.json``
record built from ``info/repodata_record.json`` (or ``info/index.json``), with md5, sha256 and
size computed from the archive itself. An archive whose bytes contradict what the cache recorded
for it (the channel's md5/sha256/size, or, for the other format of the same build, the name,
version and build in its own ``info/index.json``) is reported and not exported. So is an entry
without an archive (conda does not keep archives after ``conda clean -t``).

Re-exporting is incremental: an archive already in ``DIR`` with the same bytes is left alone,
records of earlier exports stay in ``repodata.json`` while their archive is still there, and
whatever is dropped or refused is listed in the result. :func:`write_export` then copies (or
hard-links) archives through temporary names and replaces each ``repodata.json`` atomically,
so a client reading the channel meanwhile sees the old or the new index, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..gateways.download import hash_file as digests
from ..model.filenames import CONDA_EXT, TARBZ2_EXT, is_subdir_name, package_extension
from ..model.names import component_problem, package_fn_problem
from ..model.records import PackageCacheRecord

REPODATA = "repodata.json"
# Keys of a cache record that describe where the cache got it, not the package: a channel's
# repodata.json has none of them (the client derives them from where it reads the channel).
LOCATION_KEYS = frozenset({"url", "channel", "schannel", "fn", "auth", "preferred_env"})
# Checksums of the ``.tar.bz2`` twin that conda keeps on ``.conda`` records.
LEGACY_KEYS = ("legacy_bz2_md5", "legacy_bz2_size")
IDENTITY_KEYS = ("name", "version", "build")

# Actions for one archive.
COPY = "copy"
LINK = "link"
UNCHANGED = "unchanged"

# Kinds of findings (data, not exceptions). "problem" kinds make the verb exit 1.
NO_ARCHIVE = "no_archive"  # extracted only: nothing to export
MISMATCH = "mismatch"  # the archive's bytes contradict its record
CONFLICT = "conflict"  # another file with this name is already in DIR / in this export
UNREADABLE = "unreadable"  # the archive or its metadata could not be read
BAD_NAME = "bad_name"  # a file name or subdir that cannot go into a channel
NOT_CACHED = "not_cached"  # an environment's package that no cache holds
DROPPED = "dropped"  # an earlier export's record whose archive is gone from DIR
UNINDEXED = "unindexed"  # an archive in DIR that no repodata.json lists
MISSING_DEPENDENCY = "missing_dependency"  # a dependency of an exported package no cache holds
PROBLEM_KINDS = frozenset({MISMATCH, CONFLICT, UNREADABLE, BAD_NAME, MISSING_DEPENDENCY})


@dataclass
class Finding:
    kind: str
    what: str  # a file name, entry path or prefix
    reason: str
    pkgs_dir: str | None = None

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "what": self.what,
            "reason": self.reason,
            "pkgs_dir": self.pkgs_dir,
            "problem": self.kind in PROBLEM_KINDS,
        }


@dataclass
class ExportItem:
    subdir: str
    fn: str
    source: str  # the archive in the cache
    action: str  # copy | link | unchanged
    record: dict  # the repodata.json record
    pkgs_dir: str
    how: str | None = None  # after writing: copied | linked (None when unchanged)

    @property
    def size(self) -> int:
        return int(self.record["size"])

    def to_json(self) -> dict:
        return {
            "subdir": self.subdir,
            "fn": self.fn,
            "name": self.record.get("name"),
            "version": self.record.get("version"),
            "build": self.record.get("build"),
            "source": self.source,
            "pkgs_dir": self.pkgs_dir,
            "action": self.action,
            "how": self.how,
            "size": self.size,
            "md5": self.record["md5"],
            "sha256": self.record["sha256"],
        }


@dataclass
class ExportPlan:
    channel_dir: str
    link: bool
    items: list[ExportItem] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)  # (subdir, fn) of earlier exports
    findings: list[Finding] = field(default_factory=list)
    # subdir -> {"packages": {...}, "packages.conda": {...}}: the indexes to write
    repodata: dict[str, dict[str, dict]] = field(default_factory=dict)
    write_subdirs: set[str] = field(default_factory=set)  # whose repodata.json changes

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.kind in PROBLEM_KINDS]

    def count(self, action: str) -> int:
        return sum(1 for i in self.items if i.action == action)

    @property
    def bytes_to_write(self) -> int:
        return sum(i.size for i in self.items if i.action != UNCHANGED)

    def to_json(self) -> dict:
        return {
            "items": [i.to_json() for i in self.items],
            "kept": [{"subdir": s, "fn": fn} for s, fn in self.kept],
            "findings": [f.to_json() for f in self.findings],
            "subdirs": sorted(self.repodata),
            "totals": {
                "exported": len(self.items) - self.count(UNCHANGED),
                "unchanged": self.count(UNCHANGED),
                "kept": len(self.kept),
                "bytes": self.bytes_to_write,
                "packages_in_channel": sum(
                    len(rd["packages"]) + len(rd["packages.conda"]) for rd in self.repodata.values()
                ),
                "problems": len(self.problems),
            },
        }


# -- reading archives ------------------------------------------------------------------------------
def archive_index_json(archive: str) -> dict | None:
    """``info/index.json`` read from the archive itself (None if it cannot be read)."""
    from ..gateways.archive_members import info_members

    try:
        for member, read in info_members(archive):
            if member.name == "info/index.json":
                data = json.loads(read())
                return data if isinstance(data, dict) else None
    except (OSError, ValueError, tarfile.TarError, EOFError):
        return None
    except Exception:  # zip, zstd and bz2 errors of a damaged archive
        return None
    return None


# -- names -----------------------------------------------------------------------------------------
def name_problem(subdir: str, fn: str) -> str | None:
    """Why ``<subdir>/<fn>`` cannot be a channel file, or None (rules: :mod:`.names`)."""
    if component_problem(subdir) or not is_subdir_name(subdir):
        return f"subdir {subdir!r} is not a platform subdir"
    why = package_fn_problem(fn)
    if why:
        return f"file name {fn!r} is not a package file name ({why})"
    return None


def subdir_of(rec: PackageCacheRecord) -> str:
    if rec.subdir:
        return rec.subdir
    url = rec.url or ""
    parts = url.split("#", 1)[0].rstrip("/").split("/")
    return parts[-2] if len(parts) >= 2 else ""


# -- the record a channel serves -------------------------------------------------------------
def channel_record(rec: PackageCacheRecord, fn: str, got: tuple[int, str, str]) -> dict:
    data = {k: v for k, v in rec.data.items() if k not in LOCATION_KEYS}
    if fn != rec.data.get("fn"):
        for k in LEGACY_KEYS:
            data.pop(k, None)
    for k in IDENTITY_KEYS:
        data.setdefault(k, getattr(rec, k))
    data.setdefault("build_number", rec.build_number)
    data.setdefault("depends", [])
    data["subdir"] = subdir_of(rec)
    data["size"], data["sha256"], data["md5"] = got
    return dict(sorted(data.items()))


def check_archive(rec: PackageCacheRecord, fn: str, path: str, got) -> str | None:
    """Why the archive's bytes contradict the cache's record of it, or None."""
    data = rec.data
    if data.get("fn") == fn and rec.source == "repodata_record":
        size, sha, md5 = got
        checks = (("size", size), ("sha256", sha), ("md5", md5))
        for key, actual in checks:
            want = data.get(key)
            if want is None:
                continue
            if (want.lower() if isinstance(want, str) else want) != actual:
                return f"{key} is {actual}, its record says {want}"
        if not data.get("sha256") and not data.get("md5"):
            return "its record has no checksum to check it against"
        return None
    # The other format of the build (or no channel record): the record's checksums are not
    # this file's. The archive must at least be this package.
    index = archive_index_json(path)
    if index is None:
        return "its info/index.json cannot be read"
    for key in (*IDENTITY_KEYS, "build_number"):
        want = getattr(rec, key)
        if key in index and index[key] != want:
            return f"its info/index.json says {key} {index[key]!r}, the cache says {want!r}"
    if rec.subdir and index.get("subdir") not in (None, rec.subdir):
        return f"its info/index.json says subdir {index.get('subdir')!r}, not {rec.subdir!r}"
    return None


# -- the target directory --------------------------------------------------------------------------
def read_repodata(path: str) -> tuple[dict | None, str | None]:
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read().decode("utf-8"))
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as exc:
        return None, f"cannot read {path}: {exc}"
    if not isinstance(data, dict):
        return None, f"{path} is not a JSON object"
    return data, None


def _existing(channel_dir: str, plan: ExportPlan) -> dict[str, dict[str, dict]]:
    """subdir -> fn -> record, from the repodata.json files already in ``channel_dir``."""
    out: dict[str, dict[str, dict]] = {}
    try:
        names = sorted(os.listdir(channel_dir))
    except FileNotFoundError:
        return out
    except OSError as exc:
        plan.findings.append(Finding(UNREADABLE, channel_dir, str(exc)))
        return out
    for subdir in names:
        path = os.path.join(channel_dir, subdir, REPODATA)
        if not is_subdir_name(subdir) or not os.path.isdir(os.path.dirname(path)):
            continue
        data, err = read_repodata(path)
        if err:
            # Not ours to overwrite blindly: refusing keeps whatever a person put there.
            plan.findings.append(Finding(UNREADABLE, path, err + "; this subdir is left alone"))
            out[subdir] = None  # type: ignore[assignment]
            continue
        recs: dict[str, dict] = {}
        for key in ("packages", "packages.conda"):
            for fn, rec in ((data or {}).get(key) or {}).items():
                if isinstance(rec, dict):
                    recs[fn] = rec
        out[subdir] = recs
    return out


def _same_file(a: str, b: str) -> bool:
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


# -- planning --------------------------------------------------------------------------------------
def with_dependencies(chosen: list, records: list) -> tuple[list, list[Finding]]:
    """``chosen`` and, transitively, the cached packages their ``depends`` need (the newest
    match, in a compatible subdir), so that the channel installs on its own; a dependency no
    cached package satisfies is a MISSING_DEPENDENCY finding naming the spec and who needs it.
    Virtual packages (``__glibc``, ...) are the installer's, not the channel's."""
    from ..exceptions import InvalidSpecError
    from ..model.match import SpecMatcher, version_sort_keys

    keys = version_sort_keys(r.version for r in records)

    def newest_first(recs):
        return sorted(recs, key=lambda r: (keys[r.version], r.build_number, bool(r.archives)))[::-1]

    by_name: dict[str, list] = {}
    for rec in records:
        by_name.setdefault(rec.name, []).append(rec)
    out = list(chosen)
    taken = {id(r) for r in out}
    findings: list[Finding] = []
    queue = list(out)
    seen_specs: set[tuple[str, str]] = set()
    while queue:
        rec = queue.pop(0)
        subdir = subdir_of(rec)
        for dep in rec.data.get("depends") or []:
            if not isinstance(dep, str) or dep.startswith("__"):
                continue
            if (dep, subdir) in seen_specs:
                continue
            seen_specs.add((dep, subdir))
            name = dep.split()[0].split("[")[0]
            try:
                matcher = SpecMatcher(dep)
            except InvalidSpecError:
                findings.append(
                    Finding(MISSING_DEPENDENCY, rec.entry, f"cannot read its dependency {dep!r}")
                )
                continue
            fits = [
                r
                for r in by_name.get(name, [])
                if matcher.match(r) and (subdir == "noarch" or subdir_of(r) in ("noarch", subdir))
            ]
            if not fits:
                findings.append(
                    Finding(
                        MISSING_DEPENDENCY,
                        f"{dep} (needed by {rec.entry})",
                        "no cached package satisfies it: fetch it, then export again",
                    )
                )
                continue
            if any(id(r) in taken for r in fits):
                continue
            best = newest_first(fits)[0]
            taken.add(id(best))
            out.append(best)
            queue.append(best)
    return out, findings


def plan_export(
    records: list[PackageCacheRecord],
    channel_dir: str,
    *,
    link: bool = False,
    missing: list[Finding] | None = None,
) -> ExportPlan:
    """What exporting ``records`` (writable caches first) into ``channel_dir`` takes. Reads the
    archives (hashing each once) and the channel directory; writes nothing."""
    channel_dir = os.path.abspath(channel_dir)
    plan = ExportPlan(channel_dir, link)
    plan.findings.extend(missing or [])
    existing = _existing(channel_dir, plan)
    chosen: dict[tuple[str, str], ExportItem] = {}
    hashes: dict[str, tuple[int, str, str]] = {}  # within one run, one read per file
    for rec in records:
        if not rec.archives:
            why = "extracted only; its archive is not in the cache"
            if rec.is_broken:
                why = "broken entry without an archive"
            plan.findings.append(Finding(NO_ARCHIVE, rec.entry, why, rec.pkgs_dir))
            continue
        subdir = subdir_of(rec)
        for ext in (CONDA_EXT, TARBZ2_EXT):
            if ext not in rec.archives:
                continue
            path = rec.archive_path(ext)
            fn = os.path.basename(path)
            bad = name_problem(subdir, fn)
            if bad:
                plan.findings.append(Finding(BAD_NAME, path, bad, rec.pkgs_dir))
                continue
            if existing.get(subdir, {}) is None:
                continue  # an unreadable repodata.json: reported above
            try:
                got = hashes.get(path) or digests(path)
            except OSError as exc:
                plan.findings.append(
                    Finding(UNREADABLE, path, exc.strerror or str(exc), rec.pkgs_dir)
                )
                continue
            hashes[path] = got
            key = (subdir, fn)
            earlier = chosen.get(key)
            if earlier is not None:
                if earlier.record["sha256"] != got[1]:
                    plan.findings.append(
                        Finding(
                            CONFLICT,
                            path,
                            f"another {fn} (from {earlier.source}) is exported; "
                            "a channel holds one file per name",
                            rec.pkgs_dir,
                        )
                    )
                continue
            wrong = check_archive(rec, fn, path, got)
            if wrong:
                plan.findings.append(
                    Finding(MISMATCH, path, f"not exported: {wrong}", rec.pkgs_dir)
                )
                continue
            record = channel_record(rec, fn, got)
            target = os.path.join(channel_dir, subdir, fn)
            action = LINK if link else COPY
            if os.path.lexists(target):
                if os.path.islink(target) or not os.path.isfile(target):
                    plan.findings.append(
                        Finding(CONFLICT, target, "exists and is not a regular file; left alone")
                    )
                    continue
                if _same_file(target, path):
                    action = UNCHANGED
                else:
                    try:
                        there = digests(target)
                    except OSError as exc:
                        plan.findings.append(Finding(UNREADABLE, target, str(exc)))
                        continue
                    if there != got:
                        plan.findings.append(
                            Finding(
                                CONFLICT,
                                target,
                                f"already in the channel with other content (sha256 "
                                f"{there[1][:12]}..., the cache has {got[1][:12]}...); left alone",
                                rec.pkgs_dir,
                            )
                        )
                        continue
                    action = UNCHANGED
            chosen[key] = ExportItem(subdir, fn, path, action, record, rec.pkgs_dir)
    plan.items = sorted(chosen.values(), key=lambda i: (i.subdir, i.fn))

    # The indexes: earlier exports' records whose archive is still there, then ours.
    subdirs = {s for s in existing if existing[s] is not None} | {i.subdir for i in plan.items}
    for subdir in sorted(subdirs):
        rd: dict[str, dict] = {"packages": {}, "packages.conda": {}}
        before = existing.get(subdir) or {}
        ours = {i.fn: i for i in plan.items if i.subdir == subdir}
        for fn, rec in sorted(before.items()):
            if fn in ours:
                continue
            if name_problem(subdir, fn):
                plan.findings.append(
                    Finding(DROPPED, f"{subdir}/{fn}", "not a package file name; dropped")
                )
            elif os.path.isfile(os.path.join(channel_dir, subdir, fn)):
                rd[_key_for(fn)][fn] = rec
                plan.kept.append((subdir, fn))
            else:
                plan.findings.append(
                    Finding(
                        DROPPED,
                        f"{subdir}/{fn}",
                        "listed by the earlier repodata.json but its archive is gone; "
                        "dropped from the index",
                    )
                )
        for fn, item in ours.items():
            rd[_key_for(fn)][fn] = item.record
        after = {**rd["packages"], **rd["packages.conda"]}
        if subdir not in existing or after != before:
            plan.write_subdirs.add(subdir)
        plan.repodata[subdir] = rd
        _report_unindexed(plan, subdir, rd)
    if "noarch" not in plan.repodata and not os.path.isfile(
        os.path.join(channel_dir, "noarch", REPODATA)
    ):
        # conda refuses a channel without noarch/repodata.json
        plan.repodata["noarch"] = {"packages": {}, "packages.conda": {}}
        plan.write_subdirs.add("noarch")
    return plan


def _key_for(fn: str) -> str:
    return "packages.conda" if fn.endswith(CONDA_EXT) else "packages"


def _report_unindexed(plan: ExportPlan, subdir: str, rd: dict) -> None:
    try:
        names = os.listdir(os.path.join(plan.channel_dir, subdir))
    except OSError:
        return
    listed = set(rd["packages"]) | set(rd["packages.conda"])
    for name in sorted(names):
        if package_extension(name) and name not in listed and not name.startswith("."):
            plan.findings.append(
                Finding(
                    UNINDEXED,
                    f"{subdir}/{name}",
                    "in the channel directory but in no repodata.json (left as it is)",
                )
            )


def describe(plan: ExportPlan, *, done: bool = False) -> str:
    """The plan (or, ``done``, what was done) for people."""
    t = plan.to_json()["totals"]
    lines = []
    for item in plan.items:
        verb = item.how or {COPY: "copy", LINK: "link", UNCHANGED: "unchanged"}[item.action]
        lines.append(f"  {verb:<10} {item.subdir}/{item.fn}")
    for f in plan.findings:
        mark = "!" if f.kind in PROBLEM_KINDS else "-"
        lines.append(f"  {mark} {f.kind}: {f.what}: {f.reason}")
    from ..model.sizes import human_bytes

    head = (
        f"{t['exported']} archive(s) {'exported' if done else 'to export'} "
        f"({human_bytes(t['bytes'])}), "
        f"{t['unchanged']} unchanged, {t['kept']} kept from earlier exports; "
        f"{t['packages_in_channel']} package(s) in the channel, {t['problems']} problem(s)."
    )
    return "\n".join([f"Channel: {plan.channel_dir}", head, *lines])


# -- writing ---------------------------------------------------------------------------------------
@contextmanager
def _replacing(dst: str):
    """A temporary name beside ``dst`` to write; it replaces ``dst`` when the block succeeds
    and is removed when it fails, so ``dst`` is never seen half-written."""
    d, b = os.path.split(dst)
    tmp = os.path.join(d, f".{b}.cpx-{os.getpid()}-{threading.get_ident()}")
    try:
        yield tmp
        os.replace(tmp, dst)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _copy_checked(src: str, dst: str, want: tuple[int, str, str]) -> None:
    """Copy, hashing what is written; the planned digests must still hold (the cache may have
    changed since), else nothing replaces ``dst``."""
    sha, md5 = hashlib.sha256(), hashlib.md5()
    size = 0
    with _replacing(dst) as tmp, open(src, "rb") as fi, open(tmp, "wb") as fo:
        while chunk := fi.read(1 << 20):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
            fo.write(chunk)
        if (size, sha.hexdigest(), md5.hexdigest()) != want:
            raise OSError(f"{src} changed while it was exported; run the export again")


def _link(src: str, dst: str) -> bool:
    try:
        with _replacing(dst) as tmp:
            os.link(src, tmp)
    except OSError:
        return False
    return True


def write_json_atomic(path: str, data: dict) -> None:
    with _replacing(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.write("\n")


def write_export(plan: ExportPlan, on_item=None) -> None:
    """Carry the plan out: archives first, then each changed ``repodata.json`` (so an index
    never lists a file that is not there yet)."""
    failed: set[tuple[str, str]] = set()
    for item in plan.items:
        if item.action == UNCHANGED:
            continue
        target_dir = os.path.join(plan.channel_dir, item.subdir)
        os.makedirs(target_dir, exist_ok=True)
        dst = os.path.join(target_dir, item.fn)
        want = (item.size, item.record["sha256"], item.record["md5"])
        try:
            if item.action == LINK and _link(item.source, dst):
                item.how = "linked"
            else:
                _copy_checked(item.source, dst, want)
                item.how = "copied"
        except OSError as exc:
            failed.add((item.subdir, item.fn))
            plan.findings.append(
                Finding(UNREADABLE, item.source, f"not exported: {exc}", item.pkgs_dir)
            )
        if on_item is not None:
            on_item(item)
    for subdir in sorted(plan.write_subdirs):
        rd = plan.repodata[subdir]
        for key in ("packages", "packages.conda"):
            for fn in [fn for fn in rd[key] if (subdir, fn) in failed]:
                del rd[key][fn]
        os.makedirs(os.path.join(plan.channel_dir, subdir), exist_ok=True)
        body = {
            "info": {"subdir": subdir},
            "packages": rd["packages"],
            "packages.conda": rd["packages.conda"],
            "removed": [],
            "repodata_version": 1,
        }
        write_json_atomic(os.path.join(plan.channel_dir, subdir, REPODATA), body)
    plan.items = [i for i in plan.items if (i.subdir, i.fn) not in failed]
