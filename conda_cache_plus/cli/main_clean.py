"""``conda cache clean``: remove cache entries by policy (semantics in ``usage/policies.py``)."""

from __future__ import annotations

import contextlib
import os

from ..exceptions import LockUnavailableError, UsageError, UserAbort
from ..layouts.caches import PackageCaches
from ..model.gcpause import no_gc
from ..model.match import matchers
from ..model.sizes import human_bytes, parse_size
from ..ui.text import table, wrap
from ..usage.graph import scan_usage
from ..usage.policies import (
    DEFAULT_GRACE,
    PART_ENTRY,
    PART_EXTRACTED,
    PART_TARBALLS,
    Policy,
    measure_plan,
    merge,
    parse_duration,
    plan_every_entry,
    plan_logfiles,
    plan_packages,
    plan_temp,
)
from ..usage.removal import execute_plan
from .main_usage import add_env_option, environments

JSON_VERSION = 1
# the default of --grace, for CI runners that fill a cache and clean it in one job
GRACE_ENV = "CONDA_CACHE_PLUS_GRACE"


def add_lock_option(parser, *, default: float | None = 60.0, default_text: str = "60") -> None:
    parser.add_argument(
        "--lock-timeout",
        type=float,
        default=default,
        metavar="SECONDS",
        help="How long to wait for other conda/mamba/pixi processes to release the cache "
        f"(default {default_text}).",
    )


def configure_parser(parser) -> None:
    parser.add_argument(
        "specs", nargs="*", metavar="SPEC", help="Only consider entries matching these specs."
    )
    conda = parser.add_argument_group(
        "conda clean's spellings (what they remove here; never what an environment uses)"
    )
    conda.add_argument(
        "-a",
        "--all",
        dest="clean_all",
        action="store_true",
        help="Every safe policy at once: unused entries, archives of the extracted entries that "
        "stay, leftovers, log files and the index cache (conda clean --all, but nothing an "
        "environment uses). Combine with --dry-run to see the plan.",
    )
    conda.add_argument(
        "-p",
        "--packages",
        action="store_true",
        help="Extracted directories of unused entries (conda clean -p). Unlike conda, also "
        "keeps those linked by symlink or copy, and a directory whose archive is gone "
        "(the only copy). With -t: the unused entries whole.",
    )
    conda.add_argument(
        "-t",
        "--tarballs",
        action="store_true",
        help="Archives (conda clean -t), but only of entries whose extracted directory is "
        "complete: an archive that is an entry's only copy stays.",
    )
    conda.add_argument(
        "-i", "--index-cache", action="store_true", help="The repodata cache pkgs/cache."
    )
    conda.add_argument(
        "-c",
        "--tempfiles",
        nargs="*",
        metavar="PREFIX",
        help="The caches' leftovers, as --temp. conda clean -c PREFIX also removes .c~ files "
        "inside environments; that stays conda's (run it there), so no PREFIX is taken here.",
    )
    conda.add_argument(
        "-l", "--logfiles", action="store_true", help="conda's log files (pkgs/.logs)."
    )
    conda.add_argument(
        "-f",
        "--force-pkgs-dirs",
        action="store_true",
        help="Every entry of the writable caches, in use or not, with their leftovers, logs and "
        "index cache (conda clean -f removes the cache directories themselves). Breaks "
        "environments that link by symlink; not part of --all.",
    )
    pol = parser.add_argument_group("Package policies (combined: an entry must meet all)")
    pol.add_argument("--unused", action="store_true", help="Entries no known environment uses.")
    pol.add_argument(
        "--older-than",
        metavar="DURATION",
        help="Entries last used (linked or extracted) longer ago than DURATION: 30d, 12h, 2w.",
    )
    pol.add_argument(
        "--keep-latest",
        type=int,
        metavar="N",
        help="Entries that are not among the N newest versions of their package name.",
    )
    pol.add_argument(
        "--max-size",
        metavar="SIZE",
        help="Least recently used entries until the caches' packages fit in SIZE (500M, 20G).",
    )
    pol.add_argument(
        "--keep-history",
        action="store_true",
        help="Also keep entries named by any revision in conda-meta/history (conda install --rev).",
    )
    pol.add_argument(
        "--extracted",
        action="store_true",
        help="Remove only extracted directories, of entries whose archive stays.",
    )
    pol.add_argument(
        "--grace",
        metavar="DURATION",
        help="Leave alone entries downloaded, extracted or linked more recently than this "
        f"(an install may be using them; default {DEFAULT_GRACE}, or ${GRACE_ENV}; 0 to "
        "ignore).",
    )
    pol.add_argument(
        "--force-unsure",
        action="store_true",
        help="Also remove entries kept only because their use cannot be ruled out: an "
        "environment we cannot read fully may use them, or their files have hard links from "
        "outside the known environments. Entries known environments use are still kept.",
    )
    other = parser.add_argument_group("Other targets")
    other.add_argument(
        "--temp",
        action="store_true",
        help="Leftovers: partial downloads (unless a download holds them), .c~ holds, trash, "
        "orphan temp dirs.",
    )
    add_env_option(parser, "Also treat PREFIX as a known environment (repeatable).")
    add_lock_option(parser)


def policy_from_args(args) -> Policy:
    if args.force_pkgs_dirs:
        # conda clean -f: everything in the writable caches; combined with nothing else
        others = [o for o, given in _selectors(args) if given]
        if others:
            raise UsageError(f"-f/--force-pkgs-dirs removes everything; drop {', '.join(others)}")
        args.temp = args.index_cache = args.logfiles = True
    if args.tempfiles:
        raise UsageError(
            f"-c/--tempfiles takes no PREFIX here ({args.tempfiles[0]!r}): it removes the "
            "caches' leftovers; for .c~ files inside an environment run `conda clean -c PREFIX`"
        )
    if args.tempfiles is not None:
        args.temp = True
    if args.tarballs and args.extracted:
        raise UsageError("-t/--tarballs and --extracted exclude each other")
    # conda clean -p: unused extracted directories; -pt: the unused entries whole, and the
    # archives of the rest (what --all does with packages)
    args.rest_tarballs = bool(args.clean_all or (args.packages and args.tarballs))
    if args.packages:
        args.unused = True
        if args.tarballs:
            args.tarballs = False
        elif not args.clean_all:
            args.extracted = True
    if args.clean_all:
        others = [
            opt
            for opt, given in (
                ("--older-than", args.older_than),
                ("--keep-latest", args.keep_latest is not None),
                ("--max-size", args.max_size),
                ("--extracted", args.extracted),
            )
            if given
        ]
        if others:
            raise UsageError(f"--all already picks the policies; drop {', '.join(others)}")
        args.unused = args.temp = args.index_cache = args.logfiles = True
        args.tarballs = False  # the archives of the rest: rest_tarballs
    try:
        older = parse_duration(args.older_than) if args.older_than else None
        max_size = parse_size(args.max_size) if args.max_size else None
        grace = parse_duration(args.grace or os.environ.get(GRACE_ENV) or DEFAULT_GRACE)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.keep_latest is not None and args.keep_latest < 0:
        raise UsageError("--keep-latest needs a number >= 0")
    part = PART_TARBALLS if args.tarballs else PART_EXTRACTED if args.extracted else PART_ENTRY
    policy = Policy(
        unused=args.unused,
        older_than=older,
        keep_latest=args.keep_latest,
        max_size=max_size,
        part=part,
        temp=args.temp,
        index_cache=args.index_cache,
        keep_history=args.keep_history,
        specs=matchers(args.specs),
        grace=grace or None,
    )
    if not (policy.selects_packages or policy.temp or policy.index_cache or args.logfiles):
        raise UsageError(
            "say what to clean: -a/--all, -p/--packages, -t/--tarballs, -i/--index-cache, "
            "-c/--tempfiles, -l/--logfiles, or policies: --unused, --older-than, --keep-latest, "
            "--max-size, --extracted"
        )
    return policy


def _selectors(args):
    return (
        ("--all", args.clean_all),
        ("--packages", args.packages),
        ("--tarballs", args.tarballs),
        ("--unused", args.unused),
        ("--older-than", args.older_than),
        ("--keep-latest", args.keep_latest is not None),
        ("--max-size", args.max_size),
        ("--extracted", args.extracted),
    )


# --- shared by clean and remove ------------------------------------------------------------------
@contextlib.contextmanager
def write_locks(run, timeout: float):
    """The write lock of every writable cache, the one its kind needs (layouts/kinds.py: ours +
    mamba's for conda's layout, rattler's global lock for rattler's), waiting with a note."""
    from ..layouts.kinds import detect, writability

    with contextlib.ExitStack() as stack:
        for pkgs_dir in run.pkgs_dirs:
            if writability(pkgs_dir)[0]:
                pkgs_dir = os.path.abspath(pkgs_dir)
                try:
                    stack.enter_context(
                        detect(pkgs_dir).write_lock(
                            pkgs_dir,
                            timeout=timeout,
                            on_wait=lambda msg: run.out.message(
                                msg + " (another conda, mamba or pixi may be using the cache)"
                            ),
                        )
                    )
                except PermissionError as exc:
                    # another user's cache opened by hand (chmod 777), its lock files not
                    raise LockUnavailableError(
                        exc.filename or pkgs_dir, exc.strerror or str(exc)
                    ) from None
        yield


def _item_table(items) -> str:
    """One aligned row per item, grouped under their cache: sizes right-aligned so a long list
    can be scanned by eye; the cache is a heading, not a column, to stay within 80 columns."""
    from .main_list import group_by_cache

    out = []
    for pkgs_dir, group in group_by_cache(items):
        rows = []
        for item in group:
            state = "" if item.status == "planned" else item.status
            if item.error:
                state += f" ({item.error})"
            rows.append(
                [
                    item.kind,
                    item.name,
                    human_bytes(item.bytes.freed),
                    "; ".join(item.reasons) or "-",
                    state,
                ]
            )
        # apparent sizes: in the heading's total and --json (80 columns)
        headers = ["Kind", "Entry", "Freed", "Why", ""]
        if len({r[-1] for r in rows}) == 1:  # all planned, or all removed (the heading says so)
            headers, rows = headers[:-1], [r[:-1] for r in rows]
        out.append(f"# in cache at {pkgs_dir}:")
        # the entry is never cut: a plan that hides what goes is no plan
        out.append(table(headers, rows, right={2}, shrink=(3, 4), indent=2, key=1))
    return "\n".join(out)


def render(data: dict, plan, verb: str, verbose: int) -> str:
    t = data["totals"]
    lines = []
    if plan.items:
        head = "Would remove" if data["dry_run"] else "Removed" if data.get("removed") else "Remove"
        if data.get("error"):  # the cache's lock could not be taken: nothing was removed
            lines.append(f"Could not remove {t['items']} item(s) ({human_bytes(t['freed'])}):")
        else:
            lines.append(
                wrap(
                    f"{head} {t['items']} item(s): {human_bytes(t['freed'])} freed on disk "
                    f"({human_bytes(t['apparent'])} apparent"
                    + (
                        f"; {human_bytes(t['still_linked'])} stays, linked from environments "
                        "or copies"
                        if t["still_linked"]
                        else ""
                    )
                    + "):",
                    "  ",
                )
            )
        lines += ["  " + row for row in _item_table(plan.items).splitlines()]
    else:
        lines.append(f"Nothing to {verb}.")
    if plan.skipped:
        lines.append(f"Kept {len(plan.skipped)}:")
        shown = plan.skipped if verbose else plan.skipped[:20]
        for s in shown:
            users = f" by {', '.join(s.used_by)}" if s.used_by else ""
            lines.append(wrap(f"  {s.name}  [{s.pkgs_dir}]: {s.reason}{users}", "    "))
        if len(shown) < len(plan.skipped):
            lines.append(f"  ... and {len(plan.skipped) - len(shown)} more (use -v)")
    for d in plan.read_only:
        n, freed = plan.read_only_freed.get(d, (0, 0))
        there = f"; removing its {n} selected item(s) would free {human_bytes(freed)}" if n else ""
        lines.append(f"! {d}: read-only cache, left alone{there}")
    lines += [wrap(f"! {n}", "  ") for n in plan.notes]
    removed = data.get("removed")
    if removed:
        lines.append(
            wrap(
                f"Done: {removed['items']} item(s), {removed['files']} files, "
                f"{removed['dirs']} dirs, "
                f"{human_bytes(removed['bytes'])} deleted"
                + (f"; {removed['failed']} failed" if removed["failed"] else "")
                + (
                    f"; {removed['urls_lines']} urls.txt line(s) dropped"
                    if removed["urls_lines"]
                    else ""
                ),
                "  ",
            )
        )
    return "\n".join(lines)


def run_removal(
    run,
    args,
    make_plan,
    *,
    verb: str,
    extra: dict | None = None,
    detail: bool = True,
    history: bool = True,
) -> int:
    """Plan (under the write locks unless dry run), show, confirm, remove exactly the plan.
    ``detail=False``: the plan needs only who uses each entry (scan_usage's verdict mode);
    ``history=False``: nor which environments' histories name it."""
    with no_gc():
        return _run_removal(
            run, args, make_plan, verb=verb, extra=extra, detail=detail, history=history
        )


def _run_removal(
    run,
    args,
    make_plan,
    *,
    verb: str,
    extra: dict | None = None,
    detail: bool = True,
    history: bool = True,
) -> int:

    def build():
        from ..envs.discovery import visibility_notes

        envs = environments(run, args)
        caches = PackageCaches(run.pkgs_dirs, origin=run.pkgs_origin)
        report = scan_usage(caches.records(), envs, detail=detail, history=history)
        plan = measure_plan(make_plan(caches, report))
        if plan.items or any(s.kind != "temp" for s in plan.skipped):
            # what decides "in use" may not see every environment: say so where it matters
            plan.notes += visibility_notes(use_conda=run.conda)
            if any(not c.kind.keeps_urls for c in caches.caches):
                from ..layouts.pixi import VISIBILITY_NOTE

                plan.notes.append(VISIBILITY_NOTE)
        for state in report.envs:
            if state.unsure or state.unsure_all:
                plan.notes += [f"cannot read {state.env.prefix} fully: {p}" for p in state.problems]
        return envs, plan

    def payload(envs, plan, removed=None):
        data = {
            "version": JSON_VERSION,
            "verb": verb,
            "dry_run": run.dry_run,
            "pkgs_dirs": list(run.pkgs_dirs),
            "environments": [e.prefix for e in envs],
            **(extra or {}),
            **plan.to_json(),
        }
        if removed is not None:
            data["removed"] = removed.to_json()
        return data

    if run.dry_run:
        envs, plan = build()
        data = payload(envs, plan)
        run.out.result(data, _text(run, data, plan, verb))
        return 0
    with contextlib.ExitStack() as locks:
        try:
            locks.enter_context(write_locks(run, args.lock_timeout))
        except LockUnavailableError as exc:
            # nothing can be removed: say what would have been, each item with the reason
            envs, plan = build()
            for item in plan.items:
                item.status, item.error = "not removed", "the cache's lock could not be taken"
            data = {**payload(envs, plan), "error": str(exc)}
            run.out.result(data, _text(run, data, plan, verb))
            raise
        envs, plan = build()
        if not plan.items:
            data = payload(envs, plan)
            run.out.result(data, _text(run, data, plan, verb))
            return _exit(plan)
        if not run.yes:
            run.out.message(render(payload(envs, plan), plan, verb, run.verbose))
        if not run.out.confirm("Proceed"):
            raise UserAbort()
        removed = execute_plan(plan)
    data = payload(envs, plan, removed)
    run.out.result(data, _text(run, data, plan, verb))
    return 1 if removed.failed else _exit(plan)


def _text(run, data: dict, plan, verb: str) -> str | None:
    """The result for people; None for --json, which never shows it (a table of every item)."""
    if run.json or run.console == "json":
        return None
    return render(data, plan, verb, run.verbose)


def _exit(plan) -> int:
    return 0


def execute(args, run) -> int:
    policy = policy_from_args(args)

    def make_plan(caches, report):
        parts = []
        if args.force_pkgs_dirs:
            parts.append(plan_every_entry(caches, report, policy.specs))
        if policy.selects_packages:
            parts.append(plan_packages(caches, report, policy, force_unsure=args.force_unsure))
        if args.rest_tarballs:
            parts.append(_tarballs_of_the_rest(caches, report, policy, parts[0]))
        if policy.temp or policy.index_cache:
            parts.append(plan_temp(caches, temp=policy.temp, index_cache=policy.index_cache))
        if args.logfiles:
            parts.append(plan_logfiles(caches))
        return merge(*parts)

    extra = {"policy": {**policy.to_json(), "all": bool(args.clean_all), "logfiles": args.logfiles}}
    # --unused drops every entry in use before anything else looks at it (plan_packages): who
    # uses an entry is all the plan needs of the usage scan
    detail = not policy.unused
    # histories decide only --keep-history (reading every conda-meta/history is a visible part
    # of a first clean)
    return run_removal(
        run,
        args,
        make_plan,
        verb="clean",
        extra=extra,
        detail=detail,
        history=policy.keep_history,
    )


def _tarballs_of_the_rest(caches, report, policy, entries_plan):
    """``--all``'s second package policy: the archives of the entries that stay (their extracted
    directory is complete, so conda links from it and never needs the archive again)."""
    tarballs = Policy(
        part=PART_TARBALLS, specs=policy.specs, keep_history=policy.keep_history, grace=policy.grace
    )
    plan = plan_packages(caches, report, tarballs)
    going = {(i.pkgs_dir, i.name) for i in entries_plan.items}
    plan.items = [i for i in plan.items if (i.pkgs_dir, i.name) not in going]
    plan.skipped = [k for k in plan.skipped if (k.pkgs_dir, k.name) not in going]
    plan.read_only = []  # the first plan already says so
    return plan
