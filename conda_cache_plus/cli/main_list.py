"""``conda cache list [SPEC ...]``: the packages in every cache."""

from __future__ import annotations

from ..caches import PackageCaches
from ..inventory import select, sort_records
from ..match import matchers
from ..output import table
from ..sizes import human_bytes

JSON_VERSION = 1


def configure_parser(parser) -> None:
    parser.add_argument(
        "specs",
        nargs="*",
        metavar="SPEC",
        help="Only packages matching these specs (name, glob or MatchSpec).",
    )
    parser.add_argument(
        "--sort",
        choices=("name", "size", "date"),
        default="name",
        help="Order by name (default), size (largest first) or date (newest first).",
    )
    parser.add_argument(
        "--paths",
        action="store_true",
        help="Print only the extracted directory of each package (for scripts).",
    )


def build(run, specs: list[str], sort: str) -> dict:
    caches = PackageCaches(run.pkgs_dirs, origin=run.pkgs_origin)
    found = []
    problems = []
    for cache in caches.writable_first():
        res = cache.load()
        if not res.exists:
            continue
        found.extend(res.records)
        problems += [f"{cache.pkgs_dir}: {p}" for p in res.problems]
        problems += [f"{b.path}: broken ({b.reason})" for b in res.broken]
    records = sort_records(select(found, matchers(specs)), sort)
    return {
        "version": JSON_VERSION,
        "pkgs_dirs": list(run.pkgs_dirs),
        "specs": list(specs),
        "packages": [r.to_json() for r in records],
        "problems": problems,
    }, records


def render(records, problems: list[str], specs: list[str]) -> str:
    if not records:
        lines = ["No cached packages" + (f" match {' '.join(specs)}." if specs else ".")]
    else:
        rows = [
            [
                r.name,
                r.version,
                r.build,
                r.channel,
                ",".join(f.lstrip(".") for f in r.formats) or "-",
                human_bytes(r.archive_bytes or r.size),
                r.pkgs_dir,
            ]
            + (["!"] if r.problems else [])
            for r in records
        ]
        width = max(len(r) for r in rows)
        rows = [r + [""] * (width - len(r)) for r in rows]
        headers = ["Name", "Version", "Build", "Channel", "Formats", "Size", "Cache"]
        headers += [""] * (width - len(headers))
        lines = [table(headers, rows, right={5})]
        lines.append(f"\n{len(records)} package(s)")
    lines += [f"! {p}" for p in problems]
    return "\n".join(lines)


def execute(args, run) -> int:
    data, records = build(run, args.specs, args.sort)
    if args.paths and not run.json:
        run.out.result(data, "\n".join(r.extracted_package_dir for r in records))
        return 0
    run.out.result(data, render(records, data["problems"], args.specs))
    return 0
