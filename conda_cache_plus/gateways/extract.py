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
import stat
import time
from dataclasses import asdict, dataclass, field

from ..exceptions import (
    ArchiveError,
    ChecksumMismatchError,
    HostileArchiveError,
    LockTimeoutError,
    LockUnavailableError,
    SizeMismatchError,
    UnsafePathError,
)
from ..model.cache_paths import CacheLayout
from . import tarstream, tmptree
from .cachedir import ensure_cache_dir
from .locks import FileLock, wait_limit
from .package_stream import Hasher, PackageFormatError, package_format, stream_members
from .tmptree import TempTree

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


_DIR, _FILE, _LINK = "d", "f", "l"

# The inflation limit where a package declares its sizes (info/paths.json): what it declares,
# times the factor, plus the fixed slack (info/ files are not in paths.json).
DECLARED_FACTOR = 2
DECLARED_SLACK = 256 << 20


@dataclass(frozen=True)
class InflateLimit:
    """How much one package may write: ``declared`` applies the limit derived from
    ``info/paths.json`` where the package has one; ``max_bytes`` caps every package."""

    declared: bool = True
    max_bytes: int | None = None

    @classmethod
    def parse(cls, value) -> InflateLimit:
        """The setting's value: ``auto`` (default), ``off``, or a size (``50G``) that caps
        every package in addition to what it declares."""
        if value is None or str(value).strip().lower() in ("", "auto", "default"):
            return cls()
        text = str(value).strip().lower()
        if text in ("off", "none", "false", "0", "no"):
            return cls(declared=False)
        from ..model.sizes import parse_size

        return cls(max_bytes=parse_size(text))


NO_LIMIT = InflateLimit(declared=False)
LIMIT_ENV = "CONDA_CACHE_PLUS_EXTRACT_LIMIT"


def default_limit() -> InflateLimit:
    try:
        return InflateLimit.parse(os.environ.get(LIMIT_ENV))
    except ValueError:
        return InflateLimit()


def _declared_bytes(data) -> int | None:
    """Sum of the file sizes ``info/paths.json`` declares; None if it does not declare all."""
    try:
        doc = json.loads(bytes(data))
        total = 0
        for entry in doc["paths"]:
            kind = entry.get("path_type", "hardlink")
            if kind in ("softlink", "directory"):
                continue
            size = entry.get("size_in_bytes")
            if not isinstance(size, int) or size < 0:
                return None
            total += size
        return total
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None


class Cancelled(KeyboardInterrupt):
    """The extraction was asked to stop (Ctrl-C reached the process in another thread)."""


class _Writer:
    """Creates members under ``root``; refuses anything that would land outside it.

    The model (``kinds``, ``links``) is what this writer created; every path it opens is built
    from directories in the model only, so nothing is ever written through a symlink. A member
    under a symlinked directory is resolved through the model: inside the package it lands where
    tar (and conda-package-handling) would put it; through a link leaving the package it is
    refused. A later member of the same name replaces the earlier one (the link itself, never
    what it points to). Names the file system already holds that the model does not know (a
    name differing only in case on a case-insensitive file system, an existing destination)
    are handled the same way.
    """

    def __init__(self, root: str, archive: str, cancel=None, limit: InflateLimit = NO_LIMIT):
        self.root = root.rstrip(os.sep) + os.sep
        self.archive = archive
        self.kinds: dict[str, str] = {"": _DIR}
        self.links: dict[str, str] = {}
        self.stats = ExtractStats()
        self.umask = _read_umask()
        self.cancel = cancel
        self.limit = limit
        self.max_bytes = limit.max_bytes

    def hostile(self, member: str, reason: str) -> HostileArchiveError:
        return HostileArchiveError(self.archive, member, reason)

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel():
            raise Cancelled()

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

    # -- the model ------------------------------------------------------------------------
    def _forget(self, real: str) -> None:
        kind = self.kinds.pop(real, None)
        self.links.pop(real, None)
        if kind == _DIR:
            prefix = real + "/"
            for key in [k for k in self.kinds if k.startswith(prefix)]:
                self.kinds.pop(key)
                self.links.pop(key, None)

    def _alias(self, real: str) -> None:
        """Forget whatever the file system holds at ``real`` under another spelling."""
        folded = real.casefold()
        for key in [k for k in self.kinds if k and k.casefold() == folded]:
            self._forget(key)

    def _mkdir(self, real: str, member: str) -> None:
        try:
            os.mkdir(self.root + real, 0o777)  # the umask applies, as for conda's directories
        except FileExistsError:
            st = os.lstat(self.root + real)
            if not stat.S_ISDIR(st.st_mode):
                raise self.hostile(member, f"{real!r} exists and is not a directory") from None
            self._alias(real)  # a directory under another spelling: the same one
        self.kinds[real] = _DIR
        self.stats.dirs += 1

    def _resolve(self, path: str, member: str, create: bool) -> str | None:
        """The link-free directory ``path`` names (through the model's symlinks); missing
        directories are made when ``create``, else None is returned."""
        done: list[str] = []
        todo = [p for p in reversed(path.split("/")) if p]
        hops = 0
        while todo:
            part = todo.pop()
            if part == ".":
                continue
            if part == "..":
                if not done:
                    raise self.hostile(member, "the path goes through a symlink out of the package")
                done.pop()
                continue
            real = "/".join((*done, part))
            kind = self.kinds.get(real)
            if kind == _DIR:
                done.append(part)
            elif kind == _LINK:
                hops += 1
                target = self.links[real]
                if hops > _MAX_LINK_HOPS or target.startswith("/"):
                    raise self.hostile(
                        member, f"the path goes through the symlink {real!r} out of the package"
                    )
                todo.extend(p for p in reversed(target.split("/")) if p)
            elif kind == _FILE:
                raise self.hostile(member, f"the path goes through the file {real!r}")
            elif create:
                self._mkdir(real, member)
                done.append(part)
            else:
                return None
        return "/".join(done)

    def _place(self, rel: str, member: str) -> str:
        """Where a file, symlink or hard link named ``rel`` goes (link-free), with any earlier
        member of that name removed (the later one wins, as in tar)."""
        parent, _, leaf = rel.rpartition("/")
        if self.kinds.get(parent) != _DIR:
            parent = self._resolve(parent, member, create=True)
        real = f"{parent}/{leaf}" if parent else leaf
        kind = self.kinds.get(real)
        if kind == _DIR:
            raise self.hostile(member, "a directory of the same name came earlier")
        if kind is not None:
            os.unlink(self.root + real)  # a symlink is replaced, never followed
            self._forget(real)
        return real

    def _clear_unknown(self, real: str, member: str) -> None:
        """Make room at ``real`` for a file or link when the file system holds something the
        model does not know (case-insensitive alias, existing destination)."""
        path = self.root + real
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            raise self.hostile(member, "a directory of the same name (in another case) exists")
        os.unlink(path)
        self._alias(real)

    def _create(self, real: str, member: str, make):
        try:
            return make()
        except FileExistsError:
            self._clear_unknown(real, member)
            return make()

    # -- members --------------------------------------------------------------------------
    def add(self, member: tarstream.Member, src: tarstream.ByteSource) -> None:
        self.check_cancel()
        kind = member.type
        rel = self.relpath(member.name)
        if kind == tarstream.REGULAR:
            if not rel:
                raise self.hostile(member.name, "a file at the root of the package")
            real = self._place(rel, member.name)
            self._write(real, member, src)
        elif kind == tarstream.DIRECTORY:
            if self.kinds.get(rel) == _FILE:
                # tar keeps the file (mkdir fails, and is ignored): so do we
                self.stats.skipped.append(member.name)
                return
            self._resolve(rel, member.name, create=True)
        elif kind == tarstream.SYMLINK:
            if not rel:
                raise self.hostile(member.name, "a symlink at the root of the package")
            target = member.linkname
            if not target:
                # Real packages hold these (the zlib .conda in conda's test data): no link can
                # be made, and tarfile (so conda) skips them too.
                self.stats.skipped.append(member.name)
                return
            if "\0" in target:
                raise self.hostile(member.name, "NUL byte in the symlink target")
            self._symlink(self._place(rel, member.name), target, member.name)
        elif kind == tarstream.HARDLINK:
            self._hardlink(rel, member)
        else:
            raise self.hostile(member.name, "device file or fifo")

    def _symlink(self, real: str, target: str, member: str) -> None:
        # A symlink is data, whatever it points to (absolute, or out of the package: conda-build
        # keeps links to system paths); what is refused is writing through one.
        path = self.root + real
        self._create(real, member, lambda: os.symlink(target, path))
        self.kinds[real] = _LINK
        self.links[real] = target
        self.stats.symlinks += 1

    def _hardlink(self, rel: str, member: tarstream.Member) -> None:
        try:
            source = self.relpath(member.linkname)
        except HostileArchiveError:
            raise self.hostile(
                member.name, f"hard link to {member.linkname!r}, outside the package"
            ) from None
        parent, _, leaf = source.rpartition("/")
        parent = self._resolve(parent, member.name, create=False)
        real_source = None if parent is None else (f"{parent}/{leaf}" if parent else leaf)
        kind = self.kinds.get(real_source) if real_source is not None else None
        if kind not in (_FILE, _LINK):
            what = "a directory" if kind == _DIR else "not an earlier member"
            raise self.hostile(member.name, f"hard link to {member.linkname!r}, {what}")
        if not rel or rel == source:
            raise self.hostile(member.name, "hard link to itself")
        if kind == _LINK:
            # GNU tar's hard link to a symlink: the same symlink (tarfile and cph do so too)
            target = self.links[real_source]
            self._symlink(self._place(rel, member.name), target, member.name)
            return
        real = self._place(rel, member.name)
        if real == real_source:
            raise self.hostile(member.name, "hard link to itself")
        src_path, path = self.root + real_source, self.root + real
        self._create(real, member.name, lambda: os.link(src_path, path, follow_symlinks=False))
        # tar applies each member's mode, so a hard link's mode is the inode's from now on
        os.chmod(path, (member.mode & 0o777 & ~self.umask) | 0o600)
        self.kinds[real] = _FILE
        self.stats.hardlinks += 1

    def _write(self, real: str, member: tarstream.Member, src: tarstream.ByteSource) -> None:
        # conda's rule (cph applies ``mode & ~umask``), with owner read/write added and
        # setuid/setgid/sticky dropped: see README "Differences from conda's extractor".
        want = (member.mode & 0o777 & ~self.umask) | 0o600
        size = member.size
        if self.max_bytes is not None and self.stats.bytes + size > self.max_bytes:
            raise self.hostile(
                member.name,
                f"the package inflates to more than {self.max_bytes} bytes, the limit for it "
                f"({self._limit_reason})",
            )
        path = self.root + real
        fd = self._create(real, member.name, lambda: os.open(path, _OPEN_FLAGS, want))
        self.kinds[real] = _FILE
        keep = None
        try:
            if size:
                if size <= tarstream.BLOCK * 2048:
                    data = src.take(size)
                    written = os.write(fd, data)
                    while written < size:
                        written += os.write(fd, data[written:])
                    if real == "info/paths.json":
                        keep = data
                else:
                    for chunk in src.chunks(size):
                        self.check_cancel()
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
            os.utime(path, (member.mtime, member.mtime))
        self.stats.files += 1
        self.stats.bytes += size
        if keep is not None and self.limit.declared:
            self._declare(keep)

    _limit_reason = "the cache_plus_extract_limit setting"

    def _declare(self, paths_json) -> None:
        declared = _declared_bytes(paths_json)
        if declared is None:
            return
        limit = declared * DECLARED_FACTOR + DECLARED_SLACK
        if self.max_bytes is None or limit < self.max_bytes:
            self.max_bytes = limit
            self._limit_reason = (
                f"info/paths.json declares {declared} bytes; the limit is "
                f"{DECLARED_FACTOR}x that plus {DECLARED_SLACK >> 20} MiB"
            )

    def finish(self) -> None:
        pass


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


def extract_archive(
    archive: str,
    dest_dir: str,
    *,
    hashes: bool = False,
    cancel=None,
    limit: InflateLimit | None = None,
    merge: bool = False,
) -> ExtractStats:
    """Stream the ``.conda`` or ``.tar.bz2`` at ``archive`` into ``dest_dir`` (new or empty).

    Raises :class:`~conda_cache_plus.exceptions.HostileArchiveError` for a member that would
    write outside ``dest_dir`` or create a special file, and ``ArchiveError`` for an unreadable
    archive; either way ``dest_dir`` is left as it was. ``hashes=True`` also computes the
    archive's md5 and sha256 during the same read. ``cancel`` (a callable) is polled between
    members and chunks: when it returns true the extraction stops with :class:`Cancelled`.
    ``limit`` bounds what the package may inflate to (default: :func:`default_limit`).
    ``merge=True`` extracts into a non-empty ``dest_dir`` the way conda-package-handling does
    (members replace files of the same name, the rest stays), and leaves it as it is on errors.
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
        if not merge and os.listdir(dest):
            raise ArchiveError(archive, f"the destination {dest} is not empty") from None
    hasher = Hasher() if hashes else None
    writer = _Writer(dest, archive, cancel, default_limit() if limit is None else limit)
    stem = os.path.basename(archive)[: -len(fmt)]
    try:
        with open(archive, "rb") as fh:
            writer.stats.archive_size = os.fstat(fh.fileno()).st_size
            members = stream_members(fh, fmt, hasher, stem)
            try:
                for _component, member, src in members:
                    writer.add(member, src)
            finally:
                members.close()  # stops its decompression thread now, not when collected
        writer.finish()
    except BaseException as exc:  # Ctrl-C included: never leave a half extraction behind
        if created or not merge:
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
    # Trees of versions that extracted into the private area; only called under the entry lock,
    # so no live installer of this entry uses these.
    from ..exceptions import CachePlusError
    from ..model.filenames import PRIVATE_DIR
    from .safefs import check_private_dir

    try:
        check_private_dir(layout.root, PRIVATE_DIR, "tmp", create=False)  # never a planted link
        names = os.listdir(layout.tmp_dir)
    except (OSError, CachePlusError):
        return
    for name in names:
        if name.startswith(tag + "."):
            _remove_tree(os.path.join(layout.tmp_dir, name))


def _move_into_place(tmp: TempTree, new: str, final: str) -> None:
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
            return  # ``new`` now holds the old entry, removed with the temporary tree
        os.rename(final, tmp.scratch("old"))
        os.rename(new, final)
        return
    raise ArchiveError(new, f"could not move the extraction into {final}")


def _lock_entry(parent: str, entry: str, cancel=None, busy=None) -> FileLock | None:
    """The per-entry lock ``install_entry`` (so ``fetch``) takes, when ``parent`` is a package
    cache; None elsewhere, or when the lock directory cannot be written (another user's
    private directory in a shared cache): the extraction is atomic without it."""
    if not os.path.isfile(os.path.join(parent, "urls.txt")):
        return None
    path = CacheLayout(parent).entry_lock(entry)
    deadline = time.monotonic() + ENTRY_LOCK_TIMEOUT
    while True:
        if cancel is not None and cancel():
            raise Cancelled()
        try:
            return FileLock(path, timeout=0 if busy else 0.5).acquire()
        except LockTimeoutError:
            if busy is not None:
                busy()
            if time.monotonic() > deadline:
                raise
        except (OSError, LockUnavailableError, UnsafePathError):
            return None


def _only_trash(path: str) -> bool:
    # conda's path_is_clean: what rm_rf could not delete is renamed *.conda_trash / *.c~
    try:
        return all(".conda_trash" in n or n.endswith(".c~") for n in os.listdir(path))
    except OSError:
        return True


def extract_atomic(
    archive: str,
    dest_dir: str,
    *,
    cancel=None,
    limit: InflateLimit | None = None,
    locked: bool = False,
    busy=None,
    present=None,
    before_move=None,
) -> ExtractStats:
    """Extract into a temporary tree beside ``dest_dir``, then rename it onto ``dest_dir``,
    replacing whatever is there. For callers that pick the target themselves (conda's
    extractor plugin); no repodata_record.json unless ``before_move`` (called with the
    complete temporary tree) writes one. In a package cache, holds the entry's lock, unless
    the caller already does (``locked``); ``busy`` (a callable) is called instead of waiting
    when another process holds it, and raises.

    An existing, non-empty ``dest_dir`` (a third-party caller's; conda removes it first) is
    extracted into the way conda-package-handling does: the package's files replace those of
    the same name and everything else stays (README "Differences from conda's extractor").
    In a package cache that is decided under the entry's lock (another install may have just
    renamed its complete entry there), after ``present(dest)`` had its say (it may raise)."""
    dest = os.path.abspath(os.fspath(dest_dir))
    parent, entry = os.path.split(dest)
    in_cache = os.path.isfile(os.path.join(parent, "urls.txt"))
    if not in_cache and _occupied(dest):
        return extract_archive(
            archive, os.path.realpath(dest), merge=True, cancel=cancel, limit=limit
        )
    os.makedirs(parent, exist_ok=True)  # as cph does
    lock = None if locked else _lock_entry(parent, entry, cancel, busy)
    try:
        if _occupied(dest):
            if present is not None:
                present(dest)
            return extract_archive(
                archive, os.path.realpath(dest), merge=True, cancel=cancel, limit=limit
            )
        tmptree.sweep_once(parent)
        with TempTree(dest) as tmp:
            stats = extract_archive(archive, tmp.tree, cancel=cancel, limit=limit)
            if before_move is not None:
                before_move(tmp.tree)
            _move_into_place(tmp, tmp.tree, dest)
    finally:
        if lock is not None:
            lock.release()
    return stats


def _occupied(dest: str) -> bool:
    return os.path.isdir(dest) and (os.path.islink(dest) or not _only_trash(dest))


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
        lock = FileLock(layout.entry_lock(entry), timeout=wait_limit(ENTRY_LOCK_TIMEOUT))
        lock.acquire()
    try:
        if waited and _entry_matches(final, record, archive):
            return final
        _clean_stale_tmp(layout, _tmp_tag(entry))
        os.makedirs(os.path.dirname(final), exist_ok=True)
        tmptree.sweep_once(os.path.dirname(final))
        with TempTree(final) as tmp:
            new = tmp.tree
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
            _move_into_place(tmp, new, final)
        return final
    finally:
        lock.release()
