"""conda's own pipeline with and without our extractor plugin (the ``cache_plus_extractor``
setting): ``conda create --offline`` of the corpus's ``.conda`` packages from a file:// channel
into an empty pkgs dir, alternating the setting, best of ``--repeat`` rounds.

    python benchmarks/bench_conda_extractor.py CORPUS_DIR [--repeat 3] [--work /var/tmp/cpx-cx]

Run with the Python that has conda (e.g. /work/condaenv/bin/python) and conda-cache-plus
installed. Taking over ``.conda``/``.tar.bz2`` makes conda drop its extraction process pool for
threads; this measures what that costs or gains end to end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from corpus import build_corpus

from conda_cache_plus.extract import extract_archive


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


def run(work: str, url: str, names: list[str], setting: str) -> float:
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
    os.sync()
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    os.sync()
    elapsed = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"conda failed ({setting}):\n{proc.stdout}\n{proc.stderr}")
    return elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", default="/var/tmp/cpx-cx")
    args = parser.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    url, names = make_channel(build_corpus(args.corpus), args.work)
    best: dict[str, float] = {}
    for _ in range(args.repeat):
        for setting in ("false", "true"):
            secs = run(args.work, url, names, setting)
            best[setting] = min(secs, best.get(setting, secs))
            print(f"  setting={setting}: {secs:.2f}s", flush=True)
    print(
        f"conda create, {len(names)} .conda packages: conda's extractor {best['false']:.2f}s, "
        f"ours {best['true']:.2f}s, ratio ours/conda {best['true'] / best['false']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
