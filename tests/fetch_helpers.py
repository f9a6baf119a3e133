"""Helpers shared by the fetch tests: served channels, explicit files, full entry checks."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess

import pytest

from conda_cache_plus import pkgbuild


def serve_packages(srv, specs, subdir="noarch", fmt=".conda"):
    """Build packages into the server's directory; returns BuiltPackages. ``specs`` are
    ``(name, version, n_files)`` tuples (more files → slower to extract), optionally with a
    fourth item: bytes of incompressible data (→ a bigger archive, slower to download)."""
    out = os.path.join(srv.directory, subdir)
    pkgs = []
    for name, version, n_files, *blob in specs:
        files = {
            f"lib/{name}/f{i:04d}.py": hashlib.sha256(f"{name}{version}{i}".encode()).digest()
            * (8 + i % 50)
            for i in range(n_files)
        }
        files[f"share/{name}/README"] = f"{name} {version}\n".encode()
        if blob:
            files[f"share/{name}/blob.bin"] = random.Random(name).randbytes(blob[0])
        files[f"share/{name}/link"] = pkgbuild.Symlink("README")
        pkgs.append(
            pkgbuild.build_package(out, name, version, "0", files=files, subdir=subdir, fmt=fmt)
        )
    pkgbuild.write_channel(srv.directory, pkgs)
    return pkgs


def write_explicit(path, srv, pkgs, checksum="sha256"):
    with open(path, "w") as fh:
        fh.write("# platform: noarch\n@EXPLICIT\n")
        for p in pkgs:
            url = srv.url(f"{p.subdir}/{p.fn}")
            frag = {"sha256": p.sha256, "md5": p.md5, "none": None}[checksum]
            fh.write(url + (f"#{frag}" if frag else "") + "\n")
    return str(path)


def entry_problems(pkgs_dir, dist) -> list[str]:
    """Everything wrong with one extracted entry, checked file by file against paths.json."""
    root = os.path.join(pkgs_dir, dist)
    problems = []
    try:
        with open(os.path.join(root, "info", "repodata_record.json")) as fh:
            rec = json.load(fh)
        with open(os.path.join(root, "info", "paths.json")) as fh:
            paths = json.load(fh)["paths"]
    except (OSError, ValueError) as exc:
        return [f"{dist}: metadata unreadable ({exc})"]
    for key in ("url", "md5", "sha256", "size", "fn", "name"):
        if not rec.get(key):
            problems.append(f"{dist}: record lacks {key}")
    for entry in paths:
        p = os.path.join(root, entry["_path"])
        if entry.get("path_type") == "softlink":
            if not os.path.islink(p):
                problems.append(f"{dist}: {entry['_path']} is not a symlink")
            continue
        try:
            with open(p, "rb") as fh:
                digest = hashlib.sha256(fh.read()).hexdigest()
        except OSError as exc:
            problems.append(f"{dist}: {entry['_path']}: {exc}")
            continue
        if entry.get("sha256") and digest != entry["sha256"]:
            problems.append(f"{dist}: {entry['_path']} has the wrong sha256")
    return problems


@pytest.fixture
def read_only(tmp_path_factory):
    """make(path) → the same directory tree, read-only for us (a read-only bind mount as root,
    where permissions do not stop us; permission bits otherwise)."""
    mounts = []
    chmodded = []

    def make(path):
        path = str(path)
        if os.geteuid() != 0:
            for dirpath, _dirs, files in os.walk(path):
                for f in files:
                    os.chmod(os.path.join(dirpath, f), 0o444)
                os.chmod(dirpath, 0o555)
                chmodded.append(dirpath)
            return path
        mnt = str(tmp_path_factory.mktemp("ro-mount"))
        ok = subprocess.run(["mount", "--bind", path, mnt], capture_output=True).returncode == 0
        if ok:
            mounts.append(mnt)
            ok = (
                subprocess.run(
                    ["mount", "-o", "remount,ro,bind", mnt], capture_output=True
                ).returncode
                == 0
            )
        if not ok:
            pytest.skip("cannot make a read-only directory as root here (no bind mounts)")
        return mnt

    yield make
    for mnt in reversed(mounts):
        subprocess.run(["umount", mnt], capture_output=True)
    for d in chmodded:
        os.chmod(d, 0o755)
