"""Usage scan vs ``conda clean -p``: who uses what, on the same synthetic data, side by side.

Builds a 5,000-entry cache (small extracted packages as conda leaves them, plus their .conda
archives' stand-ins) and 50 environments of 300 packages each, hard-linked from the cache with
conda-meta records as conda writes them (``link.source``, ``files``, ``paths_data``). Environment
``i`` uses entries ``80*i .. 80*i+299``, so ~780 entries are unused. Then times, each command as
a fresh process (what a user runs), the rows interleaved round by round so that every row sees
the same machine load, best of ``--repeat``:

- ``conda clean -p --dry-run --json`` (conda's nlink walk of every file of every entry);
- ``conda-cache clean --unused --dry-run --json`` standalone (cache scan + env records + link
  samples + byte accounting of what would go), and the same as ``conda cache clean`` (plugin);
- ``conda-cache usage --json`` (cache scan + usage of every entry, no sizes);
- in-process, the cache scan plus ``scan_usage`` on their own.

"first" = no remembered state (our user cache dir emptied before the run: no cache-scan index,
no environment index); "repeated" = the same command again, nothing changed on disk. The page
cache is warm in both (as it is for conda). Times are wall clock and CPU (user+sys of the
child), since this 2-core machine is shared: CPU time is what load disturbs least.

Run (with conda importable for the conda columns):
    /work/condaenv/bin/python benchmarks/bench_usage.py [--entries 5000 --envs 50 --per-env 300]
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
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from samework import conda_importable, precompile, require_positive, require_same  # noqa: E402

from conda_cache_plus.envs.discovery import Environment  # noqa: E402
from conda_cache_plus.layouts.caches import PackageCaches  # noqa: E402
from conda_cache_plus.usage.graph import scan_usage  # noqa: E402
from conda_cache_plus.usage.policies import parse_duration  # noqa: E402

CHANNEL = "https://conda.anaconda.org/conda-forge/noarch"


def build(
    root: str, entries: int, envs: int, per_env: int, step: int, nfiles: int = 2
) -> tuple[str, list[str]]:
    pkgs = os.path.join(root, "pkgs")
    marker = os.path.join(root, f".complete-{entries}-{envs}-{per_env}-{step}-{nfiles}")
    prefixes = [os.path.join(root, "envs", f"env{e:03d}") for e in range(envs)]
    if os.path.exists(marker):
        return pkgs, prefixes
    for stale in (pkgs, os.path.join(root, "envs"), os.path.join(root, "xdg")):
        shutil.rmtree(stale, ignore_errors=True)
    os.makedirs(pkgs, exist_ok=True)
    dists = []
    with open(os.path.join(pkgs, "urls.txt"), "w") as urls:
        for i in range(entries):
            name, version, build_ = f"pkg{i:05d}", f"1.{i % 7}", f"h{i:06x}_0"
            dist = f"{name}-{version}-{build_}"
            dists.append((dist, name, version, build_))
            base = os.path.join(pkgs, dist)
            os.makedirs(os.path.join(base, "info"), exist_ok=True)
            os.makedirs(os.path.join(base, "lib"), exist_ok=True)
            files = package_files(name, nfiles)
            for rel in files:
                os.makedirs(os.path.dirname(os.path.join(base, rel)), exist_ok=True)
                with open(os.path.join(base, rel), "wb") as fh:
                    fh.write(name.encode() * 8)
            index = {"name": name, "version": version, "build": build_, "build_number": 0,
                     "subdir": "noarch", "depends": []}  # fmt: skip
            paths = [
                {"_path": rel, "path_type": "hardlink", "sha256": f"{k:064x}", "size_in_bytes": 64}
                for k, rel in enumerate(files)
            ]
            with open(os.path.join(base, "info", "index.json"), "w") as fh:
                json.dump(index, fh)
            with open(os.path.join(base, "info", "paths.json"), "w") as fh:
                json.dump({"paths": paths, "paths_version": 1}, fh)
            record = dict(index, fn=dist + ".conda", url=f"{CHANNEL}/{dist}.conda",
                          channel=CHANNEL, md5="0" * 32, size=1000)  # fmt: skip
            with open(os.path.join(base, "info", "repodata_record.json"), "w") as fh:
                json.dump(record, fh)
            with open(base + ".conda", "wb") as fh:
                fh.write(b"\0" * 1000)
            urls.write(record["url"] + "\n")
    for e, prefix in enumerate(prefixes):
        meta = os.path.join(prefix, "conda-meta")
        os.makedirs(os.path.join(prefix, "lib"), exist_ok=True)
        os.makedirs(meta, exist_ok=True)
        history = []
        for k in range(per_env):
            dist, name, version, build_ = dists[(e * step + k) % entries]
            src = os.path.join(pkgs, dist)
            files = package_files(name, nfiles)
            for rel in files:
                os.makedirs(os.path.dirname(os.path.join(prefix, rel)), exist_ok=True)
                os.link(os.path.join(src, rel), os.path.join(prefix, rel))
            with open(os.path.join(src, "info", "repodata_record.json")) as fh:
                rec = json.load(fh)
            rec.update(
                files=files,
                paths_data={
                    "paths": [
                        {
                            "_path": f,
                            "path_type": "hardlink",
                            "sha256": f"{k:064x}",
                            "size_in_bytes": 64,
                        }
                        for k, f in enumerate(files)
                    ],
                    "paths_version": 1,
                },
                link={"source": src, "type": 1},
                extracted_package_dir=src,
                package_tarball_full_path=src + ".conda",
            )
            with open(os.path.join(meta, dist + ".json"), "w") as fh:
                json.dump(rec, fh)
            history.append(f"+conda-forge/noarch::{dist}")
        with open(os.path.join(meta, "history"), "w") as fh:
            fh.write("==> 2026-01-01 00:00:00 <==\n# cmd: conda create\n")
            fh.write("\n".join(history) + "\n")
    open(marker, "w").close()
    return pkgs, prefixes


def package_files(name: str, nfiles: int) -> list[str]:
    """The first two are what the original data had; more spread over a few directories."""
    files = [f"lib/lib{name}.so", f"lib/{name}.txt"]
    files += [f"share/{name}/d{k % 4}/f{k}.dat" for k in range(2, nfiles)]
    return files[:nfiles]


def expected_unused(entries: int, envs: int, per_env: int, step: int) -> set[str]:
    """The entries no environment links: what every contender must find (the data's truth)."""
    used = {(e * step + k) % entries for e in range(envs) for k in range(per_env)}
    return {f"pkg{i:05d}-1.{i % 7}-h{i:06x}_0" for i in range(entries) if i not in used}


def run_once(cmd: list[str], env: dict, wipe: str | None) -> tuple[float, float, str]:
    """(wall, cpu, stdout) of one fresh process; ``wipe``: a directory to empty first."""
    if wipe:
        shutil.rmtree(wipe, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{cmd} failed: {proc.returncode}\n{proc.stderr[-2000:]}")
    return wall, cpu, proc.stdout


def in_process(pkgs: str, prefixes: list[str], xdg: str, first: bool):
    if first:
        shutil.rmtree(os.path.join(xdg, "conda-cache-plus"), ignore_errors=True)
    os.environ["XDG_CACHE_HOME"] = xdg
    t0, c0 = time.perf_counter(), time.process_time()
    report = scan_usage(
        PackageCaches([pkgs]).records(), [Environment(p, ["--env"]) for p in prefixes]
    )
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return wall, cpu, {u.record.entry for u in report.entries.values() if not u.in_use}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=os.path.join(HERE, "out", "usage"))
    ap.add_argument("--entries", type=int, default=5000)
    ap.add_argument("--envs", type=int, default=50)
    ap.add_argument("--per-env", type=int, default=300)
    ap.add_argument("--step", type=int, default=80)
    ap.add_argument("--files", type=int, default=2, help="files per package (default 2)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument(
        "--grace",
        default="1s",
        help="our clean's --grace (default 1s: the grace check runs, and the data, built before "
        "the clock starts, is older than that, so every unused entry is eligible as for conda)",
    )
    ap.add_argument("--rows", nargs="+", help="only rows whose label contains one of these words")
    args = ap.parse_args()
    precompile()  # as an installed package is
    if args.files != 2 and args.root == ap.get_default("root"):
        args.root += f"-{args.files}files"
    if (args.entries, args.envs, args.per_env) != (5000, 50, 300) and args.root.startswith(
        ap.get_default("root")
    ):
        args.root += f"-{args.entries}x{args.envs}x{args.per_env}"

    t0 = time.perf_counter()
    pkgs, prefixes = build(args.root, args.entries, args.envs, args.per_env, args.step, args.files)
    print(f"data: {args.entries} entries of {args.files} files, {args.envs} envs x "
          f"{args.per_env} packages "
          f"(built/reused in {time.perf_counter() - t0:.1f}s)")  # fmt: skip
    truth = expected_unused(args.entries, args.envs, args.per_env, args.step)
    require_positive("unused entries in the data", len(truth))
    # Our clean leaves alone what changed within --grace (ctime of the entry's files: a hard link
    # made for an environment counts). Wait until the newest data is older than that, so the
    # grace check runs and lets through every unused entry, as conda's clean does.
    grace = parse_duration(args.grace)
    newest = max(
        os.lstat(os.path.join(pkgs, dist, rel)).st_ctime
        for dist in (sorted(truth)[0], sorted(truth)[-1])
        for rel in ("info/repodata_record.json", "lib")
    )
    newest = max(newest, os.lstat(prefixes[-1]).st_ctime, os.lstat(pkgs).st_ctime)
    wait = newest + grace + 0.5 - time.time()
    if wait > 0:
        print(f"waiting {wait:.1f}s for the data to be older than --grace {args.grace}")
        time.sleep(wait)

    home = os.path.join(args.root, "home")
    os.makedirs(os.path.join(home, ".conda"), exist_ok=True)
    with open(os.path.join(home, ".conda", "environments.txt"), "w") as fh:
        fh.write("\n".join(prefixes) + "\n")
    xdg = os.path.join(args.root, "xdg")
    ours_state = os.path.join(xdg, "conda-cache-plus")
    env = dict(os.environ)
    env.update(
        HOME=home,
        CONDA_PKGS_DIRS=pkgs,
        CONDA_ENVS_DIRS=os.path.join(args.root, "no-envs-dir"),
        CONDA_SOLVER="classic",
        XDG_CACHE_HOME=xdg,
        CONDA_ROOT=os.path.join(args.root, "no-root"),
    )
    env.pop("CONDA_CACHE_PLUS_GRACE", None)
    standalone = dict(env, CONDA_CACHE_PLUS_NO_CONDA="1")
    py = sys.executable
    g = ["--grace", args.grace]
    ours_clean = [py, "-m", "conda_cache_plus", "clean", "--unused", "--dry-run", "--json", *g]
    ours_usage = [py, "-m", "conda_cache_plus", "usage", "--json"]
    plugin_clean = [py, "-m", "conda", "cache", "clean", "--unused", "--dry-run", "--json", *g]
    plugin_usage = [py, "-m", "conda", "cache", "usage", "--json"]
    conda_clean = [py, "-m", "conda", "clean", "-p", "--dry-run", "--json"]
    have_conda = conda_importable()

    def unused_of(kind: str, out: str) -> set[str]:
        data = json.loads(out)
        if kind == "usage":
            return {e["entry"] for e in data["entries"] if not e["used_by"]}
        if kind == "conda":
            return set(data["packages"]["pkgs_dirs"].get(pkgs, []))
        return {i["name"] for i in data["items"]}

    # (label, how) -- how: ("inproc", first) or (cmd, env, first, kind)
    rows: list[tuple[str, tuple]] = [
        ("scan + scan_usage() in-process, first", ("inproc", True)),
        ("scan + scan_usage() in-process, repeated", ("inproc", False)),
        ("conda-cache usage --json, first", (ours_usage, standalone, True, "usage")),
        ("conda-cache usage --json, repeated", (ours_usage, standalone, False, "usage")),
        ("conda-cache clean --unused -d --json, first", (ours_clean, standalone, True, "ours")),
        ("conda-cache clean --unused -d --json, repeated", (ours_clean, standalone, False, "ours")),
    ]
    if have_conda:
        rows += [
            ("conda cache usage --json, first", (plugin_usage, env, True, "usage")),
            ("conda cache usage --json, repeated", (plugin_usage, env, False, "usage")),
            ("conda cache clean --unused -d --json, first", (plugin_clean, env, True, "ours")),
            ("conda cache clean --unused -d --json, repeated", (plugin_clean, env, False, "ours")),
            ("conda clean -p --dry-run --json", (conda_clean, env, False, "conda")),
        ]
    if args.rows:
        keep = ("conda clean -p", *args.rows)
        rows = [r for r in rows if any(w in r[0] for w in keep)]
    walls: dict[str, list[float]] = {label: [] for label, _ in rows}
    cpus: dict[str, list[float]] = {label: [] for label, _ in rows}
    found: dict[str, set[str]] = {}
    loads = []
    for rnd in range(args.repeat):
        loads.append(os.getloadavg()[0])
        k = rnd % len(rows)  # rotate the order so no row always follows the same other one
        for label, how in rows[k:] + rows[:k]:
            if how[0] == "inproc":
                wall, cpu, unused = in_process(pkgs, prefixes, xdg, how[1])
            else:
                cmd, e, first, kind = how
                wall, cpu, out = run_once(cmd, e, ours_state if first else None)
                unused = unused_of(kind, out)
            # every run of every row must find exactly the data's unused entries
            require_same(f"unused entries found ({label}, round {rnd + 1})", {label: unused}, truth)
            found[label] = unused
            walls[label].append(wall)
            cpus[label].append(cpu)
    loads.append(os.getloadavg()[0])
    print(f"same unused set for every row and round: True ({len(truth)} entries)")
    print(
        f"load average during the run: {min(loads):.1f}-{max(loads):.1f} "
        f"({os.cpu_count()} cores); {args.repeat} interleaved rounds, grace {args.grace}"
    )
    conda_label = "conda clean -p --dry-run --json"
    ref = conda_label if have_conda else None

    def ratio(label: str, series: dict) -> str:
        if not ref:
            return "n/a"
        # median of the per-round ratios: each round's rows saw the same load
        pairs = zip(series[ref], series[label], strict=True)
        return f"{statistics.median(a / b for a, b in pairs):.2f}x"

    print(f"\n| what | wall, median of {args.repeat} (s) | min | CPU (s) | unused found "
          "| vs conda clean -p (wall) | (CPU) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, _ in rows:
        w, c = walls[label], cpus[label]
        print(
            f"| {label} | {statistics.median(w):.3f} | {min(w):.3f} | {statistics.median(c):.3f} "
            f"| {len(found[label])} | {ratio(label, walls)} | {ratio(label, cpus)} |"
        )
    if not have_conda:
        print("\nconda is not importable here: the conda rows are n/a.")


if __name__ == "__main__":
    main()
