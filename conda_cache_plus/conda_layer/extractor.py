"""Our extractor as a conda package extractor plugin (conda >= 26.1), behind a setting.

conda picks the extractor of an extension from its plugins sorted by name, the last one winning
(``get_package_extractors`` in conda's ``conda/plugins/manager.py``), so the name sorts after
conda's own ``conda-package``. Taking over ``.conda`` and ``.tar.bz2`` also makes conda give up its
extraction process pool for thread workers; it is on by default all the same, because conda's own
pipeline is faster with it (``conda create`` of 50 packages, quiet machine: 0.90x the time and
0.81x the CPU on disk, 0.91x and 0.78x on tmpfs; see docs/benchmarks.md), and it makes conda's
extraction atomic and hostile-safe. The ``cache_plus_extractor`` setting turns it off.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import functools
import os
import threading

SETTING_NAME = "cache_plus_extractor"
EXTRACTOR_NAME = "conda-package-cache-plus"
EXTENSIONS = [".conda", ".tar.bz2"]
SETTING_DESCRIPTION = (
    "Extract .conda and .tar.bz2 packages with conda-cache-plus's extractor (atomic: a crash "
    "never leaves a half-extracted package; refuses hostile archives) instead of "
    "conda-package-handling."
)


def enabled() -> bool:
    """The setting's value (True unless turned off); False whenever conda's context cannot
    answer, so a broken configuration leaves conda with its own extractor."""
    try:
        from conda.base.context import context

        return bool(getattr(context.plugins, SETTING_NAME, True))
    except Exception:
        return False


LIMIT_SETTING_NAME = "cache_plus_extract_limit"
LIMIT_SETTING_DESCRIPTION = (
    "How much one package may inflate to when conda-cache-plus extracts it: 'auto' (what the "
    "package's info/paths.json declares, twice over plus 256 MiB), 'off', or a size such as "
    "'50G' that caps every package as well."
)
TURN_OFF_HINT = (
    "conda's own extractor can be used instead: "
    "conda config --set plugins.cache_plus_extractor false"
)


def _limit():
    from ..gateways.extract import InflateLimit, default_limit

    try:
        from conda.base.context import context

        value = getattr(context.plugins, LIMIT_SETTING_NAME, None)
    except Exception:
        value = None
    if value is None:
        return default_limit()
    try:
        return InflateLimit.parse(value)
    except ValueError:
        return InflateLimit()


class _Interrupts:
    """Ctrl-C for extractions running in conda's worker threads.

    conda runs extractions in a thread pool, and on SIGINT its handler raises in the main
    thread, which then waits for every extraction to finish: a decompression bomb would keep
    writing for minutes. The handler also calls ``send_signal`` on everything in
    ``conda.ACTIVE_SUBPROCESSES`` that ``poll()``s as running; this object is registered there
    once, looks running while an extraction is, and counts the signals, so each extraction can
    see one arrive after it started and stop within one member or one megabyte.
    """

    def __init__(self):
        self.count = 0
        self.active = 0
        self.mutex = threading.Lock()

    def enter(self) -> int:
        with self.mutex:
            self.active += 1
        return self.count

    def leave(self) -> None:
        with self.mutex:
            self.active -= 1

    def poll(self):
        return None if self.active else 0

    def send_signal(self, signum) -> None:
        self.count += 1

    # conda may call these on shutdown, as on a Popen
    def terminate(self) -> None:
        self.count += 1

    kill = terminate


_interrupts: _Interrupts | None = None


EXIT_WAIT = 30.0  # seconds the exiting interpreter waits for extractions to clean up


def _register_interrupts() -> _Interrupts:
    global _interrupts
    if _interrupts is None:
        _interrupts = _Interrupts()
        try:
            import conda

            conda.ACTIVE_SUBPROCESSES.add(_interrupts)
        except (ImportError, AttributeError):
            pass
        atexit.register(_stop_at_exit, _interrupts)
    return _interrupts


def _stop_at_exit(interrupts: _Interrupts) -> None:
    # conda < 26.7 does not wait for its extraction threads after an interrupt, and the
    # interpreter stops them mid-write at exit: stop them first, and let them remove their trees.
    import time

    interrupts.terminate()
    deadline = time.monotonic() + EXIT_WAIT
    while interrupts.active and time.monotonic() < deadline:
        time.sleep(0.02)


def _exiting() -> bool:
    """Whether the interpreter is on its way out (conda < 26.7 leaves its extraction pool on
    an interrupt; Python then waits for the workers at exit, after setting this flag)."""
    import concurrent.futures.thread as cft

    return bool(getattr(cft, "_shutdown", False)) or not threading.main_thread().is_alive()


def _conda_error(message: str) -> Exception:
    """An error conda reports without deleting the archive.

    conda's cache scan (``_make_single_record``) deletes the tarball after any ``OSError`` or
    cph ``InvalidArchiveError`` from the extractor whose errno is ``ENOENT``. A ``ValidationError``
    is what that scan catches as "cannot make a record": it warns and keeps the files. As a
    ``CondaError`` it prints as a one-line error in ``conda create``/``install``.
    """
    return _error_class()(message.replace("%", "%%"))


@functools.cache
def _error_class() -> type:
    from conda import CondaError
    from conda.auxlib.exceptions import ValidationError

    class CachePlusExtractError(CondaError, ValidationError):
        def __init__(self, msg: str):
            CondaError.__init__(self, msg)

    return CachePlusExtractError


def _kept(src: str) -> str:
    # conda may have moved the archive aside meanwhile (CacheUrlAction): say so only if true
    if os.path.isfile(src):
        return f"The archive was kept at {src}. "
    return f"The archive is no longer at {src}. "


@contextlib.contextmanager
def _rattler_lock(pkgs_dir: str):
    """rattler's whole-cache lock (``flock`` on ``.cache.lock``), held around an extraction
    when rattler (pixi) uses this cache too, so the two never write one entry at once."""
    path = os.path.join(pkgs_dir, ".cache.lock")
    if not os.path.isfile(path):
        yield
        return
    from ..exceptions import CachePlusError
    from ..gateways.locks import FLOCK, FileLock
    from .transaction_locks import lock_timeout

    try:
        lock = FileLock(path, kind=FLOCK, timeout=lock_timeout()).acquire()
    except (CachePlusError, OSError):
        lock = None  # as conda would: go on
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def extract(source_full_path, destination_directory) -> None:
    """conda's ``PackageExtract``: ``(archive, destination dir) -> None``."""
    from ..exceptions import ArchiveError, HostileArchiveError
    from ..gateways.extract import Cancelled, extract_atomic
    from ..model.names import component_problem

    src = os.fspath(source_full_path)
    dest = os.fspath(destination_directory)
    package = os.path.basename(src)
    why = component_problem(os.path.basename(dest.rstrip(os.sep)))
    if why:
        # conda names the directory after the archive: '...conda' gives '<pkgs>/..', which
        # would spread the package over the cache's parent (names.py)
        raise _conda_error(
            f"conda-cache-plus refused to extract {package} into {dest}: the directory name "
            f"{why}. Nothing was written. {_kept(src).rstrip()}"
        )
    from .transaction_locks import entry_hold, refuse_busy_in_scan, refuse_present_in_scan

    hold = entry_hold(dest)
    if hold is not None:
        # this install's transaction holds the entry (transaction_locks): no second lock, and the
        # record goes in before the entry appears
        how = {"locked": True, "before_move": hold.write_record}
    else:
        how = {
            "busy": functools.partial(refuse_busy_in_scan, package),
            "present": functools.partial(refuse_present_in_scan, package),
        }
    interrupts = _register_interrupts()
    start = interrupts.enter()
    try:
        with _rattler_lock(os.path.dirname(dest)):
            extract_atomic(
                src,
                dest,
                cancel=lambda: interrupts.count != start or _exiting(),
                limit=_limit(),
                **how,
            )
    except HostileArchiveError as exc:
        raise _conda_error(
            f"conda-cache-plus refused to extract {package}: member {exc.member!r}: "
            f"{exc.why}. {_kept(src)}{TURN_OFF_HINT}"
        ) from None
    except ArchiveError as exc:
        raise _conda_error(
            f"conda-cache-plus could not extract {package}: {exc.reason}. "
            f"{_kept(src)}{TURN_OFF_HINT}"
        ) from None
    except Cancelled:
        if threading.current_thread() is threading.main_thread():
            raise KeyboardInterrupt from None
        raise _conda_error(f"extraction of {package} cancelled (interrupted)") from None
    except OSError as exc:
        where = exc.filename or dest
        if exc.errno == errno.ENOSPC:
            reason = f"no space left on the device of {os.path.dirname(dest)}"
        else:
            reason = f"{exc.strerror or exc} ({where})"
        raise _conda_error(
            f"conda-cache-plus could not extract {package} into {dest}: {reason}. "
            f"Nothing was left there. {_kept(src)}".rstrip()
        ) from None
    finally:
        interrupts.leave()
