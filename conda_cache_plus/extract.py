"""Extracting packages into a cache: hostile-safe, streaming, atomic.

:func:`extract_archive` is the one consumer of :func:`package_stream.stream_members`; it does
every path-safety check, and it does them lexically, against an in-memory model of what it has
created so far (the destination starts empty, so the model is exact). That replaces conda's
``realpath`` per member, and keeps syscalls per file to ``open``/``write``/``utime``/``close``:
directories are created once, modes are passed to ``open`` (a ``chmod`` only when the umask
would change them).

Modification times of regular files are kept: CPython checks a ``.pyc`` against the mtime of
its ``.py``, so packages that ship ``__pycache__`` would otherwise recompile on first import (or
fail to, in read-only environments). Directory and symlink times are not kept; nothing reads them.

:func:`install_entry` extracts into ``<pkgs>/.conda-cache-plus/tmp/``, writes
``info/repodata_record.json`` last, then renames the directory into place under a per-entry lock,
so a crash leaves the old entry or the complete new one, never half of one.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field

from . import tarstream
from .cachedir import ensure_cache_dir
from .exceptions import (
    ArchiveError,
    ChecksumMismatchError,
    HostileArchiveError,
    LockTimeoutError,
    SizeMismatchError,
)
from .layout import CacheLayout
from .locks import FileLock
from .package_stream import Hasher, PackageFormatError, package_format, stream_members

# How long a second installer of the same entry waits for the first (a big package on a slow
# disk takes minutes).
ENTRY_LOCK_TIMEOUT = 1800.0
_MAX_LINK_HOPS = 40
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_OPEN_FLAGS |= getattr(os, "O_NOFOLLOW", 0)
_UTIME_FD = os.utime in os.supports_fd


def _read_umask() -> int:
    # os.umask() can only be read by setting it, which races with other threads; /proc can't.
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@dataclass
class ExtractStats:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    bytes: int = 0  # payload bytes written
    archive_size: int = 0
    md5: str | None = None
    sha256: str | None = None
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)  # members that cannot exist on disk

    def to_json(self) -> dict:
        return asdict(self)


class _Writer:
    """Creates members under ``root``; refuses anything that would land outside it."""

    def __init__(self, root: str, archive: str):
        self.root = root.rstrip(os.sep) + os.sep
        self.archive = archive
        self.dirs: set[str] = {""}
        self.files: set[str] = set()
        self.links: dict[str, str] = {}
        self.stats = ExtractStats()
        self.umask = _read_umask()

    def hostile(self, member: str, reason: str) -> HostileArchiveError:
        return HostileArchiveError(self.archive, member, reason)

    def relpath(self, name: str) -> str:
        if not name or "\0" in name:
            raise self.hostile(name, "empty name or NUL byte in the name")
        if name[0] == "/":
            raise self.hostile(name, "absolute path")
        parts = name.split("/")
        if "" in parts or "." in parts or ".." in parts:
            if ".." in parts:
                raise self.hostile(name, "'..' in the path")
            return "/".join(p for p in parts if p and p != ".")
        return name

    def _mkdirs(self, rel: str, member: str) -> None:
        if rel in self.dirs:
            return
        parent = rel.rpartition("/")[0]
        self._mkdirs(parent, member)
        if rel in self.links:
            raise self.hostile(member, f"path goes through the symlink {rel!r}")
        if rel in self.files:
            raise self.hostile(member, f"path goes through the file {rel!r}")
        os.mkdir(self.root + rel, 0o755)
        self.dirs.add(rel)
        self.stats.dirs += 1

    def _claim(self, rel: str, member: str) -> None:
        if rel in self.files or rel in self.links or rel in self.dirs:
            raise self.hostile(member, "duplicate member")
        self._mkdirs(rel.rpartition("/")[0], member)

    def _resolves_inside(self, stack: list[str], target: str, hops: list[int]) -> bool:
        """Walk ``target`` from directory ``stack`` through the symlinks made so far."""
        if target.startswith("/"):
            return False
        for part in target.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if not stack:
                    return False
                stack.pop()
                continue
            stack.append(part)
            inner = self.links.get("/".join(stack))
            if inner is not None:
                hops[0] += 1
                if hops[0] > _MAX_LINK_HOPS:
                    return False
                stack.pop()
                if not self._resolves_inside(stack, inner, hops):
                    return False
        return True

    def _link_escapes(self, rel: str, target: str) -> bool:
        return not self._resolves_inside(rel.split("/")[:-1], target, [0])

    def add(self, member: tarstream.Member, src: tarstream.ByteSource) -> None:
        kind = member.type
        rel = self.relpath(member.name)
        if kind == tarstream.REGULAR:
            if not rel:
                raise self.hostile(member.name, "a file at the root of the package")
            self._claim(rel, member.name)
            self._write(rel, member, src)
        elif kind == tarstream.DIRECTORY:
            if rel in self.files or rel in self.links:
                raise self.hostile(member.name, "duplicate member")
            self._mkdirs(rel, member.name)
        elif kind == tarstream.SYMLINK:
            if not rel:
                raise self.hostile(member.name, "a symlink at the root of the package")
            target = member.linkname
            if not target:
                # Real packages hold these (the zlib .conda in conda's test data): no link can
                # be made, and tarfile (so conda) skips them too.
                self.stats.skipped.append(member.name)
                return
            if "\0" in target or self._link_escapes(rel, target):
                raise self.hostile(member.name, f"symlink to {target!r} points out of the package")
            self._claim(rel, member.name)
            os.symlink(target, self.root + rel)
            self.links[rel] = target
            self.stats.symlinks += 1
        elif kind == tarstream.HARDLINK:
            try:
                source = self.relpath(member.linkname)
            except HostileArchiveError:
                source = None
            if source not in self.files:
                raise self.hostile(
                    member.name, f"hard link to {member.linkname!r}, not an earlier file"
                )
            self._claim(rel, member.name)
            os.link(self.root + source, self.root + rel, follow_symlinks=False)
            self.files.add(rel)
            self.stats.hardlinks += 1
        else:
            raise self.hostile(member.name, "device file or fifo")

    def _write(self, rel: str, member: tarstream.Member, src: tarstream.ByteSource) -> None:
        mode = member.mode
        # tarfile's "data" filter: no setuid/setgid/sticky, no group/other write, owner rw.
        want = (mode & 0o755) | 0o600
        if not mode & 0o100:
            want &= ~0o111
        fd = os.open(self.root + rel, _OPEN_FLAGS, want)
        self.files.add(rel)
        try:
            size = member.size
            if size:
                if size <= tarstream.BLOCK * 2048:
                    data = src.take(size)
                    written = os.write(fd, data)
                    while written < size:
                        written += os.write(fd, data[written:])
                else:
                    for chunk in src.chunks(size):
                        view = chunk
                        while view:
                            view = view[os.write(fd, view) :]
            if want & self.umask:
                os.fchmod(fd, want)
            if _UTIME_FD:
                os.utime(fd, (member.mtime, member.mtime))
        finally:
            os.close(fd)
        if not _UTIME_FD:
            os.utime(self.root + rel, (member.mtime, member.mtime))
        self.stats.files += 1
        self.stats.bytes += size

    def finish(self) -> None:
        # A symlink made early may escape through one made later (x -> s/.. , then s -> .).
        for rel, target in self.links.items():
            if self._link_escapes(rel, target):
                raise self.hostile(rel, f"symlink to {target!r} points out of the package")


def _clear(dest: str, remove_dest: bool) -> None:
    if remove_dest:
        shutil.rmtree(dest, ignore_errors=True)
        return
    for name in os.listdir(dest):
        path = os.path.join(dest, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except OSError:
                pass


def extract_archive(archive: str, dest_dir: str, *, hashes: bool = False) -> ExtractStats:
    """Stream the ``.conda`` or ``.tar.bz2`` at ``archive`` into ``dest_dir`` (new or empty).

    Raises :class:`~conda_cache_plus.exceptions.HostileArchiveError` for a member that would
    write outside ``dest_dir`` or create a special file, and ``ArchiveError`` for an unreadable
    archive; either way ``dest_dir`` is left as it was. ``hashes=True`` also computes the
    archive's md5 and sha256 during the same read.
    """
    archive = os.fspath(archive)
    start = time.perf_counter()
    try:
        fmt = package_format(archive)
    except PackageFormatError as exc:
        raise ArchiveError(archive, exc.reason) from None
    dest = os.path.abspath(os.fspath(dest_dir))
    try:
        os.mkdir(dest)
        created = True
    except FileExistsError:
        created = False
        if os.listdir(dest):
            raise ArchiveError(archive, f"the destination {dest} is not empty") from None
    hasher = Hasher() if hashes else None
    writer = _Writer(dest, archive)
    try:
        with open(archive, "rb") as fh:
            writer.stats.archive_size = os.fstat(fh.fileno()).st_size
            members = stream_members(fh, fmt, hasher)
            try:
                for _component, member, src in members:
                    writer.add(member, src)
            finally:
                members.close()  # stops its decompression thread now, not when collected
        writer.finish()
    except BaseException as exc:  # Ctrl-C included: never leave a half extraction behind
        _clear(dest, created)
        if isinstance(exc, PackageFormatError):
            if exc.hostile:
                raise HostileArchiveError(archive, exc.member or "", exc.reason) from None
            where = f" (member {exc.member!r})" if exc.member else ""
            raise ArchiveError(archive, exc.reason + where) from None
        if isinstance(exc, tarstream.TarOddMember):
            raise HostileArchiveError(archive, exc.member, exc.reason) from None
        if isinstance(exc, tarstream.TarFormatError):
            raise ArchiveError(archive, str(exc)) from None
        if isinstance(exc, FileExistsError) and not isinstance(exc, HostileArchiveError):
            # only an earlier member (or a name differing only in case) can already be there
            raise HostileArchiveError(archive, exc.filename or "", "duplicate member") from None
        raise
    stats = writer.stats
    if hasher is not None:
        stats.md5 = hasher.md5.hexdigest()
        stats.sha256 = hasher.sha256.hexdigest()
    stats.seconds = time.perf_counter() - start
    return stats


# -- installing an entry into a cache -----------------------------------------------------------


def _renameat2():
    try:
        func = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    func.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    return func


_RENAMEAT2 = _renameat2()


def _exchange(a: str, b: str) -> bool:
    """Atomically swap two paths (Linux ``RENAME_EXCHANGE``); False where unsupported."""
    if _RENAMEAT2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    return _RENAMEAT2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _file_hashes(path: str) -> Hasher:
    hasher = Hasher()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            hasher.update(chunk)
    return hasher


def _read_json(path: str):
    try:
        with open(path, "rb") as fh:
            return json.loads(fh.read())
    except (OSError, ValueError, RecursionError):
        return None


def _url_basename(url: str) -> str:
    return url.split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]


def build_repodata_record(
    index: dict, record: dict | None, archive: str, stats: ExtractStats, url: str | None = None
) -> dict:
    """``info/repodata_record.json`` content: index.json, overridden by the channel's record
    (like conda), with fn/url/channel/md5/sha256/size filled."""
    rec = dict(index)
    rec.update({k: v for k, v in (record or {}).items() if v is not None})
    url = rec.get("url") or url
    if url:
        rec["url"] = url
        rec.setdefault("fn", _url_basename(url))
        # conda records the channel with its subdir (e.g. https://host/channel/linux-64)
        rec.setdefault("channel", url.split("#", 1)[0].rsplit("/", 1)[0])
    rec.setdefault("fn", os.path.basename(archive))
    # what conda's PackageRecord dump adds, so records read the same whoever wrote them
    rec.setdefault("depends", [])
    rec.setdefault("constrains", [])
    if "package_type" not in rec and rec.get("noarch") in ("generic", "python"):
        rec["package_type"] = f"noarch_{rec['noarch']}"
    size = os.path.getsize(archive)
    label = url or archive
    if rec.get("size") is not None and int(rec["size"]) != size:
        raise SizeMismatchError(label, archive, int(rec["size"]), size)
    rec["size"] = size
    for algo in ("md5", "sha256"):
        actual = getattr(stats, algo)
        if actual is None:
            continue
        expected = rec.get(algo)
        if expected and expected.lower() != actual:
            raise ChecksumMismatchError(label, archive, algo, expected, actual)
        rec[algo] = actual
    return rec


def _entry_matches(final: str, record: dict | None, archive: str) -> bool:
    """Whether ``final`` is a complete entry of this very archive (another installer's work)."""
    existing = _read_json(os.path.join(final, "info", "repodata_record.json"))
    if not isinstance(existing, dict) or not os.path.isfile(
        os.path.join(final, "info", "index.json")
    ):
        return False
    want = {k: (record or {}).get(k) for k in ("sha256", "md5")}
    if not any(want.values()):
        hasher = _file_hashes(archive)
        want = {"sha256": hasher.sha256.hexdigest(), "md5": hasher.md5.hexdigest()}
    for algo in ("sha256", "md5"):
        if want.get(algo) and existing.get(algo):
            return want[algo].lower() == str(existing[algo]).lower()
    return False


def _remove_tree(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _tmp_tag(entry: str) -> str:
    return entry.replace("/", "%")


def _clean_stale_tmp(layout: CacheLayout, tag: str) -> None:
    # Only called under the entry lock: no live installer of this entry uses these.
    try:
        names = os.listdir(layout.tmp_dir)
    except OSError:
        return
    for name in names:
        if name.startswith(tag + "."):
            _remove_tree(os.path.join(layout.tmp_dir, name))


def _move_into_place(layout: CacheLayout, tag: str, new: str, final: str) -> None:
    os.makedirs(os.path.dirname(final), exist_ok=True)
    for _attempt in range(3):
        if not os.path.lexists(final):
            try:
                os.rename(new, final)
                return
            except OSError:
                if not os.path.lexists(final):
                    raise
                continue  # someone (conda?) created it meanwhile: replace it
        if os.path.isdir(final) and not os.path.islink(final) and _exchange(new, final):
            _remove_tree(new)  # ``new`` now holds the old entry
            return
        aside = tempfile.mkdtemp(prefix=tag + ".old-", dir=layout.tmp_dir)
        os.rename(final, os.path.join(aside, "entry"))
        try:
            os.rename(new, final)
        finally:
            _remove_tree(aside)
        return
    raise ArchiveError(new, f"could not move the extraction into {final}")


def _new_tmp_dir(layout: CacheLayout, tag: str) -> str:
    from .layout import PRIVATE_DIR
    from .safefs import check_private_dir

    check_private_dir(layout.root, PRIVATE_DIR, "tmp")  # never a planted link (safefs)
    path = tempfile.mkdtemp(prefix=tag + ".", dir=layout.tmp_dir)
    os.chmod(path, 0o777 & ~_read_umask())  # mkdtemp's 0700 would become the entry's mode
    return path


def extract_atomic(archive: str, dest_dir: str) -> ExtractStats:
    """Extract into a temp dir in the private area of ``dest_dir``'s parent (a pkgs dir), then
    rename it onto ``dest_dir``, replacing whatever is there. For callers that pick the target
    themselves (conda's extractor plugin); no lock and no repodata_record.json."""
    dest = os.path.abspath(os.fspath(dest_dir))
    layout = CacheLayout(os.path.dirname(dest))
    tag = _tmp_tag(os.path.basename(dest))
    new = _new_tmp_dir(layout, tag)
    try:
        stats = extract_archive(archive, new)
        _move_into_place(layout, tag, new, dest)
    except BaseException:
        _remove_tree(new)
        raise
    return stats


def install_entry(layout: CacheLayout, entry: str, archive: str, record: dict | None = None) -> str:
    """Extract ``archive`` as the cache entry ``entry`` (``layout.extracted(entry)``) and return
    its path. Replaces an existing entry atomically. When another process was installing the
    same entry at the same time, waits for it and, if the result is this archive, keeps it."""
    archive = os.fspath(archive)
    final = layout.extracted(entry)
    ensure_cache_dir(layout)
    lock = FileLock(layout.entry_lock(entry), timeout=0)
    waited = False
    try:
        lock.acquire()
    except LockTimeoutError:
        waited = True
        lock = FileLock(layout.entry_lock(entry), timeout=ENTRY_LOCK_TIMEOUT)
        lock.acquire()
    try:
        if waited and _entry_matches(final, record, archive):
            return final
        tag = _tmp_tag(entry)
        _clean_stale_tmp(layout, tag)
        new = _new_tmp_dir(layout, tag)
        try:
            need_hashes = not (record and record.get("md5") and record.get("sha256"))
            stats = extract_archive(archive, new, hashes=need_hashes)
            index = _read_json(os.path.join(new, "info", "index.json"))
            if not isinstance(index, dict) or not index.get("name"):
                raise ArchiveError(archive, "no readable info/index.json in the package")
            url = None
            if not (record and record.get("url")):
                from .urls import UrlsData

                url = UrlsData(layout.root).get_url(os.path.basename(archive))
            rec = build_repodata_record(index, record, archive, stats, url)
            with open(os.path.join(new, "info", "repodata_record.json"), "w") as fh:
                json.dump(rec, fh, indent=2, sort_keys=True)
            _move_into_place(layout, tag, new, final)
        except BaseException:
            _remove_tree(new)
            raise
        return final
    finally:
        lock.release()
