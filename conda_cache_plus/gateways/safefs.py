"""Opening our own directories and files without following links planted in them.

Anyone who can write to a shared pkgs dir can replace ``<pkgs>/.conda-cache-plus/tmp`` (or
``locks``, or a ``*.partial``) with a symbolic link to a directory of another user; a tool that
then writes, or deletes, "in its temp dir" does so in the link's target. So our private
directories are opened one component at a time from the pkgs dir with ``O_NOFOLLOW``
(``openat``), and created with ``mkdir`` relative to the verified parent; files in them are
opened relative to that descriptor, again with ``O_NOFOLLOW``. A link is refused and reported
(:class:`~.exceptions.UnsafePathError`), never followed and never deleted through.

The pkgs dir itself may legitimately be reached through links (a user's ``~/conda/pkgs`` on
another disk); only what lies below it is ours to vouch for.
"""

from __future__ import annotations

import errno
import os
import stat
from contextlib import contextmanager

from ..exceptions import UnsafePathError

_DIR_FLAGS = (
    os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
)
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _refusal(path: str) -> UnsafePathError:
    try:
        st = os.lstat(path)
    except OSError:
        return UnsafePathError(path, "it changed while being opened")
    if stat.S_ISLNK(st.st_mode):
        return UnsafePathError(path, f"it is a symbolic link (to {os.readlink(path)!r})")
    return UnsafePathError(path, "it is not a directory")


def shared_bits(parent_mode: int, *, directory: bool) -> int:
    """The group/other bits something created in a directory of mode ``parent_mode`` must get
    so that everyone who may write that directory may use it too (0 in a private directory):
    a group's shared cache (group-writable, setgid) keeps its private dirs and lock files
    usable by every member, whatever the umask of the member who created them."""
    out = 0
    if parent_mode & stat.S_IWGRP:
        out |= stat.S_IRGRP | stat.S_IWGRP | (stat.S_IXGRP if directory else 0)
    if parent_mode & stat.S_IWOTH:
        out |= stat.S_IROTH | stat.S_IWOTH | (stat.S_IXOTH if directory else 0)
    return out


def open_private_dir(root: str, parts: tuple[str, ...] | list[str], *, create: bool = True) -> int:
    """A descriptor of ``root/parts...`` opened without following a link below ``root``.

    Missing components are created (mode 0777 & ~umask) when ``create``; a link or a
    non-directory raises :class:`UnsafePathError`; other failures raise ``OSError``.
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    path = root
    try:
        for part in parts:
            path = os.path.join(path, part)
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(part, 0o777, dir_fd=fd)
                    made = True
                except FileExistsError:
                    made = False
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise _refusal(path) from None
                    raise
                if made:
                    extra = shared_bits(os.fstat(fd).st_mode, directory=True)
                    if extra:
                        try:
                            os.fchmod(child, stat.S_IMODE(os.fstat(child).st_mode) | extra)
                        except OSError:
                            pass
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _refusal(path) from None
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextmanager
def private_dir(root: str, *parts: str, create: bool = True):
    """``with private_dir(pkgs, ".conda-cache-plus", "tmp") as fd:`` (see open_private_dir)."""
    fd = open_private_dir(root, parts, create=create)
    try:
        yield fd
    finally:
        os.close(fd)


def check_private_dir(root: str, *parts: str, create: bool = True) -> str:
    """Verify (creating it if asked) that ``root/parts...`` is a real directory; its path."""
    os.close(open_private_dir(root, parts, create=create))
    return os.path.join(root, *parts)


def open_nofollow(path: str, flags: int, mode: int = 0o666, *, dir_fd: int | None = None) -> int:
    """``os.open`` that refuses (UnsafePathError) to open through a link at the last component."""
    try:
        return os.open(path, flags | NOFOLLOW, mode, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(path, "it is a symbolic link") from None
        raise


def split_private(path: str) -> tuple[str, tuple[str, ...], str] | None:
    """``(pkgs dir, private parts, file name)`` for a path inside a private area, else None."""
    from ..model.filenames import PRIVATE_DIR

    parts = path.split(os.sep)
    if PRIVATE_DIR not in parts[:-1]:
        return None
    i = len(parts) - 2 - parts[:-1][::-1].index(PRIVATE_DIR)
    root = os.sep.join(parts[:i]) or os.sep
    return root, tuple(parts[i:-1]), parts[-1]
