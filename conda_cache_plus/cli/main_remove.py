"""``conda cache remove SPEC ...``: remove whole entries (archives, directory, urls.txt lines)."""

from __future__ import annotations

from ..exceptions import UsageError
from ..model.match import matchers
from ..usage.policies import Policy, plan_packages
from .main_clean import add_lock_option, run_removal
from .main_usage import add_env_option


def configure_parser(parser) -> None:
    parser.add_argument(
        "specs", nargs="+", metavar="SPEC", help="Packages to remove (name, glob or MatchSpec)."
    )
    parser.add_argument(
        "--force-in-use",
        action="store_true",
        # not dest "force": that is a conda setting
        help="Also remove entries that known environments use (symlinked ones will break; "
        "hard-linked and copied ones keep working but cannot be re-linked offline), and those "
        "kept because their use cannot be ruled out (an environment we cannot read fully, hard "
        "links from outside the known environments).",
    )
    add_env_option(parser, "Also treat PREFIX as a known environment (repeatable).")
    add_lock_option(parser)


def execute(args, run) -> int:
    specs = matchers(args.specs)
    if not specs:
        raise UsageError("name at least one package spec")
    policy = Policy(specs=specs)
    state = {}

    def make_plan(caches, report):
        plan = plan_packages(caches, report, policy, force_in_use=args.force_in_use)
        if not plan.items and not plan.skipped:
            plan.notes.append(f"no cached package matches {' '.join(args.specs)}")
        state["plan"] = plan
        return plan

    rc = run_removal(run, args, make_plan, verb="remove", extra={"specs": list(args.specs)})
    plan = state.get("plan")
    kept = plan is not None and any(_in_use(s.reason) for s in plan.skipped)
    # Keeping what an environment uses is the policy working, not a failure (exit 0, like
    # clean); the report lists each kept entry and who uses it.
    if rc == 0 and kept and not run.json:
        run.out.warn(
            "entries in use (or maybe in use) were kept; add --force-in-use to remove them anyway"
        )
    return rc


def _in_use(reason: str) -> bool:
    from ..usage.policies import LINKED_OUTSIDE

    return reason == "in use" or reason.startswith(("may be in use", LINKED_OUTSIDE))
