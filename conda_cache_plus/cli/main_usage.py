"""``conda cache usage [SPEC ...]``: which environments use which cached packages.

Without ``--env``: every cache entry (matching the specs) → the environments using it, and how
(record, hard link, symlink). With ``--env PREFIX``: the other way, that environment's packages →
the cache entries they come from, and those missing from every cache.
"""

from __future__ import annotations

import datetime
import os

from ..envs.discovery import known_environments
from ..exceptions import UsageError
from ..layouts.caches import PackageCaches
from ..layouts.inventory import select, sort_records
from ..model.gcpause import no_gc
from ..model.match import matchers
from ..model.sizes import human_bytes
from ..ui.text import table, wrap
from ..usage.footprint import measure
from ..usage.graph import scan_usage

JSON_VERSION = 1


def add_env_option(parser, help_text: str) -> None:
    # dest is not "prefix": that is how conda's own -p/--prefix lands in its context
    parser.add_argument(
        "--env", dest="env_prefixes", action="append", default=[], metavar="PREFIX", help=help_text
    )
    parser.add_argument(
        "--workspaces",
        dest="workspaces",
        nargs="+",
        default=[],
        metavar="DIR",
        help="Search these directories for pixi workspaces: their .pixi/envs/* environments "
        "count as known (pixi global and pixi exec environments always do).",
    )


def environments(run, args):
    extra = [os.path.abspath(os.path.expanduser(p)) for p in (args.env_prefixes or [])]
    return known_environments(
        extra, use_conda=run.conda, workspaces=getattr(args, "workspaces", None) or ()
    )


def configure_parser(parser) -> None:
    parser.add_argument(
        "specs", nargs="*", metavar="SPEC", help="Only cache entries matching these specs."
    )
    add_env_option(
        parser,
        "Show this environment's packages and the cache entries they come from, instead "
        "(repeatable). It also counts as a known environment.",
    )
    parser.add_argument(
        "--sizes",
        action="store_true",
        help="Measure each entry: on disk, shared with environments, reclaimable if removed.",
    )
    parser.add_argument(
        "--unused-only",
        action="store_true",
        help="Only entries no known environment uses.",
    )


def _date(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d")


def entry_json(rec, usage, sizes: bool) -> dict:
    out = {
        "name": rec.name,
        "version": rec.version,
        "build": rec.build,
        "channel": rec.channel,
        "fn": rec.fn,
        "pkgs_dir": rec.pkgs_dir,
        "entry": rec.entry,
        "extracted_package_dir": rec.extracted_package_dir,
        "formats": rec.formats,
    }
    out.update(usage.to_json())
    if sizes:
        b = measure([rec.archive_path(ext) for ext in rec.archives] + [rec.extracted_package_dir])
        out["sizes"] = {
            "apparent": b.apparent,
            "disk": b.disk,
            "shared": b.shared,
            "reclaimable": b.freed,
        }
    return out


def build_entries(run, args, envs) -> dict:
    caches = PackageCaches(run.pkgs_dirs, origin=run.pkgs_origin)
    records = caches.records()
    report = scan_usage(records, envs)
    chosen = sort_records(select(records, matchers(args.specs)), "name")
    if args.unused_only:  # what clean --unused would select: not in use, not maybe
        chosen = [
            r for r in chosen if not report.usage_of(r).in_use and not report.usage_of(r).maybe
        ]
    entries = [entry_json(r, report.usage_of(r), args.sizes) for r in chosen]
    totals = {
        "entries": len(entries),
        "in_use": sum(1 for e in entries if e["used_by"]),
        "maybe": sum(1 for e in entries if not e["used_by"] and e["maybe_used_by"]),
        "unused": sum(1 for e in entries if not e["used_by"] and not e["maybe_used_by"]),
    }
    if args.sizes:
        for key in ("disk", "shared", "reclaimable"):
            totals[key] = sum(e["sizes"][key] for e in entries)
    return {
        "version": JSON_VERSION,
        "mode": "entries",
        "pkgs_dirs": list(run.pkgs_dirs),
        "specs": list(args.specs),
        "environments": [
            {**s.env.to_json(), "packages": len(s.packages), "problems": s.problems}
            for s in report.envs
        ],
        "entries": entries,
        "totals": totals,
    }


def render_entries(data: dict, verbose: int = 0) -> str:
    from .main_list import cache_heading, group_by_cache

    lines = []
    envs = data["environments"]
    lines.append(f"{len(envs)} known environment(s):")
    lines += [f"  {e['prefix']}  ({', '.join(e['sources'])})" for e in envs]
    lines.append("")
    if not data["entries"]:
        which = f" match {' '.join(data['specs'])}." if data["specs"] else "."
        lines.append("No cache entries" + which)
        return "\n".join(lines)
    sized = data["totals"].get("disk") is not None
    # 80 columns: with --sizes, History and Last used give way (-v and --json keep them)
    dated = verbose or not sized
    headers = ["Name", "Version", "Build", "Used by", "How"]
    right = {3}
    if dated:
        headers += ["History", "Last used"]
        right |= {5}
    if sized:
        right |= {len(headers), len(headers) + 1}
        headers += ["On disk", "Reclaimable"]
    for pkgs_dir, entries in group_by_cache(data["entries"], lambda e: e["pkgs_dir"]):
        rows = []
        for e in entries:
            users = e["used_by"]
            how = sorted({k for u in users for k in u["evidence"]})
            row = [
                e["name"],
                e["version"],
                e["build"],
                str(len(users)) if users else ("maybe" if e.get("maybe_used_by") else "unused"),
                ",".join(how) or "-",
            ]
            if dated:
                row += [str(len(e["in_history_of"])), _date(e["last_used"])]
            if sized:
                row += [human_bytes(e["sizes"]["disk"]), human_bytes(e["sizes"]["reclaimable"])]
            rows.append(row)
        lines += [cache_heading(pkgs_dir, "entries"), "#"]
        lines.append(table(headers, rows, right=right, shrink=(0, 4, 2, 1)))
        if verbose:  # who uses each entry, and how
            for e in entries:
                for u in e["used_by"]:
                    lines.append(f"  {e['entry']} <- {u['prefix']} ({', '.join(u['evidence'])})")
                for m in e.get("maybe_used_by", ()):
                    lines.append(
                        wrap(f"  {e['entry']} <- maybe {m['prefix']} ({m['reason']})", "    ")
                    )
        lines.append("")
    t = data["totals"]
    maybe = f", {t['maybe']} maybe in use" if t.get("maybe") else ""
    summary = f"{t['entries']} entries: {t['in_use']} in use{maybe}, {t['unused']} unused"
    if sized:
        summary += (
            f"; {human_bytes(t['disk'])} on disk, {human_bytes(t['shared'])} shared with "
            f"environments, {human_bytes(t['reclaimable'])} reclaimable"
        )
    lines.append(wrap(summary, "  "))
    for e in data["environments"]:
        lines += [f"! {p}" for p in e["problems"]]
    return "\n".join(lines)


def build_envs(run, args, envs) -> dict:
    caches = PackageCaches(run.pkgs_dirs, origin=run.pkgs_origin)
    report = scan_usage(caches.records(), envs)
    wanted = {os.path.realpath(os.path.abspath(os.path.expanduser(p))) for p in args.env_prefixes}
    out_envs = []
    for state in report.envs:
        if os.path.realpath(state.env.prefix) not in wanted:
            continue
        matched = report.matched.get(state.env.prefix, {})
        packages = []
        for pkg in state.packages:
            row = pkg.to_json()
            row["cache_entries"] = matched.get(pkg.meta_path, [])
            packages.append(row)
        out_envs.append(
            {
                **state.env.to_json(),
                "packages": packages,
                "missing": [p.dist for p in report.missing.get(state.env.prefix, [])],
                "problems": state.problems,
            }
        )
    missing = sorted(wanted - {os.path.realpath(s.env.prefix) for s in report.envs})
    return {
        "version": JSON_VERSION,
        "mode": "environments",
        "pkgs_dirs": list(run.pkgs_dirs),
        "environments": out_envs,
        "not_environments": missing,
    }


def render_envs(data: dict) -> str:
    lines = []
    for env in data["environments"]:
        lines.append(f"{env['prefix']}")
        rows = [
            [
                p["name"],
                p["version"],
                p["build"],
                p["link_type"] or "-",
                "\n".join(p["cache_entries"]) if p["cache_entries"] else "MISSING from every cache",
            ]
            for p in env["packages"]
        ]
        if rows:
            # one line per cache entry keeps the table aligned
            flat = []
            for r in rows:
                entries = r[4].split("\n")
                flat.append([*r[:4], entries[0]])
                flat += [["", "", "", "", e] for e in entries[1:]]
            headers = ["Name", "Version", "Build", "Linked", "Cache entry"]
            lines.append(table(headers, flat, shrink=(4, 0)))
        n_missing = len(env["missing"])
        lines.append(
            f"{len(env['packages'])} package(s), {n_missing} missing from every cache"
            + (f": {', '.join(env['missing'])}" if n_missing else "")
        )
        lines += [f"! {p}" for p in env["problems"]]
        lines.append("")
    for p in data["not_environments"]:
        lines.append(f"! {p}: not a conda environment (no conda-meta)")
    return "\n".join(lines).rstrip()


def execute(args, run) -> int:
    with no_gc():
        return _execute(args, run)


def _execute(args, run) -> int:
    if args.env_prefixes:
        ignored = [o for o, given in (("--sizes", args.sizes), ("--unused-only", args.unused_only),
                                      ("SPEC", args.specs)) if given]  # fmt: skip
        if ignored:
            raise UsageError(
                f"{' and '.join(ignored)} select cache entries; --env shows an environment's "
                "packages instead: drop --env to see the entries, or drop " + " and ".join(ignored)
            )
    envs = environments(run, args)
    # the table is made only for people: at 5,000 entries it cost as much as the JSON
    as_json = run.json or run.console == "json"
    if args.env_prefixes:
        data = build_envs(run, args, envs)
        run.out.result(data, None if as_json else render_envs(data))
        return 1 if data["not_environments"] else 0
    data = build_entries(run, args, envs)
    run.out.result(data, None if as_json else render_entries(data, run.verbose))
    return 0
