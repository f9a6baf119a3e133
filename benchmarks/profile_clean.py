"""Where the time of ``clean --unused --dry-run --json`` and ``usage --json`` goes, phase by phase.

    python benchmarks/profile_clean.py PKGS_ROOT [--repeat 5]

PKGS_ROOT is a data directory built by ``bench_usage.py`` (``pkgs``, ``envs``, ``home``). Each
run is a fresh process that times, with ``perf_counter``, the phases the verb goes through:
interpreter start and imports, finding the environments, the cache scan, the usage scan, the
plan, the byte accounting of the plan, and building + writing the JSON document; "first" with
nothing remembered (the user cache dir emptied), "repeated" right after. The rows are interleaved
round by round; medians are printed with the load average, and the unused set is checked
against the data's truth (``bench_usage.expected_unused``) on every run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from samework import precompile, require_same  # noqa: E402

CHILD = r"""
import io, json, os, sys, time
t_start = float(sys.argv[1]); verb = sys.argv[2]
t0 = time.perf_counter()
c0 = time.process_time()
from conda_cache_plus.cli import build_standalone_parser, run_standalone
from conda_cache_plus.layouts.caches import PackageCaches
from conda_cache_plus.usage.graph import scan_usage
from conda_cache_plus.model.gcpause import no_gc
from conda_cache_plus.cli.main_usage import environments
from conda_cache_plus.usage.policies import measure_plan, plan_packages
from conda_cache_plus.cli.main_clean import policy_from_args
from conda_cache_plus.ui.output import dumps  # what --json prints
t1 = time.perf_counter()
c1 = time.process_time()
argv = ["usage", "--json"]
if verb == "clean":
    argv = ["clean", "--unused", "-d", "--json", "--grace", "1s"]
args = build_standalone_parser().parse_args(argv)
out = {}
cpu = {}
def mark(name, t):
    out[name] = time.perf_counter() - t
    cpu[name] = time.process_time() - mark.c
    mark.c = time.process_time()
    return time.perf_counter()
mark.c = time.process_time()
mark.c0 = c1
def work():
    with no_gc():
        t = time.perf_counter()
        run = run_standalone(args)
        t = mark("parse+run", t)
        envs = environments(run, args)
        t = mark("environments", t)
        caches = PackageCaches(run.pkgs_dirs, origin=run.pkgs_origin)
        records = caches.records()
        t = mark("cache scan", t)
        # as main_clean asks: clean --unused needs neither detail nor history
        report = scan_usage(records, envs, detail=verb != "clean", history=verb != "clean")
        t = mark("usage scan", t)
        if verb == "clean":
            policy = policy_from_args(args)
            plan = plan_packages(caches, report, policy)
            t = mark("plan", t)
            plan = measure_plan(plan)
            t = mark("measure plan", t)
            doc = dumps(plan.to_json())
            unused = sorted(i.name for i in plan.items)
        else:
            from conda_cache_plus.cli.main_usage import entry_json
            entries = [entry_json(r, report.usage_of(r), False) for r in records]
            t = mark("entries", t)
            doc = dumps({"entries": entries})
            unused = sorted(e["entry"] for e in entries if not e["used_by"])
        t = mark("json", t)
        sys.stdout.write(doc[:0])
    return unused, t


unused, t = work()
t = mark("free (return from the verb)", t)
out["interpreter start"] = t0 - t_start
out["imports"] = t1 - t0
cpu["interpreter start+imports"] = mark.c0
sys.stdout.write(json.dumps({"phases": out, "cpu": cpu, "unused": unused}) + "\n")
sys.stdout.flush()
sys.stderr.write(repr(time.perf_counter()))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--entries", type=int, default=5000)
    ap.add_argument("--envs", type=int, default=50)
    ap.add_argument("--per-env", type=int, default=300)
    ap.add_argument("--step", type=int, default=80)
    args = ap.parse_args()
    precompile()  # as an installed package is
    import bench_usage

    truth = bench_usage.expected_unused(args.entries, args.envs, args.per_env, args.step)
    root = args.root
    xdg = os.path.join(root, "xdg-profile")
    env = dict(
        os.environ,
        HOME=os.path.join(root, "home"),
        CONDA_PKGS_DIRS=os.path.join(root, "pkgs"),
        CONDA_ENVS_DIRS=os.path.join(root, "no-envs-dir"),
        XDG_CACHE_HOME=xdg,
        CONDA_ROOT=os.path.join(root, "no-root"),
        CONDA_CACHE_PLUS_NO_CONDA="1",
    )
    rows = [("clean", True), ("clean", False), ("usage", True), ("usage", False)]
    got: dict[tuple, list[dict]] = {r: [] for r in rows}
    loads = []
    for rnd in range(args.repeat):
        loads.append(os.getloadavg()[0])
        for verb, first in rows:
            if first:
                shutil.rmtree(xdg, ignore_errors=True)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c", CHILD, str(start), verb],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            end = time.perf_counter()
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            wall = end - start
            data = json.loads(proc.stdout)
            data["phases"]["exit (teardown)"] = end - float(proc.stderr.strip().splitlines()[-1])
            require_same(f"unused ({verb}, round {rnd + 1})", {verb: set(data["unused"])}, truth)
            data["wall"] = wall
            data["cpu_total"] = sum(
                getattr(after, f) - getattr(before, f) for f in ("ru_utime", "ru_stime")
            )
            got[(verb, first)].append(data)
    print(f"load average {min(loads):.1f}-{max(loads):.1f}; medians of {args.repeat} (ms)")
    phases = ["interpreter start", "imports", "parse+run", "environments", "cache scan",
              "usage scan", "plan", "measure plan", "entries", "json",
              "free (return from the verb)", "exit (teardown)"]  # fmt: skip
    for key, title, total in (("phases", "wall", "wall"), ("cpu", "CPU", "cpu")):
        print(f"\n{title} (ms):\n")
        head = " | ".join(f"{v} {'first' if f else 'repeated'}" for v, f in rows)
        print(f"| phase | {head} |\n|---|" + "---:|" * len(rows))
        names = phases if key == "phases" else ["interpreter start+imports", *phases[2:-1]]
        for ph in [*names, f"process {total}"]:
            cells = []
            for r in rows:
                whole = "cpu_total" if total == "cpu" else "wall"
                vals = [d[whole] if ph == f"process {total}" else d[key].get(ph) for d in got[r]]
                vals = [v for v in vals if v is not None]
                cells.append(f"{statistics.median(vals) * 1000:.0f}" if vals else "")
            print(f"| {ph} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
