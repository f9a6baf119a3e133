"""``conda cache verify [SPEC ...] [--full]``: check cached packages; exit 1 when one is bad."""

from __future__ import annotations

from ..exceptions import EXIT_OK, EXIT_PROBLEMS_FOUND
from ..integrity.findings import FAST, FULL, HOSTILE_ENTRY
from ..integrity.verify import verify_caches
from ..layouts.caches import PackageCaches
from ..model.match import matchers
from ..model.sizes import human_bytes
from ..ui.reports import not_found_lines
from . import add_level_option, add_specs

JSON_VERSION = 1
SHOWN_PER_ENTRY = 5


def configure_parser(parser) -> None:
    add_specs(parser)
    add_level_option(
        parser,
        "Also check the sha256 of every file and the checksum of every archive "
        "(default: types and sizes only).",
    )
    parser.add_argument(
        "--rehash",
        action="store_true",
        help="Re-check every file, ignoring what earlier runs remembered as unchanged.",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        dest="verify_jobs",
        help="Check with N workers (default: the number of CPUs).",
    )


def build(run, specs: list[str], level: str, *, rehash: bool = False, jobs=None, progress=None):
    from ..integrity.judgement import judge

    caches = PackageCaches(run.pkgs_dirs, origin=run.pkgs_origin)
    report = verify_caches(
        caches,
        matchers(specs),
        level,
        use_store=not rehash,
        workers=jobs,
        progress=progress,
        keep_scan=False,  # nothing below reads the records again
    )
    judge(report, command=run.command, offline=run.offline)
    data = report_json(report, run.pkgs_dirs, specs, explicit_dirs(run), run.command)
    return data, report


def explicit_dirs(run) -> bool:
    return run.pkgs_origin == "--pkgs-dir"


def report_json(
    report, pkgs_dirs, specs, explicit: bool = False, command: str = "conda-cache"
) -> dict:
    from ..integrity.judgement import entry_json, leftover_remedy
    from ..ui.jsonstream import Rows

    summary = report.totals()
    summary["seconds"] = round(report.seconds, 4)
    not_found = report.not_found(explicit)
    hostile = any(p.kind == HOSTILE_ENTRY for p in report.leftovers)
    return {
        "version": JSON_VERSION,
        "level": report.level,
        "ok": not report.bad and not not_found and not hostile,
        "not_found": not_found,
        "pkgs_dirs": list(pkgs_dirs),
        "specs": list(specs),
        "summary": summary,
        "caches": report.caches,
        # one row at a time while written: 10^5 rows would otherwise all be held at once
        "entries": Rows(report.entries, lambda e: {**e.to_json(), **entry_json(e)}),
        "leftovers": [
            {**p.to_json(), "remedy": leftover_remedy(p, report.caches, command)}
            for p in report.leftovers
        ],
    }


def render(
    report, verbose: int = 0, command: str = "conda cache", not_found: list[dict] | None = None
) -> str:
    t = report.totals()
    ncaches = sum(1 for c in report.caches if c["exists"])
    counts = ", ".join(
        f"{t[s]} {s}" for s in ("ok", "corrupt", "incomplete", "missing-metadata") if t[s]
    )
    lines = [
        f"Verified {t['entries']} package(s) in {ncaches} cache(s) ({report.level} level) "
        f"in {report.seconds:.2f}s: {counts or 'nothing to check'}."
    ]
    files = f"  files: {t['checked']} checked"
    if t["skipped"]:
        files += f", {t['skipped']} unchanged since they last passed"
    if report.level == FULL:
        files += f", {t['hashed']} hashed ({human_bytes(t['bytes_hashed'])})"
    lines.append(files)
    for e in report.bad:
        lines.append("")
        where = "" if e.writable else "  [read-only cache]"
        status = "defective" if getattr(e, "verdict", "") == "defective" else e.status
        lines.append(f"{status:<16} {e.label}  {e.path}{where}")
        shown = e.problems if verbose else e.problems[:SHOWN_PER_ENTRY]
        lines += [f"    {p.describe()}" for p in shown]
        if len(shown) < len(e.problems):
            lines.append(f"    ... and {len(e.problems) - len(shown)} more (-v shows all)")
        remedy = getattr(e, "remedy", None)
        if remedy and remedy.get("command"):
            lines.append(f"    {remedy['action']}: {remedy['command']}")
        elif remedy:
            lines.append(f"    no fix: {remedy['reason']}")
    if report.leftovers:
        from ..integrity.judgement import leftover_remedy

        lines.append("")
        cmds = {leftover_remedy(p, report.caches, command)["command"] for p in report.leftovers}
        fix = " / ".join(f"`{c}`" for c in sorted(c for c in cmds if c))
        lines.append(f"Leftovers ({len(report.leftovers)}; {fix} removes them):")
        shown = report.leftovers if verbose else report.leftovers[:SHOWN_PER_ENTRY]
        lines += [f"    {p.describe()}" for p in shown]
        if len(shown) < len(report.leftovers):
            lines.append(f"    ... and {len(report.leftovers) - len(shown)} more")
    absent = {n["what"] for n in not_found or [] if n["kind"] == "pkgs_dir"}
    for c in report.caches:
        if c["path"] not in absent:
            lines += [f"! {c['path']}: {p}" for p in c["problems"]]
    lines += not_found_lines(not_found or [])
    if not report.bad and report.level == FAST and t["entries"]:
        lines.append("(fast level: add --full to compare file contents with their sha256)")
    return "\n".join(lines)


def execute(args, run) -> int:
    bar = run.out.progress_bar("Verifying package cache")
    try:
        data, report = build(
            run,
            args.specs,
            args.verify_level,
            rehash=args.rehash,
            jobs=args.verify_jobs,
            progress=bar.update_to,
        )
        bar.update_to(1)
    finally:
        bar.close()
    run.out.result(data, render(report, run.verbose, run.command, data["not_found"]))
    return EXIT_OK if data["ok"] else EXIT_PROBLEMS_FOUND
