"""Verify benchmark: full verify against a C reference and plain Python loops, cold and warm;
fast vs full; re-verify of an unchanged cache against the floor of one lstat per file; the
fast level over 20,000 synthetic entries beside our scan and conda's.

    python3 benchmarks/corpus.py WORKDIR/corpus --count 53     # once, by a rich interpreter
    /work/condaenv/bin/python benchmarks/bench_verify.py [WORKDIR]

The corpus comes from benchmarks/corpus.py (built into WORKDIR/corpus when missing; an existing
one is reused, so it can be built by an interpreter with more distributions than the one that
runs the benchmark); its .conda packages are installed into WORKDIR/pkgs with our
``install_entry``. The C reference is ``openssl dgst -sha256`` over the same files (every file
verify hashes: package files and archives), split over as many processes as verify has
workers. Cold runs drop the page cache (``echo 3 > /proc/sys/vm/drop_caches``; needs root,
else they are skipped and said so). Every row is measured in this one run.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from samework import require_same  # noqa: E402

from conda_cache_plus.gateways.extract import install_entry  # noqa: E402
from conda_cache_plus.integrity.findings import FAST, FULL  # noqa: E402
from conda_cache_plus.integrity.verify import verify_caches  # noqa: E402
from conda_cache_plus.layouts.caches import PackageCaches  # noqa: E402
from conda_cache_plus.model.cache_paths import CacheLayout  # noqa: E402

WORKERS = os.cpu_count() or 1
SIZES: dict[str, int] = {}


def build_cache(work: str) -> tuple[str, list[str]]:
    import corpus

    manifest = corpus.build_corpus(os.path.join(work, "corpus"))
    pkgs = os.path.join(work, "pkgs")
    marker = os.path.join(pkgs, ".complete")
    if not os.path.exists(marker):
        shutil.rmtree(pkgs, ignore_errors=True)
        os.makedirs(pkgs)
        layout = CacheLayout(pkgs)
        with open(layout.urls_txt, "w") as urls:
            for p in manifest["packages"]:
                if p["format"] != ".conda":
                    continue
                fn = p["fn"]
                shutil.copyfile(p["path"], os.path.join(pkgs, fn))
                url = f"https://conda.example.org/bench/linux-64/{fn}"
                rec = {"fn": fn, "url": url, "sha256": p["sha256"], "size": p["size"]}
                install_entry(layout, fn[: -len(".conda")], os.path.join(pkgs, fn), rec)
                urls.write(url + "\n")
        open(marker, "w").close()
    # Every file full verify hashes: the package files (from paths.json) and the archives.
    files = []
    for name in sorted(os.listdir(pkgs)):
        path = os.path.join(pkgs, name)
        if name.endswith(".conda"):
            files.append(path)
        elif os.path.isdir(os.path.join(path, "info")):
            with open(os.path.join(path, "info", "paths.json")) as fh:
                for item in json.load(fh)["paths"]:
                    if item.get("path_type", "hardlink") == "hardlink":
                        files.append(os.path.join(path, item["_path"]))
    return pkgs, files


def drop_caches() -> bool:
    try:
        subprocess.run(["sync"], check=True)
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
        return True
    except OSError:
        return False


def best(fn, repeat=5, cold=False):
    times = []
    for _ in range(repeat):
        if cold and not drop_caches():
            return None
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def openssl(files, procs) -> tuple[int, int]:
    """(files, bytes) hashed: one ``SHA2-256(path)= ...`` line per file."""
    chunks = [files[i::procs] for i in range(procs)]
    running = [
        subprocess.Popen(
            ["xargs", "-0", "openssl", "dgst", "-sha256"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for _ in chunks
    ]
    n = 0
    for proc, chunk in zip(running, chunks, strict=True):
        out, _ = proc.communicate("\0".join(chunk).encode())
        n += out.count(b"\n")
    return n, sum(SIZES[f] for f in files) if n == len(files) else -1


def python_loop(files) -> tuple[int, int]:
    n = size = 0
    for path in files:
        os.stat(path)
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
        h.hexdigest()
        n += 1
    return n, size


def python_loop_procs(files, procs) -> tuple[int, int]:
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(procs) as pool:
        parts = pool.map(python_loop, [files[i::procs] for i in range(procs)])
    return sum(p[0] for p in parts), sum(p[1] for p in parts)


def stat_floor(files) -> int:
    """What a re-run cannot go below: one lstat per file, in a bare Python loop."""
    lstat = os.lstat
    for path in files:
        lstat(path)
    return len(files)


def verify(pkgs, level, store, use_index=False):
    rep = verify_caches(PackageCaches([pkgs], use_index=use_index), None, level, use_store=store)
    assert not rep.bad, [(e.entry, e.problems[:2]) for e in rep.bad]
    return rep


def main() -> None:
    work = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "out", "verify")
    os.environ.setdefault("XDG_CACHE_HOME", os.path.join(work, "user-cache"))
    pkgs, files = build_cache(work)
    SIZES.update((f, os.path.getsize(f)) for f in files)
    nbytes = sum(SIZES.values())
    n_entries = sum(1 for n in os.listdir(pkgs) if n.endswith(".conda"))
    mb = nbytes / 1e6
    print(
        f"corpus: {n_entries} packages, {len(files)} files hashed, {mb:.0f} MB; "
        f"{WORKERS} cores; load average {os.getloadavg()[0]:.1f}"
    )

    def rate(t):
        return f"{mb / t:7.0f} MB/s" if t else ""

    def row(label, t, ref=None, refname="", show_rate=True):
        ratio = f"{ref / t:5.2f}x {refname}" if (t and ref) else ""
        shown = f"{t * 1000:9.1f} ms" if t is not None else "  skipped"
        print(f"| {label} | {shown} | {rate(t) if show_rate else ''} | {ratio} |")

    print("| what | median | rate | ratio |\n|---|---:|---:|---|")
    # warm page cache
    for f in files:
        with open(f, "rb") as fh:
            while fh.read(1 << 20):
                pass
    # The rows that are compared run interleaved, round after round, so that the load of a
    # shared machine falls on all of them alike; ratios are medians of the per-round ratios.
    # Order within a round matters for the remembered state: the full run leaves every file
    # hashed, the re-verify and the fast re-run find it so, the fast run with nothing remembered
    # comes last (it leaves files merely looked at, which the next round's full run redoes).
    # What each row must have done, every run: the hashing rows hash every file (openssl, the
    # loops, the full verify: same files, same bytes); the re-runs hash nothing and check every
    # entry; the floor lstats every file.
    hashed_all = (len(files), nbytes)

    def work_of(key, rep):
        if key in ("ssl", "loop2"):
            return rep
        if key == "floor":
            return rep, 0
        t = rep.totals()
        if key == "full":
            return t["bytes_hashed"] >= nbytes, t["entries"]
        return t["bytes_hashed"], t["entries"]

    expected = {"ssl": hashed_all, "loop2": hashed_all, "full": (True, n_entries),
                "re": (0, n_entries), "fast_again": (0, n_entries), "fast": (0, n_entries),
                "floor": (len(files), 0)}  # fmt: skip
    rounds = {k: [] for k in ("ssl", "loop2", "full", "re", "fast_again", "fast", "floor")}
    loads = []
    for _ in range(7):
        loads.append(os.getloadavg()[0])
        for key, fn in (
            ("ssl", lambda: openssl(files, WORKERS)),
            ("loop2", lambda: python_loop_procs(files, WORKERS)),
            ("full", lambda: verify(pkgs, FULL, False)),
            ("re", lambda: verify(pkgs, FULL, True, use_index=True)),
            ("fast_again", lambda: verify(pkgs, FAST, True, use_index=True)),
            ("fast", lambda: verify(pkgs, FAST, False)),
            ("floor", lambda: stat_floor(files)),
        ):
            gc.collect()
            t0 = time.perf_counter()
            rep = fn()
            rounds[key].append(time.perf_counter() - t0)
            require_same(f"work of {key}", {key: work_of(key, rep)}, expected[key])
    print(f"(load average during the rounds: {min(loads):.1f}-{max(loads):.1f})")
    t_loop = best(lambda: python_loop(files), repeat=3)
    med = {k: statistics.median(v) for k, v in rounds.items()}

    def ratio(a, b):
        return statistics.median(x / y for x, y in zip(rounds[a], rounds[b], strict=True))

    def row2(label, key, ref, refname, show_rate=True):
        t = med[key]
        shown = f"{t * 1000:9.1f} ms"
        r = f"{ratio(ref, key):5.2f}x {refname}" if ref else ""
        print(f"| {label} | {shown} | {rate(t) if show_rate else ''} | {r} |")

    row2(f"`openssl dgst -sha256`, {WORKERS} processes (warm)", "ssl", None, "")
    row("plain Python loop, 1 process (warm)", t_loop)
    row2(f"plain Python loop, {WORKERS} processes (warm)", "loop2", None, "")
    row2(f"`verify --full --rehash`, {WORKERS} workers (warm)", "full", "ssl", "openssl")
    row2("`verify --full --rehash` vs the two-process loop", "full", "loop2", "loop")
    row2("`verify --rehash` (fast level), nothing remembered", "fast", "full", "vs full", 0)
    row2("`verify` (fast level) again", "fast_again", "full", "vs full", 0)
    row2("`verify --full` again, unchanged", "re", "full", "vs full", 0)
    row2("floor: a bare loop of one `os.lstat` per hashed file", "floor", "full", "vs full", 0)
    print(f"re-verify / lstat floor: {ratio('re', 'floor'):.2f} (median of 7 rounds)")

    # cold page cache
    t_ssl_c = best(lambda: openssl(files, WORKERS), repeat=3, cold=True)
    if t_ssl_c is None:
        print("cold runs skipped: cannot write /proc/sys/vm/drop_caches (not root)")
    else:
        t_full_c = best(lambda: verify(pkgs, FULL, False), repeat=3, cold=True)
        row(f"`openssl dgst -sha256`, {WORKERS} processes (cold)", t_ssl_c)
        row("`verify --full --rehash` (cold)", t_full_c, t_ssl_c, "openssl")

    # fast level over 20,000 synthetic entries, beside the scan and conda's load
    import bench_scan

    scan_root = os.environ.get("BENCH_SCAN_ROOT") or os.path.join(HERE, "out", "scan")
    big = bench_scan.build_cache(scan_root, 20000)
    from conda_cache_plus.layouts.kinds import scan

    t_scan = best(lambda: scan(big, use_index=False), repeat=3)
    scan(big)
    t_scan_again = best(lambda: scan(big), repeat=3)
    t_fast20 = best(lambda: verify(big, FAST, False), repeat=3)
    verify(big, FAST, True, use_index=True)
    t_fast20_again = best(lambda: verify(big, FAST, True, use_index=True), repeat=3)
    load = bench_scan.conda_loader()
    t_conda = best(lambda: load(big), repeat=3) if load else None
    print("\n20,000 synthetic entries:\n| what | median | vs conda |\n|---|---:|---:|")
    for label, t in (
        ("conda `PackageCacheData.load()`", t_conda),
        ("our scan, first (no index)", t_scan),
        ("our scan, remembered", t_scan_again),
        ("`verify` fast level, nothing remembered (no index, no state)", t_fast20),
        ("`verify` fast level, again (index and state remembered)", t_fast20_again),
    ):
        shown = f"{t * 1000:.0f} ms" if t else "skipped"
        ratio = f"{t_conda / t:.1f}x faster" if (t and t_conda and t is not t_conda) else ""
        print(f"| {label} | {shown} | {ratio} |")


if __name__ == "__main__":
    main()
