"""``conda cache repair [SPEC ...]``: re-extract, re-download or remove corrupt entries."""

from __future__ import annotations

from ..caches import PackageCaches
from ..exceptions import EXIT_OK, EXIT_PROBLEMS_FOUND, DryRunExit, UserAbort
from ..match import matchers
from ..repair import REDOWNLOAD, REEXTRACT, REMOVE, SKIP, execute_plan, plan_repair
from ..sizes import human_bytes
from ..verify import verify_caches
from . import add_level_option, add_specs
from .main_verify import explicit_dirs, not_found_lines

JSON_VERSION = 1
_VERB = {REEXTRACT: "re-extract", REDOWNLOAD: "re-download", REMOVE: "remove", SKIP: "skip"}


def configure_parser(parser) -> None:
    from .main_usage import add_env_option

    add_specs(parser)
    add_level_option(
        parser,
        "Find damage with the full level (sha256 of every file) before repairing.",
    )
    add_env_option(
        parser,
        "Also read this environment's records for the URLs of damaged entries of a rattler/pixi "
        "cache, which keeps none (repeatable).",
    )


class _LazyEnvs:
    """The known environments, looked for only when a rattler cache entry needs its URL."""

    def __init__(self, run, args):
        self.run, self.args = run, args

    def __iter__(self):
        from .main_usage import environments

        return iter(environments(self.run, self.args))


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


def execute(args, run) -> int:
    caches = PackageCaches(run.pkgs_dirs, origin=run.pkgs_origin)
    report = verify_caches(caches, matchers(args.specs), args.verify_level)
    plan = plan_repair(report, offline=run.offline, envs=_LazyEnvs(run, args))
    not_found = report.not_found(explicit_dirs(run))
    data = {
        "version": JSON_VERSION,
        "level": report.level,
        "pkgs_dirs": list(run.pkgs_dirs),
        "specs": list(args.specs),
        "dry_run": run.dry_run,
        "checked": len(report.entries),
        "not_found": not_found,
        "counts": plan.counts(),
        "actions": [a.to_json() for a in plan.actions],
        "stats": None,
    }
    actionable = [a for a in plan.actions if a.action != SKIP]
    if run.dry_run or not actionable:
        run.out.result(data, describe_plan(plan, report, run.verbose, not_found))
        if run.dry_run and actionable:
            raise DryRunExit()
        return EXIT_PROBLEMS_FOUND if plan.actions or not_found else EXIT_OK
    run.out.message(describe_plan(plan, report, run.verbose))
    if not run.out.confirm("Repair these packages?"):
        raise UserAbort()
    stats = execute_plan(plan, run)
    data["actions"] = [a.to_json() for a in plan.actions]
    data["stats"] = stats
    text = "\n".join([describe_result(plan, stats), *not_found_lines(not_found)])
    run.out.result(data, text)
    return EXIT_PROBLEMS_FOUND if stats["failed"] or stats["skipped"] or not_found else EXIT_OK
