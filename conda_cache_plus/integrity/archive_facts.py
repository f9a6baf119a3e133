"""File and archive facts verify relies on: lstat helpers, hashing one file, reading metadata
JSON, and what an archive itself holds (members, link targets)."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import stat

from ..gateways.archive_members import archive_members
from ..model.filenames import CONDA_EXT, TARBZ2_EXT
from .findings import META_INVALID, UNREADABLE

# paths.json types that exist in a package (the others are made at link time).
HARDLINK, SOFTLINK, DIRECTORY = "hardlink", "softlink", "directory"


READ_SIZE = 1 << 20


# Never through a final symlink; O_NONBLOCK so that a FIFO put in a file's place cannot hang
# the check (it changes nothing for regular files).
OPEN_FLAGS = (
    os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0)
)


MAX_LINK_HOPS = 40


def fingerprint(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def lstat_or_none(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def file_kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "directory"
    return "special file"


def may_read(st: os.stat_result, path: str) -> bool:
    """Whether we may read the file ``st`` describes. The mode bits answer for almost every
    file without a syscall; only when they deny us is ``access`` asked (an ACL may allow)."""
    euid = os.geteuid() if hasattr(os, "geteuid") else -1
    if euid == 0:
        return True
    mode = st.st_mode
    if st.st_uid == euid:
        bit = mode & 0o400
    elif st.st_gid == os.getegid() or st.st_gid in os.getgroups():
        bit = mode & 0o040
    else:
        bit = mode & 0o004
    return bool(bit) or os.access(path, os.R_OK)


def safe_rel(rel) -> bool:
    if rel.__class__ is not str or not rel or rel[0] == "/" or "\0" in rel:
        return False
    # No empty, "." or ".." component; one substring test each instead of a split per path.
    framed = "/" + rel + "/"
    return "//" not in framed and "/./" not in framed and "/../" not in framed


def all_safe(items: list) -> bool:
    """Whether every item is a dict whose ``_path`` passes :func:`safe_rel`, in one pass of
    substring tests over all the paths joined (each framed by slashes, so a bad component of
    one path shows as it would alone; the joins can only add false alarms, never hide one)."""
    try:
        joined = "/\n/".join([item["_path"] for item in items])  # TypeError on a non-string
    except (TypeError, KeyError):
        return False
    framed = "/" + joined + "/"
    return (
        "\0" not in joined and "//" not in framed and "/./" not in framed and "/../" not in framed
    )


def sha256_fd(fd: int, size_hint: int) -> tuple[str, int]:
    """(hex digest, bytes read). Small files in one read; hashlib drops the GIL on big buffers."""
    if size_hint < READ_SIZE:
        data = os.read(fd, size_hint + 1)
        if len(data) <= size_hint:
            return hashlib.sha256(data).hexdigest(), len(data)
        h = hashlib.sha256(data)
        n = len(data)
    else:
        h = hashlib.sha256()
        n = 0
    buf = bytearray(READ_SIZE)
    view = memoryview(buf)
    with open(fd, "rb", buffering=0, closefd=False) as fh:
        while True:
            k = fh.readinto(buf)
            if not k:
                break
            h.update(view[:k])
            n += k
    return h.hexdigest(), n


def hash_file(path: str, algorithm: str = "sha256") -> str | None:
    """Digest of a file without following a final symlink; None if it cannot be read."""
    try:
        fd = os.open(path, OPEN_FLAGS)
    except OSError:
        return None
    try:
        if algorithm == "sha256":
            return sha256_fd(fd, os.fstat(fd).st_size)[0]
        h = hashlib.new(algorithm)
        with open(fd, "rb", buffering=0, closefd=False) as fh:
            while chunk := fh.read(READ_SIZE):
                h.update(chunk)
        return h.hexdigest()
    except OSError:
        return None
    finally:
        os.close(fd)


_CANNOT_READ = "cannot read: "


def read_json(path: str, dir_fd: int | None = None) -> tuple[object, str | None, bool]:
    """(data, error, exists). Plain ``os`` calls: a buffered file object costs more than the
    read of a small metadata file, and a first run reads three per entry."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    except (FileNotFoundError, NotADirectoryError):
        return None, None, False
    except OSError as exc:
        return None, f"{_CANNOT_READ}{exc.strerror or exc}", True
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    except OSError as exc:
        return None, f"{_CANNOT_READ}{exc.strerror or exc}", True
    finally:
        os.close(fd)
    try:
        return json.loads(b"".join(chunks) if len(chunks) != 1 else chunks[0]), None, True
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"not valid JSON ({exc})", True
    except RecursionError:
        return None, "not usable JSON (nested too deeply)", True


def meta_kind(err: str | None) -> str:
    """A metadata file we could not read is unreadable, not invalid (see ``read_json``)."""
    return UNREADABLE if err and err.startswith(_CANNOT_READ) else META_INVALID


def archive_has_member(archive: str, name: str) -> bool | None:
    """Whether the archive contains ``name`` (an ``info/`` file; None if it cannot be read).

    Only asked when an extracted entry lacks the file: old packages never had one, and only the
    archive can tell a deleted file from a package that never had it.
    """
    try:
        return any(m.name == name for m, _tar in archive_members(archive, info_only=True))
    except Exception:
        return None


def archive_lists_paths_json(archive: str) -> bool | None:
    return archive_has_member(archive, "info/paths.json")


@functools.lru_cache(maxsize=64)
def _link_targets(archive: str, size: int, mtime_ns: int) -> dict[str, str] | None:
    try:
        members = [m for m, _ in archive_members(archive) if m.issym() or m.islnk()]
    except Exception:
        return None
    found = {m.name: m.linkname for m in members if m.issym()}
    for m in members:
        # a hard link to a symlink member (how GNU tar stores a hard-linked symlink) is
        # extracted as the same symlink, by conda's extractor and ours
        if m.islnk() and m.linkname in found:
            found[m.name] = found[m.linkname]
    return found


def archive_link_targets(root: str) -> dict[str, str]:
    """``{path: target}`` of the symlinks in the archive beside the extracted ``root`` (empty
    without a readable archive). Asked only about unusual links, so rarely read."""
    for ext in (CONDA_EXT, TARBZ2_EXT):
        try:
            st = os.stat(root + ext)
        except OSError:
            continue
        found = _link_targets(root + ext, st.st_size, st.st_mtime_ns)
        if found is not None:
            return found
    return {}


def archive_empty_links(root: str) -> frozenset[str]:
    """Symlinks with an empty target in the archive beside the extracted ``root``: no link can
    be made from them (conda's extraction skips them too), so their absence is not damage."""
    return frozenset(name for name, target in archive_link_targets(root).items() if not target)


def packaged_symlink_here(root: str, rel: str) -> bool:
    """Whether the symlink at ``rel`` is one the archive itself has (paths.json may call it a
    hardlink: a hard link to a symlink member is extracted as that symlink)."""
    try:
        target = os.readlink(os.path.join(root, rel))
    except OSError:
        return False
    return packaged_link(root, rel, target)


def packaged_link(root: str, rel: str, target: str) -> bool:
    """Whether the archive itself has this link with this target: conda keeps links to system
    paths or out of the package (conda-build and rattler-build write them), so one that came
    from the archive is the package's, not a planted one."""
    return archive_link_targets(root).get(rel) == target
