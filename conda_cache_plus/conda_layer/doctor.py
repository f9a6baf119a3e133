"""The ``package-cache`` health check of ``conda doctor``: verify's fast level over every pkgs dir.

conda hands every check a prefix; this one checks the package caches instead (and says so).
The prefix, and every other environment we can find, only decide which damaged entries are named
first: those an environment uses are the ones that break a reinstall or a new install.

The fixer runs repair after ``confirm``. ``conda doctor --fix --json`` answers yes to every
confirm without asking (conda's ``confirm_yn`` under ``--json``), so re-extracting and
re-downloading (which lose nothing) proceed, but removing an entry needs an explicit ``--yes``.
"""

from __future__ import annotations

import logging
import os
import sys

from ..ui.text import printable
from .compat import conda_context, install_host

NAME = "package-cache"
SUMMARY = (
    "Verify the package caches (pkgs_dirs): missing, truncated or altered files "
    "in extracted packages"
)
FIX = "Re-extract or re-download damaged cache entries (conda cache repair)"

OK_MARK = "✅"
X_MARK = "❌"


def _marks() -> tuple[str, str]:
    try:
        from conda.base.constants import OK_MARK as ok
        from conda.base.constants import X_MARK as x

        return ok, x
    except Exception:
        return OK_MARK, X_MARK


def _pkgs_dirs() -> list[str]:
    from ..layouts.caches import resolve_pkgs_dirs

    try:
        return resolve_pkgs_dirs(None, use_conda=True)[0]
    except Exception:
        return resolve_pkgs_dirs(None, use_conda=False)[0]


def find(pkgs_dirs: list[str] | None = None):
    """The fast-level report over every configured cache (the finder action and fixer share)."""
    from ..integrity.findings import FAST
    from ..integrity.judgement import judge
    from ..integrity.verify import verify_caches
    from ..layouts.caches import PackageCaches

    # judged like verify: what a --full run found is still known here
    report = verify_caches(PackageCaches(pkgs_dirs or _pkgs_dirs()), None, FAST)
    return judge(report, command="conda cache")


def _used_by_prefix(prefix: str) -> set[str]:
    """Extracted dirs (and archive names) the environment at ``prefix`` was installed from."""
    import glob
    import json

    used: set[str] = set()
    for meta in glob.glob(os.path.join(prefix, "conda-meta", "*.json")):
        try:
            with open(meta, "rb") as fh:
                data = json.load(fh)
        except (OSError, ValueError, RecursionError):
            continue
        if not isinstance(data, dict):
            continue
        link = data.get("link") if isinstance(data.get("link"), dict) else {}
        for value in (link.get("source"), data.get("extracted_package_dir")):
            if isinstance(value, str) and value:
                used.add(os.path.normpath(value))
        for value in (data.get("fn"), data.get("url")):
            if isinstance(value, str) and value:
                used.add(value.split("#", 1)[0].rsplit("/", 1)[-1])
    return used


def usage_of(bad, prefix: str) -> dict[str, list[str]]:
    """extracted dir of each bad entry → environments using it (the checked prefix included)."""
    out: dict[str, list[str]] = {f.path: [] for f in bad}
    try:
        from ..envs.discovery import known_environments
        from ..layouts.caches import PackageCaches
        from ..usage.graph import scan_usage

        wanted = {f.path for f in bad}
        dirs = sorted({f.pkgs_dir for f in bad})
        records = [r for r in PackageCaches(dirs).records() if r.extracted_package_dir in wanted]
        envs = known_environments([prefix], use_conda=True)
        for path, u in scan_usage(records, envs).entries.items():
            if path in out:
                out[path] = sorted(u.users)
    except Exception:
        # Other environments only order the report; the checked prefix still counts, below.
        logging.getLogger(__name__).debug("usage scan for doctor failed", exc_info=True)
    # The checked prefix at least, from its own conda-meta records.
    mine = _used_by_prefix(prefix)
    for f in bad:
        names = {os.path.basename(f.entry) + ext for ext in (".conda", ".tar.bz2")}
        if (os.path.normpath(f.path) in mine or names & mine) and prefix not in out[f.path]:
            out[f.path].insert(0, prefix)
    return out


def render(report, prefix: str, verbose: bool) -> str:
    ok, x = _marks()
    t = report.totals()
    ncaches = sum(1 for c in report.caches if c["exists"])
    scope = (
        f"{t['entries']} package(s) in {ncaches} package cache(s), fast level "
        "(this check looks at pkgs_dirs, not at the environment)"
    )
    bad = report.bad
    missing = report.not_found(False)
    if not bad and missing:  # nothing checked is not "intact"
        where = ", ".join(n["what"] for n in missing)
        return f"{x} No package cache to check: none of pkgs_dirs exists ({where}).\n"
    hostile = _hostile_lines(report, x)
    if not bad and hostile:
        return "\n".join(hostile) + "\n"
    if not bad:
        return f"{ok} The package caches are intact: {scope}.\n"
    used = usage_of(bad, prefix)
    bad = sorted(bad, key=lambda f: (not used.get(f.path), f.pkgs_dir, f.entry))
    in_use = sum(1 for f in bad if used.get(f.path))
    # verify's verdicts: damaged (repair fixes it) apart from defective as published (nothing can)
    defective = sum(1 for f in bad if getattr(f, "verdict", "") == "defective")
    counts: dict[str, int] = {}
    for f in bad:
        if getattr(f, "verdict", "") != "defective":
            counts[f.status] = counts.get(f.status, 0) + 1
    kinds = ", ".join(
        f"{counts[s]} {s}" for s in ("corrupt", "incomplete", "missing-metadata") if counts.get(s)
    )
    if defective:
        kinds = ", ".join(filter(None, [kinds, f"{defective} defective as published"]))
    lines = [
        f"{x} {len(bad)} {'bad' if defective else 'damaged'} package(s) in the package caches "
        f"({kinds}); "
        f"{in_use} used by environments. Checked {scope}."
    ]
    shown = bad if verbose else [f for f in bad if used.get(f.path)][:10]
    for f in shown:
        users = used.get(f.path)
        note = f"  (used by {', '.join(users)})" if users else ""
        status = "defective" if getattr(f, "verdict", "") == "defective" else f.status
        lines.append(f"  {status}: {f.label} in {f.pkgs_dir}{note}")
        if verbose:
            lines += [f"      {p.describe()}" for p in f.problems]
            remedy = getattr(f, "remedy", None) or {}
            if remedy.get("command"):
                lines.append(f"      {remedy['action']}: {remedy['command']}")
            elif remedy:
                lines.append(f"      no fix: {remedy['reason']}")
    if not verbose:
        lines.append("  (-v lists every damaged package and file)")
    if defective < len(bad):
        lines.append("  Fix with `conda doctor --fix package-cache` or `conda cache repair`.")
    if defective:
        lines.append("  A package defective as published has no fix here (-v says why).")
    return "\n".join(lines + hostile) + "\n"


def _hostile_lines(report, x: str) -> list[str]:
    """Names that would lead a scan out of the cache, links planted in private places."""
    from ..integrity.findings import HOSTILE_ENTRY

    found = [p for p in report.leftovers if p.kind == HOSTILE_ENTRY]
    if not found:
        return []
    lines = [f"{x} {len(found)} hostile name(s) or planted link(s) in the package caches:"]
    lines += [f"  {p.path} ({p.detail})" for p in found[:10]]
    lines.append("  Remove them with `conda cache clean --temp`.")
    return lines


def action(prefix: str, verbose: bool) -> None:
    install_host()
    report = find()
    sys.stdout.write(printable(render(report, prefix, verbose)) + "\n")
    sys.stdout.flush()


def fixer(prefix: str, args, confirm) -> int:
    """Repair what the check finds; ``confirm`` raises on --dry-run and when the user says no."""
    from ..integrity.repair import REMOVE, SKIP, execute_plan, plan_repair
    from ..ui.reports import describe_plan, describe_result
    from .subcommand import run_from_conda

    install_host()
    ctx = conda_context()
    report = find()
    plan = plan_repair(report, offline=bool(ctx.offline))
    actionable = [a for a in plan.actions if a.action != SKIP]
    print(printable(describe_plan(plan)))
    if not actionable:
        return 0
    confirm("Repair these cache entries?")
    # Under --json, confirm() says yes on its own; there only --yes is an explicit yes.
    unattended = bool(ctx.json) or str(getattr(ctx, "console", "")) == "json"
    allow_remove = bool(ctx.always_yes) or not unattended
    if any(a.action == REMOVE for a in actionable) and not allow_remove:
        print("Entries to remove are kept: removing needs an explicit --yes.")
    run = run_from_conda(args)
    stats = execute_plan(plan, run, allow_remove=allow_remove)
    print(printable(describe_result(plan, stats)))
    return 1 if stats["failed"] else 0
