"""What the cache locks cost a single install (issue 27): one ``conda create`` of 44 packages
into an empty cache over HTTP (127.0.0.1), arms interleaved round by round.

    python benchmarks/bench_single_install.py [--rounds 5] [--json OUT]

Arms: ``plugin`` (conda-cache-plus as installed: locks and extractor), ``no-lock`` (the same
with ``CONDA_NO_LOCK=true``, which turns the locks off: what they cost on their own), ``stock``
(``CONDA_NO_PLUGINS=true``). Every run must produce the complete environment (every package,
every file its record lists), or the benchmark fails. Run with the Python that has conda.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from soak_concurrent import ROOT, Arena, env_problems  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "tests"))
from httpserver import HTTPTestServer  # noqa: E402

from conda_cache_plus import pkgbuild  # noqa: E402

NPKGS = 44
ARMS = {"plugin": {}, "no-lock": {"CONDA_NO_LOCK": "true"}, "stock": {"CONDA_NO_PLUGINS": "true"}}


def build_channel(directory: str) -> list[str]:
    rng = random.Random(44)
    out = os.path.join(directory, "noarch")
    pkgs = []
    for i in range(NPKGS):
        name = f"si{i:02d}"
        files = {
            f"lib/{name}/m{j:03d}.py": hashlib.sha256(f"{name}{j}".encode()).digest() * (10 + j)
            for j in range(rng.choice((20, 60, 120)))
        }
        files[f"share/{name}/blob.bin"] = random.Random(name).randbytes(rng.choice((1, 2)) * 50_000)
        fmt = ".conda" if i % 2 == 0 else ".tar.bz2"
        pkgs.append(pkgbuild.build_package(out, name, files=files, fmt=fmt))
    pkgbuild.write_channel(directory, pkgs)
    return [p.name for p in pkgs]


def run(work: str, url: str, names: list[str], arm: str, rnd: int) -> float:
    arena = Arena(os.path.join(work, f"{arm}-{rnd}"), url, "plugin")
    arena.env.update(ARMS[arm])
    prefix = os.path.join(arena.envs, "e")
    with open(os.path.join(arena.root, "out.txt"), "w+") as out:
        start = time.perf_counter()
        proc = arena.create(prefix, names, out)
        rc = proc.wait()
        seconds = time.perf_counter() - start
        out.seek(0)
        text = out.read()
    problems = env_problems(prefix, set(names))
    if rc != 0 or problems:
        raise SystemExit(f"{arm} round {rnd}: exit {rc} {problems[:3]}\n{text[-2000:]}")
    shutil.rmtree(arena.root, ignore_errors=True)
    return seconds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--work", default="/var/tmp")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args(argv)
    work = tempfile.mkdtemp(prefix="cpx-single-", dir=args.work)
    import conda

    report: dict = {"conda": conda.__version__, "load_before": os.getloadavg()}
    times: dict[str, list[float]] = {a: [] for a in ARMS}
    try:
        names = build_channel(os.path.join(work, "www"))
        with HTTPTestServer(os.path.join(work, "www")) as srv:
            run(work, srv.base_url, names, "stock", -1)  # warm the page cache and imports
            arms = list(ARMS)
            for rnd in range(args.rounds):
                k = rnd % len(arms)
                for arm in arms[k:] + arms[:k]:
                    times[arm].append(run(work, srv.base_url, names, arm, rnd))
                print(rnd, {a: round(t[-1], 2) for a, t in times.items()}, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["load_after"] = os.getloadavg()
    report["seconds"] = {a: [round(x, 3) for x in t] for a, t in times.items()}
    med = {a: statistics.median(t) for a, t in times.items()}
    report["median"] = {a: round(m, 3) for a, m in med.items()}
    report["min"] = {a: round(min(t), 3) for a, t in times.items()}
    report["ratio_plugin_vs_no_lock"] = round(med["plugin"] / med["no-lock"], 3)
    report["ratio_plugin_vs_stock"] = round(med["plugin"] / med["stock"], 3)
    # per-round pairs: how often the locks' arm was the slower of the two
    report["rounds_plugin_slower_than_no_lock"] = sum(
        p > n for p, n in zip(times["plugin"], times["no-lock"], strict=True)
    )
    print(json.dumps(report, indent=1))
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(report, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
