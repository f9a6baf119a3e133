"""Build real, valid conda packages and channels: for the tests, the benchmarks and the README tour.

``build_package`` writes a ``.conda`` (zip of zstd tars) or a ``.tar.bz2`` with a correct
``info/index.json``, ``info/paths.json`` (sha256 and sizes, softlinks as conda records them) and
``info/files``; ``write_channel`` writes the ``repodata.json`` of a local channel that conda can
install from (``file://``). ``python -m conda_cache_plus.pkgbuild DIR`` makes a small demo channel.
"""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import os
import sys
import tarfile
import zipfile
from dataclasses import dataclass, field

import zstandard

MTIME = 1_700_000_000  # fixed, so builds are reproducible


@dataclass
class Symlink:
    target: str


@dataclass
class Directory:
    pass


@dataclass
class PlaceholderFile:
    data: bytes
    placeholder: str = "/opt/anaconda1anaconda2anaconda3"
    file_mode: str = "text"


@dataclass
class BuiltPackage:
    path: str
    fn: str
    name: str
    version: str
    build: str
    build_number: int
    subdir: str
    md5: str
    sha256: str
    size: int
    index: dict
    paths: list[dict] = field(default_factory=list)

    @property
    def dist(self) -> str:
        return f"{self.name}-{self.version}-{self.build}"

    def repodata_entry(self) -> dict:
        entry = dict(self.index)
        entry.update(md5=self.md5, sha256=self.sha256, size=self.size)
        return entry


def _hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tarinfo(name: str, **kw) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mtime = MTIME
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    for key, value in kw.items():
        setattr(ti, key, value)
    return ti


def _add_files(tar: tarfile.TarFile, files: dict) -> None:
    for path, content in files.items():
        if isinstance(content, Symlink):
            tar.addfile(_tarinfo(path, type=tarfile.SYMTYPE, linkname=content.target))
        elif isinstance(content, Directory):
            tar.addfile(_tarinfo(path, type=tarfile.DIRTYPE, mode=0o755))
        else:
            data = content.data if isinstance(content, PlaceholderFile) else content
            mode = 0o755 if path.startswith("bin/") else 0o644
            tar.addfile(_tarinfo(path, size=len(data), mode=mode), io.BytesIO(data))


def _paths_json(files: dict) -> list[dict]:
    entries = []
    for path, content in sorted(files.items()):
        if isinstance(content, Directory):
            entries.append({"_path": path, "path_type": "directory"})
            continue
        if isinstance(content, Symlink):
            target = os.path.normpath(os.path.join(os.path.dirname(path), content.target))
            tgt = files.get(target)
            entry = {"_path": path, "path_type": "softlink"}
            if isinstance(tgt, (bytes, PlaceholderFile)):
                data = tgt.data if isinstance(tgt, PlaceholderFile) else tgt
                entry.update(sha256=_hash(data), size_in_bytes=len(data))
            entries.append(entry)
            continue
        data = content.data if isinstance(content, PlaceholderFile) else content
        entry = {
            "_path": path,
            "path_type": "hardlink",
            "sha256": _hash(data),
            "size_in_bytes": len(data),
        }
        if isinstance(content, PlaceholderFile):
            entry.update(file_mode=content.file_mode, prefix_placeholder=content.placeholder)
        entries.append(entry)
    return entries


def _tar_bytes(members: dict, extra=None, compress=None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_files(tar, members)
        for ti, data in extra or ():
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    raw = buf.getvalue()
    return compress(raw) if compress else raw


def build_package(
    out_dir: str,
    name: str,
    version: str = "1.0",
    build: str = "0",
    *,
    build_number: int = 0,
    files: dict | None = None,
    subdir: str = "noarch",
    fmt: str = ".conda",
    depends: list[str] | None = None,
    index_extra: dict | None = None,
    extra_members: list | None = None,
    with_paths_json: bool = True,
    with_files_list: bool = True,
    zip_order: tuple[str, ...] = ("metadata", "info", "pkg"),
    paths_edit=None,
) -> BuiltPackage:
    """Write one package into ``out_dir`` and return what a channel says about it.

    ``extra_members`` is a list of ``(TarInfo, bytes | None)`` appended to the payload as is,
    which is how the tests make hostile archives; ``paths_edit`` rewrites the ``paths.json``
    entries (a list of dicts) before they are written, which is how they make packages whose
    archive disagrees with their own metadata.
    """
    if files is None:
        files = {
            f"share/{name}/README": f"{name} {version}\n".encode(),
            f"share/{name}/data.bin": hashlib.sha256(name.encode()).digest() * 64,
        }
    index = {
        "name": name,
        "version": version,
        "build": build,
        "build_number": build_number,
        "depends": list(depends or []),
        "license": "BSD-3-Clause",
        "subdir": subdir,
        "timestamp": MTIME * 1000,
    }
    if subdir == "noarch":
        index["noarch"] = "generic"
    else:
        index["platform"], index["arch"] = {
            "linux-64": ("linux", "x86_64"),
            "osx-arm64": ("osx", "arm64"),
            "win-64": ("win", "x86_64"),
        }.get(subdir, (subdir.split("-")[0], subdir.split("-")[-1]))
    index.update(index_extra or {})
    paths = _paths_json(files)
    if paths_edit is not None:
        paths = paths_edit(paths)
    info: dict = {"info/index.json": json.dumps(index, indent=2, sort_keys=True).encode()}
    if with_files_list:
        info["info/files"] = (
            "\n".join(sorted(p for p, c in files.items() if not isinstance(c, Directory))) + "\n"
        ).encode()
    if with_paths_json:
        info["info/paths.json"] = json.dumps(
            {"paths": paths, "paths_version": 1}, indent=2, sort_keys=True
        ).encode()
    placeholders = [
        f"{c.placeholder} {c.file_mode} {p}"
        for p, c in files.items()
        if isinstance(c, PlaceholderFile)
    ]
    if placeholders:
        info["info/has_prefix"] = ("\n".join(placeholders) + "\n").encode()

    dist = f"{name}-{version}-{build}"
    fn = dist + fmt
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, fn)
    if fmt == ".conda":
        cctx = zstandard.ZstdCompressor(level=3)
        parts = {
            "metadata": ("metadata.json", json.dumps({"conda_pkg_format_version": 2}).encode()),
            "info": (f"info-{dist}.tar.zst", _tar_bytes(info, compress=cctx.compress)),
            "pkg": (f"pkg-{dist}.tar.zst", _tar_bytes(files, extra_members, cctx.compress)),
        }
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
            for key in zip_order:
                arcname, data = parts[key]
                zi = zipfile.ZipInfo(arcname, date_time=(2023, 11, 14, 22, 13, 20))
                zf.writestr(zi, data)
    elif fmt == ".tar.bz2":
        members = dict(info)
        members.update(files)
        with open(path, "wb") as fh:
            fh.write(_tar_bytes(members, extra_members, lambda b: bz2.compress(b, 9)))
    else:
        raise ValueError(f"unknown package format {fmt!r}")
    with open(path, "rb") as fh:
        blob = fh.read()
    return BuiltPackage(
        path=path,
        fn=fn,
        name=name,
        version=version,
        build=build,
        build_number=build_number,
        subdir=subdir,
        md5=hashlib.md5(blob).hexdigest(),
        sha256=_hash(blob),
        size=len(blob),
        index=index,
        paths=paths,
    )


def write_channel(channel_dir: str, packages: list[BuiltPackage]) -> str:
    """Write ``<subdir>/repodata.json`` for ``packages`` (already inside ``channel_dir/<subdir>``).

    Always writes ``noarch/repodata.json`` too (conda requires it). Returns the channel's URL.
    """
    by_subdir: dict[str, dict] = {"noarch": {"packages": {}, "packages.conda": {}}}
    for pkg in packages:
        rd = by_subdir.setdefault(pkg.subdir, {"packages": {}, "packages.conda": {}})
        key = "packages.conda" if pkg.fn.endswith(".conda") else "packages"
        rd[key][pkg.fn] = pkg.repodata_entry()
    for subdir, rd in by_subdir.items():
        os.makedirs(os.path.join(channel_dir, subdir), exist_ok=True)
        body = {"info": {"subdir": subdir}, "repodata_version": 1, **rd}
        with open(os.path.join(channel_dir, subdir, "repodata.json"), "w") as fh:
            json.dump(body, fh, indent=1, sort_keys=True)
    return "file://" + os.path.abspath(channel_dir)


def demo_channel(channel_dir: str, subdir: str = "noarch") -> list[BuiltPackage]:
    """A small channel: a few packages in both formats, one with a softlink and a prefix file."""
    out = os.path.join(channel_dir, subdir)
    pkgs = []
    for name, version, deps in (
        ("demo-lib", "1.0", []),
        ("demo-lib", "1.1", []),
        ("demo-tool", "2.0", ["demo-lib >=1.0"]),
        ("demo-data", "0.3", []),
    ):
        files = {
            f"share/{name}/README.md": f"# {name} {version}\n".encode(),
            f"share/{name}/payload.bin": hashlib.sha256(f"{name}{version}".encode()).digest()
            * 2048,
            f"share/{name}/latest": Symlink("README.md"),
            f"etc/{name}.conf": PlaceholderFile(b"prefix=/opt/anaconda1anaconda2anaconda3\n"),
        }
        for fmt in (".conda", ".tar.bz2"):
            pkgs.append(
                build_package(
                    out, name, version, "0", files=files, subdir=subdir, fmt=fmt, depends=deps
                )
            )
    write_channel(channel_dir, pkgs)
    return pkgs


def write_explicit(path: str, packages: list[BuiltPackage], channel_url: str) -> None:
    """An ``@EXPLICIT`` file as ``conda list --explicit --sha256`` writes it."""
    with open(path, "w") as fh:
        fh.write("# platform: noarch\n@EXPLICIT\n")
        for pkg in packages:
            fh.write(f"{channel_url}/{pkg.subdir}/{pkg.fn}#sha256:{pkg.sha256}\n")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m conda_cache_plus.pkgbuild",
        description="Make a small demo channel (4 packages in both formats, a softlink, a prefix "
        "file) and an @EXPLICIT file listing its .conda packages, for trying conda-cache out.",
    )
    parser.add_argument(
        "directory",
        nargs="?",
        default="demo-channel",
        help="Where to write the channel (default: demo-channel).",
    )
    args = parser.parse_args(argv)
    target = args.directory
    built = demo_channel(target)
    url = "file://" + os.path.abspath(target)
    write_explicit(
        os.path.join(target, "demo.txt"), [p for p in built if p.fn.endswith(".conda")], url
    )
    print(f"channel: {url}\nexplicit file: {os.path.join(target, 'demo.txt')}")
    for pkg in built:
        print(f"  {pkg.subdir}/{pkg.fn}  {pkg.size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
