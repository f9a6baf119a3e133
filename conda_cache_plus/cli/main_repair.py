"""``conda cache repair [SPEC ...]``: re-extract, re-download or remove corrupt entries."""

from __future__ import annotations

from ..exceptions import EXIT_OK, EXIT_PROBLEMS_FOUND, DryRunExit, UserAbort
from ..gateways.locks import lock_timeout
from ..integrity.repair import SKIP, execute_plan, plan_repair
from ..integrity.verify import verify_caches
from ..layouts.caches import PackageCaches
from ..model.match import matchers
from ..ui.reports import describe_plan, describe_result, not_found_lines
from . import add_level_option, add_specs
from .main_verify import explicit_dirs

JSON_VERSION = 1


def configure_parser(parser) -> None:
    from .main_clean import add_lock_option
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
    add_lock_option(parser)


class _LazyEnvs:
    """The known environments, looked for only when a rattler cache entry needs its URL."""

    def __init__(self, run, args):
        self.run, self.args = run, args

    def __iter__(self):
        from .main_usage import environments

        return iter(environments(self.run, self.args))


def execute(args, run) -> int:
    from ..integrity.judgement import judge

    caches = PackageCaches(run.pkgs_dirs, origin=run.pkgs_origin)
    report = verify_caches(caches, matchers(args.specs), args.verify_level)
    envs = _LazyEnvs(run, args)
    judge(report, command=run.command, offline=run.offline, envs=envs)
    plan = plan_repair(report, offline=run.offline, envs=envs)
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
    # the entries' locks (execute_plan) and those its helpers take: the cache's, rattler's
    with lock_timeout(args.lock_timeout):
        stats = execute_plan(plan, run, lock_timeout=args.lock_timeout)
    data["actions"] = [a.to_json() for a in plan.actions]
    data["stats"] = stats
    text = "\n".join([describe_result(plan, stats), *not_found_lines(not_found)])
    run.out.result(data, text)
    return EXIT_PROBLEMS_FOUND if stats["failed"] or stats["skipped"] or not_found else EXIT_OK
