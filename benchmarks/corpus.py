"""Build a realistic benchmark corpus: about 50 conda packages, in both formats, made from the
Python distributions installed in the running interpreter's site-packages.

    python benchmarks/corpus.py DIR [--max-mb 400] [--max-files 20000] [--count 50]

Each distribution becomes ``<name>-<version>-py_0`` with its files under
``lib/pythonX.Y/site-packages`` (scripts under ``bin/``), and a correct ``info/paths.json``
(sha256, sizes), via :func:`conda_cache_plus.pkgbuild.build_package`. The corpus is built once:
when ``DIR/corpus.json`` exists it is reused as is.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import re
import sys
import time

from conda_cache_plus import pkgbuild

MANIFEST = "corpus.json"
SUBDIR = "linux-64"


def _dist_files(dist) -> dict[str, bytes]:
    site = f"lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages/"
    files: dict[str, bytes] = {}
    for f in dist.files or []:
        path = f.locate()
        if not os.path.isfile(path) or os.path.islink(path):
            continue
        rel = str(f).replace(os.sep, "/")
        target = ("bin/" + rel.rsplit("/", 1)[-1]) if rel.startswith("../") else site + rel
        with open(path, "rb") as fh:
            files[target] = fh.read()
    return files


def _candidates():
    seen = set()
    for dist in md.distributions():
        name = re.sub(r"[^a-z0-9]+", "-", (dist.metadata["Name"] or "").lower()).strip("-")
        if not name or name in seen:
            continue
        seen.add(name)
        sizes = 0
        count = 0
        for f in dist.files or []:
            try:
                sizes += os.path.getsize(f.locate())
                count += 1
            except OSError:
                pass
        if count:
            yield name, dist, sizes, count


def build_corpus(out_dir: str, max_mb: int = 400, max_files: int = 20000, count: int = 50) -> dict:
    manifest_path = os.path.join(out_dir, MANIFEST)
    if os.path.exists(manifest_path):
        with open(manifest_path) as fh:
            return json.load(fh)
    start = time.time()
    chosen = []
    total = files = 0
    # Largest first (real channels are dominated by big packages), skipping any distribution
    # over a quarter of the byte budget or a sixth of the file budget; ties broken by name so
    # the pick is stable.
    for name, dist, size, n in sorted(_candidates(), key=lambda c: (-c[2], c[0])):
        if len(chosen) >= count:
            break
        if size > max_mb * 1e6 / 4 or n > max_files / 6:
            continue
        if total + size > max_mb * 1e6 or files + n > max_files:
            continue
        chosen.append((name, dist))
        total += size
        files += n
    packages = []
    for name, dist in chosen:
        content = _dist_files(dist)
        if not content:
            continue
        version = re.sub(r"[^A-Za-z0-9_.+]", "_", dist.version)
        for fmt in (".conda", ".tar.bz2"):
            built = pkgbuild.build_package(
                os.path.join(out_dir, fmt.strip(".").replace(".", "_")),
                name,
                version,
                "py_0",
                files=content,
                subdir=SUBDIR,
                fmt=fmt,
            )
            packages.append(
                {
                    "fn": built.fn,
                    "path": built.path,
                    "format": fmt,
                    "size": built.size,
                    "files": len(content),
                    "bytes": sum(len(v) for v in content.values()),
                    "sha256": built.sha256,
                }
            )
    manifest = {"python": sys.executable, "packages": packages}
    with open(manifest_path, "w") as fh:
        json.dump(manifest, fh, indent=1)
    print(f"built {len(packages)} archives in {time.time() - start:.0f}s", file=sys.stderr)
    return manifest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--max-mb", type=int, default=400)
    parser.add_argument("--max-files", type=int, default=20000)
    parser.add_argument("--count", type=int, default=50)
    args = parser.parse_args(argv)
    manifest = build_corpus(args.out_dir, args.max_mb, args.max_files, args.count)
    conda = [p for p in manifest["packages"] if p["format"] == ".conda"]
    print(
        f"{len(conda)} packages per format, {sum(p['bytes'] for p in conda) / 1e6:.0f} MB, "
        f"{sum(p['files'] for p in conda)} files; .conda {sum(p['size'] for p in conda) / 1e6:.0f}"
        f" MB, .tar.bz2 "
        f"{sum(p['size'] for p in manifest['packages'] if p['format'] != '.conda') / 1e6:.0f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
