"""Package builders shared by several test modules."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import zipfile

import zstandard

from conda_cache_plus import pkgbuild

BIG = bytes(range(256)) * 4500  # over 1 MiB: hashed in several reads


def make_files(name: str) -> dict:
    return {
        f"share/{name}/README": f"{name} readme\n".encode(),
        f"share/{name}/data.bin": BIG,
        f"share/{name}/latest": pkgbuild.Symlink("README"),
        f"share/{name}/other": b"another file of some other length\n",
        f"etc/{name}.conf": pkgbuild.PlaceholderFile(b"prefix=/opt/anaconda1anaconda2anaconda3\n"),
        f"share/{name}/empty": pkgbuild.Directory(),
    }


def bomb(out_dir, name="cpx-bomb", gib=64, paths_json=False, size=None) -> pkgbuild.BuiltPackage:
    """A valid .conda whose one file inflates to ``gib`` GiB of zeros from a few MB, built
    from concatenated zstd frames (fast to build, slow to extract)."""
    dist = f"{name}-1.0-0"
    size = size or gib << 30
    cctx = zstandard.ZstdCompressor(level=1)
    head = io.BytesIO()
    ti = tarfile.TarInfo("share/zeros")
    ti.size, ti.mtime = size, pkgbuild.MTIME
    head.write(ti.tobuf(format=tarfile.PAX_FORMAT))
    chunk = 1 << 26
    zeros = cctx.compress(bytes(chunk))
    trailer = cctx.compress(bytes(1024))  # the tar's end-of-archive blocks
    pkg_zst = cctx.compress(head.getvalue()) + zeros * (size // chunk) + trailer
    index = {"name": name, "version": "1.0", "build": "0", "build_number": 0, "depends": []}
    index.update(subdir="noarch", noarch="generic", license="MIT")
    info = {"info/index.json": json.dumps(index).encode()}
    if paths_json:
        entry = {"_path": "share/zeros", "path_type": "hardlink", "size_in_bytes": 1000}
        info["info/paths.json"] = json.dumps({"paths": [entry], "paths_version": 1}).encode()
    ibuf = io.BytesIO()
    with tarfile.open(fileobj=ibuf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for n, data in info.items():
            t = tarfile.TarInfo(n)
            t.size, t.mtime = len(data), pkgbuild.MTIME
            tar.addfile(t, io.BytesIO(data))
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, dist + ".conda")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", b'{"conda_pkg_format_version": 2}')
        zf.writestr(f"info-{dist}.tar.zst", cctx.compress(ibuf.getvalue()))
        zf.writestr(f"pkg-{dist}.tar.zst", pkg_zst)
    with open(path, "rb") as fh:
        blob = fh.read()
    return pkgbuild.BuiltPackage(
        path=path,
        fn=dist + ".conda",
        name=name,
        version="1.0",
        build="0",
        build_number=0,
        subdir="noarch",
        md5=hashlib.md5(blob).hexdigest(),
        sha256=hashlib.sha256(blob).hexdigest(),
        size=len(blob),
        index=index,
    )
