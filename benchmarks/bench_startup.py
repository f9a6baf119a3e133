"""Start-up: what a verb costs before it does anything, against importing the package alone.

    python benchmarks/bench_startup.py [--repeat 20]

Each command is a fresh process, the rows interleaved round by round (the order rotated), so
that the load of a shared machine falls on every row alike; ratios are medians of the per-round
ratios to ``python -c "import conda_cache_plus"`` (the floor: the interpreter plus the package's
``__init__``). Rows: ``conda-cache --version``, ``info`` and ``list`` of an empty cache,
``usage`` and ``clean --unused --dry-run`` with no environment, run through the installed
``conda-cache`` script as a user runs them (``python -m conda_cache_plus`` where there is no
script), ``python -m conda_cache_plus --version``, the script template's own imports (``import
re, conda_cache_plus``) for reference, and, where conda is importable,
the same through ``conda cache`` beside conda's own ``conda clean -p --dry-run`` and
``conda --version``. Each row's output is checked (the version; an empty cache reported as
empty), so a row that failed early cannot look fast. Wall and CPU (user+sys of the child) times.

What the plugin adds to every conda command (the first rule: never make conda worse): the same
conda commands (``--version``, ``list`` of an empty environment, ``info --json``, ``clean -p
--dry-run --json``), each with the plugin installed and without it, interleaved in the same
rounds. "Without" hides our distribution from conda's entry-point loading
(``importlib.metadata.distributions``) in the same interpreter and venv, so both sides pay the
same paths and the same small wrapper; the wrapper checks that it hid exactly our distribution,
and both sides must print the same output.

The second table is what each verb imports: modules in ``sys.modules`` after the verb ran, how
many of them are ours, and which heavy ones it pulled in (the HTTP stack for a ``clean`` would
be a verb importing what it does not use).
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
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from samework import conda_importable, load, precompile, require_same  # noqa: E402

HEAVY = (
    "argparse",
    "re",
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
import contextlib, io, runpy, sys
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
import json  # after looking: the probe's own json is not the verb's
print(json.dumps({"modules": len(mods), "ours": ours, "heavy": heavy}))
"""


# Runs conda with our distribution hidden from its entry-point loading ("without") or not
# ("with"); both sides go through this same wrapper, so the difference is the plugin alone.
CONDA_WITH_OR_WITHOUT = r"""
import sys, runpy
import importlib.metadata as md
mode = sys.argv.pop(1)
ours = ("conda_cache_plus-", "conda-cache-plus-")
found = []
_distributions = md.distributions
def distributions(**kwargs):
    for dist in _distributions(**kwargs):
        path = getattr(dist, "_path", None)
        if path is not None and path.name.lower().startswith(ours):
            found.append(path.name)
            if mode == "without":
                continue
        yield dist
md.distributions = distributions
sys.argv[0] = "conda"
try:
    runpy.run_module("conda", run_name="__main__", alter_sys=True)
finally:
    # each side must have seen our distribution exactly once (and hidden it or not), except
    # conda --version, which loads no plugins at all
    if len(found) != (0 if sys.argv[1:] == ["--version"] else 1):
        sys.exit(f"our distribution was seen {len(found)} times: {found}")
"""


def run(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """(wall, CPU of the child, stdout) of one fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{cmd} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return took, cpu, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument(
        "--only",
        choices=("all", "plugin"),
        default="all",
        help="plugin: only the conda commands with the plugin installed and without",
    )
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
    plug = [py, "-m", "conda", "cache"]
    # What a user runs is the installed ``conda-cache`` console script (pip's and conda's
    # template: ``import re``, ``from conda_cache_plus.cli import main``, ``re.sub`` on argv[0]);
    # ``python -m conda_cache_plus`` pays runpy instead. The verbs run through the script where
    # it is installed beside this interpreter, and say which they ran.
    script = os.path.join(os.path.dirname(sys.executable), "conda-cache")
    if os.path.exists(script):
        ours, name = [script], "conda-cache"
    else:
        ours, name = [py, "-m", "conda_cache_plus"], "python -m conda_cache_plus"
        print("(no conda-cache script beside this interpreter: the verbs run as python -m)")
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
        (f"{name} --version", [*ours, "--version"], alone, has_version, True),
        (f"{name} info --json (empty cache)", [*ours, "info", "--json"], alone, empty_json, 0),
        (f"{name} list --json (empty cache)", [*ours, "list", "--json"], alone, empty_json, 0),
        (f"{name} usage --json (no env)", [*ours, "usage", "--json"], alone, empty_json, 0),
        (f"{name} clean --unused -d --json", [*ours, "clean", "--unused", "-d", "--json"],
         alone, empty_json, 0),
        ("python -m conda_cache_plus --version", [py, "-m", "conda_cache_plus", "--version"],
         alone, has_version, True),
        # the script template's own imports before our code runs: its floor, for reference
        ("python -c 'import re, conda_cache_plus'", [py, "-c", "import re, conda_cache_plus"],
         alone, lambda out: out, ""),
    ]  # fmt: skip
    if args.only == "plugin":
        rows = rows[:1]
    elif conda_importable():
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
    pairs = plugin_rows(work, env, py) if plugin_installed(py, env) else []
    if conda_importable() and not pairs:
        print("(the plugin is not installed in this interpreter: no with/without rows)")
    for _label, with_, without in pairs:
        rows += [with_, without]
    for _label, cmd, e, _check, _want in rows:  # warm the page cache, and show each works
        run(cmd, e)
    times: dict[str, list[float]] = {r[0]: [] for r in rows}
    cpus: dict[str, list[float]] = {r[0]: [] for r in rows}
    outputs: dict[str, object] = {}
    loads = []
    for rnd in range(args.repeat):
        loads.append(os.getloadavg()[0])
        k = rnd % len(rows)
        for label, cmd, e, check, want in rows[k:] + rows[:k]:
            took, cpu, out = run(cmd, e)
            got = check(out)
            if want is None:  # a with/without row: the two must print the same
                outputs[label] = got
            else:
                require_same(f"output of {label}", {label: got}, want)
            times[label].append(took)
            cpus[label].append(cpu)
        for label, with_, without in pairs:
            require_same(
                f"output of {label} with and without the plugin",
                {with_[0]: outputs[with_[0]], without[0]: outputs[without[0]]},
            )
    loads.append(os.getloadavg()[0])
    floor = rows[0][0]
    print(
        f"{args.repeat} interleaved rounds; load average {min(loads):.1f}-{max(loads):.1f} "
        f"(now {load()}); python {sys.version.split()[0]}\n"
    )

    def ratio(series: dict, label: str, ref: str) -> float:
        return statistics.median(t / f for t, f in zip(series[label], series[ref], strict=True))

    print("| command | median (ms) | min (ms) | CPU median (ms) | vs import, wall | CPU |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, *_ in rows:
        ts, cs = times[label], cpus[label]
        print(f"| {label} | {statistics.median(ts) * 1000:.0f} | {min(ts) * 1000:.0f} "
              f"| {statistics.median(cs) * 1000:.0f} | {ratio(times, label, floor):.2f}x "
              f"| {ratio(cpus, label, floor):.2f}x |")  # fmt: skip
    if pairs:
        print("\nWhat the plugin adds to conda's own commands (with / without, medians of the "
              "per-round ratios; 1.00x = nothing):\n")  # fmt: skip
        print("| conda command | without (ms) | with (ms) | CPU without | CPU with "
              "| with/without, wall | CPU |")  # fmt: skip
        print("|---|---:|---:|---:|---:|---:|---:|")
        for label, with_, without in pairs:
            w, wo = with_[0], without[0]
            print(f"| {label} | {statistics.median(times[wo]) * 1000:.0f} "
                  f"| {statistics.median(times[w]) * 1000:.0f} "
                  f"| {statistics.median(cpus[wo]) * 1000:.0f} "
                  f"| {statistics.median(cpus[w]) * 1000:.0f} "
                  f"| {ratio(times, w, wo):.3f}x | {ratio(cpus, w, wo):.3f}x |")  # fmt: skip
    if args.only == "plugin":
        return

    print("\n| verb | modules loaded | of them ours | heavy modules pulled in |")
    print("|---|---:|---:|---|")
    verbs = [["--version"], ["info"], ["list"], ["usage"], ["clean", "--unused", "-d"],
             ["verify"], ["fetch", "--help"], ["remove", "--help"]]  # fmt: skip
    probe = f"HEAVY = {list(HEAVY)!r}\n{PROBE}"
    for verb in verbs:
        _t, _c, out = run([py, "-c", probe, "conda-cache", *verb], alone)
        data = json.loads(out.strip().splitlines()[-1])
        print(f"| conda-cache {' '.join(verb)} | {data['modules']} | {data['ours']} "
              f"| {', '.join(data['heavy'])} |")  # fmt: skip
    if conda_importable():
        for verb in (["cache", "clean", "--unused", "-d"], ["cache", "info"], ["--version"]):
            _t, _c, out = run([py, "-c", probe, "conda", *verb], env)
            data = json.loads(out.strip().splitlines()[-1])
            print(f"| conda {' '.join(verb)} | {data['modules']} | {data['ours']} "
                  f"| {', '.join(data['heavy'])} |")  # fmt: skip


def plugin_installed(py: str, env: dict) -> bool:
    """Whether conda is importable and loads our plugin in this interpreter."""
    if not conda_importable():
        return False
    probe = (
        "import importlib.metadata as m; "
        "print(any(e.value == 'conda_cache_plus.plugin' for e in m.entry_points(group='conda')))"
    )
    out = subprocess.run([py, "-c", probe], env=env, capture_output=True, text=True).stdout
    return out.strip() == "True"


def plugin_rows(work: str, env: dict, py: str) -> list[tuple[str, tuple, tuple]]:
    """conda's own commands with the plugin and without it: (label, with-row, without-row);
    a row's expected output is None (the two sides must agree, checked every round)."""
    wrapper = os.path.join(work, "conda_with_or_without.py")
    with open(wrapper, "w") as fh:
        fh.write(CONDA_WITH_OR_WITHOUT)
    prefix = os.path.join(work, "envs", "empty")
    os.makedirs(os.path.join(prefix, "conda-meta"), exist_ok=True)
    open(os.path.join(prefix, "conda-meta", "history"), "w").close()

    def info_json(out: str) -> object:
        data = json.loads(out)
        # conda's own answers, minus what may legitimately differ between two processes
        return sorted((k, json.dumps(v, sort_keys=True)) for k, v in data.items()
                      if k not in ("sys.argv",))  # fmt: skip

    def same_text(out: str) -> object:
        return out

    def clean_json(out: str) -> object:
        return json.loads(out)["packages"]

    commands = [
        ("conda --version", ["--version"], same_text),
        ("conda list -p ENV (empty)", ["list", "-p", prefix], same_text),
        ("conda info --json", ["info", "--json"], info_json),
        ("conda clean -p --dry-run --json", ["clean", "-p", "-d", "--json"], clean_json),
    ]
    out = []
    for label, argv, check in commands:
        out.append((
            label,
            (f"{label} (plugin installed)", [py, wrapper, "with", *argv], env, check, None),
            (f"{label} (plugin hidden)", [py, wrapper, "without", *argv], env, check, None),
        ))  # fmt: skip
    return out


if __name__ == "__main__":
    main()
