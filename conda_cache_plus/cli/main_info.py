"""``conda cache info``: every cache, writable or not, with counts and sizes."""

from __future__ import annotations

import os

from ..layouts.caches import PackageCaches
from ..layouts.inventory import cache_summary
from ..model.cache_paths import pkgs_dir_problem
from ..model.sizes import InodeSet, human_bytes

JSON_VERSION = 1


def configure_parser(parser) -> None:
    parser.add_argument(
        "--counts-only",
        action="store_true",
        help="Skip measuring sizes on disk (walking a large cache takes a while).",
    )


def build(run, *, sizes: bool = True) -> dict:
    caches = PackageCaches(run.pkgs_dirs, origin=run.pkgs_origin)
    inodes = InodeSet()  # shared, so a file hard-linked between two caches counts once
    summaries = []
    for c in caches.writable_first():
        inodes.tag = c.pkgs_dir
        summaries.append(cache_summary(c, sizes=sizes, inodes=inodes))
    for s in summaries:
        if s["sizes"]:
            # known only after every cache was walked: a link from another cache is not "outside"
            outside = inodes.linked_outside(s["path"])
            s["sizes"]["linked_outside"] = outside
            s["sizes"]["reclaimable"] = max(s["sizes"]["disk"] - outside, 0)
    totals: dict = {}
    for s in summaries:
        for k, v in s["counts"].items():
            totals[k] = totals.get(k, 0) + v
    if sizes:
        for key in (
            "apparent",
            "disk",
            "archives",
            "leftovers",
            "index_cache",
            "linked_outside",
            "reclaimable",
        ):
            totals[key] = sum((s["sizes"] or {}).get(key, 0) for s in summaries)
    return {
        "version": JSON_VERSION,
        "pkgs_dirs": list(run.pkgs_dirs),
        "pkgs_dirs_source": run.pkgs_origin,
        "caches": summaries,
        "totals": totals,
        "rattler_caches": rattler_caches(run.pkgs_dirs),
    }


def rattler_caches(pkgs_dirs) -> list[dict]:
    """pixi's and rattler's package caches (pixi.py), each with where it came from and whether
    it is among the caches looked at."""
    from ..layouts.pixi import cache_dirs

    looked_at = {os.path.realpath(p) for p in pkgs_dirs}
    out = []
    for c in cache_dirs():
        item = c.to_json()
        item["in_pkgs_dirs"] = os.path.realpath(item["path"]) in looked_at
        out.append(item)
    return out


def _state(s: dict) -> str:
    why = pkgs_dir_problem(s["path"])  # the wording every verb uses for a path that is no cache
    if why or not s["exists"]:
        return why or "does not exist"
    if s["writable"] is True:
        return "writable"
    if s["writable"] is False:
        return f"read-only ({s['writable_reason']})"
    return s["writable_reason"]


def render(data: dict, verbose: int = 0) -> str:
    lines = []
    for s in data["caches"]:
        c = s["counts"]
        lines.append(f"{s['path']}")
        lines.append(
            f"  state       : {_state(s)}"
            + (f"  [{s['layout']} layout]" if s["layout"] in ("nested", "rattler") else "")
        )
        if s["exists"]:
            lines.append(
                f"  packages    : {c['packages']}  (archives {c['archives']}, extracted "
                f"{c['extracted']}, both {c['both']})"
            )
            lines.append(
                f"  broken      : {c['broken']}   incomplete: {c['incomplete']}   "
                f"leftovers: {c['leftovers']}"
            )
            if s["sizes"]:
                z = s["sizes"]
                lines.append(
                    f"  size        : {human_bytes(z['disk'])} on disk, "
                    f"{human_bytes(z['apparent'])} apparent"
                )
                lines.append(
                    f"  of which    : archives {human_bytes(z['archives'])}, leftovers "
                    f"{human_bytes(z['leftovers'])}, index cache {human_bytes(z['index_cache'])}"
                )
                lines.append(
                    f"  reclaimable : {human_bytes(z['reclaimable'])} if all of it went "
                    f"({human_bytes(z['linked_outside'])} stays, linked from elsewhere)"
                )
        shown = s["problems"] + [f"broken: {b['path']} ({b['reason']})" for b in s["broken"]]
        if verbose:
            shown += [f"leftover ({lo['kind']}): {lo['path']}" for lo in s["leftovers"]]
            shown += s["ignored"]
        limit = None if verbose else 5
        for p in shown[:limit]:
            lines.append(f"  ! {p}")
        if limit is not None and len(shown) > limit:
            lines.append(f"  ! ... and {len(shown) - limit} more (use -v)")
        lines.append("")
    t = data["totals"]
    if len(data["caches"]) > 1 and t:
        total = f"total: {t.get('packages', 0)} packages in {len(data['caches'])} caches"
        if "disk" in t:
            total += f", {human_bytes(t['disk'])} on disk"
        lines.append(total)
    lines.append(f"(pkgs_dirs from {data['pkgs_dirs_source']})")
    others = [c for c in data.get("rattler_caches", ()) if c["exists"] and not c["in_pkgs_dirs"]]
    if others:
        lines.append("")
        lines.append("pixi/rattler package caches (look at one with --pkgs-dir PATH):")
        for c in others:
            lines.append(f"  {c['path']}  (from {c['source']})")
    return "\n".join(lines)


def execute(args, run) -> int:
    from ..model.gcpause import no_gc

    with no_gc():  # sizes walk every file: 10^5 entries make millions of objects, no cycles
        data = build(run, sizes=not args.counts_only)
        run.out.result(data, render(data, run.verbose))
    return 0
