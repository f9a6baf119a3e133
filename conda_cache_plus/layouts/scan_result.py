"""What a scan of any layout returns (records, broken entries, leftovers) and the small readers
every layout's scan shares."""

from __future__ import annotations

import json
import os

from ..model.plainclass import FieldsEq

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..model.records import PackageCacheRecord


class Leftover(FieldsEq):
    """Something a crash, Ctrl-C or another tool left behind; not a package."""

    FIELDS = ("path", "rel", "kind", "size", "is_dir")

    def __init__(self, path: str, rel: str, kind: str, size: int, is_dir: bool = False):
        self.path = path
        self.rel = rel
        self.kind = kind  # partial | hold | trash | lock | tmp | hostile | link
        self.size = size
        self.is_dir = is_dir

    def to_json(self) -> dict:
        return {"path": self.path, "kind": self.kind, "size": self.size, "is_dir": self.is_dir}


class BrokenEntry(FieldsEq):
    """A directory that looks like a package but is unusable, with no archive to fall back on."""

    FIELDS = ("path", "rel", "reason")

    def __init__(self, path: str, rel: str, reason: str):
        self.path = path
        self.rel = rel
        self.reason = reason

    def to_json(self) -> dict:
        return {"path": self.path, "reason": self.reason}


class ScanResult(FieldsEq):
    """What a scan of one pkgs dir found (not a dataclass: model/plainclass.py says why)."""

    FIELDS = ("pkgs_dir", "exists", "readable", "records", "leftovers", "broken", "others",
              "problems", "nested", "layout")  # fmt: skip

    def __init__(
        self,
        pkgs_dir: str,
        exists: bool = True,
        readable: bool = True,
        records: list[PackageCacheRecord] | None = None,
        leftovers: list[Leftover] | None = None,
        broken: list[BrokenEntry] | None = None,
        others: list[str] | None = None,
        problems: list[str] | None = None,
        nested: bool = False,
        layout: str = "",
    ):
        self.pkgs_dir = pkgs_dir
        self.exists = exists
        self.readable = readable
        self.records: list[PackageCacheRecord] = [] if records is None else records
        self.leftovers: list[Leftover] = [] if leftovers is None else leftovers
        self.broken: list[BrokenEntry] = [] if broken is None else broken
        self.others: list[str] = [] if others is None else others
        self.problems: list[str] = [] if problems is None else problems
        self.nested = nested
        self.layout = layout  # flat | nested | rattler (layouts/kinds.py); filled by scan()


def fingerprint(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


# json's default decoder's scanner (C): ``(value, end)`` for the JSON value at an index
_scan_once = json.decoder.JSONDecoder().scan_once
_JSON_SPACE = " \t\n\r"


def read_json(
    path: str, dir_fd: int | None = None
) -> tuple[object | None, os.stat_result | None, str | None]:
    """(parsed, stat, error). ``error`` is None and ``parsed`` None when the file is absent.
    ``path`` is relative to ``dir_fd`` when given (a scan opens one file per entry: the kernel
    then resolves three components instead of the whole absolute path)."""
    try:
        fd = os.open(path, os.O_RDONLY, dir_fd=dir_fd)
    except (FileNotFoundError, NotADirectoryError):
        return None, None, None
    except OSError as exc:
        return None, None, f"cannot read {os.path.basename(path)}: {exc.strerror or exc}"
    try:
        st = os.fstat(fd)
        # one read of the size fstat gave (no file object: a scan does this per entry); more
        # only if the file grew meanwhile
        want = st.st_size + 1
        raw = os.read(fd, want)
        if len(raw) == want:
            chunks = [raw]
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            raw = b"".join(chunks)
    except OSError as exc:
        return None, None, f"cannot read {os.path.basename(path)}: {exc.strerror or exc}"
    finally:
        os.close(fd)
    try:
        text = raw.decode("utf-8")
        # json.loads's own steps, minus its three Python frames and two regex scans: the C
        # scanner on a document that starts with its value; anything else (leading white space,
        # a BOM, an error) goes through json.loads, which gives the same result or error
        try:
            data, end = _scan_once(text, 0)
        except (StopIteration, ValueError, RecursionError):
            return json.loads(text), st, None
        if end != len(text) and text[end:].strip(_JSON_SPACE):
            return json.loads(text), st, None  # raises "Extra data"
        return data, st, None
    except UnicodeDecodeError:
        return None, st, f"{os.path.basename(path)} is not valid UTF-8"
    except ValueError as exc:
        return None, st, f"{os.path.basename(path)} is not valid JSON ({exc.msg} at byte {exc.pos})"
    except RecursionError:
        return None, st, f"{os.path.basename(path)} is not usable JSON (nested too deeply)"


def md5_file(path: str) -> str | None:
    import hashlib  # an archive's checksum; a scan that hashes nothing never loads OpenSSL

    h = hashlib.md5()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def writable_dir(path: str, *files: str) -> tuple[bool, str]:
    """Whether we may change ``path`` (and ``files`` in it): its file system must not be mounted
    read-only (CVMFS, squashfs, ``ro`` bind mounts), and we need write permission."""
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return False, "read-only file system"
    except OSError:
        pass
    if not (os.access(path, os.W_OK | os.X_OK) and all(os.access(f, os.W_OK) for f in files)):
        return False, "no write permission"
    return True, "writable"
