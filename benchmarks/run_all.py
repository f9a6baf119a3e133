"""Every benchmark, one after another, in one pass: what docs/benchmarks.md reports.

    python benchmarks/run_all.py WORK [--quick] [--only NAME ...] [--drop-caches]

Runs each benchmark as its own process with the arguments docs/benchmarks.md quotes, writes its
output to ``WORK/logs/<name>.log`` with the load average before and after, and exits with the
status of the first benchmark that failed (one whose contenders did different work exits with 3).
``--quick`` uses fewer rounds and smaller data, to check that everything runs. Run it with an
interpreter that has conda, py-rattler, conda-package-streaming and -handling importable, so
every peer is measured; peers that are missing are reported as skipped by each benchmark.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def plan(work: str, quick: bool, drop: bool) -> list[tuple[str, list[str]]]:
    corpus = os.path.join(work, "corpus")
    dc = ["--drop-caches"] if drop else []
    r = lambda full, q: str(q if quick else full)  # noqa: E731
    return [
        ("startup", ["bench_startup.py", "--repeat", r(15, 3)]),
        ("scan", ["bench_scan.py", "--root", os.path.join(work, "scan"),
                  "--sizes", *(["1000"] if quick else ["5000", "20000"]), "--repeat", r(5, 2)]),
        ("usage-2files", ["bench_usage.py", "--root", os.path.join(work, "usage"),
                          "--repeat", r(5, 1)]),
        ("usage-25files", ["bench_usage.py", "--root", os.path.join(work, "usage-25files"),
                           "--files", "25", "--repeat", r(3, 1)]),
        ("memory", ["bench_memory.py", "--root", os.path.join(work, "scan"),
                    "--sizes", *(["1000"] if quick else ["10000", "100000"]),
                    "--repeat", r(1, 1)]),
        ("rattler", ["bench_rattler.py", os.path.join(work, "rattler"),
                     "--packages", r(400, 40), "--files", r(30, 5), "--repeat", r(9, 2)]),
        ("verify", ["bench_verify.py", os.path.join(work, "verify")]),
        ("extract", ["bench_extract.py", corpus, "--formats", ".conda", "--workers", "1", "2",
                     "--repeat", r(3, 1), "--tmpfs", "/dev/shm/cpx-bench-all",
                     "--disk", os.path.join(work, "extract-out"), *dc]),
        ("fetch", ["bench_fetch.py", corpus, "--repeat", r(3, 1),
                   "--tmpfs", "/dev/shm/cpx-fetch-all", "--disk", os.path.join(work, "fetch-out"),
                   *dc]),
        ("conda-extractor-disk", ["bench_conda_extractor.py", corpus, "--repeat", r(3, 1),
                                  "--work", os.path.join(work, "cx"), *dc]),
        ("conda-extractor-tmpfs", ["bench_conda_extractor.py", corpus, "--repeat", r(3, 1),
                                   "--work", "/dev/shm/cpx-cx-all", *dc]),
    ]  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="+")
    ap.add_argument("--drop-caches", action="store_true")
    args = ap.parse_args()
    logs = os.path.join(args.work, "logs")
    os.makedirs(logs, exist_ok=True)
    corpus = os.path.join(args.work, "corpus")
    if not os.path.exists(os.path.join(corpus, "corpus.json")):
        subprocess.run([sys.executable, os.path.join(HERE, "corpus.py"), corpus], check=True)
    verify_corpus = os.path.join(args.work, "verify", "corpus")
    if not os.path.lexists(verify_corpus):  # bench_verify hashes the same corpus
        os.makedirs(os.path.dirname(verify_corpus), exist_ok=True)
        os.symlink(corpus, verify_corpus)
    worst = 0  # every benchmark runs; the exit status is the first failure's
    for name, cmd in plan(args.work, args.quick, args.drop_caches):
        if args.only and name not in args.only:
            continue
        path = os.path.join(logs, f"{name}.log")
        full = [sys.executable, os.path.join(HERE, cmd[0]), *cmd[1:]]
        with open(path, "w") as log:
            log.write(f"$ {' '.join(full)}\n")
            log.write(f"start {time.strftime('%H:%M:%S')} load {os.getloadavg()}\n")
            log.flush()
            start = time.perf_counter()
            env = dict(os.environ, BENCH_SCAN_ROOT=os.path.join(args.work, "scan"))
            proc = subprocess.run(
                full, stdout=log, stderr=subprocess.STDOUT, cwd=args.work, env=env
            )
            log.write(
                f"\nend {time.strftime('%H:%M:%S')} load {os.getloadavg()} "
                f"({time.perf_counter() - start:.0f} s, exit {proc.returncode})\n"
            )
        print(f"{name}: exit {proc.returncode}, {path}", flush=True)
        worst = worst or proc.returncode
    return worst


if __name__ == "__main__":
    sys.exit(main())
