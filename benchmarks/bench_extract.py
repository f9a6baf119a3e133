"""Extraction benchmark: ours vs conda-package-streaming, conda-package-handling and py-rattler,
with the limits (decompression alone, writing the tree alone) measured in the same run.

    python benchmarks/bench_extract.py CORPUS_DIR [--tmpfs /dev/shm/cpx-bench]
        [--disk /var/tmp/cpx-bench] [--workers 1 2] [--targets tmpfs disk] [--repeat 3]
        [--drop-caches]

Run it in an environment that has the peers installed (they are not project dependencies):
``pip install conda-package-streaming conda-package-handling py-rattler``. A peer that is not
importable is reported as skipped. Every extractor gets the same process pool (fork, warmed up),
the archives largest first, and a fresh empty destination per archive; outputs are removed
between runs, outside the timing. Rounds interleave every contender (the order rotated each
round); the median and the minimum are reported. Before every timed run the disk is settled
(``settle.py``: sync, with ``--drop-caches`` an empty page cache, no request in flight); on disk
the clock includes a final ``sync`` so writeback is counted for everyone.
"""

from __future__ import annotations

import argparse
import bz2
import os
import shutil
import statistics
import sys
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import settle
from corpus import build_corpus
from samework import DifferentWork, precompile, require_same, tree_signature

ZLIB_TESTDATA = "/work/shared/testdata/conda_format_repo/linux-64/zlib-1.2.11-h7b6447c_3.conda"


# -- extractors (module level so the pool can pickle them) --------------------------------------


def ours(src: str, dest: str) -> None:
    from conda_cache_plus.gateways.extract import extract_archive

    extract_archive(src, dest)


def cps(src: str, dest: str) -> None:
    from conda_package_streaming.extract import extract

    extract(src, dest)


def cph(src: str, dest: str) -> None:
    from conda_package_handling.api import extract

    extract(src, dest_dir=dest)


def rattler(src: str, dest: str) -> None:
    from rattler.package_streaming import extract

    extract(src, dest)


def decompress_only(src: str, dest: str) -> None:
    """The floor for the CPU side: decompress every tar stream, write nothing."""
    if src.endswith(".conda"):
        import zstandard

        dctx = zstandard.ZstdDecompressor()
        with zipfile.ZipFile(src) as zf:
            for name in zf.namelist():
                if name.endswith(".tar.zst"):
                    with zf.open(name) as raw, dctx.stream_reader(raw, read_size=1 << 18) as rd:
                        while rd.read(1 << 20):
                            pass
    else:
        with bz2.open(src, "rb") as fh:
            while fh.read(1 << 20):
                pass


_TREES: dict[str, list] = {}


def load_tree(src: str, tree_dir: str) -> None:
    """Read an extracted tree into this worker's memory (not timed)."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(tree_dir):
        rel = os.path.relpath(dirpath, tree_dir)
        for d in sorted(dirnames):
            path = os.path.join(dirpath, d)
            if os.path.islink(path):
                entries.append(("l", os.path.normpath(os.path.join(rel, d)), os.readlink(path)))
            else:
                entries.append(("d", os.path.normpath(os.path.join(rel, d)), None))
        for f in sorted(filenames):
            path = os.path.join(dirpath, f)
            if os.path.islink(path):
                entries.append(("l", os.path.normpath(os.path.join(rel, f)), os.readlink(path)))
            else:
                with open(path, "rb") as fh:
                    entries.append(("f", os.path.normpath(os.path.join(rel, f)), fh.read()))
    _TREES[src] = entries


def write_only(src: str, dest: str) -> None:
    """The floor for the disk side: create the same tree from memory, minimal syscalls."""
    entries = _TREES.get(src)
    if entries is None:
        raise RuntimeError("tree not loaded in this worker")
    os.mkdir(dest)
    root = dest + "/"
    for kind, rel, data in entries:
        if kind == "d":
            os.mkdir(root + rel)
        elif kind == "l":
            os.symlink(data, root + rel)
        else:
            fd = os.open(root + rel, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, data)
            os.close(fd)


EXTRACTORS = {"ours": ours, "cps": cps, "cph": cph, "rattler": rattler}
IMPORTS = {
    "ours": "conda_cache_plus.gateways.extract",
    "cps": "conda_package_streaming.extract",
    "cph": "conda_package_handling.api",
    "rattler": "rattler.package_streaming",
}


def _warm(modules: list[str]) -> int:
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    return os.getpid()


def _available() -> dict:
    import importlib

    found = {}
    for name, module in IMPORTS.items():
        try:
            importlib.import_module(module)
            found[name] = EXTRACTORS[name]
        except ImportError as exc:
            print(f"skipping {name}: {exc}", file=sys.stderr)
    return found


def _pool(workers: int) -> ProcessPoolExecutor:
    pool = ProcessPoolExecutor(workers, mp_context=get_context("fork"))
    list(pool.map(_warm, [list(IMPORTS.values())] * workers * 4))
    return pool


def _timed(func, src: str, dest: str) -> float:
    """Run one extraction in a worker; its CPU (user+sys of the worker's every thread: the
    worker runs one job at a time, so nothing else is counted)."""
    start = time.process_time()
    func(src, dest)
    return time.process_time() - start


_DROP_CACHES = False
_EXPECTED = None  # tree_signature of the reference extraction of the current archives


def _run(pool, func, archives: list[str], out: str) -> tuple[float, float]:
    os.makedirs(out, exist_ok=True)
    dests = [os.path.join(out, f"{i:03d}") for i in range(len(archives))]
    settle.settle(out, _DROP_CACHES)
    start = time.perf_counter()
    cpu = 0.0
    for fut in [pool.submit(_timed, func, a, d) for a, d in zip(archives, dests, strict=True)]:
        cpu += fut.result()
    if func is not decompress_only:
        os.sync()  # on disk, count the writeback too (every extractor pays it)
    elapsed = time.perf_counter() - start
    if func is not decompress_only and _EXPECTED is not None:
        # every extractor, every run: the same files, bytes, links and directories
        require_same(f"tree extracted by {func.__name__}", {func.__name__: tree_signature(out)},
                     _EXPECTED)  # fmt: skip
    shutil.rmtree(out)
    return elapsed, cpu


def _write_only_run(
    workers: int, archives: list[str], ref_root: str, out: str
) -> tuple[float, float]:
    # Every worker holds every tree in memory before the clock starts.
    ctx = get_context("fork")
    pool = ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_load_all, initargs=(archives, ref_root)
    )
    try:
        list(pool.map(_warm, [[]] * workers * 4))
        return _run(pool, write_only, archives, out)
    finally:
        pool.shutdown()


def _load_all(archives: list[str], ref_root: str) -> None:
    for i, a in enumerate(archives):
        load_tree(a, os.path.join(ref_root, f"{i:03d}"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus")
    parser.add_argument("--tmpfs", default="/dev/shm/cpx-bench")
    parser.add_argument("--disk", default="/var/tmp/cpx-bench")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--targets", nargs="+", default=["tmpfs", "disk"])
    parser.add_argument("--formats", nargs="+", default=[".conda", ".tar.bz2"])
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--drop-caches", action="store_true", help="drop the page cache (root)")
    parser.add_argument("--contenders", nargs="+", help="a subset of ours cps cph rattler")
    args = parser.parse_args(argv)
    global _DROP_CACHES, _EXPECTED
    _DROP_CACHES = args.drop_caches

    precompile()  # as an installed package is: no contender compiles its modules per run
    manifest = build_corpus(args.corpus)
    extractors = _available()
    if args.contenders:
        extractors = {k: v for k, v in extractors.items() if k in args.contenders}
    print(
        f"drop caches: {'yes' if args.drop_caches else 'no'};"
        f" load average at start {os.getloadavg()[0]:.1f}"
    )
    results: dict[tuple, float] = {}
    for fmt in args.formats:
        pkgs = sorted(
            (p for p in manifest["packages"] if p["format"] == fmt), key=lambda p: -p["size"]
        )
        archives = [p["path"] for p in pkgs]
        print(
            f"\n{fmt}: {len(pkgs)} packages, {sum(p['size'] for p in pkgs) / 1e6:.0f} MB archives,"
            f" {sum(p['bytes'] for p in pkgs) / 1e6:.0f} MB / {sum(p['files'] for p in pkgs)}"
            " files extracted"
        )
        for target in args.targets:
            base = args.tmpfs if target == "tmpfs" else args.disk
            shutil.rmtree(base, ignore_errors=True)
            os.makedirs(base)
            # a reference tree for the write-only floor, extracted once (not timed)
            ref = os.path.join(base, "ref")
            os.makedirs(ref)
            for i, a in enumerate(archives):
                ours(a, os.path.join(ref, f"{i:03d}"))
            _EXPECTED = tree_signature(ref)
            for workers in args.workers:
                times: dict[str, list[float]] = {}
                cpus: dict[str, list[float]] = {}

                def keep(name, took, times=times, cpus=cpus):
                    times.setdefault(name, []).append(took[0])
                    cpus.setdefault(name, []).append(took[1])

                # rounds interleave the contenders, the order rotated each round, so load from
                # other processes on the machine hits them alike
                loads = []
                for rnd in range(args.repeat):
                    loads.append(os.getloadavg()[0])
                    pool = _pool(workers)
                    jobs = [("decompress only", decompress_only), *extractors.items()]
                    jobs.append(("write only", None))
                    k = rnd % len(jobs)
                    try:
                        for name, func in jobs[k:] + jobs[:k]:
                            if func is None:
                                keep(name, _write_only_run(workers, archives, ref, base + "/o"))
                                continue
                            try:
                                keep(name, _run(pool, func, archives, base + "/o"))
                            except DifferentWork:
                                raise
                            except Exception as exc:  # a peer failing is a result, not a crash
                                print(f"  {name} failed: {exc!r}"[:300])
                                shutil.rmtree(base + "/o", ignore_errors=True)
                    finally:
                        pool.shutdown()
                row = {name: statistics.median(ts) for name, ts in times.items()}
                low = {name: min(ts) for name, ts in times.items()}
                for name, secs in row.items():
                    results[(fmt, target, workers, name)] = secs
                line = "  ".join(f"{k} {v:.2f}s (min {low[k]:.2f})" for k, v in row.items())
                print(
                    f"  {target:5} {workers} worker(s), load {min(loads):.1f}-{max(loads):.1f},"
                    f" medians of {args.repeat}: {line}",
                    flush=True,
                )
                _ratios(row, times, cpus)
            shutil.rmtree(base, ignore_errors=True)
    _zlib_order_check(extractors)
    return 0


def _per_round(times: dict, a: str, b: str) -> float | None:
    """The median over rounds of a's / b's figure in the same round (a round runs every
    contender back to back, so about the same load falls on both)."""
    if a not in times or b not in times or len(times[a]) != len(times[b]):
        return None
    return statistics.median(x / y for x, y in zip(times[a], times[b], strict=True) if y > 0)


def _ratios(row: dict, times: dict, cpus: dict) -> None:
    if not row.get("ours"):
        return
    pairs = [(peer, "ours") for peer in ("cps", "cph")]
    pairs += [("ours", "rattler"), ("ours", "decompress only"), ("ours", "write only")]
    for label, figures in (("wall", times), ("CPU", cpus)):
        parts = []
        for a, b in pairs:
            ratio = _per_round(figures, a, b)
            if ratio is not None:
                parts.append(f"{a.split()[0]}/{b.split()[0]} {ratio:.2f}x")
        print(f"      {label} (medians of per-round ratios): " + ", ".join(parts), flush=True)
    line = "  ".join(f"{k} {statistics.median(v):.2f}s" for k, v in cpus.items())
    print(f"      CPU medians: {line}", flush=True)


def _zlib_order_check(extractors: dict) -> None:
    if not os.path.exists(ZLIB_TESTDATA):
        return
    import tempfile

    print(f"\n{os.path.basename(ZLIB_TESTDATA)} (zip order info, pkg, metadata.json):")
    for name, func in extractors.items():
        dest = tempfile.mkdtemp()
        try:
            func(ZLIB_TESTDATA, os.path.join(dest, "x"))
            print(f"  {name}: ok")
        except Exception as exc:
            print(f"  {name}: FAILED {type(exc).__name__}: {exc}"[:200])
        finally:
            shutil.rmtree(dest)


if __name__ == "__main__":
    sys.exit(main())
