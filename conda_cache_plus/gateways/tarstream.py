"""A lean, streaming tar reader: headers parsed by hand, member data handed out as buffer views.

``tarfile`` builds a ``TarInfo`` object per header, parses PAX records with regular expressions
and copies every member's data through ``copyfileobj``; for packages of thousands of small files
that is where much of the extraction time went. This reader understands what conda packages
contain (ustar, GNU long names, PAX ``path``/``linkpath``/``size``/``mtime``) and refuses what
they never contain (sparse files, multi-volume), so the extractor can reject it as odd.

Reading never looks further than the sizes the headers declare, and stops at the first
end-of-archive block: a decompression bomb appended after the archive is never decompressed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

BLOCK = 512

REGULAR = "0"
HARDLINK = "1"
SYMLINK = "2"
CHARDEV = "3"
BLOCKDEV = "4"
DIRECTORY = "5"
FIFO = "6"
CONTIGUOUS = "7"

_ZERO_BLOCK = bytes(BLOCK)
_TYPES = {
    b"0": REGULAR,
    b"\0": REGULAR,
    b"7": REGULAR,  # contiguous file: a regular file everywhere that matters
    b"1": HARDLINK,
    b"2": SYMLINK,
    b"3": CHARDEV,
    b"4": BLOCKDEV,
    b"5": DIRECTORY,
    b"6": FIFO,
}
# Largest metadata record we accept (PAX extended header, GNU long name); real ones are tiny.
MAX_META_SIZE = 1 << 20
MAX_MTIME = (1 << 34) - 1  # year 2514; larger values overflow utime on some systems


class TarFormatError(Exception):
    """The stream is not a tar archive, or is truncated or corrupt (``reason`` says which)."""


class TarOddMember(Exception):
    """A member kind conda packages never hold (sparse, multi-volume, unknown type)."""

    def __init__(self, member: str, reason: str):
        super().__init__(reason)
        self.member = member
        self.reason = reason


class ByteSource:
    """Exact-size reads over ``read(n)`` (a decompressor), returning views into large buffers.

    Small members are sliced out of the current buffer without copying; large ones are handed out
    chunk by chunk (:meth:`chunks`) so memory stays bounded by the read size.
    """

    __slots__ = ("_buf", "_pos", "_read", "_recycle", "_size", "_spent", "consumed")

    def __init__(
        self,
        read: Callable[[int], bytes | memoryview],
        read_size: int = 1 << 20,
        recycle: Callable[[object], None] | None = None,
    ):
        self._read = read
        self._size = read_size
        self._recycle = recycle
        self._spent = None
        self._buf = memoryview(b"")
        self._pos = 0
        self.consumed = 0

    def _fill(self) -> bool:
        if self._recycle is not None and len(self._buf):
            # ``read`` hands out views of reusable buffers: give back the one spent before
            # this one (a consumer looping over chunks() still holds the last chunk of the
            # buffer it just left); its owner reuses it only once no view of it is left (see
            # package_stream.Buffers)
            spent, self._buf = self._buf, memoryview(b"")
            owner = spent.obj
            spent.release()
            if self._spent is not None:
                self._recycle(self._spent)
            self._spent = owner
        data = self._read(self._size)
        if not data:
            return False
        self._buf = memoryview(data)
        self._pos = 0
        return True

    def close(self) -> None:
        """Give the buffers back (see ``recycle``); the source is not read after this."""
        current, self._buf = self._buf, memoryview(b"")
        if self._recycle is not None:
            owners = [self._spent]
            if len(current):
                owners.append(current.obj)
                current.release()
            self._spent = None
            for owner in owners:
                if owner is not None:
                    self._recycle(owner)

    def take(self, n: int) -> memoryview | bytes:
        """Exactly ``n`` bytes (a view while they sit in one buffer); TarFormatError if short."""
        buf, pos = self._buf, self._pos
        end = pos + n
        if end <= len(buf):
            self._pos = end
            self.consumed += n
            return buf[pos:end]
        parts = [bytes(buf[pos:])]
        have = len(parts[0])
        while have < n:
            if not self._fill():
                raise TarFormatError(f"unexpected end of data ({have} of {n} bytes)")
            need = n - have
            chunk = self._buf[:need]
            self._pos = len(chunk)
            parts.append(bytes(chunk))
            have += len(chunk)
        self.consumed += n
        return b"".join(parts)

    def chunks(self, n: int) -> Iterator[memoryview]:
        """``n`` bytes as a sequence of views, without gathering them in memory."""
        while n > 0:
            if self._pos >= len(self._buf) and not self._fill():
                raise TarFormatError(f"unexpected end of data ({n} bytes missing)")
            buf, pos = self._buf, self._pos
            end = min(len(buf), pos + n)
            self._pos = end
            got = end - pos
            n -= got
            self.consumed += got
            yield buf[pos:end]

    def skip(self, n: int) -> None:
        pos = self._pos + n
        if pos <= len(self._buf):  # the usual padding: within the buffer, no generator
            self._pos = pos
            self.consumed += n
            return
        for _ in self.chunks(n):
            pass


@dataclass(slots=True)
class Member:
    name: str
    type: str
    size: int
    mode: int
    mtime: int
    linkname: str


def _num(field: bytes, what: str, name: str | None = None) -> int:
    """A numeric header field: octal, or GNU base-256 (two's complement when negative, which
    GNU tar writes for times before 1970). ``what`` and ``name`` go into errors."""
    if field and field[0] & 0x80:
        value = int.from_bytes(field, "big", signed=True) if field[0] == 0xFF else None
        if value is None:
            value = int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
        return value
    digits = field.split(b"\0", 1)[0].strip()
    if not digits:
        return 0
    try:
        return int(digits, 8)
    except ValueError:
        where = f" of {name!r}" if name is not None else ""
        raise TarFormatError(f"bad {what} {digits!r} in the tar header{where}") from None


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _pax_records(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    n = len(data)
    while pos < n:
        if data[pos] == 0:
            break
        sp = data.find(b" ", pos)
        if sp < 0:
            raise TarFormatError("malformed PAX header")
        try:
            length = int(data[pos:sp])
        except ValueError:
            raise TarFormatError("malformed PAX header") from None
        end = pos + length
        if length <= 0 or end > n or data[end - 1] != 0x0A:
            raise TarFormatError("malformed PAX header")
        key, eq, value = data[sp + 1 : end - 1].partition(b"=")
        if not eq:
            raise TarFormatError("malformed PAX header")
        out[key.decode("utf-8", "replace")] = _decode(value)
        pos = end
    return out


def iter_members(src: ByteSource) -> Iterator[Member]:
    """Yield the members of the tar stream in ``src``.

    After each yield the consumer reads exactly ``member.size`` bytes of data from ``src`` (or
    fewer: the rest is skipped here). Ends at the first end-of-archive block.
    """
    pax: dict[str, str] = {}
    long_name: str | None = None
    long_link: str | None = None
    while True:
        start = src.consumed
        try:
            hdr = bytes(src.take(BLOCK))
        except TarFormatError:
            if start == 0:
                raise TarFormatError("empty or truncated tar stream") from None
            raise
        if hdr == _ZERO_BLOCK:
            return
        chksum = _num(hdr[148:156], "checksum")
        unsigned = sum(hdr) - sum(hdr[148:156]) + 256
        if chksum != unsigned:
            signed = unsigned - 256 * sum(1 for b in hdr if b > 127)  # some old tars
            if chksum != signed:
                raise TarFormatError("bad tar header checksum (not a tar archive, or corrupt)")
        typeflag = hdr[156:157]
        if typeflag in (b"x", b"g", b"L", b"K"):
            size = _num(hdr[124:136], "size")
            if not 0 <= size <= MAX_META_SIZE:
                raise TarFormatError(f"oversized tar metadata record ({size} bytes)")
            data = bytes(src.take(size))
            src.skip(-size % BLOCK)
            if typeflag == b"x":
                pax = _pax_records(data)
            elif typeflag == b"L":
                long_name = _decode(data.split(b"\0", 1)[0])
            elif typeflag == b"K":
                long_link = _decode(data.split(b"\0", 1)[0])
            # 'g' (global PAX): nothing in it matters for extraction
            continue

        magic = hdr[257:263]
        name_raw = hdr[0:100].split(b"\0", 1)[0]
        if magic == b"ustar\x00":  # POSIX: the prefix field extends the name
            prefix = hdr[345:500].split(b"\0", 1)[0]
            if prefix:
                name_raw = prefix + b"/" + name_raw
        name = long_name if long_name is not None else _decode(name_raw)
        linkname = long_link if long_link is not None else _decode(hdr[157:257].split(b"\0", 1)[0])
        size = _num(hdr[124:136], "size", name)
        mtime = _num(hdr[136:148], "mtime", name)
        if pax:
            name = pax.get("path", name)
            linkname = pax.get("linkpath", linkname)
            if "size" in pax:
                try:
                    size = int(pax["size"])
                except ValueError:
                    raise TarFormatError(f"bad PAX size for {name!r}") from None
            if "mtime" in pax:
                try:
                    mtime = int(float(pax["mtime"]))
                except (ValueError, OverflowError):
                    pass
            if any(k.startswith("GNU.sparse") for k in pax):
                raise TarOddMember(name, "sparse files are not supported in packages")
            pax = {}
        long_name = long_link = None

        kind = _TYPES.get(typeflag)
        if kind is None:
            raise TarOddMember(name, f"unsupported tar member type {typeflag!r}")
        if kind == REGULAR and name.endswith("/"):
            kind = DIRECTORY  # pre-POSIX tars mark directories by a trailing slash
        # Like tarfile, only regular files carry data blocks; a size on anything else is ignored.
        data_size = size if kind == REGULAR else 0
        if data_size < 0:
            raise TarFormatError(f"negative size {size} in the tar header of {name!r}")
        # Times before 1970 (GNU base-256) or beyond what utime takes: clamped, like rattler.
        mtime = min(max(mtime, 0), MAX_MTIME)
        member = Member(name, kind, data_size, _num(hdr[100:108], "mode", name), mtime, linkname)
        before = src.consumed
        yield member
        left = data_size - (src.consumed - before)
        if left < 0:
            raise TarFormatError(f"consumer read past the data of {name!r}")
        src.skip(left + (-data_size % BLOCK))
