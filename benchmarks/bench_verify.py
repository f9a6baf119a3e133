"""Verify benchmark: full verify against a C reference and a plain Python loop, cold and warm;
fast vs full; re-verify of an unchanged cache; fast level over 20,000 synthetic entries.

    python benchmarks/bench_verify.py [WORKDIR]

The corpus comes from benchmarks/corpus.py (built once into WORKDIR/corpus); its .conda
packages are installed into WORKDIR/pkgs with our ``install_entry``. The C reference is
``openssl dgst -sha256`` over the same files (every file verify hashes: package files and
archives), split over as many processes as verify has workers. Cold runs drop the page cache
(``echo 3 > /proc/sys/vm/drop_caches``; needs root, else they are skipped and said so).
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

from conda_cache_plus.caches import PackageCaches  # noqa: E402
from conda_cache_plus.extract import install_entry  # noqa: E402
from conda_cache_plus.layout import CacheLayout  # noqa: E402
from conda_cache_plus.verify import FAST, FULL, verify_caches  # noqa: E402

WORKERS = os.cpu_count() or 1


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


def openssl(files, procs):
    chunks = [files[i::procs] for i in range(procs)]
    running = [
        subprocess.Popen(
            ["xargs", "-0", "openssl", "dgst", "-sha256"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
        )
        for _ in chunks
    ]
    for proc, chunk in zip(running, chunks, strict=True):
        proc.communicate("\0".join(chunk).encode())


def python_loop(files):
    for path in files:
        os.stat(path)
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        h.hexdigest()


def verify(pkgs, level, store):
    rep = verify_caches(PackageCaches([pkgs], use_index=False), None, level, use_store=store)
    assert not rep.bad, [(e.entry, e.problems[:2]) for e in rep.bad]
    return rep


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


def main() -> None:
    work = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "out", "verify")
    os.environ.setdefault("XDG_CACHE_HOME", os.path.join(work, "user-cache"))
    pkgs, files = build_cache(work)
    nbytes = sum(os.path.getsize(f) for f in files)
    n_entries = sum(1 for n in os.listdir(pkgs) if n.endswith(".conda"))
    mb = nbytes / 1e6
    print(f"corpus: {n_entries} packages, {len(files)} files hashed, {mb:.0f} MB; {WORKERS} cores")

    def rate(t):
        return f"{mb / t:7.0f} MB/s" if t else "   n/a"

    rows = []

    def row(label, t, ref=None, refname=""):
        ratio = f"{ref / t:5.2f}x {refname}" if (t and ref) else ""
        rows.append((label, t, ratio))
        shown = f"{t * 1000:9.1f} ms" if t is not None else "  skipped"
        print(f"{label:<44} {shown}  {rate(t) if t else '':>12}  {ratio}")

    # warm page cache
    for f in files:
        with open(f, "rb") as fh:
            while fh.read(1 << 20):
                pass
    t_ssl = best(lambda: openssl(files, WORKERS))
    t_loop = best(lambda: python_loop(files), repeat=3)
    t_full = best(lambda: verify(pkgs, FULL, False))
    t_fast = best(lambda: verify(pkgs, FAST, False))
    verify(pkgs, FULL, True)
    t_re = best(lambda: verify(pkgs, FULL, True))
    rep = verify(pkgs, FULL, True)
    assert rep.totals()["bytes_hashed"] < 1e6, rep.totals()
    row(f"openssl dgst -sha256, {WORKERS} processes (warm)", t_ssl)
    row("plain Python loop, 1 process (warm)", t_loop)
    row(f"verify --full --rehash (warm, {WORKERS} workers)", t_full, t_ssl, "vs openssl")
    row("verify (fast level, warm)", t_fast, t_full, "vs full")
    row("verify --full again, unchanged (warm)", t_re, t_full, "vs full")

    # cold page cache
    t_ssl_c = best(lambda: openssl(files, WORKERS), repeat=3, cold=True)
    if t_ssl_c is None:
        print("cold runs skipped: cannot write /proc/sys/vm/drop_caches (not root)")
    else:
        t_full_c = best(lambda: verify(pkgs, FULL, False), repeat=3, cold=True)
        row(f"openssl dgst -sha256, {WORKERS} processes (cold)", t_ssl_c)
        row("verify --full --rehash (cold)", t_full_c, t_ssl_c, "vs openssl")

    # fast level over 20,000 synthetic entries, beside the scan and conda's load
    import bench_scan

    big = bench_scan.build_cache(os.path.join(HERE, "out", "scan"), 20000)
    from conda_cache_plus.pkgs_dir import scan

    print("\n20,000 synthetic entries:")
    t_scan = best(lambda: scan(big, use_index=False), repeat=3)
    t_fast20 = best(lambda: verify(big, FAST, False), repeat=3)
    load = conda_loader()
    t_conda = best(lambda: load(big), repeat=3) if load else None
    for label, t in (
        ("our scan (no index)", t_scan),
        ("verify (fast level)", t_fast20),
        ("conda PackageCacheData.load()", t_conda),
    ):
        print(f"{label:<44} {t * 1000:9.1f} ms" if t else f"{label:<44}   skipped")


if __name__ == "__main__":
    main()
