"""``conda cache list [SPEC ...]``: the packages in every cache."""

from __future__ import annotations

from ..layouts.caches import PackageCaches
from ..layouts.inventory import select, sort_records
from ..model.match import matchers
from ..model.sizes import human_bytes
from ..ui.text import table
from . import add_specs

JSON_VERSION = 1


def configure_parser(parser) -> None:
    add_specs(parser)
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


def build(run, specs: list[str], sort: str, usage: bool = False):
    """(records, problems, usage rows or None): plain data for both renderings."""
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
    return records, problems, (_usage_rows(run, found, records) if usage else None)


def to_json(run, specs, records, problems, usage_rows) -> dict:
    from ..ui.jsonstream import Rows

    if usage_rows:

        def make(pair):
            row = pair[0].to_json()
            row.update(pair[1])
            return row

        # zip as before: records without a usage row keep their plain row
        pairs = list(zip(records, usage_rows, strict=False))
        pairs += [(r, {}) for r in records[len(pairs) :]]
        packages = Rows(pairs, make)
    else:
        # one row at a time while written: 10^5 rows would otherwise all be held at once
        packages = Rows(records, lambda r: r.to_json())
    return {
        "version": JSON_VERSION,
        "pkgs_dirs": list(run.pkgs_dirs),
        "specs": list(specs),
        "packages": packages,
        "problems": problems,
    }


def _usage_rows(run, found, records) -> list[dict]:
    from ..envs.discovery import known_environments
    from ..usage.footprint import measure
    from ..usage.graph import scan_usage

    report = scan_usage(found, known_environments(use_conda=run.conda))
    rows = []
    for rec in records:
        u = report.usage_of(rec)
        b = measure([rec.archive_path(e) for e in rec.archives] + [rec.extracted_package_dir])
        rows.append(
            {
                "used_by": sorted(u.users),
                "last_used": u.last_used or None,
                "disk": b.disk,
                "shared": b.shared,
                "reclaimable": b.freed,
            }
        )
    return rows


def short_channel(channel: str) -> str:
    """The channel as a table shows it: a local ``file://`` channel by its directory name (the
    full URL is in --json, and ``NAME::spec`` matches either)."""
    if channel.startswith("file://"):
        return channel.rstrip("/").rsplit("/", 1)[-1] or channel
    return channel


def group_by_cache(items, pkgs_dir_of=lambda r: r.pkgs_dir) -> list[tuple[str, list]]:
    """Items in their order, grouped under their cache (caches in first-seen order)."""
    groups: dict[str, list] = {}
    for item in items:
        groups.setdefault(pkgs_dir_of(item), []).append(item)
    return list(groups.items())


def cache_heading(pkgs_dir: str, what: str = "packages") -> str:
    """One heading per cache, as ``conda list`` has one per prefix."""
    return f"# {what} in cache at {pkgs_dir}:"


def render(records, problems: list[str], specs: list[str], usage_rows=None, verbose=0) -> str:
    if not records:
        lines = ["No cached packages" + (f" match {' '.join(specs)}." if specs else ".")]
    else:
        usage_of = dict(zip(map(id, records), usage_rows or (), strict=False))
        lines = []
        for pkgs_dir, recs in group_by_cache(records):
            rows = []
            for r in recs:
                row = [
                    r.name,
                    r.version,
                    r.build,
                    r.channel if verbose else short_channel(r.channel),
                    ",".join(f.lstrip(".") for f in r.formats) or "-",
                    human_bytes(r.archive_bytes or r.size),
                ]
                if usage_rows:
                    pkg = usage_of[id(r)]
                    used = str(len(pkg["used_by"])) if pkg["used_by"] else "unused"
                    row += [used, human_bytes(pkg["reclaimable"])]
                rows.append(row + (["!"] if r.problems else []))
            headers = ["Name", "Version", "Build", "Channel", "Formats", "Size"]
            right = {5}
            if usage_rows:
                headers += ["Used by", "Reclaimable"]
                right |= {6, 7}
            width = max(len(r) for r in rows)
            rows = [r + [""] * (width - len(r)) for r in rows]
            headers += [""] * (width - len(headers))
            lines += [cache_heading(pkgs_dir), "#"]
            if verbose:  # every cell whole, and the subdir (wider than 80 columns if need be)
                subdirs = [r.subdir or "-" for r in recs]
                rows = [[*row[:4], sd, *row[4:]] for row, sd in zip(rows, subdirs, strict=True)]
                headers.insert(4, "Subdir")
                right = {i + 1 if i >= 4 else i for i in right}
            shrink = () if verbose else (0, 3, 2, 1)
            lines.append(table(headers, rows, right=right, shrink=shrink))
            lines.append("")
        caches = len({r.pkgs_dir for r in records})
        lines.append(f"{len(records)} package(s)" + (f" in {caches} caches" if caches > 1 else ""))
    lines += [f"! {p}" for p in problems]
    return "\n".join(lines)


def execute(args, run) -> int:
    from ..model.gcpause import no_gc

    with no_gc():
        return _execute(args, run)


def _execute(args, run) -> int:
    records, problems, usage_rows = build(run, args.specs, args.sort, usage=args.usage)
    if run.json or run.console == "json":
        # Only here: 20,000 records cost half a second to turn into JSON rows.
        run.out.result(to_json(run, args.specs, records, problems, usage_rows), None)
    elif args.paths:
        run.out.result({}, "\n".join(r.extracted_package_dir for r in records))
    else:
        run.out.result({}, render(records, problems, args.specs, usage_rows, run.verbose))
    return 0
