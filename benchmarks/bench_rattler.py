"""rattler/pixi caches: our scan and verify beside py-rattler's own reading of the same cache.

    python benchmarks/bench_rattler.py [WORKDIR] [--packages 400] [--files 30] [--repeat 5]
                                       [--pairs 4]

py-rattler fills a fresh rattler cache from a local channel of generated packages (one install,
as pixi would), then, in one run, page cache warm:

- py-rattler's ``PackageCache(cache).index()``: its lock-free snapshot of what the cache holds
  (one sidecar read per entry), beside our ``scan()`` of the same cache (``list``/``info``);
- py-rattler installing every package into a fresh prefix from the filled cache with
  ``ValidationMode.full()`` and with ``.skip()``: rattler's own re-validation of every entry,
  parallel in Rust, is the difference (wall, and CPU of all its threads). One install's
  linking costs several times its validation and swings from run to run, so each round runs
  ``--pairs`` installs of each mode back to back in one process, alternating, and the estimate
  is the median of all paired differences, printed with every difference and its quartiles;
  our ratios are given against that median, at its quartiles, and as the median of per-round
  ratios. Beside it our ``verify --full`` with nothing remembered (as users get it, and forced
  serial and into 2 processes; CPU includes the pool's workers), rounds interleaved with the
  order rotated; then our fast level;
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
        return {"seconds": time.perf_counter() - t, "n": len(idx), "cpu": time.process_time() - c}
    recs = await rattler.solve([rattler.Channel(channel)], ["bench-meta"], platforms=["noarch"],
                               timestamp_policy="allow-missing")

    async def install(vm, target):
        pc = None if vm is None else PackageCache.new_layered([cache], validation_mode=vm)
        t, c = time.perf_counter(), time.process_time()  # CPU: every thread of the process
        await rattler.install(recs, target_prefix=target, cache_dir=cache, package_cache=pc,
                              show_progress=False)
        return time.perf_counter() - t, time.process_time() - c

    if mode == "fill":
        secs, cpu = await install(None, prefix)
        return {"seconds": secs, "n": len(recs), "cpu": cpu}
    # "pairs K": K installs with validation skip and K with full, alternating (which goes
    # first alternates too), each into a fresh prefix PREFIX-<i>-<mode>: close in time, in one
    # process, so a pair's difference is rattler's validation, not the machine's drift.
    pairs = []
    for i in range(int(sys.argv[5])):
        got = {}
        for m in (("skip", "full") if i % 2 == 0 else ("full", "skip")):
            vm = ValidationMode.full() if m == "full" else ValidationMode.skip()
            got[m] = await install(vm, f"{prefix}-{i}-{m}")
        pairs.append(got)
    return {"pairs": pairs, "n": len(recs)}
print(json.dumps(asyncio.run(main())), flush=True)
os._exit(0)
"""


RUSAGE_CHILDREN = resource.RUSAGE_CHILDREN  # a process pool's workers, once joined


def cpu_of(before, after) -> float:
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def rattler(mode: str, channel: str, cache: str, prefix: str = "-", *extra: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", RATTLER, mode, channel, cache, prefix, *extra],
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
    ap.add_argument(
        "--pairs", type=int, default=4, help="rattler installs of each mode per round (paired)"
    )
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
    # A scan remembers only files older than the racy window (statefile.RACY_SECONDS): the
    # sidecars py-rattler just wrote would make every "remembered" scan read everything again.
    from conda_cache_plus.gateways.statefile import RACY_SECONDS
    from conda_cache_plus.layouts import rattler_cache

    time.sleep(RACY_SECONDS + 0.5)
    scan(cache)  # remember, for the repeated scan (what a previous scan read)
    remembered = len(rattler_cache.load_index(cache))
    require_same("entries the repeated scan remembers", {"ours": remembered}, n_entries)

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

    def install_pairs(k=[0]):  # noqa: B006 - a counter for fresh prefixes
        k[0] += 1
        base = os.path.join(work, f"env-{k[0]}")
        got = rattler("pairs", channel, cache, base, str(args.pairs))
        want = tree_signature(os.path.join(work, "env0"))
        out = []
        for i, pair in enumerate(got["pairs"]):
            for mode in ("skip", "full"):
                prefix = f"{base}-{i}-{mode}"
                # both modes must install the same packages, the same files
                require_same(f"prefix installed with validation {mode}",
                             {mode: tree_signature(prefix)}, want)  # fmt: skip
                shutil.rmtree(prefix)
            out.append(pair)
        return out

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

    # Rattler's own full validation is the difference between installing with validation full
    # and with skip: the CPU of all its threads, and wall. One install is noisy (its linking
    # dwarfs the validation), so each round runs --pairs installs of each mode in one process,
    # alternating, and the estimate is the median of every round's paired differences, given
    # with its quartiles. Interleaved round by round with the order rotated: those pairs, and
    # our verify --full as users run it (executor chosen by the work), forced serial, and
    # forced into processes.
    contenders = {
        "rattler": install_pairs,
        "ours": lambda: verify(FULL, chosen=executors),
        "ours-serial": lambda: verify(FULL, "serial"),
        "ours-process": lambda: verify(FULL, "process"),
    }
    executors: set = set()
    got: dict[str, list] = {k: [] for k in contenders}
    names = list(contenders)
    for rnd in range(args.repeat + 1):
        loads.append(os.getloadavg()[0])
        order = names[rnd % len(names) :] + names[: rnd % len(names)]
        for name in order:
            res = contenders[name]()
            if rnd:  # the first round warms up
                got[name].append(res)
    med = statistics.median

    def quartiles(xs):
        q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
        return q[0], q[2]

    pairs = [p for rnd in got["rattler"] for p in rnd]
    diffs = {
        unit: [p["full"][j] - p["skip"][j] for p in pairs] for j, unit in enumerate(("wall", "cpu"))
    }
    # per round: the median of its pairs, so each of our rounds has its own denominator
    per_round = {
        unit: [med(p["full"][j] - p["skip"][j] for p in rnd) for rnd in got["rattler"]]
        for j, unit in enumerate(("wall", "cpu"))
    }
    print(
        f"rattler's validation, {len(pairs)} paired differences (full - skip), CPU: "
        + " ".join(f"{d * 1000:.0f}" for d in sorted(diffs["cpu"]))
        + " ms; wall: "
        + " ".join(f"{d * 1000:.0f}" for d in sorted(diffs["wall"]))
        + " ms"
    )
    for mode in ("skip", "full"):
        w, c = med(p[mode][0] for p in pairs), med(p[mode][1] for p in pairs)
        rows.append((f"py-rattler install, validation {mode}", w, c, ""))
    est = {unit: max(med(diffs[unit]), 0.0) for unit in diffs}
    q_lo, q_hi = {}, {}
    for unit in diffs:
        q_lo[unit], q_hi[unit] = quartiles(diffs[unit])
    rows.append(
        (
            f"  = rattler's full validation (median of {len(pairs)} paired differences)",
            est["wall"],
            est["cpu"],
            f"quartiles: CPU {q_lo['cpu'] * 1000:.0f} to {q_hi['cpu'] * 1000:.0f} ms, "
            f"wall {q_lo['wall'] * 1000:.0f} to {q_hi['wall'] * 1000:.0f} ms",
        )
    )
    # A second estimate, for a loaded machine: contention only ever adds CPU time, so the
    # least CPU each mode took is its closest to the true cost; their difference is set
    # beside the least CPU of each of ours.
    least = {m: min(p[m][1] for p in pairs) for m in ("skip", "full")}
    least_diff = least["full"] - least["skip"]
    rows.append(
        (
            "  = the same from the least CPU of each mode (full - skip)",
            None,
            least_diff,
            "",
        )
    )
    for name, label in (
        ("ours", f"ours: verify --full (nothing remembered; {'/'.join(sorted(executors))})"),
        ("ours-serial", "ours: verify --full, serial"),
        ("ours-process", "ours: verify --full, 2 processes"),
    ):
        w, c = med(x[0] for x in got[name]), med(x[1] for x in got[name])
        parts = []
        for j, unit, mine in ((1, "cpu", c), (0, "wall", w)):
            if est[unit] <= 0.05 * med(p["full"][j] for p in pairs):
                parts.append(f"{unit}: n/a, rattler's validation is below its install's noise")
                continue
            rounds = [x[j] / d for x, d in zip(got[name], per_round[unit], strict=True) if d > 0]
            span = (
                f" (at its quartiles {mine / q_hi[unit]:.2f}-{mine / q_lo[unit]:.2f}x)"
                if q_lo[unit] > 0
                else ""
            )
            parts.append(
                f"{mine / est[unit]:.2f}x {unit.upper() if unit == 'cpu' else unit} of "
                f"rattler's validation{span}"
                + (f", per round {med(rounds):.2f}x" if rounds else "")
            )
        if least_diff > 0:
            mine = min(x[1] for x in got[name])
            parts.append(f"least CPU {mine / least_diff:.2f}x the least-CPU difference")
        rows.append((label, w, c, "; ".join(parts)))
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
        w = "" if secs is None else f"{secs * 1000:.0f} ms"
        print(f"| {what} | {w} | {c} | {ratio} |")


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)
