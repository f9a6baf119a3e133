"""extract_archive: both formats, any zip member order, exact trees, hashes, refusals."""

from __future__ import annotations

import io
import json
import os
import stat
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest
import zstandard
from conftest import extract_by_hand

from conda_cache_plus import pkgbuild
from conda_cache_plus.exceptions import ArchiveError, HostileArchiveError
from conda_cache_plus.gateways.extract import extract_archive, extract_atomic
from conda_cache_plus.pkgbuild import Directory, PlaceholderFile, Symlink

FORMATS = (".conda", ".tar.bz2")

FILES = {
    "bin/tool": b"#!/bin/sh\necho tool\n",
    "lib/libdemo.so.1.0": b"\x7fELF" + bytes(range(256)) * 40,
    "lib/libdemo.so.1": Symlink("libdemo.so.1.0"),
    "lib/libdemo.so": Symlink("libdemo.so.1"),
    "share/demo/empty": Directory(),
    "share/demo/big.bin": os.urandom(1_500_000),  # spans several read buffers
    "share/demo/" + "n" * 120 + ".txt": b"a name longer than ustar's 100 bytes\n",
    "etc/demo.conf": PlaceholderFile(b"prefix=/opt/anaconda1anaconda2anaconda3\n"),
    "empty.txt": b"",
}


def tree(root: str) -> dict[str, object]:
    """What a directory holds: file bytes + exec bit, symlink targets, directories."""
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir",)
            else:
                with open(path, "rb") as fh:
                    out[rel] = ("file", fh.read(), bool(st.st_mode & 0o100))
    return out


@pytest.mark.parametrize("fmt", FORMATS)
def test_extracts_the_same_tree_as_the_standard_library(build, tmp_path, fmt):
    pkg = build("demo", files=FILES, fmt=fmt)
    stats = extract_archive(pkg.path, str(tmp_path / "ours"), hashes=True)
    extract_by_hand(pkg.path, str(tmp_path / "ref"))
    assert tree(str(tmp_path / "ours")) == tree(str(tmp_path / "ref"))
    assert (stats.md5, stats.sha256, stats.archive_size) == (pkg.md5, pkg.sha256, pkg.size)
    # + info/index.json, paths.json, files, has_prefix
    assert stats.symlinks == 2 and stats.files == len(FILES) - 3 + 4
    # modification times kept on files (a .pyc is checked against its .py's mtime)
    assert os.stat(tmp_path / "ours" / "bin" / "tool").st_mtime == pkgbuild.MTIME


def test_conda_member_order_does_not_matter(build, tmp_path):
    """Older builders wrote info, pkg, metadata.json; a streaming reader that cannot seek back
    (conda-package-streaming 0.13) fails on those."""
    pkg = build("late-meta", files=FILES, zip_order=("info", "pkg", "metadata"))
    with zipfile.ZipFile(pkg.path) as zf:
        assert zf.namelist()[-1] == "metadata.json"
    stats = extract_archive(pkg.path, str(tmp_path / "x"), hashes=True)
    assert stats.sha256 == pkg.sha256
    assert (tmp_path / "x" / "info" / "index.json").is_file()
    assert (tmp_path / "x" / "lib" / "libdemo.so").is_symlink()


def test_dest_may_exist_empty_but_not_full(build, tmp_path):
    pkg = build("demo")
    (tmp_path / "empty").mkdir()
    extract_archive(pkg.path, str(tmp_path / "empty"))
    with pytest.raises(ArchiveError, match="not empty"):
        extract_archive(pkg.path, str(tmp_path / "empty"))


def _leftover_trees(parent) -> list[str]:
    return [n for n in os.listdir(parent) if n.startswith(".cpx-tmp-")]


def test_extract_atomic_replaces_a_removed_entry(build, tmp_path):
    # what conda leaves when rm_rf could not delete a file: only trash, replaced as a whole
    pkgs = tmp_path / "pkgs"
    dest = pkgs / "demo-1.0-0"
    dest.mkdir(parents=True)
    (dest / "lib.so.conda_trash").write_text("old")
    extract_atomic(build("demo").path, str(dest))
    assert not (dest / "lib.so.conda_trash").exists()
    assert (dest / "info" / "index.json").is_file()
    assert _leftover_trees(pkgs) == []
    assert not (pkgs / ".conda-cache-plus").exists()  # no private area outside a cache


def test_extract_atomic_into_an_existing_dir_keeps_its_files_like_cph(build, tmp_path):
    # plugin_manager.extract_package(src, dest) from a third party with a full dest: cph
    # extracts into it (same names replaced, the rest kept); so do we, rather than replacing it
    dest = tmp_path / "somewhere"
    dest.mkdir()
    (dest / "mine.txt").write_text("keep me")
    (dest / "info").mkdir()
    (dest / "info" / "index.json").write_text("{}")
    pkg = build("demo")
    extract_atomic(pkg.path, str(dest))
    assert (dest / "mine.txt").read_text() == "keep me"
    assert json.loads((dest / "info" / "index.json").read_text())["name"] == "demo"
    assert _leftover_trees(tmp_path) == []


def test_empty_symlink_target_is_skipped_like_tarfile(build, tmp_path):
    # conda's own test data has a .conda with such members; tarfile skips them silently
    extra = [(_ti("lib/broken", tarfile.SYMTYPE, linkname=""), None)]
    pkg = build("odd", extra_members=extra)
    stats = extract_archive(pkg.path, str(tmp_path / "x"))
    assert stats.skipped == ["lib/broken"]
    assert not os.path.lexists(tmp_path / "x" / "lib" / "broken")


# -- hostile archives ---------------------------------------------------------------------------


def _ti(name, type_=tarfile.REGTYPE, **kw):
    ti = tarfile.TarInfo(name)
    ti.type = type_
    ti.mtime = pkgbuild.MTIME
    for key, value in kw.items():
        setattr(ti, key, value)
    return ti


def _file(name, data=b"x"):
    return (_ti(name, size=len(data)), data)


def _link(name, target, type_=tarfile.SYMTYPE):
    return (_ti(name, type_, linkname=target), None)


HOSTILE = {
    "absolute": ([_file("/tmp/cpx-evil")], "/tmp/cpx-evil", "absolute"),
    "dotdot": ([_file("share/../../evil")], "share/../../evil", "'..'"),
    "through-absolute-symlink": (
        [_link("share/out", "/tmp"), _file("share/out/cpx-evil")],
        "share/out/cpx-evil",
        "goes through the symlink",
    ),
    "through-symlink-out": (
        [_link("share/up", "../.."), _file("share/up/cpx-evil")],
        "share/up/cpx-evil",
        "out of the package",
    ),
    "through-chained-symlinks-out": (
        [_link("a", "share"), _link("a/b", "../.."), _file("a/b/cpx-evil")],
        "a/b/cpx-evil",
        "out of the package",
    ),
    "dir-through-symlink-out": (
        [_link("share/up", "/tmp"), (_ti("share/up/d", tarfile.DIRTYPE), None)],
        "share/up/d",
        "goes through the symlink",
    ),
    "hardlink-through-symlink-out": (
        [_link("share/up", "/etc"), _link("share/h", "share/up/passwd", tarfile.LNKTYPE)],
        "share/h",
        "out of the package",
    ),
    "hardlink-out": ([_link("share/h", "/etc/passwd", tarfile.LNKTYPE)], "share/h", "hard link"),
    "hardlink-dotdot": ([_link("share/h", "../outside", tarfile.LNKTYPE)], "share/h", ""),
    "hardlink-to-dir": ([_link("share/h", "share", tarfile.LNKTYPE)], "share/h", "a directory"),
    "chardev": (
        [(_ti("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3), None)],
        "dev/null",
        "device",
    ),
    "fifo": ([(_ti("share/fifo", tarfile.FIFOTYPE), None)], "share/fifo", "fifo"),
    "file-then-dir": ([_file("share/fd"), _file("share/fd/x")], "share/fd/x", "through the file"),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_members_are_refused_and_nothing_is_left(build, tmp_path, fmt, case):
    extra, member, reason = HOSTILE[case]
    pkg = build("evil", fmt=fmt, extra_members=extra)
    dest = tmp_path / "dest"
    with pytest.raises(HostileArchiveError) as info:
        extract_archive(pkg.path, str(dest))
    assert member in str(info.value)
    assert reason in str(info.value)
    assert not dest.exists()
    assert not os.path.lexists("/tmp/cpx-evil")


def test_hostile_into_existing_dir_leaves_it_empty(build, tmp_path):
    pkg = build("evil", extra_members=[_link("share/out", "/etc"), _file("share/out/x")])
    (tmp_path / "d").mkdir()
    with pytest.raises(HostileArchiveError):
        extract_archive(pkg.path, str(tmp_path / "d"))
    assert os.listdir(tmp_path / "d") == []


# -- hand-made zip archives ---------------------------------------------------------------------


def _tar_zst(members: dict[str, bytes], trailer: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            tar.addfile(_ti(name, size=len(data)), io.BytesIO(data))
    return zstandard.ZstdCompressor().compress(buf.getvalue() + trailer)


def _conda_zip(path, members: list[tuple[str, bytes]], compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return str(path)


def _good_members():
    info = _tar_zst({"info/index.json": b'{"name": "z", "version": "1", "build": "0"}'})
    pkg = _tar_zst({"share/z.txt": b"zzz\n" * 100})
    return [
        ("metadata.json", b'{"conda_pkg_format_version": 2}'),
        ("info-z-1-0.tar.zst", info),
        ("pkg-z-1-0.tar.zst", pkg),
    ]


def test_hand_made_conda_extracts(tmp_path):
    path = _conda_zip(tmp_path / "z-1-0.conda", _good_members())
    extract_archive(path, str(tmp_path / "x"))
    assert (tmp_path / "x" / "share" / "z.txt").read_bytes() == b"zzz\n" * 100


def test_deflated_conda_members_work(tmp_path):
    path = _conda_zip(tmp_path / "z-1-0.conda", _good_members(), zipfile.ZIP_DEFLATED)
    extract_archive(path, str(tmp_path / "x"))
    assert (tmp_path / "x" / "share" / "z.txt").is_file()


def _patch_central(path, name: str, field_offset: int, fmt: str, value, local=False) -> None:
    """Overwrite one field of ``name``'s central-directory record (offsets from its start), or
    of its local header too (``local``: the same field sits 2 bytes earlier there)."""
    data = bytearray(Path(path).read_bytes())
    pos = data.find(b"PK\x01\x02")
    while pos >= 0:
        nlen = struct.unpack_from("<H", data, pos + 28)[0]
        if data[pos + 46 : pos + 46 + nlen].decode() == name:
            struct.pack_into(fmt, data, pos + field_offset, value)
            if local:
                header = struct.unpack_from("<L", data, pos + 42)[0]
                struct.pack_into(fmt, data, header + field_offset - 2, value)
            break
        pos = data.find(b"PK\x01\x02", pos + 46)
    Path(path).write_bytes(bytes(data))


@pytest.mark.parametrize(
    "field,fmt,value",
    [(20, "<L", 10), (24, "<L", 10), (20, "<L", 10**6)],
    ids=["compressed-size-smaller", "uncompressed-size-smaller", "compressed-size-larger"],
)
def test_zip_member_whose_declared_size_lies(tmp_path, field, fmt, value):
    path = _conda_zip(tmp_path / "z-1-0.conda", _good_members())
    _patch_central(path, "pkg-z-1-0.tar.zst", field, fmt, value)
    with pytest.raises(ArchiveError) as info:
        extract_archive(path, str(tmp_path / "x"))
    assert "pkg-z-1-0.tar.zst" in str(info.value) or "zip" in str(info.value)
    assert not (tmp_path / "x").exists()


def test_deflate_bomb_beyond_declared_size_is_refused(tmp_path):
    path = _conda_zip(tmp_path / "z-1-0.conda", _good_members(), zipfile.ZIP_DEFLATED)
    _patch_central(path, "pkg-z-1-0.tar.zst", 24, "<L", 16, local=True)  # uncompressed: 16
    with pytest.raises(HostileArchiveError, match="more than its declared size"):
        extract_archive(path, str(tmp_path / "x"))


def test_zstd_bomb_after_the_tar_end_is_never_decompressed(tmp_path):
    # 4 GiB of zeros behind the end-of-archive block: a reader that drained the stream would
    # take minutes; ours stops at the end of the tar.
    cctx = zstandard.ZstdCompressor(level=1)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(_ti("share/a", size=1), io.BytesIO(b"a"))
    chunks = [cctx.compress(buf.getvalue())]
    zeros = cctx.compress(bytes(1 << 24))
    chunks += [zeros] * 256  # concatenated frames: 4 GiB decompressed
    members = _good_members()
    members[2] = ("pkg-z-1-0.tar.zst", b"".join(chunks))
    path = _conda_zip(tmp_path / "z-1-0.conda", members)
    stats = extract_archive(path, str(tmp_path / "x"))
    assert stats.bytes < 1000


def test_tar_member_larger_than_the_stream_is_truncation(tmp_path):
    members = _good_members()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        tar.addfile(_ti("share/big", size=10_000), io.BytesIO(bytes(10_000)))
    members[2] = ("pkg-z-1-0.tar.zst", zstandard.ZstdCompressor().compress(raw.getvalue()[:3000]))
    path = _conda_zip(tmp_path / "z-1-0.conda", members)
    with pytest.raises(ArchiveError, match="unexpected end"):
        extract_archive(path, str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "members",
    [
        [("../evil.tar.zst", b"")],
        [("pkg-z-1-0.tar.zst/../../x", b"")],
        [("notes.txt", b"hi")],
        [("signature.sig", b"\0" * 64), ("future-z-1-0.tar.zst", b"junk")],
        [("pkg-y-1-0.tar.zst", b"junk")],  # several pkg members: the one named like the archive
    ],
)
def test_zip_members_a_package_does_not_need_are_ignored(tmp_path, members):
    path = _conda_zip(tmp_path / "z-1-0.conda", _good_members() + members)
    extract_archive(path, str(tmp_path / "x"))
    assert sorted(os.listdir(tmp_path / "x")) == ["info", "share"]


def test_metadata_json_is_not_needed(tmp_path):
    members = _good_members()
    members[0] = ("metadata.json", b"not json")
    extract_archive(_conda_zip(tmp_path / "z-1-0.conda", members), str(tmp_path / "x"))
    assert (tmp_path / "x" / "share" / "z.txt").is_file()


@pytest.mark.parametrize(
    "members,reason",
    [
        ([("pkg-z-1-0.tar.zst", b"")], "more than one"),  # the same name twice
        ([("pkg-y-1-0.tar.zst", b""), ("pkg-x-1-0.tar.zst", b"")], "more than one"),
    ],
)
def test_ambiguous_zip_members_are_refused(tmp_path, members, reason):
    path = tmp_path / "q-1-0.conda"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        _conda_zip(path, _good_members() + members)
    with pytest.raises(ArchiveError, match=reason):
        extract_archive(str(path), str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_overlapping_zip_members_are_refused(tmp_path):
    path = _conda_zip(tmp_path / "z-1-0.conda", _good_members())
    with zipfile.ZipFile(path) as zf:
        info_offset = zf.getinfo("info-z-1-0.tar.zst").header_offset
    _patch_central(path, "pkg-z-1-0.tar.zst", 42, "<L", info_offset)
    with pytest.raises(ArchiveError):
        extract_archive(path, str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


# -- truncated and junk archives ----------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_archives_are_archive_errors(build, tmp_path, fmt):
    pkg = build("demo", files=FILES, fmt=fmt)
    blob = Path(pkg.path).read_bytes()
    for i, cut in enumerate((0, 10, 100, len(blob) // 3, len(blob) // 2, len(blob) - 30)):
        path = tmp_path / f"cut{i}-1-0{fmt}"
        path.write_bytes(blob[:cut])
        dest = tmp_path / f"x{i}"
        with pytest.raises(ArchiveError) as info:
            extract_archive(str(path), str(dest))
        assert not isinstance(info.value, HostileArchiveError) or "zip" in str(info.value)
        assert not dest.exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_junk_is_an_archive_error(tmp_path, fmt):
    path = tmp_path / f"junk-1-0{fmt}"
    path.write_bytes(os.urandom(5000))
    with pytest.raises(ArchiveError):
        extract_archive(str(path), str(tmp_path / "x"))


def test_corrupt_payload_byte_is_caught(build, tmp_path):
    pkg = build("demo", files=FILES)
    blob = bytearray(Path(pkg.path).read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path = tmp_path / "bad-1-0.conda"
    path.write_bytes(bytes(blob))
    with pytest.raises(ArchiveError):
        extract_archive(str(path), str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_unknown_extension(tmp_path):
    path = tmp_path / "x.zip"
    path.write_bytes(b"")
    with pytest.raises(ArchiveError, match=r"not a \.conda or \.tar\.bz2"):
        extract_archive(str(path), str(tmp_path / "x"))


# -- case-insensitive file systems --------------------------------------------------------------


@pytest.fixture
def case_folding(monkeypatch, tmp_path):
    """Make everything under ``tmp_path/ci`` behave like a case-insensitive file system (names
    folded to lower case), for the calls the extractor makes: no such file system can be
    mounted in CI, and macOS's default is one."""
    root = str(tmp_path / "ci") + os.sep

    def fold(path):
        path = os.fspath(path)
        if isinstance(path, str) and path.startswith(root):
            return root + path[len(root) :].lower()
        return path

    for name in ("open", "mkdir", "symlink", "link", "lstat", "unlink", "chmod", "utime"):
        real = getattr(os, name)

        def wrapped(*args, _real=real, _name=name, **kw):
            args = list(args)
            if args and not isinstance(args[0], int):
                args[0] = fold(args[0])
            if _name == "link" and len(args) > 1:
                args[1] = fold(args[1])
            elif _name == "symlink" and len(args) > 1:
                args[1] = fold(args[1])  # the link's own path (its target is data)
            return _real(*args, **kw)

        monkeypatch.setattr(os, name, wrapped)
    return tmp_path / "ci"


def test_names_differing_only_in_case_later_wins(build, case_folding, tmp_path):
    extra = [
        _file("share/README", b"upper\n"),
        _file("share/readme", b"lower\n"),
        _file("Share2/a", b"a\n"),
        _file("share2/b", b"b\n"),
        _link("share/Link", "readme"),
        _file("share/LINK", b"replaces the link\n"),
    ]
    pkg = build("ci", files={}, extra_members=extra)
    case_folding.mkdir()
    extract_archive(pkg.path, str(case_folding / "x"))
    tree_ = tree(str(case_folding / "x"))
    assert tree_["share/readme"] == ("file", b"lower\n", False)
    assert tree_["share2/a"][1] == b"a\n" and tree_["share2/b"][1] == b"b\n"
    assert tree_["share/link"] == ("file", b"replaces the link\n", False)
