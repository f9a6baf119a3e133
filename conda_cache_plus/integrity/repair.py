"""Repair of corrupt cache entries: a pure plan from verify's findings, then its execution.

Per bad entry, best first:

1. **re-extract** from the entry's archive when the archive verifies against the record (sha256,
   else md5). When the record itself is unreadable the archive cannot be checked; it is used as
   conda would use it (conda rebuilds such a record from the archive), and the plan says so;
2. **re-download** through the fetch pipeline (forced) when the archive is missing or bad and a
   URL is known (record, else ``urls.txt``) and we are not offline;
3. otherwise **remove** the entry (archives, directory, its ``urls.txt`` lines) so the next
   install fetches it again.

Only writable caches are touched; entries in read-only caches are reported and skipped.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field

from ..gateways.safefs import check_private_dir
from ..layouts.kinds import RATTLER, detect
from ..model.cache_paths import CacheLayout
from ..model.filenames import CONDA_EXT, PRIVATE_DIR, TARBZ2_EXT, strip_package_extension
from ..model.names import package_fn_problem
from . import verify_store
from .archive_facts import hash_file
from .findings import FAST, OK, EntryFindings
from .verify import verify_entry

REEXTRACT = "re-extract"


REDOWNLOAD = "re-download"


REMOVE = "remove"


SKIP = "skip"


@dataclass
class RepairAction:
    pkgs_dir: str
    entry: str
    label: str
    status: str  # verify's status of the entry
    action: str
    reason: str
    archive: str | None = None
    url: str | None = None
    fn: str | None = None
    record: dict | None = None  # repodata_record.json as it is, when readable
    checksums: dict = field(default_factory=dict)  # sha256/md5/size to check a download against
    problems: int = 0
    # after execution
    outcome: str = "planned"  # planned | done | failed | skipped
    detail: str = ""
    status_after: str | None = None

    def to_json(self) -> dict:
        return {
            "pkgs_dir": self.pkgs_dir,
            "entry": self.entry,
            "package": self.label,
            "status": self.status,
            "action": self.action,
            "reason": self.reason,
            "archive": self.archive,
            "url": self.url,
            "fn": self.fn,
            "problems": self.problems,
            "outcome": self.outcome,
            "detail": self.detail,
            "status_after": self.status_after,
        }


@dataclass
class RepairPlan:
    actions: list[RepairAction] = field(default_factory=list)

    def by_action(self, action: str) -> list[RepairAction]:
        return [a for a in self.actions if a.action == action]

    def counts(self) -> dict:
        out = {k: 0 for k in (REEXTRACT, REDOWNLOAD, REMOVE, SKIP)}
        for a in self.actions:
            out[a.action] += 1
        return out

    def outcomes(self) -> dict:
        out = {k: 0 for k in ("done", "failed", "skipped", "planned")}
        for a in self.actions:
            out[a.outcome] += 1
        return out


def _read_record(path: str) -> dict | None:
    try:
        with open(os.path.join(path, "info", "repodata_record.json"), "rb") as fh:
            data = json.load(fh)
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _archive_verifies(path: str, rec: dict) -> tuple[bool | None, str]:
    """(verdict, how): True/False against the record's sha256 or md5; None if it has neither."""
    for algo in ("sha256", "md5"):
        expected = rec.get(algo)
        if isinstance(expected, str) and expected:
            size = rec.get("size")
            if isinstance(size, int) and os.path.getsize(path) != size:
                return False, "size"
            return hash_file(path, algo) == expected, algo
    return None, ""


def new_action(f: EntryFindings, **fields) -> RepairAction:
    """A not-yet-decided action (skip) for an entry verify found bad."""
    return RepairAction(
        pkgs_dir=f.pkgs_dir,
        entry=f.entry,
        label=f.label,
        status=f.status,
        action=SKIP,
        reason="",
        problems=len(f.problems),
        **fields,
    )


def _entry_fn(fn, base: str) -> str | None:
    """A file name from a record or URL, only when it is safe and names this entry (a damaged
    or hostile record must not make repair write anywhere else)."""
    if not fn or package_fn_problem(fn) or strip_package_extension(fn)[0] != base:
        return None
    return fn


def plan_entry(f: EntryFindings, *, offline: bool = False, urls=None) -> RepairAction:
    layout = CacheLayout(f.pkgs_dir)
    root = layout.extracted(f.entry)
    record = _read_record(root) if f.record_source == "repodata_record" else None
    rec = f.record if f.record_source == "repodata_record" else {}
    base = os.path.basename(f.entry)
    fn = _entry_fn(rec.get("fn") or f.fn, base)
    url = rec.get("url") or f.url
    if not url and urls is not None:
        url = urls.get_url(fn or base)
    if url and not fn:
        fn = _entry_fn(url.split("#", 1)[0].rsplit("/", 1)[-1], base)
        if fn is None:
            url = None  # a URL naming another (or a hostile) file is not this entry's source
    action = new_action(
        f,
        url=url,
        fn=fn,
        record=record,
        checksums={k: rec[k] for k in ("sha256", "md5", "size") if rec.get(k)},
    )
    if f.writable is False or f.writable is None:
        action.reason = "read-only cache: repair it where it is writable, or skip it"
        return action

    archives = [root + ext for ext in (CONDA_EXT, TARBZ2_EXT) if os.path.isfile(root + ext)]
    if fn:  # the record's own format first: only that one can be checked against it
        archives.sort(key=lambda p: os.path.basename(p) != fn)
    for archive in archives:
        if rec and os.path.basename(archive) == fn:
            verdict, how = _archive_verifies(archive, rec)
            if verdict:
                action.action, action.archive = REEXTRACT, archive
                action.reason = f"{os.path.basename(archive)} matches the record's {how}"
                return action
            if verdict is False:
                continue  # a bad archive: never extract it
        if not rec and (f.has_dir or any(p.kind == "entry_is_link" for p in f.problems)):
            # No readable record: nothing to check the archive against. conda rebuilds the
            # record from such an archive too; re-extracting restores the metadata it lost.
            action.action, action.archive = REEXTRACT, archive
            action.reason = (
                f"{os.path.basename(archive)} re-extracted as is "
                "(the record is unreadable, so it cannot be checked against it)"
            )
            return action
    if url and not offline:
        action.action = REDOWNLOAD
        action.reason = (
            "the archive does not match the record"
            if archives
            else "no archive in the cache; the URL is known"
        )
        return action
    action.action = REMOVE
    why = "offline" if url and offline else "no archive that verifies and no URL to fetch it from"
    action.reason = f"{why}; removing it makes the next install fetch it again"
    return action


def plan_repair(report, *, offline: bool = False, envs=None) -> RepairPlan:
    """A plan for every entry of a :class:`~.verify.VerifyReport` that is not ok. ``envs``: the
    known environments, whose records give the URLs a rattler cache does not keep."""
    from ..gateways.urls import UrlsData

    urls_by_dir: dict[str, UrlsData] = {}
    env_urls: dict | None = None
    plan = RepairPlan()
    for f in report.entries:
        if f.status == OK:
            continue
        if getattr(f, "verdict", None) == "defective":
            # the package as published: re-extracting gives the same bytes (no repair loop)
            action = new_action(f)
            action.reason = "the package itself is defective (a fresh extraction has the same)"
            plan.actions.append(action)
            continue
        kind = detect(f.pkgs_dir)
        if not kind.keeps_urls and env_urls is None:
            env_urls = _env_urls(envs)
        action = None
        if kind.name == RATTLER:
            action = _plan_rattler_entry(f, offline=offline, env_urls=env_urls or {})
        if action is None:
            urls = urls_by_dir.setdefault(f.pkgs_dir, UrlsData(f.pkgs_dir))
            action = plan_entry(f, offline=offline, urls=urls)
        plan.actions.append(action)
    return plan


def _plan_rattler_entry(findings, *, offline: bool, env_urls: dict) -> RepairAction:
    """No archive is kept, so never a re-extract: re-download where an environment's record
    gives the URL (and a sha256 checks it), else remove the entry and its sidecar so that
    rattler fetches it again at its next install."""
    from ..layouts.rattler_cache import repair_source

    root = os.path.join(findings.pkgs_dir, findings.entry)
    url, sha, why = repair_source(root, env_urls)
    action = new_action(
        findings,
        url=url,
        fn=url.split("#", 1)[0].rsplit("/", 1)[-1] if url else None,
        checksums={"sha256": sha} if sha else {},
    )
    if not findings.writable:
        action.reason = "read-only cache: repair it where it is writable, or skip it"
    elif url and not offline:
        action.action, action.reason = REDOWNLOAD, f"rattler cache entry; {why}"
    else:
        action.action = REMOVE
        why = "offline" if url else why
        action.reason = f"{why}; removing it (and its .lock) makes rattler fetch it again"
    return action


def _redownload_entry(a: RepairAction, run) -> None:
    if detect(a.pkgs_dir).name == RATTLER:
        from .rattler_refetch import refetch_entry

        refetch_entry(a.pkgs_dir, a.entry, a.url, a.checksums["sha256"], run)
    else:
        _redownload(a, run)


def _remove_whole_entry(a: RepairAction) -> dict:
    if detect(a.pkgs_dir).name == RATTLER:
        from ..layouts.rattler_cache import remove_entry as remove_rattler_entry

        return remove_rattler_entry(a.pkgs_dir, a.entry)
    return remove_entry(a.pkgs_dir, a.entry, a.fn)


def _env_urls(envs) -> dict:
    from ..envs.discovery import known_environments
    from ..layouts.rattler_cache import origin_urls

    return origin_urls(known_environments() if envs is None else envs)


def _reextract(a: RepairAction) -> None:
    from ..gateways.extract import install_entry

    layout = CacheLayout(a.pkgs_dir)
    record = dict(a.record) if a.record else {}
    if not record:
        archive_fn = os.path.basename(a.archive)
        record["fn"] = archive_fn
        if a.url and a.url.split("#", 1)[0].endswith(archive_fn):
            record["url"] = a.url
    install_entry(layout, a.entry, a.archive, record or None)


def _redownload(a: RepairAction, run) -> None:
    from ..fetch import pipeline as fetch_pipeline
    from ..fetch import plan as fetch_plan
    from ..fetch import refs as fetch_refs
    from ..layouts.caches import PackageCaches

    ref = fetch_refs.PackageRef(
        a.url,
        a.fn,
        md5=a.checksums.get("md5"),
        sha256=a.checksums.get("sha256"),
        size=a.checksums.get("size"),
    )
    # Only the cache the broken entry lives in is repaired; the others stay as they are.
    target = PackageCaches([a.pkgs_dir])
    fplan = fetch_plan.plan([ref], target, force={a.fn})
    summary = fetch_pipeline.execute(fplan, run)
    for item in summary.failures:
        raise RuntimeError(f"download failed: {item.error or item.outcome}")


def remove_entry(pkgs_dir: str, entry: str, fn: str | None = None) -> dict:
    """Remove an entry's directory, archives and ``urls.txt`` lines; returns statistics."""
    from ..gateways.locks import cache_write_lock
    from ..gateways.urls import remove_urls
    from ..model.sizes import InodeSet, path_size

    layout = CacheLayout(pkgs_dir)
    root = layout.extracted(entry)
    stats = {"files": 0, "bytes": 0, "urls_lines": 0}
    names = {os.path.basename(root) + ext for ext in (CONDA_EXT, TARBZ2_EXT)}
    if fn:
        names.add(fn)
    with cache_write_lock(layout):
        for name in sorted(names):
            path = os.path.join(os.path.dirname(root), name)
            try:
                size = os.lstat(path).st_size
                os.unlink(path)
                stats["files"] += 1
                stats["bytes"] += size
            except FileNotFoundError:
                pass
        if os.path.lexists(root):
            tree = path_size(root, InodeSet())
            # Rename first: a half-deleted directory must never look like a package.
            check_private_dir(layout.root, PRIVATE_DIR, "tmp")  # never through a planted link
            doomed = os.path.join(layout.tmp_dir, f"rm-{os.getpid()}-{os.path.basename(root)}")
            os.rename(root, doomed)
            shutil.rmtree(doomed, ignore_errors=True)
            stats["files"] += tree.files
            stats["bytes"] += tree.apparent
        stats["urls_lines"] = remove_urls(layout, names)
    verify_store.forget_entry(pkgs_dir, entry)
    return stats


def _wait_until_free(a: RepairAction, timeout: float) -> str | None:
    """Wait (up to ``timeout`` seconds) while another tool writes the entry (a rattler/pixi
    ``.lock``, mamba's lock, conda's download lock): what remove and clean honour, repair honours
    too. Returns why the entry is still busy, or None."""
    import time

    from ..gateways.locks import entry_busy

    base = CacheLayout(a.pkgs_dir).extracted(a.entry)
    deadline = time.monotonic() + max(timeout, 0.0)
    while True:
        busy = entry_busy(base)
        if busy is None or time.monotonic() >= deadline:
            return busy
        time.sleep(0.1)


def execute_plan(
    plan: RepairPlan, run, *, allow_remove: bool = True, lock_timeout: float = 60.0
) -> dict:
    """Carry out every action; each is re-verified afterwards. Returns statistics."""
    stats = {"re-extracted": 0, "re-downloaded": 0, "removed": 0, "failed": 0, "skipped": 0}
    stats["bytes_removed"] = 0
    for a in plan.actions:
        if a.action == SKIP:
            a.outcome = "skipped"
            stats["skipped"] += 1
            continue
        if a.action == REMOVE and not allow_remove:
            a.outcome = "skipped"
            a.detail = "removal needs an explicit yes (--yes)"
            stats["skipped"] += 1
            continue
        busy = _wait_until_free(a, lock_timeout)
        if busy:
            a.outcome = "skipped"
            a.detail = f"{busy}; still after --lock-timeout {lock_timeout:g} s"
            stats["skipped"] += 1
            continue
        try:
            if a.action == REEXTRACT:
                _reextract(a)
                stats["re-extracted"] += 1
            elif a.action == REDOWNLOAD:
                _redownload_entry(a, run)
                stats["re-downloaded"] += 1
            elif a.action == REMOVE:
                removed = _remove_whole_entry(a)
                stats["removed"] += 1
                stats["bytes_removed"] += removed["bytes"]
                a.detail = f"{removed['files']} file(s), {removed['urls_lines']} urls.txt line(s)"
            a.outcome = "done"
        except Exception as exc:  # one entry's failure must not stop the others
            a.outcome = "failed"
            a.detail = str(exc) or type(exc).__name__
            stats["failed"] += 1
            continue
        if a.action != REMOVE:
            after = verify_entry(a.pkgs_dir, a.entry, FAST, store_dir=None)
            a.status_after = after.status
            if after.status != OK:
                a.outcome = "failed"
                a.detail = "still " + after.status + " after repair"
                stats["failed"] += 1
                stats["re-extracted" if a.action == REEXTRACT else "re-downloaded"] -= 1
    return stats
