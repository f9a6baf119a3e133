"""conda's own pipeline with and without our extractor plugin (the ``cache_plus_extractor``
setting): ``conda create --offline`` of the corpus's ``.conda`` packages from a file:// channel
into an empty pkgs dir, alternating the setting (which goes first alternates too), median and
minimum of ``--repeat`` rounds; before each run the disk is settled (``settle.py``; with
``--drop-caches`` the page cache is emptied too).

    python benchmarks/bench_conda_extractor.py CORPUS_DIR [--repeat 3] [--work /var/tmp/cpx-cx]
        [--drop-caches]

Run with the Python that has conda (e.g. /work/condaenv/bin/python) and conda-cache-plus
installed. Taking over ``.conda``/``.tar.bz2`` makes conda drop its extraction process pool for
threads; this measures what that costs or gains end to end.
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import settle
from corpus import build_corpus
from samework import precompile, require_same, tree_signature

from conda_cache_plus.gateways.extract import extract_archive


def make_channel(manifest: dict, work: str) -> tuple[str, list[str]]:
    channel = os.path.join(work, "channel")
    subdir = os.path.join(channel, "linux-64")
    if os.path.exists(os.path.join(subdir, "repodata.json")):
        with open(os.path.join(subdir, "repodata.json")) as fh:
            names = sorted({r["name"] for r in json.load(fh)["packages.conda"].values()})
        return "file://" + channel, names
    os.makedirs(subdir)
    os.makedirs(os.path.join(channel, "noarch"))
    records = {}
    for pkg in manifest["packages"]:
        if pkg["format"] != ".conda":
            continue
        target = os.path.join(subdir, pkg["fn"])
        shutil.copyfile(pkg["path"], target)
        tmp = os.path.join(work, "probe")
        extract_archive(target, tmp)
        with open(os.path.join(tmp, "info", "index.json")) as fh:
            index = json.load(fh)
        shutil.rmtree(tmp)
        index.update(sha256=pkg["sha256"], size=pkg["size"])
        records[pkg["fn"]] = index
    for sd, recs in (("linux-64", records), ("noarch", {})):
        with open(os.path.join(channel, sd, "repodata.json"), "w") as fh:
            json.dump(
                {"info": {"subdir": sd}, "packages": {}, "packages.conda": recs}, fh, indent=1
            )
    return "file://" + channel, sorted(r["name"] for r in records.values())


SIGNATURES: dict[str, tuple] = {}


def run(
    work: str, url: str, names: list[str], setting: str, drop_caches: bool
) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user+sys of conda and everything it waited for)."""
    pkgs = os.path.join(work, "pkgs")
    prefix = os.path.join(work, "env")
    shutil.rmtree(pkgs, ignore_errors=True)
    shutil.rmtree(prefix, ignore_errors=True)
    env = dict(
        os.environ,
        HOME=os.path.join(work, "home"),
        CONDA_PKGS_DIRS=pkgs,
        CONDA_SOLVER="classic",
        CONDA_REGISTER_ENVS="false",
        CONDA_PLUGINS_CACHE_PLUS_EXTRACTOR=setting,
        CONDA_SUBDIR="linux-64",
    )
    cmd = [sys.executable, "-m", "conda", "create", "-p", prefix, "--offline", "--yes", "-q"]
    cmd += ["--override-channels", "-c", url, *names]
    settle.settle(work, drop_caches)
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    os.sync()
    elapsed = time.perf_counter() - start
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    if proc.returncode:
        raise SystemExit(f"conda failed ({setting}):\n{proc.stdout}\n{proc.stderr}")
    # with either extractor conda must have installed the same prefix (files, bytes, links)
    got = tree_signature(prefix, frozenset({"conda-meta"}))
    SIGNATURES.setdefault("first", got)
    require_same(f"prefix installed (extractor plugin {setting})", {setting: got},
                 SIGNATURES["first"])  # fmt: skip
    return elapsed, cpu


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", default="/var/tmp/cpx-cx")
    parser.add_argument("--drop-caches", action="store_true", help="drop the page cache (root)")
    args = parser.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    precompile()  # as installed: conda loads our extractor from bytecode, as its own modules
    url, names = make_channel(build_corpus(args.corpus), args.work)
    times: dict[str, list[float]] = {"false": [], "true": []}
    cpus: dict[str, list[float]] = {"false": [], "true": []}
    loads = []
    for rnd in range(args.repeat):
        order = ("false", "true") if rnd % 2 == 0 else ("true", "false")
        for setting in order:
            loads.append(os.getloadavg()[0])
            secs, cpu = run(args.work, url, names, setting, args.drop_caches)
            times[setting].append(secs)
            cpus[setting].append(cpu)
            print(f"  round {rnd + 1} setting={setting}: {secs:.2f}s, CPU {cpu:.2f}s", flush=True)
    # medians of the per-round ratios: the two settings of a round ran back to back
    wall_ratio = statistics.median(
        t / f for t, f in zip(times["true"], times["false"], strict=True)
    )
    cpu_ratio = statistics.median(t / f for t, f in zip(cpus["true"], cpus["false"], strict=True))
    med = {k: statistics.median(v) for k, v in times.items()}
    low = {k: min(v) for k, v in times.items()}
    print(
        f"conda create, {len(names)} .conda packages, {args.repeat} rounds, drop caches:"
        f" {'yes' if args.drop_caches else 'no'}, load {min(loads):.1f}-{max(loads):.1f}:"
        f" conda's extractor median {med['false']:.2f}s (min {low['false']:.2f}s),"
        f" ours median {med['true']:.2f}s (min {low['true']:.2f}s);"
        f" ours/conda {wall_ratio:.2f}x (median of per-round ratios),"
        f" {low['true'] / low['false']:.2f}x (minima); CPU: conda's extractor median"
        f" {statistics.median(cpus['false']):.2f}s, ours {statistics.median(cpus['true']):.2f}s,"
        f" ours/conda {cpu_ratio:.2f}x (median of per-round ratios)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
