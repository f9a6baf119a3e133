"""End-to-end fetch benchmark: from a 127.0.0.1 HTTP server into an empty cache.

    /work/condaenv/bin/python benchmarks/bench_fetch.py [CORPUS_DIR] [--repeat 3]
        [--targets tmpfs disk] [--tmpfs /dev/shm/cpx-fetch] [--disk /var/tmp/cpx-fetch]
        [--contenders ours conda rattler] [--drop-caches] [--baseline DIR]

Contenders, each in a fresh process per run, all fed the same ``.conda`` packages (URL + sha256)
and each timed inside its process from the start of its work to the end (imports excluded, the
process wall time reported next to it):

- ``ours``: ``conda_cache_plus.fetch`` plan + execute, standard-library HTTP (no conda);
- ``ours+check``: the same with ``conda-cache fetch``'s self-check of every extracted entry
  (verify's judgement), so the two rows give what the check costs;
- ``ours/conda``: the same through conda's session (``Run(conda=True)``, requests);
- ``conda``: conda's ``ProgressiveFetchExtract`` on ``MatchSpec(url, sha256=...)``;
- ``rattler``: py-rattler's ``download_and_extract`` for every package at once (asyncio).

The server is ``tests/httpserver.py`` in its own process (so it does not compete for the
contenders' GIL), keep-alive with TCP_NODELAY. Runs are interleaved (ours, conda, rattler, ...,
the order rotated every round); the median and minimum are reported, the ratios are medians of
the per-round ratios, and each run's CPU (user+sys of the process and all it waited for) is
reported beside its time. A peer that is not
importable is skipped, and said to be. The corpus is built by ``benchmarks/corpus.py`` (reused
when it exists).

Before every run the previous output is removed, everything is written back (``sync``) and the
disk is let settle (``settle.py``; no request in flight for a second). ``--drop-caches`` (root)
also empties the page cache, so every contender starts cold, as after a reboot, and no run pays
for the previous run's deletions (see ``settle.py``: on this disk that is a 5-10x effect); each
run's disk reads and the load average are recorded next to its time. ``--baseline DIR`` adds a
contender ``ours@base`` that imports ``conda_cache_plus`` from DIR (e.g. ``git archive HEAD``
unpacked), for before/after figures from one interleaved run.
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
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import settle  # noqa: E402
from samework import precompile, require_same, tree_signature  # noqa: E402

CONTENDERS = ("ours", "ours+check", "ours/conda", "conda", "rattler")


# -- workers (run as `bench_fetch.py --worker NAME EXPLICIT DEST`) --------------------------------
def _read_explicit(path: str) -> list[tuple[str, str]]:
    out = []
    with open(path) as fh:
        for line in fh:
            line = line.strip()
            if line and not line.startswith(("#", "@")):
                url, _, sha = line.partition("#")
                out.append((url, sha))
    return out


def work_ours(explicit: str, dest: str, conda: bool, check: bool = False) -> float:
    import functools
    import inspect

    from conda_cache_plus.fetch.pipeline import execute
    from conda_cache_plus.fetch.plan import plan
    from conda_cache_plus.fetch.refs import parse_explicit
    from conda_cache_plus.layouts.caches import PackageCaches
    from conda_cache_plus.ui.output import Run

    if conda:
        from conda.base.context import reset_context

        from conda_cache_plus.conda_layer.compat import install_host

        reset_context()
        install_host()  # what `conda cache fetch` does: conda hosts us
    kwargs, after = {}, None
    if check:
        # what `conda-cache fetch` adds: verify's judgement of every entry it extracted
        from conda_cache_plus.cli import main_fetch

        if "check" in inspect.signature(execute).parameters:
            kwargs["check"] = functools.partial(main_fetch.check_extracted, command="conda-cache")
        else:  # a baseline from before the check ran in the workers: it followed the run
            after = getattr(main_fetch, "check_extracted", None) or main_fetch._self_check
    start = time.perf_counter()
    if kwargs:  # as `conda-cache fetch` does, timed: the check's modules, before the workers fork
        import conda_cache_plus.integrity.judgement
        import conda_cache_plus.integrity.repair
        import conda_cache_plus.integrity.verify  # noqa: F401
    run = Run(quiet=True, conda=conda, pkgs_dirs=[dest])
    summary = execute(plan(parse_explicit(explicit), PackageCaches([dest])), run, **kwargs)
    if after is not None:
        after(summary, "conda-cache")
    took = time.perf_counter() - start
    if summary.failures:
        raise SystemExit(f"failures: {[(f.fn, f.error) for f in summary.failures]}")
    bad = [(i.fn, i.note) for i in summary.items if i.note]
    if bad:
        raise SystemExit(f"the self-check found fault with {bad}")
    return took


def work_conda(explicit: str, dest: str) -> float:
    os.environ["CONDA_PKGS_DIRS"] = dest
    from conda.base.context import reset_context

    reset_context()
    from conda.core.package_cache_data import ProgressiveFetchExtract
    from conda.models.match_spec import MatchSpec

    start = time.perf_counter()
    specs = [MatchSpec(url, sha256=sha) for url, sha in _read_explicit(explicit)]
    pfe = ProgressiveFetchExtract(specs)
    pfe.execute()
    return time.perf_counter() - start


def work_rattler(explicit: str, dest: str) -> float:
    import asyncio

    from rattler.networking import Client
    from rattler.package_streaming import download_and_extract

    async def main() -> None:
        client = Client()
        jobs = []
        for url, sha in _read_explicit(explicit):
            fn = url.rsplit("/", 1)[-1]
            target = os.path.join(dest, fn[: -len(".conda")])
            jobs.append(download_and_extract(client, url, target, bytes.fromhex(sha)))
        await asyncio.gather(*jobs)

    start = time.perf_counter()
    asyncio.run(main())
    return time.perf_counter() - start


def worker(name: str, explicit: str, dest: str) -> None:
    os.environ.setdefault("CONDA_PKGS_DIRS", dest)
    if name in ("ours", "ours@base"):
        took = work_ours(explicit, dest, conda=False)
    elif name in ("ours+check", "ours+check@base"):
        took = work_ours(explicit, dest, conda=False, check=True)
    elif name == "ours/conda":
        took = work_ours(explicit, dest, conda=True)
    elif name == "conda":
        took = work_conda(explicit, dest)
    elif name == "rattler":
        took = work_rattler(explicit, dest)
    else:
        raise SystemExit(f"unknown contender {name}")
    print(json.dumps({"seconds": took}))


# -- driver ---------------------------------------------------------------------------------------
def available(name: str) -> str | None:
    """None when the contender can run here, else why not."""
    module = {
        "ours": "conda_cache_plus",
        "ours@base": "conda_cache_plus",
        "ours+check": "conda_cache_plus",
        "ours+check@base": "conda_cache_plus",
        "ours/conda": "conda",
        "conda": "conda",
    }.get(name)
    module = module or "rattler"
    try:
        __import__(module)
    except ImportError as exc:
        return f"{module} is not importable ({exc})"
    return None


def start_server(directory: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "tests", "httpserver.py"), directory],
        stdout=subprocess.PIPE,
        text=True,
    )
    url = proc.stdout.readline().strip()
    if not url.startswith("http://"):
        proc.kill()
        raise SystemExit("the test server did not start")
    return proc, url


def _entries(dest: str) -> int:
    return sum(
        1
        for name in os.listdir(dest)
        if os.path.isfile(os.path.join(dest, name, "info", "index.json"))
    )


# written by conda and by us, not by py-rattler's download_and_extract: not the package's files
NOT_PAYLOAD = frozenset({"info/repodata_record.json"})


def _payload(dest: str) -> tuple[int, int, int, int]:
    """(files, bytes, symlinks, dirs) of every extracted entry: what every contender must have
    written, whatever else it keeps beside (archives, urls.txt, locks)."""
    total = [0, 0, 0, 0]
    for name in os.listdir(dest):
        entry = os.path.join(dest, name)
        if os.path.isfile(os.path.join(entry, "info", "index.json")):
            for i, v in enumerate(tree_signature(entry, NOT_PAYLOAD)):
                total[i] += v
    return tuple(total)


def run_once(name: str, explicit: str, dest: str, expected: int, opts: argparse.Namespace) -> dict:
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    dev = settle.block_device(dest)
    settle.settle(dest, opts.drop_caches)
    env = dict(os.environ)
    env.update(CONDA_PKGS_DIRS=dest, CONDA_SOLVER="classic", CONDA_REGISTER_ENVS="false")
    if name.endswith("@base"):
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [opts.baseline, env.get("PYTHONPATH")]))
    load = os.getloadavg()[0]
    before = settle.disk_stat(dev)
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", name, explicit, dest],
        capture_output=True,
        text=True,
        env=env,
    )
    wall = time.perf_counter() - start
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    after = settle.disk_stat(dev)
    lines = proc.stdout.strip().splitlines()
    # py-rattler sometimes dies with SIGSEGV while the interpreter exits, after its work is
    # done and timed: accept a run whose result line was printed and whose output is complete.
    if not lines or not lines[-1].startswith("{") or _entries(dest) != expected:
        raise SystemExit(f"{name} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    result = json.loads(lines[-1])
    payload = _payload(dest)
    shutil.rmtree(dest, ignore_errors=True)
    return {
        "work": result["seconds"],
        "wall": wall,
        # user+sys of the process and of everything it waited for (forked extraction workers,
        # rattler's threads): the work done, whatever the load let the wall clock show
        "cpu": (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime),
        "load": load,
        "reads": after[0] - before[0],
        "writes": after[1] - before[1],
        "payload": payload,
    }


def _round_ratio(runs: dict, peer: str, name: str, key: str) -> str:
    if peer not in runs:
        return "-"
    ratios = [p[key] / r[key] for p, r in zip(runs[peer], runs[name], strict=True) if r[key] > 0]
    return f"{statistics.median(ratios):.2f}x" if ratios else "-"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", nargs="?", default="/work/bench/corpus")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--targets", nargs="+", default=["tmpfs", "disk"])
    parser.add_argument("--tmpfs", default="/dev/shm/cpx-fetch")
    parser.add_argument("--disk", default="/var/tmp/cpx-fetch")
    parser.add_argument("--contenders", nargs="+", default=list(CONTENDERS))
    parser.add_argument("--drop-caches", action="store_true", help="drop the page cache (root)")
    parser.add_argument("--baseline", help="a directory holding a baseline conda_cache_plus")
    parser.add_argument("--worker", nargs=3, metavar=("NAME", "EXPLICIT", "DEST"))
    args = parser.parse_args(argv)
    if args.worker:
        worker(*args.worker)
        return 0

    sys.path.insert(0, HERE)
    from corpus import build_corpus

    precompile()  # as an installed package is: no contender compiles its modules per run
    manifest = build_corpus(args.corpus)
    pkgs = [p for p in manifest["packages"] if p["format"] == ".conda"]
    total = sum(p["size"] for p in pkgs)
    files = sum(p["files"] for p in pkgs)
    www = tempfile.mkdtemp(prefix="cpx-fetch-www-")
    os.symlink(os.path.dirname(pkgs[0]["path"]), os.path.join(www, "linux-64"))
    server, base = start_server(www)
    try:
        explicit = os.path.join(www, "explicit.txt")
        with open(explicit, "w") as fh:
            fh.write("@EXPLICIT\n")
            for p in pkgs:
                fh.write(f"{base}/linux-64/{p['fn']}#{p['sha256']}\n")
        if args.baseline:
            for n in [n for n in args.contenders if n in ("ours", "ours+check")]:
                if f"{n}@base" not in args.contenders:
                    args.contenders.insert(args.contenders.index(n) + 1, f"{n}@base")
        skipped = {n: why for n in args.contenders if (why := available(n))}
        names = [n for n in args.contenders if n not in skipped]
        results: dict[tuple[str, str], list[dict]] = {}
        for target in args.targets:
            dest = getattr(args, target)
            for rnd in range(args.repeat):
                # rotate the order so no contender always runs right after the same other one
                k = rnd % len(names)
                for name in names[k:] + names[:k]:
                    r = run_once(name, explicit, dest, len(pkgs), args)
                    results.setdefault((target, name), []).append(r)
                    # every contender, every run: the same files, bytes, links and dirs
                    first = results[(target, names[k])][0]["payload"]
                    require_same(f"{target} payload extracted", {name: r["payload"]}, first)
                    print(
                        f"  {target} round {rnd + 1} {name}: {r['work']:.2f} s"
                        f" (disk reads {r['reads']}, load {r['load']:.1f})",
                        flush=True,
                    )
        loads = [r["load"] for runs in results.values() for r in runs]
        print(
            f"\n{len(pkgs)} .conda packages, {total / 1e6:.0f} MB, {files} files; "
            f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; {args.repeat} interleaved"
            f" rounds; drop caches: {'yes' if args.drop_caches else 'no'}; load average"
            f" {min(loads):.1f}-{max(loads):.1f}\n"
        )
        print(
            "| target | contender | median (s) | min (s) | CPU (s) | disk reads |"
            " vs conda | vs rattler | CPU vs rattler |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        report = {}
        for target in args.targets:
            runs = {n: results[(target, n)] for n in names if (target, n) in results}
            med = {n: statistics.median(r["work"] for r in rs) for n, rs in runs.items()}
            low = {n: min(r["work"] for r in rs) for n, rs in runs.items()}
            cpu = {n: statistics.median(r["cpu"] for r in rs) for n, rs in runs.items()}
            reads = {n: statistics.median(r["reads"] for r in rs) for n, rs in runs.items()}
            for n in runs:
                # medians of the per-round ratios: each round's contenders ran back to back,
                # under about the same load
                vs_conda = _round_ratio(runs, "conda", n, "work")
                vs_rattler = _round_ratio(runs, "rattler", n, "work")
                cpu_rattler = _round_ratio(runs, "rattler", n, "cpu")
                print(
                    f"| {target} | {n} | {med[n]:.2f} | {low[n]:.2f} | {cpu[n]:.2f} |"
                    f" {reads[n]:.0f} | {vs_conda} | {vs_rattler} | {cpu_rattler} |"
                )
            report[target] = {"work": med, "min": low, "cpu": cpu, "runs": runs}
        for target in args.targets:
            runs = report[target]["runs"]
            for base in ("ours", "ours@base"):
                with_check = base.replace("ours", "ours+check")
                if base in runs and with_check in runs:
                    # the self-check's cost: the same engine with and without it, per round
                    extra = [
                        c["work"] - o["work"]
                        for c, o in zip(runs[with_check], runs[base], strict=True)
                    ]
                    print(
                        f"\n{target}: {with_check} vs {base}: the self-check adds"
                        f" {statistics.median(extra):+.3f} s to the fetch"
                        f" ({statistics.median(extra) / len(pkgs) * 1e3:+.1f} ms a package;"
                        f" {_round_ratio(runs, with_check, base, 'work')} the time,"
                        f" {_round_ratio(runs, with_check, base, 'cpu')} the CPU; medians of"
                        " per-round figures)"
                    )
        for n, why in skipped.items():
            print(f"skipped {n}: {why}")
        print(
            "\n(vs X = median over rounds of X's time / this contender's time in the same round:"
            " above 1 means faster than X; CPU = user+sys of the process and its workers)"
        )
        os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
        with open(os.path.join(HERE, "out", "fetch.json"), "w") as fh:
            json.dump({"packages": len(pkgs), "bytes": total, "files": files, **report}, fh)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(www, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
