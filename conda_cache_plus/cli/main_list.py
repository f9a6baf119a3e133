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
        "--usage",
        action="store_true",
        help="Add which known environments use each package and the bytes removing it would "
        "free (walks every entry; see `conda cache usage`).",
    )
    parser.add_argument(
        "--paths",
        action="store_true",
        help="Print only the extracted directory of each package (for scripts).",
    )


def build(run, specs: list[str], sort: str, usage: bool = False) -> dict:
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
    packages = [r.to_json() for r in records]
    if usage:
        _add_usage(run, found, records, packages)
    return {
        "version": JSON_VERSION,
        "pkgs_dirs": list(run.pkgs_dirs),
        "specs": list(specs),
        "packages": packages,
        "problems": problems,
    }, records


def _add_usage(run, found, records, packages) -> None:
    from ..envs import known_environments
    from ..footprint import measure
    from ..usage import scan_usage

    report = scan_usage(found, known_environments(use_conda=run.conda))
    for rec, row in zip(records, packages, strict=True):
        u = report.usage_of(rec)
        b = measure([rec.archive_path(e) for e in rec.archives] + [rec.extracted_package_dir])
        row["used_by"] = sorted(u.users)
        row["last_used"] = u.last_used or None
        row["disk"] = b.disk
        row["shared"] = b.shared
        row["reclaimable"] = b.freed


def render(records, problems: list[str], specs: list[str], packages=None) -> str:
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
        headers = ["Name", "Version", "Build", "Channel", "Formats", "Size", "Cache"]
        right = {5}
        if packages and "used_by" in packages[0]:
            for row, pkg in zip(rows, packages, strict=True):
                used = str(len(pkg["used_by"])) if pkg["used_by"] else "unused"
                row[6:6] = [used, human_bytes(pkg["reclaimable"])]
            headers[6:6] = ["Used by", "Reclaimable"]
            right |= {6, 7}
        width = max(len(r) for r in rows)
        rows = [r + [""] * (width - len(r)) for r in rows]
        headers += [""] * (width - len(headers))
        lines = [table(headers, rows, right=right)]
        lines.append(f"\n{len(records)} package(s)")
    lines += [f"! {p}" for p in problems]
    return "\n".join(lines)


def execute(args, run) -> int:
    data, records = build(run, args.specs, args.sort, usage=args.usage)
    if args.paths and not run.json:
        run.out.result(data, "\n".join(r.extracted_package_dir for r in records))
        return 0
    run.out.result(data, render(records, data["problems"], args.specs, data["packages"]))
    return 0
