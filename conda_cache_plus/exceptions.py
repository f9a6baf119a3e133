"""Every domain error of conda-cache-plus, and the one place that turns them into exit codes.

Each error is built from structured fields (paths, expected, actual) and its message says what to
do. Findings about a cache (a broken entry, a missing file) are *data*, not exceptions: only what
stops a verb from doing its job is raised.
"""

from __future__ import annotations

# Exit codes, in one place. 1 is "something in the cache is wrong" (verify found problems),
# 2 is a usage error (argparse's own), higher codes are operational failures.
EXIT_OK = 0
EXIT_PROBLEMS_FOUND = 1
EXIT_USAGE = 2
EXIT_ERROR = 3
EXIT_INTERRUPTED = 130


class CachePlusError(Exception):
    """Base class; ``exit_code`` is what the CLI returns when this escapes a verb."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        # Subclasses take structured fields, not the message: rebuild from the attributes, so
        # an error raised in a worker process (extraction pool) arrives whole in the parent.
        return (_rebuild_error, (type(self), self.args), self.__dict__)


def _rebuild_error(cls, args):
    exc = cls.__new__(cls)
    exc.args = args
    return exc


class UsageError(CachePlusError):
    exit_code = EXIT_USAGE


class InvalidSpecError(UsageError):
    def __init__(self, spec: str, reason: str):
        self.spec = spec
        self.reason = reason
        super().__init__(f"invalid package spec {spec!r}: {reason}")


class NoWritableCacheError(CachePlusError):
    def __init__(self, pkgs_dirs: list[str]):
        self.pkgs_dirs = list(pkgs_dirs)
        listed = ", ".join(self.pkgs_dirs) or "(none configured)"
        super().__init__(
            f"no writable package cache among: {listed}. "
            "Add a writable directory to pkgs_dirs (or pass --pkgs-dir DIR)."
        )


class NotWritableError(CachePlusError):
    def __init__(self, path: str, reason: str = "read-only"):
        self.path = path
        self.reason = reason
        super().__init__(f"cannot write to {path} ({reason}); nothing was changed there.")


class LockTimeoutError(CachePlusError):
    def __init__(self, path: str, holder: str, waited: float):
        self.path = path
        self.holder = holder
        self.waited = waited
        super().__init__(
            f"{path} is locked by {holder}; gave up after {waited:.0f}s. "
            "Wait for the other conda/mamba process to finish, then try again."
        )


class ChecksumMismatchError(CachePlusError):
    def __init__(self, url: str, path: str, algorithm: str, expected: str, actual: str):
        self.url = url
        self.path = path
        self.algorithm = algorithm
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"{algorithm} mismatch for {url}: expected {expected}, got {actual}. "
            "The download was discarded; nothing in the cache was changed. "
            "If the channel changed this file, refresh its repodata and try again."
        )


class SizeMismatchError(CachePlusError):
    def __init__(self, url: str, path: str, expected: int, actual: int):
        self.url = url
        self.path = path
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"size mismatch for {url}: expected {expected} bytes, got {actual}. "
            "The download was discarded; nothing in the cache was changed."
        )


class DownloadError(CachePlusError):
    def __init__(self, url: str, reason: str, status: int | None = None):
        self.url = url
        self.reason = reason
        self.status = status
        # a file:// source keeps its status (404: do not retry) but is no HTTP answer
        code = f"HTTP {status}: " if status and not url.startswith("file:") else ""
        super().__init__(f"could not download {url}: {code}{reason}")


class OfflineError(CachePlusError):
    def __init__(self, url: str):
        self.url = url
        super().__init__(
            f"offline mode is on, so {url} was not downloaded. "
            "Turn offline mode off, or use a file:// channel."
        )


class DownloadCancelled(CachePlusError):
    """A transfer stopped on request (Ctrl-C); its partial file is kept for a resume."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self, path: str):
        self.path = path
        super().__init__(f"cancelled; {path} was kept and the next fetch resumes it")


class FetchFailedError(CachePlusError):
    """Some packages of a fetch could not be put into the cache (each failure is listed)."""

    # Failures that the same command, run again, meets again: what the cache or its owner must
    # change first (a lock or directory another user's, a planted link, a refused name or archive)
    PERMANENT = frozenset(
        {
            "LockUnavailableError",
            "NotWritableError",
            "UnsafePathError",
            "UnsafeNameError",
            "RefusedArchiveError",
            "PermissionError",
        }
    )

    def __init__(self, failures: list[tuple[str, str]], types: list[str | None] | None = None):
        self.failures = list(failures)
        lines = "\n".join(f"  {fn}: {reason}" for fn, reason in self.failures)
        permanent = sum(1 for t in types or [] if t in self.PERMANENT)
        if not permanent:
            advice = "run the same command again to retry the rest."
        elif permanent == len(self.failures):
            advice = "running it again will not help: each line says what must change first."
        else:
            advice = (
                "running it again retries the others; for the "
                f"{permanent} whose line says what must change, it will not help."
            )
        super().__init__(
            f"{len(self.failures)} package(s) could not be fetched:\n{lines}\n"
            f"Everything else was completed; {advice}"
        )


class ArchiveError(CachePlusError):
    """A package archive that cannot be read (truncated, not an archive, bad metadata)."""

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"cannot extract {path}: {reason}")


class HostileArchiveError(ArchiveError):
    """An archive that tries to write outside its target or to create special files."""

    def __init__(self, path: str, member: str, reason: str):
        self.member = member
        self.why = reason
        super().__init__(path, f"refused member {member!r}: {reason}; nothing was extracted")


class InputError(UsageError):
    """An input file, URL or option value that cannot be used (missing, not UTF-8, malformed)."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class UnsafeNameError(UsageError, ValueError):
    """A package file name, dist or path part that could leave the cache or confuse conda's scan
    ('.', '..', separators, NUL or control characters, too long). Refused before any write."""

    def __init__(self, name: str, reason: str, source: str | None = None):
        self.name = name
        self.reason = reason
        self.source = source
        where = f" (in {source})" if source and source != name else ""
        super().__init__(f"refused the package name {name!r}{where}: {reason}; nothing was written")


class UnsafePathError(CachePlusError):
    """A link (or other non-directory) planted where conda-cache-plus keeps its own files."""

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(
            f"refusing to use {path}: {reason}. Nothing was written or deleted through it; "
            "remove it (conda cache clean --temp) and try again."
        )


class LockUnavailableError(CachePlusError):
    """A lock that cannot be taken at all (not busy: its file cannot be created or opened)."""

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"cannot take the lock {path}: {reason}")


class RefusedArchiveError(CachePlusError):
    """fetch refused an archive (hostile or unreadable) and removed it from the cache."""

    def __init__(self, path: str, reason: str, removed: bool):
        self.path = path
        self.reason = reason
        self.removed = removed
        tail = "it was removed from the cache" if removed else "it could not be removed"
        super().__init__(f"refused {path}: {reason}; {tail}")


class UserAbort(CachePlusError):
    """The user answered no. Like conda ("Exiting.", exit 0): a choice, not an error."""

    exit_code = EXIT_OK

    def __init__(self, message: str = "Aborted; nothing was changed."):
        super().__init__(message)


class DryRunExit(CachePlusError):
    exit_code = EXIT_OK

    def __init__(self):
        super().__init__("Dry run: nothing was changed.")


def exit_code_for(exc: BaseException) -> int:
    """The single mapping from an exception escaping a verb to the process exit code."""
    if isinstance(exc, CachePlusError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_ERROR
