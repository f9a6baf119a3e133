"""Scan speed: our cache scan vs conda's ``PackageCacheData(pkgs_dir).load()``, side by side.

Builds synthetic caches of extracted packages (each with info/index.json, info/paths.json,
info/repodata_record.json and one payload file, as conda leaves them), then times in one run:

- conda's load (where conda is importable),
- our first scan with nothing remembered (``scan(use_index=False)``),
- our repeated scan of an unchanged cache (the remembered index, one stat per entry),
- the floors: reading every repodata_record.json with the json module, one stat per entry.

Ratios are medians of the per-round ratios, of wall time and of CPU time (user + system of this
process: on a shared machine the wall ratios carry everyone else's load).

Run (conda importable for the conda column):
    /work/condaenv/bin/python benchmarks/bench_scan.py --sizes 1000 5000 20000
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

sys.path.insert(0, HERE)

from samework import load, require_same  # noqa: E402

from conda_cache_plus.layouts.kinds import scan  # noqa: E402


def build_cache(root: str, n: int) -> str:
    pkgs = os.path.join(root, f"pkgs-{n}")
    marker = os.path.join(pkgs, ".complete")
    if os.path.exists(marker):
        return pkgs
    os.makedirs(pkgs, exist_ok=True)
    urls = []
    for i in range(n):
        name, version, build = f"pkg{i:05d}", f"1.{i % 17}.{i % 5}", f"h{i:08x}_0"
        dist = f"{name}-{version}-{build}"
        url = f"https://conda.anaconda.org/conda-forge/linux-64/{dist}.conda"
        info = os.path.join(pkgs, dist, "info")
        os.makedirs(info, exist_ok=True)
        os.makedirs(os.path.join(pkgs, dist, "lib"), exist_ok=True)
        with open(os.path.join(pkgs, dist, "lib", f"lib{name}.so"), "wb") as fh:
            fh.write(b"\0" * 64)
        index = {
            "name": name,
            "version": version,
            "build": build,
            "build_number": 0,
            "depends": ["libgcc-ng >=12", "python >=3.10"],
            "license": "BSD-3-Clause",
            "subdir": "linux-64",
            "timestamp": 1700000000000 + i,
            "arch": "x86_64",
            "platform": "linux",
        }
        paths = {
            "paths": [
                {
                    "_path": f"lib/lib{name}.so",
                    "path_type": "hardlink",
                    "sha256": "0" * 64,
                    "size_in_bytes": 64,
                }
            ],
            "paths_version": 1,
        }
        record = dict(
            index,
            fn=f"{dist}.conda",
            url=url,
            md5="0" * 32,
            sha256="0" * 64,
            size=12345 + i,
            channel="https://conda.anaconda.org/conda-forge/linux-64",
            constrains=[],
        )
        for fname, data in (
            ("index.json", index),
            ("paths.json", paths),
            ("repodata_record.json", record),
        ):
            with open(os.path.join(info, fname), "w") as fh:
                json.dump(data, fh)
        urls.append(url)
    with open(os.path.join(pkgs, "urls.txt"), "w") as fh:
        fh.write("\n".join(urls) + "\n")
    open(os.path.join(pkgs, "urls"), "w").close()
    open(marker, "w").close()
    # Files written within the last 2 s are never remembered (racy timestamps): let them settle,
    # or the "repeated" column would measure re-reads.
    time.sleep(2.1)
    return pkgs


def interleaved(contenders: dict, repeat: int, expected: int, cpu: dict | None = None):
    """Wall times of ``repeat`` rounds, each running every contender once (the order rotated),
    after one warm-up run each; every run must have read ``expected`` entries (a contender that
    read fewer did less work: no ratio). ``cpu``, when given, gets each run's CPU time (user +
    system of this process, which the machine's other load does not inflate as it does wall
    time)."""
    for label, fn in contenders.items():
        require_same(f"entries read by {label}", {label: fn()}, expected)
    times: dict[str, list[float]] = {label: [] for label in contenders}
    cpu = cpu if cpu is not None else {}
    for label in contenders:
        cpu[label] = []
    items = list(contenders.items())
    for rnd in range(repeat):
        k = rnd % len(items)
        for label, fn in items[k:] + items[:k]:
            gc.collect()
            c0 = time.process_time()
            t0 = time.perf_counter()
            n = fn()
            times[label].append(time.perf_counter() - t0)
            cpu[label].append(time.process_time() - c0)
            require_same(f"entries read by {label}", {label: n}, expected)
    return times


def ours(pkgs: str, use_index: bool) -> int:
    return len(scan(pkgs, use_index=use_index).records)


def conda_loader():
    try:
        from conda.base.context import context, reset_context
        from conda.core.package_cache_data import PackageCacheData
    except Exception:
        return None

    def load(pkgs: str) -> int:
        reset_context()
        context.pkgs_dirs  # noqa: B018
        PackageCacheData._cache_.clear()
        pcd = PackageCacheData(pkgs)
        pcd.load()
        return len(pcd._package_cache_records)

    return load


def floor_json(pkgs: str) -> int:
    n = 0
    for de in os.scandir(pkgs):
        try:
            with open(os.path.join(de.path, "info", "repodata_record.json"), "rb") as fh:
                json.loads(fh.read())
            n += 1
        except (OSError, ValueError):
            pass
    return n


def floor_stat(pkgs: str) -> int:
    n = 0
    for de in os.scandir(pkgs):
        try:
            os.stat(de.path + "/info/repodata_record.json")
            n += 1
        except OSError:
            pass
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000])
    ap.add_argument("--root", default=os.path.join(HERE, "out", "scan"))
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    os.environ.setdefault("XDG_CACHE_HOME", os.path.join(args.root, "user-cache"))
    conda_load = conda_loader()
    rows = []
    loads: list[tuple[float, float]] = []
    for n in args.sizes:
        pkgs = build_cache(args.root, n)
        scan(pkgs)  # remember, for the repeated scan
        contenders = {
            "first": lambda p=pkgs: ours(p, False),
            "again": lambda p=pkgs: ours(p, True),
            "json": lambda p=pkgs: floor_json(p),
            "stat": lambda p=pkgs: floor_stat(p),
        }
        if conda_load is not None:
            contenders["conda"] = lambda p=pkgs: conda_load(p)
        load_before = os.getloadavg()[0]
        cpu: dict[str, list[float]] = {}
        times = interleaved(contenders, args.repeat, n, cpu)
        loads.append((load_before, os.getloadavg()[0]))
        med = {k: statistics.median(v) for k, v in times.items()}
        per_round = {
            (a, b): statistics.median(x / y for x, y in zip(times[a], times[b], strict=True))
            for a in times
            for b in times
        }
        per_round_cpu = {
            (a, b): statistics.median(x / y for x, y in zip(cpu[a], cpu[b], strict=True))
            for a in cpu
            for b in cpu
        }
        first, again, fj, fs = med["first"], med["again"], med["json"], med["stat"]
        conda_t = med.get("conda")
        rows.append((n, conda_t, first, again, fj, fs, per_round, per_round_cpu))
        print(f"  {n} entries measured; load {load()}", flush=True)

    def ms(x):
        return "n/a" if x is None else f"{x * 1000:.0f} ms"

    def ratio(per_round, a, b):
        return f"{per_round[(a, b)]:.2f}x" if (a, b) in per_round else "n/a"

    lo = min(x for pair in loads for x in pair)
    hi = max(x for pair in loads for x in pair)
    print(
        f"\n{args.repeat} interleaved rounds per size; load average {lo:.1f}-{hi:.1f} on "
        f"{os.cpu_count()} CPUs; ratios are medians of the per-round ratios\n"
    )

    print(
        "| entries | conda load | ours, first scan | ours, repeated | json floor | stat floor "
        "| first vs conda | repeated vs conda | first / json floor | repeated / stat floor "
        "| first / json floor, CPU | repeated / stat floor, CPU |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, conda_t, first, again, fj, fs, pr, pc in rows:
        print(
            f"| {n} | {ms(conda_t)} | {ms(first)} | {ms(again)} | {ms(fj)} | {ms(fs)} "
            f"| {ratio(pr, 'conda', 'first')} | {ratio(pr, 'conda', 'again')} "
            f"| {ratio(pr, 'first', 'json')} | {ratio(pr, 'again', 'stat')} "
            f"| {ratio(pc, 'first', 'json')} | {ratio(pc, 'again', 'stat')} |"
        )
    if conda_load is None:
        print("\nconda is not importable here: the conda column is n/a.")


if __name__ == "__main__":
    main()
