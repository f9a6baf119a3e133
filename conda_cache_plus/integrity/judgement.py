"""The one judgement of each cache entry that every verb reads (issue 23).

verify's checks find problems; this module decides what they mean, once, for every verb:

- **verdict**: ``ok``; ``damaged`` (the cache's copy differs from its package: repair fixes it);
  ``defective`` (a fresh extraction of the package's own archive, checked the same way, has the
  same problems: the package is wrong as published, and no repair can change that).
- **remedy**: exactly one per entry, from the same planner repair executes: ``re-extract``,
  ``re-download``, ``remove``, or ``none`` with the reason (the package is defective; the cache is
  read-only: here is what works). A remedy with an action comes with a complete command, with
  the entry's cache and the level its findings were made at, that fixes it when pasted as is.
- **memory**: findings are kept at the deepest level known until the entry changes. What a
  ``--full`` run found (a changed file of the right size, a damaged archive) is remembered with
  the fingerprint of the path it is about; a later fast run, plain ``repair``, ``conda doctor``
  and ``fetch`` see it while that path is unchanged.

Pure data in, data out, apart from the remembered findings (a small state file beside verify's)
and the trial extraction of archives of bad entries into a throw-away directory.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import tempfile

from ..gateways import statefile
from . import verify_store
from .archive_facts import hash_file
from .findings import (
    ARCHIVE_CHECKSUM,
    ARCHIVE_REFUSED,
    ARCHIVE_SIZE,
    BROKEN_LINK,
    FAST,
    FULL,
    HOSTILE_ENTRY,
    LINK_ESCAPES,
    MISSING_FILE,
    OK,
    ORPHAN_TEMP,
    PARTIAL_DOWNLOAD,
    UNREADABLE,
    WRONG_HASH,
    WRONG_SIZE,
    WRONG_TYPE,
    EntryFindings,
)

# Verdicts.
V_OK = "ok"
DAMAGED = "damaged"
DEFECTIVE = "defective"
VERDICTS = (V_OK, DAMAGED, DEFECTIVE)

# Remedies (the same words as repair's actions).
REEXTRACT = "re-extract"
REDOWNLOAD = "re-download"
REMOVE = "remove"
CLEAN_TEMP = "clean --temp"
NONE = "none"

# A cache entry that is a symlink (to a directory elsewhere): conda links from wherever it leads.
ENTRY_IS_LINK = "entry_is_link"

# The one remedy of each kind of finding, as a fix of the cache would apply it. An entry's remedy
# is what repair's planner decides from all of its findings (re-extraction needs an archive that
# verifies; without one, the package is downloaded again, or removed).
REMEDY_OF_KIND = {
    MISSING_FILE: REEXTRACT,
    WRONG_SIZE: REEXTRACT,
    WRONG_HASH: REEXTRACT,
    WRONG_TYPE: REEXTRACT,
    LINK_ESCAPES: REEXTRACT,
    BROKEN_LINK: REEXTRACT,
    UNREADABLE: REEXTRACT,
    "missing_metadata": REEXTRACT,
    "invalid_metadata": REEXTRACT,
    ENTRY_IS_LINK: REEXTRACT,
    ARCHIVE_CHECKSUM: REDOWNLOAD,
    ARCHIVE_SIZE: REDOWNLOAD,
    ARCHIVE_REFUSED: REDOWNLOAD,
    ORPHAN_TEMP: CLEAN_TEMP,
    PARTIAL_DOWNLOAD: CLEAN_TEMP,
    HOSTILE_ENTRY: CLEAN_TEMP,
}

# Problems a package can have as published: about its payload, never about the record the cache
# writes or the archive's checksum.
_PACKAGE_KINDS = frozenset({MISSING_FILE, WRONG_SIZE, WRONG_HASH, WRONG_TYPE, BROKEN_LINK})
_PACKAGE_KINDS |= {LINK_ESCAPES}

FINDINGS_FORMAT = 1
FINDINGS_NAME = "findings.marshal"


# --- the verdict ------------------------------------------------------------------------------


def _pick_archive(f: EntryFindings) -> str | None:
    """The archive a fresh extraction comes from: the record's own, when it verifies against the
    record's checksum (a damaged archive says nothing about the package), or the only one there
    when the record has no checksum to compare (conda would use it as is)."""
    rec = f.record if f.record_source == "repodata_record" else {}
    for info in f.archives:
        if info.get("ok") is False:
            continue
        path = info["path"]
        if rec.get("fn") == info["fn"]:
            for algo in ("sha256", "md5"):
                if isinstance(rec.get(algo), str) and rec[algo]:
                    if info.get("checked") == algo and info.get("ok"):
                        return path
                    return path if hash_file(path, algo) == rec[algo] else None
        elif not rec:
            return path
    return None


_FRESH: dict[tuple, frozenset | None] = {}


def _fresh_problems(archive: str, entry: str, level: str) -> frozenset | None:
    """``{(kind, path)}`` that a fresh extraction of ``archive`` has at ``level``; None when it
    cannot be extracted (then nothing is the package's own: the remedy deals with the archive)."""
    from ..exceptions import ArchiveError
    from ..gateways.extract import extract_archive
    from .verify import verify_entry

    try:
        st = os.stat(archive)
    except OSError:
        return None
    key = (archive, st.st_size, st.st_mtime_ns, level)
    if key in _FRESH:
        return _FRESH[key]
    scratch = tempfile.mkdtemp(prefix="cpx-judge-")
    try:
        pkgs = os.path.join(scratch, "pkgs")
        os.makedirs(pkgs)
        open(os.path.join(pkgs, "urls.txt"), "w").close()
        shutil.copyfile(archive, os.path.join(pkgs, os.path.basename(archive)))
        try:
            extract_archive(archive, os.path.join(pkgs, entry))
        except (ArchiveError, OSError):
            found = None
        else:
            fresh = verify_entry(pkgs, entry, level, store_dir=None, use_store=False)
            found = frozenset((p.kind, p.path) for p in fresh.problems if p.kind in _PACKAGE_KINDS)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _FRESH[key] = found
    return found


def _classify(f: EntryFindings) -> None:
    """Set ``f.verdict`` and mark the problems that are the package's own."""
    f.verdict = V_OK if f.status == OK else DAMAGED
    f.own = []
    if f.status == OK or not any(p.kind in _PACKAGE_KINDS for p in f.problems):
        return
    archive = _pick_archive(f)
    if archive is None:
        return
    fresh = _fresh_problems(archive, os.path.basename(f.entry), f.level)
    if not fresh:
        return
    own = [p for p in f.problems if (p.kind, p.path) in fresh]
    f.own = own
    if len(own) == len(f.problems):
        f.verdict = DEFECTIVE


# --- symlinked entries ---------------------------------------------------------------------------


def _entry_link(f: EntryFindings) -> None:
    """An entry verify could not open as a directory because it is a symlink: conda follows it
    and links whatever it leads to, so it is damage, never "nothing to check"."""
    if f.has_dir:
        return
    try:
        st = os.lstat(f.path)
    except OSError:
        return
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(f.path)
        except OSError:
            target = "?"
        f.add(ENTRY_IS_LINK, ".", detail=f"the extracted directory is a symlink to {target}")
        f.problems[-1].kind = ENTRY_IS_LINK
        f.status = "corrupt"


# --- remembered findings ----------------------------------------------------------------------


def _path_fp(f: EntryFindings, path: str) -> tuple | None:
    """The fingerprint a remembered finding about ``path`` holds at (entry-relative, or an archive
    name beside the entry); a link's target counts too (a finding may be about it)."""
    base = os.path.dirname(f.path) if path.endswith((".conda", ".tar.bz2")) else f.path
    full = os.path.normpath(os.path.join(base, path))
    out = []
    for follow in (False, True):
        try:
            st = os.stat(full, follow_symlinks=follow)
        except OSError:
            out.append(None)
        else:
            out.append((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(out)


def _findings_path(pkgs_dir: str, writable) -> str:
    return os.path.join(verify_store.store_dir(pkgs_dir, writable), FINDINGS_NAME)


def _remember(report) -> None:
    """Merge what deeper runs found into a fast report, and remember what this run found."""
    from .findings import Problem

    by_dir: dict[str, list] = {}
    for f in report.entries:
        by_dir.setdefault(f.pkgs_dir, []).append(f)
    for pkgs_dir, entries in by_dir.items():
        writable = entries[0].writable
        path = _findings_path(pkgs_dir, writable)
        old = statefile.read(path, FINDINGS_FORMAT, pkgs_dir)
        new = dict(old)
        for f in entries:
            kept = old.get(f.entry)
            if report.level == FAST and kept:
                have = {(p.kind, p.path) for p in f.problems}
                held = [k for k in kept if _path_fp(f, k[1]) == k[5]]
                for kind, rel, expected, actual, detail, _fp in held:
                    if (kind, rel) not in have:
                        f.problems.append(Problem(kind, rel, expected, actual, detail))
                if held:
                    f.level = FULL
                    f.finish()
                    new[f.entry] = held
                else:
                    new.pop(f.entry, None)
            elif report.level == FULL:
                deep = [
                    (p.kind, p.path, p.expected, p.actual, p.detail, _path_fp(f, p.path))
                    for p in f.problems
                    if _marshalable(p.expected) and _marshalable(p.actual)
                ]
                if deep:
                    new[f.entry] = deep
                else:
                    new.pop(f.entry, None)
        if new != old:
            statefile.write(path, FINDINGS_FORMAT, pkgs_dir, new)


def _marshalable(value) -> bool:
    return value is None or isinstance(value, (str, int))


def forget(pkgs_dir: str, entry: str) -> None:
    """Drop the remembered findings of an entry (after it was replaced or removed)."""
    for writable in (True, False):
        path = _findings_path(pkgs_dir, writable)
        old = statefile.read(path, FINDINGS_FORMAT, pkgs_dir)
        if entry in old:
            del old[entry]
            statefile.write(path, FINDINGS_FORMAT, pkgs_dir, old)


# --- remedies ----------------------------------------------------------------------------------


def remedy_command(command: str, verb: str, pkgs_dir: str, level: str, spec: str | None) -> str:
    """A complete command: the same front end, the entry's cache and its findings' level."""
    words = [*command.split(), *verb.split()]
    if level == FULL and verb == "repair":
        words.append("--full")
    words += ["--pkgs-dir", pkgs_dir]
    if spec:
        words.append(spec)
    return " ".join(shlex.quote(w) if i >= len(command.split()) else w for i, w in enumerate(words))


def _remedies(report, command: str, offline: bool, envs) -> None:
    from .repair import SKIP, plan_repair

    plan = plan_repair(report, offline=offline, envs=envs)
    actions = {(a.pkgs_dir, a.entry): a for a in plan.actions}
    for f in report.entries:
        if f.verdict == V_OK:
            f.remedy = {"action": NONE, "command": None, "reason": ""}
            continue
        a = actions.get((f.pkgs_dir, f.entry))
        if a is None or a.action == SKIP:
            reason = a.reason if a is not None else "nothing repair can do"
            if f.writable is False:
                cmd = remedy_command(command, "repair", f.pkgs_dir, f.level, _spec(f))
                reason = (
                    f"read-only cache: repair cannot change it; whoever can write it runs `{cmd}`"
                )
            f.remedy = {"action": NONE, "command": None, "reason": reason}
            continue
        f.remedy = {
            "action": a.action,
            "command": remedy_command(command, "repair", f.pkgs_dir, f.level, _spec(f)),
            "reason": a.reason,
        }


def _spec(f: EntryFindings) -> str:
    return os.path.basename(f.entry)


def defect_reason(f: EntryFindings) -> str:
    what = ", ".join(sorted({p.path for p in f.own}))
    conda = ""
    if any(p.kind == MISSING_FILE for p in f.own):
        # conda's LinkPathAction.verify: "appears to be corrupted ... cannot be found"
        conda = "; conda refuses to link it (a path its paths.json lists cannot be made)"
    return (
        f"the package itself is defective: a fresh extraction of its archive has the same "
        f"problem(s) ({what}){conda}; no repair can change that, report it to its publisher"
    )


def leftover_remedy(problem, caches: list[dict], command: str) -> dict:
    where = next(
        (c["path"] for c in caches if problem.path.startswith(c["path"].rstrip("/") + "/")), None
    )
    cmd = remedy_command(command, "clean --temp", where, FAST, None) if where else None
    return {"action": CLEAN_TEMP, "command": cmd, "reason": "a leftover, never a package"}


# --- the entry point ---------------------------------------------------------------------------


def judge(report, *, command: str = "conda-cache", offline: bool = False, envs=None, remember=True):
    """Decide every entry of a :class:`~.verify.VerifyReport` in place, and return it."""
    for f in report.entries:
        _entry_link(f)
    if remember:
        _remember(report)
    for f in report.entries:
        _classify(f)
    _remedies(report, command, offline, envs)
    for f in report.entries:
        if f.verdict == DEFECTIVE:
            f.remedy = {"action": NONE, "command": None, "reason": defect_reason(f)}
    report.entries.sort(key=lambda e: (e.status == OK, e.pkgs_dir, e.entry))
    return report


def judge_entry(pkgs_dir: str, entry: str, *, command: str = "conda-cache") -> EntryFindings:
    """One entry, checked and judged as verify would (fast level, nothing remembered): fetch's
    check of what it just extracted, so a package defective as published is named at once."""
    from .findings import VerifyReport
    from .verify import verify_entry

    f = verify_entry(pkgs_dir, entry, FAST, store_dir=None, use_store=False)
    f.writable = True  # fetch just wrote it
    judge(VerifyReport(level=FAST, entries=[f]), command=command, remember=False)
    return f


def entry_json(f: EntryFindings) -> dict:
    return {"verdict": getattr(f, "verdict", V_OK), "remedy": getattr(f, "remedy", None)}
