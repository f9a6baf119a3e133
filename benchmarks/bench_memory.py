"""Scale: time and peak memory of whole commands at 10,000 and 100,000 entries, beside conda.

    python benchmarks/bench_memory.py [--sizes 10000 100000] [--repeat 2]

The caches are the synthetic ones ``bench_scan.py`` builds (and reuses). Each command is a fresh
process; its wall time and peak RSS (``wait4``'s ``ru_maxrss``) are recorded, rows interleaved
round by round. Rows: conda's ``PackageCacheData(pkgs_dir).load()`` (where conda is importable);
``conda-cache info --json`` and ``list --json`` with nothing remembered (the user cache dir
emptied first) and again; ``list`` as text; ``usage --json`` and ``verify --json`` (remembered
scan). Every run's output is checked: ``info`` counts every entry, ``list --json``, ``usage`` and
``verify`` report every entry, conda loads every entry.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_scan  # noqa: E402
from samework import conda_importable, load, precompile, require_same  # noqa: E402

CONDA_LOAD = r"""
import sys
from conda.base.context import context, reset_context
from conda.core.package_cache_data import PackageCacheData
reset_context()
pcd = PackageCacheData(sys.argv[1])
pcd.load()
print(len(pcd._package_cache_records))
"""


# The command is started by a small intermediate process that reports the command's wait4
# rusage: Linux carries the high-water RSS of the memory a process had before its exec() into
# its ru_maxrss, and a child spawned by this benchmark (vfork) would report this process's own
# peak, which grows with each big --json output parsed here (the earlier version of this
# benchmark reported 381 MB for every row after the first list --json at 10^5 entries).
SPAWN = r"""
import os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_pid, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as fh:
    fh.write(f"{usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


def run_measured(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MiB, stdout) of one process, its RSS from ``wait4``."""
    import tempfile

    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r") as report,
    ):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-S", "-c", SPAWN, report.name, *cmd],
            env=env,
            stdout=out,
            stderr=err,
            check=False,
        )
        wall = time.perf_counter() - start
        maxrss, returncode = (int(x) for x in report.read().split())
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if returncode not in (0, 1):
        raise SystemExit(f"{cmd} failed ({returncode}):\n{stderr[-2000:]}")
    return wall, maxrss / 1024, stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000])
    ap.add_argument("--root", default=os.path.join(HERE, "out", "scan"))
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    precompile()  # as an installed package is
    py = sys.executable
    have_conda = conda_importable()
    table = []
    for n in args.sizes:
        pkgs = bench_scan.build_cache(args.root, n)
        xdg = os.path.join(args.root, f"xdg-memory-{n}")
        env = dict(os.environ, CONDA_PKGS_DIRS=pkgs, XDG_CACHE_HOME=xdg)
        alone = dict(env, CONDA_CACHE_PLUS_NO_CONDA="1")
        ours = [py, "-m", "conda_cache_plus"]

        def info_count(out: str) -> int:
            return json.loads(out)["totals"]["packages"]

        def list_count(out: str) -> int:
            data = json.loads(out)
            return len(data["packages"]) if "packages" in data else len(data["entries"])

        def text_count(out: str) -> int:
            return sum(1 for line in out.splitlines() if line.lstrip().startswith("pkg"))

        def usage_count(out: str) -> int:
            return len(json.loads(out)["entries"])

        def verify_count(out: str) -> int:
            return json.loads(out)["summary"]["entries"]

        rows = [
            ("conda-cache info --json, first", [*ours, "info", "--json"], True, info_count),
            ("conda-cache info --json, again", [*ours, "info", "--json"], False, info_count),
            ("conda-cache list --json, first", [*ours, "list", "--json"], True, list_count),
            ("conda-cache list --json, again", [*ours, "list", "--json"], False, list_count),
            ("conda-cache list, again", [*ours, "list"], False, text_count),
            ("conda-cache usage --json, again", [*ours, "usage", "--json"], False, usage_count),
            ("conda-cache verify --json, again", [*ours, "verify", "--json"], False, verify_count),
        ]
        if have_conda:
            rows.insert(0, ("conda PackageCacheData.load()", [py, "-c", CONDA_LOAD, pkgs], False,
                            lambda out: int(out.strip().splitlines()[-1])))  # fmt: skip
        got: dict[str, list[tuple[float, float]]] = {r[0]: [] for r in rows}
        loads = []
        for rnd in range(args.repeat):
            loads.append(os.getloadavg()[0])
            k = rnd % len(rows)
            for label, cmd, first, count in rows[k:] + rows[:k]:
                if first:
                    shutil.rmtree(xdg, ignore_errors=True)
                elif "again" in label:
                    run_measured(cmd, alone)  # make sure something is remembered
                wall, rss, out = run_measured(cmd, alone)
                require_same(f"entries seen by {label}", {label: count(out)}, n)
                got[label].append((wall, rss))
        loads.append(os.getloadavg()[0])
        for label, *_ in rows:
            walls = [w for w, _ in got[label]]
            rsss = [r for _, r in got[label]]
            table.append((n, label, statistics.median(walls), max(rsss)))
        print(f"  {n} entries done; load {load()}", flush=True)
        conda_row = [t for t in table if t[0] == n and t[1].startswith("conda ")]
        if conda_row:
            cw, cr = conda_row[0][2], conda_row[0][3]
            table[:] = [
                (a, b, w, r, cw / w, r / cr) if a == n else t
                for t in table
                for a, b, w, r in [t[:4]]
            ]
    print(f"\n{args.repeat} interleaved rounds; load average {min(loads):.1f}-{max(loads):.1f}\n")
    print("| entries | command | wall (s) | peak RSS (MiB) | vs conda (time) | RSS / conda's |")
    print("|---:|---|---:|---:|---:|---:|")
    for row in table:
        n, label, wall, rss = row[:4]
        extra = f"{row[4]:.2f}x | {row[5]:.2f}x" if len(row) > 4 else "n/a | n/a"
        print(f"| {n} | {label} | {wall:.2f} | {rss:.0f} | {extra} |")


if __name__ == "__main__":
    main()
