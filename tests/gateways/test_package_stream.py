"""Reused decompression buffers (package_stream.Buffers): never overwritten under a live view,
and extractions that share them (one after another, or at once in threads) each get their own
package's bytes."""

from __future__ import annotations

import concurrent.futures as cf
import io
import os
import random
import tarfile
import zipfile

import zstandard

from conda_cache_plus.gateways import package_stream
from conda_cache_plus.gateways.extract import extract_archive
from conda_cache_plus.gateways.package_stream import READ_SIZE, Buffers


def test_a_buffer_with_a_live_view_is_not_reused():
    buffers = Buffers()
    buf = buffers.get()
    view = memoryview(buf)[10:20]
    buffers.give_back(buf)
    assert buffers.get() is not buf  # still held: a fresh one instead
    view.release()
    buffers.give_back(buf)
    assert buffers.get() is buf


def test_only_its_own_buffers_are_kept():
    buffers = Buffers()
    buffers.give_back(bytearray(10))
    buffers.give_back(b"x" * READ_SIZE)
    assert len(buffers.get()) == READ_SIZE and buffers._free == []


def _package(path, seed: int) -> dict[str, bytes]:
    """A .conda whose files span many read buffers, in sizes that straddle their edges."""
    rng = random.Random(seed)
    files = {
        f"share/f{i}.bin": rng.randbytes(size)
        for i, size in enumerate([3 * READ_SIZE + 7, READ_SIZE - 1, 5, READ_SIZE + 512, 0, 99])
    }
    name = os.path.basename(path)[: -len(".conda")]

    def tar_zst(members: dict[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for member, data in members.items():
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return zstandard.ZstdCompressor(level=1).compress(buf.getvalue())

    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", b'{"conda_pkg_format_version": 2}')
        zf.writestr(f"info-{name}.tar.zst", tar_zst({"info/index.json": b'{"name": "p"}'}))
        zf.writestr(f"pkg-{name}.tar.zst", tar_zst(files))
    return files


def _check(dest, files: dict[str, bytes]) -> None:
    for member, data in files.items():
        with open(os.path.join(dest, member), "rb") as fh:
            assert fh.read() == data, member


def test_extractions_sharing_buffers_keep_their_own_bytes(tmp_path, monkeypatch):
    monkeypatch.setattr(package_stream, "_BUFFERS", Buffers())  # this test's pool only
    pkgs = {}
    for seed in range(4):
        path = str(tmp_path / f"p{seed}-1-0.conda")
        pkgs[path] = _package(path, seed)
    for round_ in ("serial", "again"):  # the second round runs on recycled buffers only
        for path, files in pkgs.items():
            dest = f"{path}.{round_}"
            extract_archive(path, dest)
            _check(dest, files)
    assert package_stream._BUFFERS._free  # they did come back
    with cf.ThreadPoolExecutor(4) as pool:  # at once: buffers move between threads
        jobs = {pool.submit(extract_archive, p, f"{p}.threads"): p for p in pkgs}
        for job, path in jobs.items():
            job.result()
            _check(f"{path}.threads", pkgs[path])
