"""Legitimate but unusual conda packages, built member by member (tarfile, zipfile, zstandard).

Every case is something conda's own extractor (conda-package-handling) installs; ours must
extract each one to the same tree, apart from the deliberate differences listed in
``DELIBERATE_DIFFERENCES`` (and in the README). Each package keeps its files under its own
top directory, so all of them can be installed into one environment.
"""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import os
import tarfile
import zipfile

import zstandard

MTIME = 1_700_000_000

# The one list of what we do differently from conda-package-handling on purpose; the README's
# "Differences from conda's extractor" section lists exactly these
# (tests/gateways/test_extract_parity.py).
DELIBERATE_DIFFERENCES = [
    "setuid, setgid and sticky bits are not extracted",
    "files get owner read and write (cph: the member's mode minus the umask)",
    "directories get 0o777 minus the umask, whatever the member's mode",
    "modification times before 1970 become 1970-01-01 (cph: the negative time)",
    "a file member with the name of an earlier symlink replaces the symlink (cph writes "
    "through it)",
    "a member under a symlink to outside the package, or a hard link to a file outside, "
    "is refused (cph: refused too, or written outside)",
    "device files and FIFOs are refused (cph creates FIFOs)",
]


def expected_mode(kind: str, cph_mode: int, umask: int) -> int:
    """What our mode is, given the mode cph gave the same path (the differences above)."""
    if kind == "dir":
        return 0o777 & ~umask
    if kind == "file":
        return (cph_mode & 0o777) | 0o600
    return cph_mode


def _ti(name, type_=tarfile.REGTYPE, **kw) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = type_
    ti.mtime = MTIME
    ti.mode = 0o755 if type_ == tarfile.DIRTYPE else 0o644
    ti.uname = ti.gname = ""
    for key, value in kw.items():
        setattr(ti, key, value)
    return ti


def f(name, data: bytes = b"x\n", **kw):
    return (_ti(name, size=len(data), **kw), data)


def d(name, **kw):
    return (_ti(name, tarfile.DIRTYPE, **kw), None)


def sym(name, target):
    return (_ti(name, tarfile.SYMTYPE, linkname=target, mode=0o777), None)


def hard(name, target):
    return (_ti(name, tarfile.LNKTYPE, linkname=target), None)


def cases(top: str) -> dict[str, list]:
    """Members of each case, with paths under ``top``."""
    t = top
    deep = "/".join(f"d{i}" for i in range(60))
    return {
        "abs-symlink": [
            f(f"{t}/etc/zone.txt", b"UTC\n"),
            sym(f"{t}/etc/localtime", "/usr/share/zoneinfo/UTC"),
        ],
        "symlink-leaving": [
            f(f"{t}/lib/python3/site-packages/mod.py", b"x = 1\n"),
            sym(f"{t}/lib/python3/site-packages/out", "../../../../../../lib/elsewhere"),
        ],
        "duplicates-later-wins": [
            f(f"{t}/share/dup.txt", b"first\n"),
            sym(f"{t}/share/l", "dup.txt"),
            f(f"{t}/share/dup.txt", b"second, longer\n"),
            sym(f"{t}/share/l", "other.txt"),
            f(f"{t}/share/other.txt", b"other\n"),
        ],
        "hardlink-to-symlink": [
            f(f"{t}/share/target.txt", b"target\n"),
            sym(f"{t}/share/s", "target.txt"),
            hard(f"{t}/share/h", f"{t}/share/s"),
        ],
        "negative-mtime": [
            f(f"{t}/share/old.txt", b"before 1970\n", mtime=-86400 * 365),
        ],
        "long-names": [
            f(f"{t}/share/" + "n" * 150 + ".txt", b"long\n"),
            f(f"{t}/share/" + "/".join(["p" * 60] * 4) + "/deep.txt", b"long path\n"),
            sym(f"{t}/share/longlink", "n" * 150 + ".txt"),
        ],
        "unicode-names": [
            f(f"{t}/share/ünïcødé/日本語.txt", "héllo\n".encode()),
            sym(f"{t}/share/ünïcødé/línk", "日本語.txt"),
        ],
        "hard-links": [
            f(f"{t}/bin/tool", b"#!/bin/sh\necho tool\n", mode=0o755),
            hard(f"{t}/bin/tool-alias", f"{t}/bin/tool"),
            hard(f"{t}/libexec/tool", f"{t}/bin/tool"),
        ],
        "symlink-chains-dangling": [
            f(f"{t}/share/c.txt", b"c\n"),
            sym(f"{t}/share/b", "c.txt"),
            sym(f"{t}/share/a", "b"),
            sym(f"{t}/share/dangling", "does/not/exist"),
            sym(f"{t}/share/dir-link", "."),
        ],
        "empty-dirs": [
            d(f"{t}/share/empty"),
            d(f"{t}/share/nested/empty/too"),
            f(f"{t}/share/file.txt"),
        ],
        "odd-modes": [
            f(f"{t}/share/private", b"p\n", mode=0o600),
            f(f"{t}/share/exec-only-owner", b"e\n", mode=0o700),
            f(f"{t}/share/read-only", b"r\n", mode=0o444),
            f(f"{t}/share/group-write", b"g\n", mode=0o664),
            f(f"{t}/bin/setuid", b"s\n", mode=0o4755),
            f(f"{t}/bin/setgid", b"s\n", mode=0o2755),
            d(f"{t}/share/sticky", mode=0o1777),
            d(f"{t}/share/restricted", mode=0o700),
            f(f"{t}/share/restricted/x", b"x\n"),
        ],
        "deep-tree": [f(f"{t}/{deep}/leaf.txt", b"deep\n")],
        "dot-slash-prefixes": [
            d(f"./{t}/share"),
            f(f"./{t}/share/dot.txt", b"dot\n"),
            sym(f"./{t}/share/dot-link", "dot.txt"),
        ],
        "through-inner-symlink": [
            d(f"{t}/lib"),
            sym(f"{t}/lib64", "lib"),
            f(f"{t}/lib64/libx.so", b"\x7fELF\n"),
        ],
        "dir-member-after-file-content": [
            f(f"{t}/share/x/a.txt", b"a\n"),
            d(f"{t}/share/x", mode=0o755),
        ],
    }


def _paths(members) -> list[dict]:
    """info/paths.json entries (the last member of a name wins, like the tree)."""
    final: dict[str, tuple] = {}
    links = {os.path.normpath(ti.name): ti.linkname for ti, _ in members if ti.issym()}

    def real(name: str) -> str:  # where a member under an (inner) symlinked dir lands
        parts = name.split("/")
        for i in range(len(parts) - 1, 0, -1):
            prefix = "/".join(parts[:i])
            if prefix in links:
                base = os.path.normpath(os.path.join(os.path.dirname(prefix), links[prefix]))
                return "/".join([base, *parts[i:]])
        return name

    for ti, data in members:
        name = real(os.path.normpath(ti.name))
        if ti.type == tarfile.DIRTYPE:
            continue
        final[name] = (ti, data)
    out = []
    for name, (ti, data) in sorted(final.items()):
        if ti.type == tarfile.SYMTYPE:
            out.append({"_path": name, "path_type": "softlink"})
        elif ti.type == tarfile.LNKTYPE:
            out.append({"_path": name, "path_type": "hardlink"})
        else:
            out.append(
                {
                    "_path": name,
                    "path_type": "hardlink",
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "size_in_bytes": len(data),
                }
            )
    return out


def _tar(members, fmt=tarfile.GNU_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for ti, data in members:
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def build(out_dir: str, case: str, fmt: str, extra_zip_members=True) -> dict:
    """Write the package of ``case`` in ``fmt``; returns its repodata entry (with ``fn``)."""
    name = f"cpx-{case}-{'c' if fmt == '.conda' else 'b'}"
    members = cases(f"cpx/{name}")[case]
    index = {
        "name": name,
        "version": "1.0",
        "build": "0",
        "build_number": 0,
        "depends": [],
        "license": "MIT",
        "subdir": "noarch",
        "noarch": "generic",
        "timestamp": MTIME * 1000,
    }
    paths = {"paths": _paths(members), "paths_version": 1}
    info = [
        f("info/index.json", json.dumps(index).encode()),
        f("info/paths.json", json.dumps(paths).encode()),
        f("info/files", ("\n".join(p["_path"] for p in paths["paths"]) + "\n").encode()),
    ]
    dist = f"{name}-1.0-0"
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, dist + fmt)
    # GNU format for negative times and long names; PAX for unicode (both are real)
    tar_fmt = tarfile.PAX_FORMAT if case == "unicode-names" else tarfile.GNU_FORMAT
    if fmt == ".conda":
        cctx = zstandard.ZstdCompressor(level=3)
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr("metadata.json", json.dumps({"conda_pkg_format_version": 2}))
            zf.writestr(f"info-{dist}.tar.zst", cctx.compress(_tar(info, tar_fmt)))
            zf.writestr(f"pkg-{dist}.tar.zst", cctx.compress(_tar(members, tar_fmt)))
            if extra_zip_members:
                zf.writestr("signature.json", b'{"signed": "by someone"}')
    else:
        with open(path, "wb") as fh:
            fh.write(bz2.compress(_tar(info + members, tar_fmt)))
    with open(path, "rb") as fh:
        blob = fh.read()
    entry = dict(index)
    entry.update(
        fn=dist + fmt,
        md5=hashlib.md5(blob).hexdigest(),
        sha256=hashlib.sha256(blob).hexdigest(),
        size=len(blob),
    )
    return entry


def build_all(channel_dir: str) -> list[dict]:
    """Every case in both formats, and the channel's repodata.json."""
    sub = os.path.join(channel_dir, "noarch")
    entries = [build(sub, case, fmt) for case in cases("x") for fmt in (".conda", ".tar.bz2")]
    repodata = {"info": {"subdir": "noarch"}, "packages": {}, "packages.conda": {}}
    for e in entries:
        key = "packages.conda" if e["fn"].endswith(".conda") else "packages"
        repodata[key][e["fn"]] = {k: v for k, v in e.items() if k != "fn"}
    with open(os.path.join(sub, "repodata.json"), "w") as fh:
        json.dump(repodata, fh)
    os.makedirs(os.path.join(channel_dir, "linux-64"), exist_ok=True)
    with open(os.path.join(channel_dir, "linux-64", "repodata.json"), "w") as fh:
        json.dump({"info": {"subdir": "linux-64"}, "packages": {}, "packages.conda": {}}, fh)
    return entries


def snapshot(root: str) -> dict[str, tuple]:
    """path → (kind, content or target, mode, inode group key) for a tree, never following."""
    out: dict[str, tuple] = {}
    inodes: dict[tuple[int, int], str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for n in sorted(dirnames + filenames):
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            mode = st.st_mode & 0o7777
            if os.path.islink(p):
                out[rel] = ("link", os.readlink(p), None, None)
            elif os.path.isdir(p):
                out[rel] = ("dir", None, mode, None)
            else:
                with open(p, "rb") as fh:
                    data = fh.read()
                group = inodes.setdefault((st.st_dev, st.st_ino), rel) if st.st_nlink > 1 else None
                out[rel] = ("file", data, mode, group)
    return out
