"""What a scan of any layout returns (records, broken entries, leftovers) and the small readers
every layout's scan shares."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

from ..model.records import (
    PackageCacheRecord,
)


@dataclass
class Leftover:
    """Something a crash, Ctrl-C or another tool left behind; not a package."""

    path: str
    rel: str
    kind: str  # partial | hold | trash | lock | tmp | hostile | link
    size: int
    is_dir: bool = False

    def to_json(self) -> dict:
        return {"path": self.path, "kind": self.kind, "size": self.size, "is_dir": self.is_dir}


@dataclass
class BrokenEntry:
    """A directory that looks like a package but is unusable, with no archive to fall back on."""

    path: str
    rel: str
    reason: str

    def to_json(self) -> dict:
        return {"path": self.path, "reason": self.reason}


@dataclass
class ScanResult:
    pkgs_dir: str
    exists: bool = True
    readable: bool = True
    records: list[PackageCacheRecord] = field(default_factory=list)
    leftovers: list[Leftover] = field(default_factory=list)
    broken: list[BrokenEntry] = field(default_factory=list)
    others: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    nested: bool = False
    layout: str = ""  # flat | nested | rattler (layouts/kinds.py); filled by scan()


def fingerprint(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def read_json(path: str) -> tuple[object | None, os.stat_result | None, str | None]:
    """(parsed, stat, error). ``error`` is None and ``parsed`` None when the file is absent."""
    try:
        fd = os.open(path, os.O_RDONLY)
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
        return json.loads(raw.decode("utf-8")), st, None
    except UnicodeDecodeError:
        return None, st, f"{os.path.basename(path)} is not valid UTF-8"
    except ValueError as exc:
        return None, st, f"{os.path.basename(path)} is not valid JSON ({exc.msg} at byte {exc.pos})"
    except RecursionError:
        return None, st, f"{os.path.basename(path)} is not usable JSON (nested too deeply)"


def md5_file(path: str) -> str | None:
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
