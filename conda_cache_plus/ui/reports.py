"""Text reports shared by a verb and conda doctor: repair plans and their results, and what a
verb was asked about but could not find."""

from __future__ import annotations

from ..integrity.repair import REDOWNLOAD, REEXTRACT, REMOVE, SKIP
from ..model.sizes import human_bytes

_VERB = {REEXTRACT: "re-extract", REDOWNLOAD: "re-download", REMOVE: "remove", SKIP: "skip"}


def not_found_lines(not_found: list[dict]) -> list[str]:
    """``! what: reason; nothing was checked there`` for each thing asked about but absent."""
    return [
        f"! {'no package cache at ' if n['kind'] == 'pkgs_dir' else 'spec '}{n['what']!s}: "
        f"{n['reason']}; nothing was checked for it"
        for n in not_found
    ]


def describe_plan(plan, report=None, verbose: int = 0, not_found: list[dict] | None = None) -> str:
    if not plan.actions:
        n = len(report.entries) if report is not None else None
        missing = not_found_lines(not_found or [])
        if missing:
            ok = f"the {n} package(s) checked are ok" if n else "nothing was checked"
            return "\n".join([*missing, f"Nothing to repair: {ok}."])
        if n == 0:
            return "Nothing to repair: the package caches hold no packages."
        checked = f" ({n} checked)" if n is not None and verbose else ""
        return f"Nothing to repair: every checked package is ok{checked}."
    found = {(e.pkgs_dir, e.entry): e.problems for e in report.entries} if report else {}
    lines = ["Repair plan:"]
    for a in plan.actions:
        lines.append(f"  {_VERB[a.action]:<12} {a.label}  ({a.status}, {a.problems} problem(s))")
        lines.append(f"      {a.pkgs_dir}/{a.entry}: {a.reason}")
        if verbose:  # what verify found, file by file
            lines += [f"        {p.describe()}" for p in found.get((a.pkgs_dir, a.entry), [])]
    c = plan.counts()
    lines.append(
        f"\n{c[REEXTRACT]} to re-extract, {c[REDOWNLOAD]} to re-download, "
        f"{c[REMOVE]} to remove, {c[SKIP]} skipped."
    )
    return "\n".join(lines)


def describe_result(plan, stats) -> str:
    lines = []
    for a in plan.actions:
        mark = {"done": "done", "failed": "FAILED", "skipped": "skipped"}.get(a.outcome, a.outcome)
        extra = f": {a.detail}" if a.detail else ""
        lines.append(f"  {mark:<8} {_VERB[a.action]:<12} {a.label}{extra}")
    lines.append(
        f"\nRe-extracted {stats['re-extracted']}, re-downloaded {stats['re-downloaded']}, "
        f"removed {stats['removed']} ({human_bytes(stats['bytes_removed'])}), "
        f"failed {stats['failed']}, skipped {stats['skipped']}."
    )
    return "\n".join(lines)
