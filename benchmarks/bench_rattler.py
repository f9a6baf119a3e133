"""rattler/pixi caches: our scan and verify beside py-rattler's own reading of the same cache.

    python benchmarks/bench_rattler.py [WORKDIR] [--packages 400] [--files 30] [--repeat 5]

py-rattler fills a fresh rattler cache from a local channel of generated packages (one install,
as pixi would), then, in one run, page cache warm:

- py-rattler's ``PackageCache(cache).index()``: its lock-free snapshot of what the cache holds
  (one sidecar read per entry), beside our ``scan()`` of the same cache (``list``/``info``);
- py-rattler installing every package into a fresh prefix from the filled cache with
  ``ValidationMode.full()`` and with ``.skip()`` (rattler's own re-validation of every entry,
  parallel in Rust, is the difference: wall, and CPU of all its threads, median of per-round
  differences), beside our ``verify --full`` with nothing remembered (as users get it, and
  forced serial and into 2 processes; CPU includes the pool's workers), rounds interleaved
  with the order rotated; then our fast level;
- our usage scan (one environment, every entry), which ``clean --unused`` plans from.

Median of ``--repeat`` runs after a warm-up. py-rattler runs in subprocesses (its interpreter
may abort at exit), timed inside them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from samework import load, require_same, tree_signature  # noqa: E402

from conda_cache_plus.envs.discovery import Environment  # noqa: E402
from conda_cache_plus.integrity.findings import FAST, FULL  # noqa: E402
from conda_cache_plus.integrity.verify import verify_caches  # noqa: E402
from conda_cache_plus.layouts.caches import PackageCaches  # noqa: E402
from conda_cache_plus.layouts.kinds import scan  # noqa: E402
from conda_cache_plus.pkgbuild import build_package, write_channel  # noqa: E402
from conda_cache_plus.usage.graph import scan_usage  # noqa: E402

RATTLER = r"""
import asyncio, os, sys, time, json
import rattler
from rattler.package_cache import PackageCache, ValidationMode
mode, channel, cache, prefix = sys.argv[1:5]
async def main():
    if mode == "index":
        t, c = time.perf_counter(), time.process_time()
        idx = await PackageCache(cache).index()
        return time.perf_counter() - t, len(idx), time.process_time() - c
    recs = await rattler.solve([rattler.Channel(channel)], ["bench-meta"], platforms=["noarch"],
                               timestamp_policy="allow-missing")
    pc = None
    if mode != "fill":
        vm = ValidationMode.full() if mode == "full" else ValidationMode.skip()
        pc = PackageCache.new_layered([cache], validation_mode=vm)
    t, c = time.perf_counter(), time.process_time()  # CPU: every thread of the process
    await rattler.install(recs, target_prefix=prefix, cache_dir=cache, package_cache=pc,
                          show_progress=False)
    return time.perf_counter() - t, len(recs), time.process_time() - c
secs, n, cpu = asyncio.run(main())
print(json.dumps({"seconds": secs, "n": n, "cpu": cpu}), flush=True)
os._exit(0)
"""


RUSAGE_CHILDREN = resource.RUSAGE_CHILDREN  # a process pool's workers, once joined


def cpu_of(before, after) -> float:
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def rattler(mode: str, channel: str, cache: str, prefix: str = "-") -> dict:
    out = subprocess.run(
        [sys.executable, "-c", RATTLER, mode, channel, cache, prefix],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def build(work: str, npkgs: int, nfiles: int) -> str:
    noarch = os.path.join(work, "channel", "noarch")
    pkgs = []
    for i in range(npkgs):
        files = {
            f"share/bench{i}/f{j}.txt": hashlib.sha256(f"{i}-{j}".encode()).digest() * (16 + j)
            for j in range(nfiles)
        }
        pkgs.append(build_package(noarch, f"bench{i}", "1.0", "0", files=files))
    pkgs.append(
        build_package(noarch, "bench-meta", "1.0", "0", depends=[f"bench{i}" for i in range(npkgs)])
    )
    write_channel(os.path.join(work, "channel"), pkgs)
    return "file://" + os.path.join(work, "channel")


def median(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("work", nargs="?")
    ap.add_argument("--packages", type=int, default=400)
    ap.add_argument("--files", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="bench-rattler-")
    os.environ["RATTLER_CACHE_DIR"] = os.path.join(work, "rattler-root")
    channel = build(work, args.packages, args.files)
    cache = os.path.join(work, "cache")
    nfiles = args.packages * args.files
    fill = rattler("fill", channel, cache, os.path.join(work, "env0"))
    print(f"py-rattler filled the cache: {fill['n']} packages in {fill['seconds']:.2f}s")

    n_entries = args.packages + 1
    rows = []
    # index vs our scans, interleaved round by round; every run must have read every entry
    times: dict[str, list[float]] = {"index": [], "first": [], "again": []}
    scan(cache)  # remember, for the repeated scan (what a previous scan read)

    def ours_scan(use_index: bool) -> float:
        t = time.perf_counter()
        n = len(scan(cache, use_index=use_index).records)
        took = time.perf_counter() - t
        require_same("entries read by our scan", {"ours": n}, n_entries)
        return took

    loads = []
    for rnd in range(args.repeat + 1):
        loads.append(os.getloadavg()[0])
        got = rattler("index", channel, cache)
        require_same("entries in py-rattler's index", {"py-rattler": got["n"]}, n_entries)
        first, again = ours_scan(False), ours_scan(True)
        if rnd:  # the first round warms up
            times["index"].append(got["seconds"])
            times["first"].append(first)
            times["again"].append(again)
    med = {k: statistics.median(v) for k, v in times.items()}
    rows.append(("py-rattler PackageCache.index()", med["index"], None, ""))
    for key, label in (("first", "nothing remembered"), ("again", "remembered")):
        r = statistics.median(a / b for a, b in zip(times[key], times["index"], strict=True))
        rows.append((f"ours: scan (list/info), {label}", med[key], None, f"{r:.2f}x py-rattler"))

    def install(mode, k=[0]):  # noqa: B006 - a counter for fresh prefixes
        k[0] += 1
        prefix = os.path.join(work, f"env-{mode}-{k[0]}")
        got = rattler(mode, channel, cache, prefix)
        # both modes must install the same packages, the same files
        require_same(f"prefix installed with validation {mode}", {mode: tree_signature(prefix)},
                     tree_signature(os.path.join(work, "env0")))  # fmt: skip
        shutil.rmtree(prefix)
        return got["seconds"], got["cpu"]

    def verify(level, executor=None, chosen=None):
        r0, c0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(RUSAGE_CHILDREN)
        t = time.perf_counter()
        report = verify_caches(
            PackageCaches([cache]),
            level=level,
            use_store=False,
            write_store=False,
            executor=executor,
        )
        took = time.perf_counter() - t
        r1, c1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(RUSAGE_CHILDREN)
        assert all(e.status == "ok" for e in report.entries), level
        totals = report.totals()
        # every entry checked, and at the full level every file hashed
        require_same(f"entries verified ({level})", {level: totals["entries"]}, n_entries)
        if level == FULL:
            require_same("files hashed (full)", {level: totals["hashed"] >= nfiles}, True)
        if chosen is not None:
            chosen.add(report.executor)
        return took, cpu_of(r0, r1) + cpu_of(c0, c1)

    # Interleaved round by round, the order rotated: rattler installing with validation skip
    # and full (its validation is the difference of the two, per round: wall and CPU, the CPU
    # of all its threads), and our verify --full as users run it (executor chosen by the work)
    # and forced serial and into processes.
    contenders = {
        "skip": lambda: install("skip"),
        "full": lambda: install("full"),
        "ours": lambda: verify(FULL, chosen=executors),
        "ours-serial": lambda: verify(FULL, "serial"),
        "ours-process": lambda: verify(FULL, "process"),
    }
    executors: set = set()
    wall: dict[str, list[float]] = {k: [] for k in contenders}
    cpu: dict[str, list[float]] = {k: [] for k in contenders}
    names = list(contenders)
    for rnd in range(args.repeat + 1):
        loads.append(os.getloadavg()[0])
        order = names[rnd % len(names) :] + names[: rnd % len(names)]
        for name in order:
            w, c = contenders[name]()
            if rnd:  # the first round warms up
                wall[name].append(w)
                cpu[name].append(c)
    med = statistics.median
    diff_wall = max(med(f - s for f, s in zip(wall["full"], wall["skip"], strict=True)), 0.0)
    diff_cpu = max(med(f - s for f, s in zip(cpu["full"], cpu["skip"], strict=True)), 0.0)
    spread = sorted(f - s for f, s in zip(cpu["full"], cpu["skip"], strict=True))
    print(
        "rattler's validation, CPU per round (full - skip): "
        + " ".join(f"{d * 1000:.0f}" for d in spread)
        + " ms"
    )
    for mode in ("skip", "full"):
        rows.append((f"py-rattler install, validation {mode}", med(wall[mode]), med(cpu[mode]), ""))
    rows.append(("  = rattler's full validation (difference)", diff_wall, diff_cpu, ""))
    for name, label in (
        ("ours", f"ours: verify --full (nothing remembered; {'/'.join(sorted(executors))})"),
        ("ours-serial", "ours: verify --full, serial"),
        ("ours-process", "ours: verify --full, 2 processes"),
    ):
        w, c = med(wall[name]), med(cpu[name])
        # rattler validates while it links, so its wall difference is often lost in the
        # install's noise; the CPU of its threads is not hidden that way
        parts = []
        if diff_wall > 0.05 * med(wall["full"]):
            parts.append(f"{w / diff_wall:.2f}x wall")
        if diff_cpu > 0.05 * med(cpu["full"]):
            parts.append(f"{c / diff_cpu:.2f}x CPU")
        ratio = (
            ", ".join(parts) + " of rattler's validation"
            if parts
            else "n/a: rattler's validation is below the noise of its install"
        )
        rows.append((label, w, c, ratio))
    rows.append(
        (
            "ours: verify --fast (nothing remembered)",
            median(lambda: verify(FAST), args.repeat),
            None,
            "",
        )
    )
    caches = PackageCaches([cache])
    env = [Environment(os.path.join(work, "env0"), ["--env"])]

    def usage():
        report = scan_usage(caches.records(), env, use_index=False)
        used = sum(1 for u in report.entries.values() if u.in_use)
        require_same("entries env0 uses", {"usage": used}, n_entries)

    rows.append(("ours: usage scan, 1 env", median(usage, args.repeat), None, ""))
    print(
        f"\n{n_entries} entries, {nfiles} payload files; median of {args.repeat}; load average "
        f"{min(loads):.1f}-{max(loads):.1f} (now {load()})\n"
    )
    print("| what | wall | CPU | ratio |\n|---|---:|---:|---|")
    for what, secs, cpu_secs, ratio in rows:
        c = "" if cpu_secs is None else f"{cpu_secs * 1000:.0f} ms"
        print(f"| {what} | {secs * 1000:.0f} ms | {c} | {ratio} |")


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)
