"""Start-up: what a verb costs before it does anything, against importing the package alone.

    python benchmarks/bench_startup.py [--repeat 20]

Each command is a fresh process, the rows interleaved round by round (the order rotated), so
that the load of a shared machine falls on every row alike; ratios are medians of the per-round
ratios to ``python -c "import conda_cache_plus"`` (the floor: the interpreter plus the package's
``__init__``). Rows: ``conda-cache --version``, ``info`` and ``list`` of an empty cache,
``usage`` and ``clean --unused --dry-run`` with no environment, and, where conda is importable,
the same through ``conda cache`` beside conda's own ``conda clean -p --dry-run`` and
``conda --version``. Each row's output is checked (the version; an empty cache reported as
empty), so a row that failed early cannot look fast.

The second table is what each verb imports: modules in ``sys.modules`` after the verb ran, how
many of them are ours, and which heavy ones it pulled in (the HTTP stack for a ``clean`` would
be a verb importing what it does not use).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from samework import conda_importable, load, precompile, require_same  # noqa: E402

HEAVY = (
    "ssl",
    "http.client",
    "urllib.request",
    "email",
    "socket",
    "concurrent.futures",
    "multiprocessing",
    "threading",
    "hashlib",
    "zstandard",
    "tarfile",
    "json",
    "inspect",
    "dataclasses",
    "conda",
)

PROBE = r"""
import contextlib, io, json, runpy, sys
sys.argv = [sys.argv[1], *sys.argv[2:]]
module = "conda" if sys.argv[0] == "conda" else "conda_cache_plus"
with contextlib.redirect_stdout(io.StringIO()):
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit:
        pass
mods = set(sys.modules)
heavy = [h for h in HEAVY if h in mods]
ours = sum(m.startswith("conda_cache_plus") for m in mods)
print(json.dumps({"modules": len(mods), "ours": ours, "heavy": heavy}))
"""


def run(cmd: list[str], env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{cmd} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return took, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    precompile()  # as an installed package is
    work = tempfile.mkdtemp(prefix="cpx-startup-")
    try:
        measure(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(args, work: str) -> None:
    py = sys.executable
    pkgs = os.path.join(work, "pkgs")
    os.makedirs(pkgs)
    env = dict(
        os.environ,
        HOME=os.path.join(work, "home"),
        CONDA_PKGS_DIRS=pkgs,
        CONDA_ENVS_DIRS=os.path.join(work, "envs"),
        XDG_CACHE_HOME=os.path.join(work, "xdg"),
        CONDA_ROOT=os.path.join(work, "root"),
    )
    alone = dict(env, CONDA_CACHE_PLUS_NO_CONDA="1")
    ours = [py, "-m", "conda_cache_plus"]
    plug = [py, "-m", "conda", "cache"]
    import conda_cache_plus

    version = conda_cache_plus.__version__

    def has_version(out: str) -> object:
        return version in out

    def empty_json(out: str) -> object:
        data = json.loads(out)
        for key in ("caches", "pkgs_dirs_info"):
            if key in data:
                return sum(c.get("packages", {}).get("total", 0) for c in data[key])
        if "items" in data:
            return len(data["items"])
        if "entries" in data:
            return len(data["entries"]) if isinstance(data["entries"], list) else data["entries"]
        return 0

    # label, command, environment, check of the output, what every run's check must give
    rows = [
        ("python -c 'import conda_cache_plus'", [py, "-c", "import conda_cache_plus"], alone,
         lambda out: out, ""),
        ("python -m conda_cache_plus --version", [*ours, "--version"], alone, has_version, True),
        ("python -m conda_cache_plus info --json (empty cache)", [*ours, "info", "--json"],
         alone, empty_json, 0),
        ("conda-cache list --json (empty cache)", [*ours, "list", "--json"], alone, empty_json, 0),
        ("conda-cache usage --json (no env)", [*ours, "usage", "--json"], alone, empty_json, 0),
        ("conda-cache clean --unused -d --json", [*ours, "clean", "--unused", "-d", "--json"],
         alone, empty_json, 0),
    ]  # fmt: skip
    script = os.path.join(os.path.dirname(sys.executable), "conda-cache")
    if os.path.exists(script):  # the installed command, which imports no runpy
        rows[2:2] = [
            ("conda-cache --version (the script)", [script, "--version"], alone, has_version,
             True),
            ("conda-cache info --json (the script, empty cache)", [script, "info", "--json"],
             alone, empty_json, 0),
        ]  # fmt: skip
    if conda_importable():
        rows += [
            ("python -m conda --version", [py, "-m", "conda", "--version"], env,
             lambda out: "conda" in out, True),
            ("conda cache info --json (empty cache)", [*plug, "info", "--json"], env, empty_json,
             0),
            ("conda cache clean --unused -d --json", [*plug, "clean", "--unused", "-d", "--json"],
             env, empty_json, 0),
            ("conda clean -p --dry-run --json", [py, "-m", "conda", "clean", "-p", "-d", "--json"],
             env, lambda out: len(json.loads(out)["packages"]["pkgs_dirs"].get(pkgs, [])), 0),
        ]  # fmt: skip
    for _label, cmd, e, _check, _want in rows:  # warm the page cache, and show each works
        run(cmd, e)
    times: dict[str, list[float]] = {r[0]: [] for r in rows}
    loads = []
    for rnd in range(args.repeat):
        loads.append(os.getloadavg()[0])
        k = rnd % len(rows)
        for label, cmd, e, check, want in rows[k:] + rows[:k]:
            took, out = run(cmd, e)
            require_same(f"output of {label}", {label: check(out)}, want)
            times[label].append(took)
    floor = rows[0][0]
    print(
        f"{args.repeat} interleaved rounds; load average {min(loads):.1f}-{max(loads):.1f} "
        f"(now {load()}); python {sys.version.split()[0]}\n"
    )
    print("| command | median (ms) | min (ms) | vs import (median of per-round ratios) |")
    print("|---|---:|---:|---:|")
    for label, *_ in rows:
        ts = times[label]
        ratio = statistics.median(t / f for t, f in zip(ts, times[floor], strict=True))
        print(f"| {label} | {statistics.median(ts) * 1000:.0f} | {min(ts) * 1000:.0f} "
              f"| {ratio:.2f}x |")  # fmt: skip

    print("\n| verb | modules loaded | of them ours | heavy modules pulled in |")
    print("|---|---:|---:|---|")
    verbs = [["--version"], ["info"], ["list"], ["usage"], ["clean", "--unused", "-d"],
             ["verify"], ["fetch", "--help"], ["remove", "--help"]]  # fmt: skip
    probe = f"HEAVY = {list(HEAVY)!r}\n{PROBE}"
    for verb in verbs:
        _t, out = run([py, "-c", probe, "conda-cache", *verb], alone)
        data = json.loads(out.strip().splitlines()[-1])
        print(f"| conda-cache {' '.join(verb)} | {data['modules']} | {data['ours']} "
              f"| {', '.join(data['heavy'])} |")  # fmt: skip
    if conda_importable():
        for verb in (["cache", "clean", "--unused", "-d"], ["cache", "info"], ["--version"]):
            _t, out = run([py, "-c", probe, "conda", *verb], env)
            data = json.loads(out.strip().splitlines()[-1])
            print(f"| conda {' '.join(verb)} | {data['modules']} | {data['ours']} "
                  f"| {', '.join(data['heavy'])} |")  # fmt: skip


if __name__ == "__main__":
    main()
