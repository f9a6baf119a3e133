"""Stream the tar members of a conda package (``.conda`` or ``.tar.bz2``) from a file object.

:func:`stream_members` is a generator of ``(component, member, source)``: the consumer reads each
member's data from ``source`` (a :class:`~.tarstream.ByteSource`). It reads the
archive front to back exactly once, so the archive's md5/sha256/size can be computed on the way
(``hasher``) without a second read.

``.conda`` members may come in any order (metadata/info/pkg, or info/pkg/metadata as in older
conda-package-handling builds): the zip central directory is read first, then members are
visited in file order; members a package does not need (``metadata.json``, a signature) are not
read. Overlapping members (the "better zip bomb"), sizes that disagree between the central
directory and local headers, and encrypted members are refused.

A package's main tar stream (a ``.conda``'s ``pkg``, a whole ``.tar.bz2``) is decompressed one
step ahead in a helper thread (zstd and bz2 release the GIL) while the consumer creates files,
so an extraction costs about the larger of the two rather than their sum. It runs at most
``PREFETCH_DEPTH`` reads ahead of the consumer and stops when the consumer does: a bomb behind
the end of the tar still gets no further than that.
"""

from __future__ import annotations

import bz2
import hashlib
import os
import queue
import struct
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterator

import zstandard

from . import tarstream
from .tarstream import ByteSource, Member

READ_SIZE = 1 << 20  # decompressed bytes handed to the tar reader per call
RAW_CHUNK = 1 << 18  # compressed bytes read from the archive per call
PREFETCH_DEPTH = 2  # decompressed reads (READ_SIZE each) kept ready ahead of the consumer
PREFETCH_MIN = 1 << 18  # smaller streams are decompressed in the consumer's thread

_LOCAL_HEADER = struct.Struct("<4sHHHHHLLLHH")
_LOCAL_MAGIC = b"PK\x03\x04"


class PackageFormatError(Exception):
    """Not readable as a package (``reason``); ``member`` names the zip/tar member if any."""

    def __init__(self, reason: str, member: str | None = None, hostile: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.member = member
        self.hostile = hostile


class Hasher:
    """md5, sha256 and size of the bytes that pass through ``update``."""

    def __init__(self):
        self.md5 = hashlib.md5()
        self.sha256 = hashlib.sha256()
        self.size = 0

    def update(self, data) -> None:
        self.md5.update(data)
        self.sha256.update(data)
        self.size += len(data)


def _unshared(buf: bytearray) -> bool:
    """Whether no view of ``buf`` is alive (a bytearray with a live export cannot be resized),
    so it can be written again without changing data someone still holds."""
    try:
        buf.append(0)
    except BufferError:
        return False
    del buf[-1]
    return True


class _SeqReader:
    """Front-to-back reads of the archive file, hashing every byte when asked to.

    Reads of a chunk's size go into one buffer, reused while nobody holds a view of it (the
    zstd reader lets go of its input before it asks for more); small reads are plain bytes."""

    def __init__(self, fh, hasher: Hasher | None):
        self.fh = fh
        self.hasher = hasher
        self.pos = 0
        self._buf: bytearray | None = None
        self._into = getattr(fh, "readinto", None)
        fh.seek(0)

    def read(self, n: int) -> bytes | memoryview:
        if self._into is not None and RAW_CHUNK // 4 <= n <= RAW_CHUNK:
            buf = self._buf
            if buf is None or not _unshared(buf):
                buf = self._buf = bytearray(RAW_CHUNK)
            got = self._into(memoryview(buf)[:n])
            data = memoryview(buf)[:got]
        else:
            data = self.fh.read(n)
        self.pos += len(data)
        if self.hasher is not None and data:
            self.hasher.update(data)
        return data

    def exact(self, n: int, what: str) -> bytes:
        data = self.read(n)
        if len(data) != n:
            raise PackageFormatError(f"truncated archive (in {what})")
        return data

    def advance_to(self, offset: int, member: str) -> None:
        if offset < self.pos:
            raise PackageFormatError("zip members overlap", member, hostile=True)
        if self.hasher is None:
            self.fh.seek(offset)
            self.pos = offset
            return
        while self.pos < offset:
            if not self.read(min(RAW_CHUNK, offset - self.pos)):
                raise PackageFormatError("truncated archive", member)

    def drain(self) -> None:
        if self.hasher is not None:
            while self.read(RAW_CHUNK):
                pass


class _ZipMemberReader:
    """File-like over one zip member's data: never reads past its declared compressed size,
    never yields more than its declared uncompressed size, checks its CRC at the end."""

    def __init__(self, seq: _SeqReader, zi: zipfile.ZipInfo):
        self.seq = seq
        self.name = zi.filename
        self.left = zi.compress_size
        self.out_left = zi.file_size
        self.crc_expected = zi.CRC
        self.crc = 0
        self.inflate = zlib.decompressobj(-15) if zi.compress_type == zipfile.ZIP_DEFLATED else None

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = RAW_CHUNK
        if self.inflate is None:
            data = self.seq.read(min(n, self.left)) if self.left else b""
            self.left -= len(data)
            if not data and self.left:
                raise PackageFormatError("truncated archive", self.name)
        else:
            data = self.inflate.decompress(self.inflate.unconsumed_tail, n)
            while not data and self.left and not self.inflate.eof:
                raw = self.seq.read(min(RAW_CHUNK, self.left))
                if not raw:
                    raise PackageFormatError("truncated archive", self.name)
                self.left -= len(raw)
                data = self.inflate.decompress(raw, n)
        if len(data) > self.out_left:
            raise PackageFormatError(
                "member decompresses to more than its declared size", self.name, hostile=True
            )
        self.out_left -= len(data)
        if data:
            self.crc = zlib.crc32(data, self.crc)
        return data

    def finish(self) -> None:
        """Read what the consumer left (e.g. zstd padding) and check size and CRC."""
        while self.read(RAW_CHUNK):
            pass
        if self.out_left:
            raise PackageFormatError(
                f"member is {self.out_left} bytes shorter than declared", self.name
            )
        if self.crc != self.crc_expected:
            raise PackageFormatError("CRC mismatch (corrupt archive)", self.name)


class Buffers:
    """Decompression output buffers (``READ_SIZE`` each), used over and over.

    A fresh megabyte for every read is fresh memory from the kernel every time (malloc hands
    big blocks back as soon as they are freed): page faults and zeroing cost about a tenth of
    an extraction's CPU. A buffer comes back through :meth:`give_back` once its reader is done
    with it, and is reused only when no view of it is left anywhere (a bytearray with a live
    export cannot be resized: that is the test), so data a consumer still holds is never
    overwritten.
    """

    KEEP = 8  # free buffers kept: a few extractions' worth, in threads or one after another

    def __init__(self):
        self._free: list[bytearray] = []  # append/pop are atomic: no lock between two threads

    def get(self) -> bytearray:
        try:
            return self._free.pop()
        except IndexError:
            return bytearray(READ_SIZE)

    def give_back(self, buf) -> None:
        if not isinstance(buf, bytearray) or len(buf) != READ_SIZE or not _unshared(buf):
            return  # not ours, or a view of it is still alive: let it go with that view
        if len(self._free) < self.KEEP:
            self._free.append(buf)


# Shared by every extraction of the process, one after another (a pool's worker) or at once (a
# thread pool): the output buffers, and zstd contexts, each holding its window (megabytes that,
# allocated anew for every package, cost page faults again each time).
_BUFFERS = Buffers()
_DCTXS: list = []
_DCTXS_KEEP = 4


def _zstd_context():
    try:
        return _DCTXS.pop()
    except IndexError:
        return zstandard.ZstdDecompressor()


def _zstd_context_done(dctx) -> None:
    # each stream_reader resets the context first: one left mid-stream (an error) is fine too
    if len(_DCTXS) < _DCTXS_KEEP:
        _DCTXS.append(dctx)


class _Prefetch:
    """``read(n)`` served from a thread that calls ``source(READ_SIZE)`` ahead of the caller.

    Errors raised by ``source`` reach the caller at the read where they happened. :meth:`close`
    stops the thread and waits for it; nothing touches ``source`` after it returns.
    """

    def __init__(self, source: Callable[[int], bytes]):
        self._source = source
        self._queue: queue.Queue = queue.Queue(PREFETCH_DEPTH)
        self._stop = threading.Event()
        self._eof = False
        self._thread = threading.Thread(target=self._run, name="cpx-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                data = self._source(READ_SIZE)
                if not self._put((data, None)) or not data:
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self._put((b"", exc))

    def read(self, _n: int) -> bytes:
        if self._eof:
            return b""
        data, exc = self._queue.get()
        if exc is not None:
            self._eof = True
            raise exc
        if not data:
            self._eof = True
        return data

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def _conda_plan(zf: zipfile.ZipFile, stem: str | None = None) -> list[tuple[str, zipfile.ZipInfo]]:
    """The ``info`` and ``pkg`` members to read, in file order. Members a package does not need
    (``metadata.json``, a signature, a future component) are left unread, as cph does."""
    found: dict[str, list[zipfile.ZipInfo]] = {"info": [], "pkg": []}
    for zi in zf.infolist():
        kind = zi.filename.split("-", 1)[0]
        if kind in found and zi.filename.endswith(".tar.zst") and "/" not in zi.filename:
            found[kind].append(zi)
    plan = []
    for kind, candidates in found.items():
        if len(candidates) > 1 and stem is not None:
            # cph picks the component named after the archive: do the same
            named = [zi for zi in candidates if zi.filename == f"{kind}-{stem}.tar.zst"]
            candidates = named if len(named) == 1 else candidates
        if not candidates:
            raise PackageFormatError(f"no {kind}-*.tar.zst member (not a conda package)")
        if len(candidates) > 1:
            raise PackageFormatError(f"more than one {kind}-*.tar.zst member", None, hostile=True)
        zi = candidates[0]
        if zi.flag_bits & 0x1:
            raise PackageFormatError("encrypted zip member", zi.filename, hostile=True)
        if zi.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise PackageFormatError(f"unsupported zip compression {zi.compress_type}", zi.filename)
        if zi.compress_type == zipfile.ZIP_STORED and zi.compress_size != zi.file_size:
            raise PackageFormatError("stored member with two different sizes", zi.filename, True)
        plan.append((kind, zi))
    plan.sort(key=lambda item: item[1].header_offset)
    return plan


def _open_local(seq: _SeqReader, zi: zipfile.ZipInfo) -> None:
    """Read the local header of ``zi`` and check it against the central directory."""
    seq.advance_to(zi.header_offset, zi.filename)
    head = seq.exact(_LOCAL_HEADER.size, zi.filename)
    magic, _ver, flags, method, _t, _d, crc, csize, usize, nlen, xlen = _LOCAL_HEADER.unpack(head)
    if magic != _LOCAL_MAGIC:
        raise PackageFormatError("bad local zip header", zi.filename)
    raw_name = seq.exact(nlen, zi.filename)
    seq.exact(xlen, zi.filename)
    encoding = "utf-8" if flags & 0x800 else "cp437"
    if raw_name.decode(encoding, "replace") != zi.filename:
        raise PackageFormatError("local and central zip names differ", zi.filename, True)
    if method != zi.compress_type or flags & 0x1:
        raise PackageFormatError("local and central zip headers differ", zi.filename, True)
    if (
        not flags & 0x8
        and 0xFFFFFFFF not in (csize, usize)
        and (csize, usize, crc) != (zi.compress_size, zi.file_size, zi.CRC)
    ):
        raise PackageFormatError(
            "declared sizes differ between zip headers", zi.filename, hostile=True
        )


def _conda_members(
    fh, hasher: Hasher | None, stem: str | None = None
) -> Iterator[tuple[str, Member, ByteSource]]:
    try:
        zf = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise PackageFormatError(f"not a .conda (zip) archive, or truncated: {exc}") from None
    plan = _conda_plan(zf, stem)
    seq = _SeqReader(fh, hasher)
    dctx = _zstd_context()
    try:
        yield from _conda_components(plan, seq, dctx, _BUFFERS)
    finally:
        _zstd_context_done(dctx)


def _conda_components(plan, seq: _SeqReader, dctx, buffers: Buffers):
    for kind, zi in plan:
        _open_local(seq, zi)
        member_reader = _ZipMemberReader(seq, zi)
        reader = dctx.stream_reader(
            member_reader, read_size=RAW_CHUNK, read_across_frames=True, closefd=False
        )

        def read(n: int, _into=reader.readinto, _name=zi.filename, _get=buffers.get):
            # The consumer pulls data too, so errors are translated here, at the source.
            buf = _get()
            try:
                got = _into(buf)
            except zstandard.ZstdError as exc:
                raise PackageFormatError(f"corrupt zstd data: {exc}", _name) from None
            if not got:
                buffers.give_back(buf)
                return b""
            return memoryview(buf)[:got]

        prefetch = _Prefetch(read) if zi.file_size >= PREFETCH_MIN else None
        src = ByteSource(prefetch.read if prefetch else read, READ_SIZE, buffers.give_back)
        try:
            for member in tarstream.iter_members(src):
                yield kind, member, src
        except tarstream.TarFormatError as exc:
            raise PackageFormatError(str(exc), zi.filename) from None
        finally:
            if prefetch is not None:
                prefetch.close()  # before anyone else reads the archive (finish, next member)
            src.close()
        member_reader.finish()
    seq.drain()


def _bz2_members(fh, hasher: Hasher | None) -> Iterator[tuple[str, Member, ByteSource]]:
    seq = _SeqReader(fh, hasher)
    state = {"dec": bz2.BZ2Decompressor()}

    def read(n: int) -> bytes:
        dec = state["dec"]
        while True:
            if dec.eof:  # multi-stream bz2 (pbzip2): continue with the next stream
                data = dec.unused_data or seq.read(RAW_CHUNK)
                if not data:
                    return b""
                dec = state["dec"] = bz2.BZ2Decompressor()
            elif dec.needs_input:
                data = seq.read(RAW_CHUNK)
                if not data:
                    return b""
            else:
                data = b""
            try:
                out = dec.decompress(data, n)
            except (OSError, EOFError, ValueError) as exc:
                raise PackageFormatError(f"corrupt bz2 data: {exc}") from None
            if out:
                return out

    try:
        size = os.fstat(fh.fileno()).st_size
    except (AttributeError, OSError, ValueError):  # not a real file: size unknown
        size = PREFETCH_MIN
    prefetch = _Prefetch(read) if size >= PREFETCH_MIN else None
    src = ByteSource(prefetch.read if prefetch else read, READ_SIZE)
    try:
        for member in tarstream.iter_members(src):
            yield "pkg", member, src
    except tarstream.TarFormatError as exc:
        raise PackageFormatError(str(exc)) from None
    finally:
        if prefetch is not None:
            prefetch.close()
    seq.drain()


def package_format(path: str) -> str:
    lower = str(path).lower()
    if lower.endswith(".conda"):
        return ".conda"
    if lower.endswith(".tar.bz2"):
        return ".tar.bz2"
    raise PackageFormatError("not a .conda or .tar.bz2 file name")


def stream_members(
    fh, fmt: str, hasher: Hasher | None = None, stem: str | None = None
) -> Iterator[tuple[str, Member, ByteSource]]:
    """Yield ``(component, member, source)`` for every tar member of the package in ``fh``.

    ``component`` is ``"info"`` or ``"pkg"`` (a ``.tar.bz2`` is all ``"pkg"``). ``fh`` must be
    seekable for ``.conda`` (the zip index is at its end). When the generator is exhausted, the
    whole file has passed through ``hasher``. ``stem`` (the archive's name without extension)
    picks the component when a ``.conda`` holds several of one kind.
    """
    if fmt == ".conda":
        return _conda_members(fh, hasher, stem)
    if fmt == ".tar.bz2":
        return _bz2_members(fh, hasher)
    raise PackageFormatError(f"unknown package format {fmt!r}")
