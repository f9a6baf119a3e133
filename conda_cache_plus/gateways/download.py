"""Download one package archive into a cache: resumable, locked, verified while streaming.

The protocol is conda's (``conda/gateways/connection/download.py``), so conda, mamba and we can
share a cache:

- bytes go to ``<target>.partial``, on which conda's byte-21 lock is held while writing;
- a partial is resumed with a ``Range`` request only when a checksum is known (otherwise a
  resumed file could never be trusted); a ``200`` answer restarts it;
- sha256 (md5 when there is no sha256) and the size are computed while the bytes stream, then
  checked; a mismatch removes the partial and changes nothing else;
- on success the partial is renamed onto the target and the URL appended to ``urls.txt``.

Under conda the request goes through conda's session for the URL (auth handlers, proxies,
``ssl_verify``, client certificates, retries) with conda's timeouts. Without conda it is the
standard library, with one kept-alive connection per host and thread.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import shutil
import socket
import ssl
import stat
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from .. import __version__
from ..exceptions import (
    ChecksumMismatchError,
    DownloadCancelled,
    DownloadError,
    InputError,
    LockTimeoutError,
    OfflineError,
    SizeMismatchError,
    UnsafePathError,
)
from ..model.cache_paths import CacheLayout
from ..model.host import conda_host, require_conda_host
from .locks import lock_conda_byte
from .safefs import open_nofollow

CHUNK = 1 << 18
DEFAULT_CONNECT_TIMEOUT = 9.15  # conda's remote_connect_timeout_secs
DEFAULT_READ_TIMEOUT = 60.0  # conda's remote_read_timeout_secs
MAX_REDIRECTS = 10
# How long we wait for another process (conda, mamba, ours) that is writing the same partial.
PARTIAL_LOCK_WAIT = 3600.0
USER_AGENT = f"conda-cache-plus/{__version__}"

Progress = Callable[[float], None]


@dataclass
class DownloadResult:
    url: str
    target: str
    size: int
    sha256: str
    md5: str
    transferred: int = 0  # bytes that came over the wire this time
    resumed_from: int = 0  # bytes of an earlier partial that were kept
    reused: bool = False  # another process had already put a verified file there


def strip_fragment(url: str) -> str:
    return url.split("#", 1)[0]


def is_file_url(url: str) -> bool:
    return url[:7].lower() == "file://"


def file_url_path(url: str) -> str:
    parsed = urllib.parse.urlparse(strip_fragment(url))
    return urllib.request.url2pathname(parsed.path)


def path_to_url(path: str) -> str:
    return "file://" + urllib.request.pathname2url(os.path.abspath(path))


def timeouts(run=None) -> tuple[float, float]:
    """(connect, read) seconds: conda's settings under conda, else the same env vars."""
    if run is not None and getattr(run, "conda", False):
        ctx = require_conda_host().context()
        return float(ctx.remote_connect_timeout_secs), float(ctx.remote_read_timeout_secs)

    def env(name: str, default: float) -> float:
        try:
            return float(os.environ[name])
        except (KeyError, ValueError):
            return default

    return (
        env("CONDA_REMOTE_CONNECT_TIMEOUT_SECS", DEFAULT_CONNECT_TIMEOUT),
        env("CONDA_REMOTE_READ_TIMEOUT_SECS", DEFAULT_READ_TIMEOUT),
    )


def hash_file(path: str) -> tuple[int, str, str]:
    """(size, sha256, md5) of a file, read once."""
    sha, md5 = hashlib.sha256(), hashlib.md5()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest(), md5.hexdigest()


def expected_checksum(sha256: str | None, md5: str | None) -> tuple[str, str] | None:
    """The checksum we verify against: sha256 where known, else md5 (conda's preference)."""
    if sha256:
        return "sha256", sha256.lower()
    if md5:
        return "md5", md5.lower()
    return None


def check_digests(url, path, *, size, sha256, md5, got_size, got_sha256, got_md5) -> None:
    want = expected_checksum(sha256, md5)
    if want is not None:
        algo, value = want
        actual = got_sha256 if algo == "sha256" else got_md5
        if actual != value:
            raise ChecksumMismatchError(url, path, algo, value, actual)
    if size is not None and got_size != size:
        raise SizeMismatchError(url, path, size, got_size)


# -- the partial file and its lock -------------------------------------------------------------
def _open_locked_partial(partial: str, cancel: threading.Event | None) -> int:
    """Open (creating) ``partial`` and hold conda's byte-21 lock on it.

    A holder finishing its download renames the partial away while we wait, so after getting the
    lock we check the path still names the file we locked; if not, we start over on a new one.
    """
    start = time.monotonic()
    while True:
        # never through a planted link: conda writes to a symlinked .partial's target, we refuse
        fd = open_nofollow(partial, os.O_RDWR | os.O_CREAT)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise UnsafePathError(partial, "it is not a regular file")
        try:
            while True:
                if cancel is not None and cancel.is_set():
                    raise DownloadCancelled(partial)
                try:
                    lock_conda_byte(fd, timeout=0.2)
                    break
                except LockTimeoutError:
                    if time.monotonic() - start > PARTIAL_LOCK_WAIT:
                        raise LockTimeoutError(
                            partial, "conda, mamba or another conda-cache-plus", PARTIAL_LOCK_WAIT
                        ) from None
            st = os.fstat(fd)
            try:
                now = os.lstat(partial)
            except FileNotFoundError:
                now = None
            if now is not None and (now.st_ino, now.st_dev) == (st.st_ino, st.st_dev):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _is_regular_file(path: str) -> bool:
    """A regular file itself, not a link to one (a link is never trusted as a download)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# -- transports ---------------------------------------------------------------------------------
class _Digests:
    """sha256 and md5 fed together, restartable when a server ignores a Range."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.sha = hashlib.sha256()
        self.md5 = hashlib.md5()

    def update(self, chunk) -> None:
        self.sha.update(chunk)
        self.md5.update(chunk)


class _Response:
    """What a transport hands back: status, length, and the body in chunks."""

    status: int
    length: int | None

    def chunks(self):
        raise NotImplementedError

    def socket(self):
        """The connection's socket while the body streams, or None when it cannot be reached."""
        return None

    def close(self) -> None:
        pass


class _CancelWatch:
    """Shut down a transfer's socket as soon as ``cancel`` is set.

    A read waiting on a slow or silent server returns only when bytes arrive or the read
    timeout (a minute) passes; Ctrl-C must not wait for either. Shutting the socket down from
    a watcher wakes the read at once; the transfer then sees the flag and stops, keeping what
    arrived for the resume.

    One watcher thread per flag serves every transfer under it (:class:`_Watcher`): a thread
    per transfer cost a thread start and ten wake-ups a second each, more context switches than
    the transfers themselves made on a fast link (48 packages over loopback: 250-370 without
    any watcher, 1,000-1,900 with one per transfer).
    """

    def __init__(self, cancel: threading.Event | None):
        self._cancel = cancel

    def watch(self, sock) -> None:
        if self._cancel is not None and sock is not None:
            _Watcher.register(self._cancel, self, sock)  # replaces this transfer's last socket

    def close(self) -> None:
        if self._cancel is not None:
            _Watcher.unregister(self._cancel, self)


class _Watcher:
    """The thread that watches one cancel flag for the sockets of all its transfers. It ends
    once the flag is set (after shutting them all down) or when it had nothing to watch for
    ``IDLE_POLLS`` looks in a row; :meth:`register` then starts a new one."""

    POLL = 0.1  # seconds between looks at the flag (threading.Event has no callbacks)
    IDLE_POLLS = 2
    # Guards the registry and every watcher's sockets: a socket is shut down only while it is
    # registered, so never after its transfer closed it (and maybe kept the connection).
    _lock = threading.Lock()
    _by_flag: dict[int, _Watcher] = {}

    def __init__(self, cancel: threading.Event):
        self.cancel = cancel
        self.socks: dict[_CancelWatch, object] = {}

    @classmethod
    def register(cls, cancel: threading.Event, handle: _CancelWatch, sock) -> None:
        with cls._lock:
            watcher = cls._by_flag.get(id(cancel))
            if watcher is None or watcher.cancel is not cancel:
                watcher = cls._by_flag[id(cancel)] = cls(cancel)
                threading.Thread(target=watcher._run, name="cpx-cancel-watch", daemon=True).start()
            watcher.socks[handle] = sock

    @classmethod
    def unregister(cls, cancel: threading.Event, handle: _CancelWatch) -> None:
        with cls._lock:
            watcher = cls._by_flag.get(id(cancel))
            if watcher is not None and watcher.cancel is cancel:
                watcher.socks.pop(handle, None)

    def _run(self) -> None:
        idle = 0
        while True:
            stop = self.cancel.wait(self.POLL)
            with self._lock:
                if stop:
                    for sock in self.socks.values():
                        try:
                            sock.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass  # closed meanwhile
                    self.socks.clear()
                idle = 0 if self.socks else idle + 1
                if stop or idle >= self.IDLE_POLLS:
                    if self._by_flag.get(id(self.cancel)) is self:
                        del self._by_flag[id(self.cancel)]
                    return


class _StdlibResponse(_Response):
    def __init__(self, resp: http.client.HTTPResponse, conn, pool_key, pool):
        self.resp = resp
        self.status = resp.status
        length = resp.getheader("Content-Length")
        self.length = int(length) if length and length.isdigit() else None
        self._conn = conn
        self._pool_key = pool_key
        self._pool = pool
        self._done = False

    def chunks(self):
        # read1 hands over what has arrived (up to CHUNK): a slow link moves the progress and
        # the partial with every packet, and the cancel flag is seen between packets; read()
        # would wait until a whole CHUNK came (seconds to minutes on a slow link).
        read = self.resp.read1
        while True:
            data = read(CHUNK)
            if not data:
                break
            yield data
        self._done = not self.resp.length  # the whole body: the connection can be reused
        if self._done:
            self.resp.read()  # read1 leaves the finished response open; read() closes it

    def socket(self):
        return self._conn.sock

    def close(self) -> None:
        if self._done and not self.resp.will_close:
            self._pool[self._pool_key] = self._conn  # keep alive for the next request
        else:
            self.resp.close()
            self._conn.close()


class _RequestsResponse(_Response):
    def __init__(self, resp):
        self.resp = resp
        self.status = resp.status_code
        length = resp.headers.get("Content-Length")
        self.length = int(length) if length and length.isdigit() else None

    def socket(self):
        conn = getattr(self.resp.raw, "connection", None) or getattr(
            self.resp.raw, "_connection", None
        )
        return getattr(conn, "sock", None)

    def chunks(self):
        raw = self.resp.raw
        if hasattr(raw, "read1"):
            # read1 hands over what has arrived; iter_content would drop a whole chunk's worth
            # of received bytes when the connection is cut, and those are what a resume keeps.
            while data := raw.read1(CHUNK):
                yield data
        else:
            yield from self.resp.iter_content(CHUNK)

    def close(self) -> None:
        self.resp.close()


_local = threading.local()


def _ssl_context() -> ssl.SSLContext:
    verify = os.environ.get("CONDA_SSL_VERIFY", "").strip()
    if verify.lower() in ("false", "0", "no"):
        ctx = ssl._create_unverified_context()
        return ctx
    cafile = None
    if verify and verify.lower() not in ("true", "1", "yes", "truststore"):
        cafile = verify
    cafile = cafile or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE")
    if cafile and os.path.isdir(cafile):
        return ssl.create_default_context(capath=cafile)
    return ssl.create_default_context(cafile=cafile or None)


def _proxy_for(scheme: str, host: str) -> str | None:
    proxies = urllib.request.getproxies()
    if scheme in proxies and not urllib.request.proxy_bypass(host):
        return proxies[scheme]
    return None


def _auth_header(userinfo: str) -> str:
    return "Basic " + base64.b64encode(urllib.parse.unquote(userinfo).encode()).decode()


def _stdlib_request(
    url: str, offset: int, tmo: tuple[float, float], watch: _CancelWatch | None = None
) -> _Response:
    pool = getattr(_local, "pool", None)
    if pool is None:
        pool = _local.pool = {}
    for _ in range(MAX_REDIRECTS):
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise DownloadError(url, f"unsupported URL scheme {scheme!r} without conda")
        host = parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if "@" in parts.netloc:
            headers["Authorization"] = _auth_header(parts.netloc.rsplit("@", 1)[0])
        if offset:
            headers["Range"] = f"bytes={offset}-"
        proxy = _proxy_for(scheme, host)
        key = (scheme, host, port, proxy)
        resp = None
        # A kept-alive connection may have been closed by the server meanwhile: one retry on a
        # fresh connection, only when the old one failed before any answer came.
        for attempt in (0, 1):
            conn = pool.pop(key, None) if attempt == 0 else None
            reused = conn is not None
            if conn is None:
                conn = _connect(scheme, host, port, proxy, tmo, headers)
            target = path if proxy is None or scheme == "https" else url.split("#", 1)[0]
            try:
                if conn.sock is None:
                    conn.connect()
                    conn.sock.settimeout(tmo[1])
                if watch is not None:  # from here on, also a server slow to answer is left
                    watch.watch(conn.sock)
                conn.request("GET", target, headers=headers)
                resp = conn.getresponse()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                conn.close()
                if not reused:
                    raise
        assert resp is not None
        if resp.status in (301, 302, 303, 307, 308):
            location = resp.getheader("Location")
            resp.read()
            if resp.will_close:
                conn.close()
            else:
                pool[key] = conn
            if not location:
                raise DownloadError(url, "redirect without a Location header", resp.status)
            url = urllib.parse.urljoin(url, location)
            continue
        return _StdlibResponse(resp, conn, key, pool)
    raise DownloadError(url, f"more than {MAX_REDIRECTS} redirects")


def _connect(scheme, host, port, proxy, tmo, headers):
    if proxy:
        p = urllib.parse.urlsplit(proxy)
        if "@" in p.netloc:
            headers["Proxy-Authorization"] = _auth_header(p.netloc.rsplit("@", 1)[0])
        phost, pport = p.hostname or "", p.port or 8080
        if scheme == "https":
            conn = http.client.HTTPSConnection(phost, pport, timeout=tmo[0], context=_ssl_context())
            tunnel_headers = {}
            if "Proxy-Authorization" in headers:
                tunnel_headers["Proxy-Authorization"] = headers.pop("Proxy-Authorization")
            conn.set_tunnel(host, port, headers=tunnel_headers)
            return conn
        return http.client.HTTPConnection(phost, pport, timeout=tmo[0])
    if scheme == "https":
        return http.client.HTTPSConnection(host, port, timeout=tmo[0], context=_ssl_context())
    return http.client.HTTPConnection(host, port, timeout=tmo[0])


def _conda_request(url: str, offset: int, tmo: tuple[float, float]) -> _Response:
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return _RequestsResponse(require_conda_host().http_get(url, headers, tmo))


def _conda_error(exc: BaseException, url: str) -> BaseException | None:
    """conda/requests errors as ours, or None when ``exc`` is not one of theirs."""
    host = conda_host()
    return host.translate_error(exc, url) if host is not None else None


# -- the download ---------------------------------------------------------------------------------
def download(
    url: str,
    target: str,
    *,
    size: int | None = None,
    sha256: str | None = None,
    md5: str | None = None,
    progress: Progress | None = None,
    run=None,
    cancel: threading.Event | None = None,
    record_url: bool = True,
) -> DownloadResult:
    """Fetch ``url`` into ``target`` (via ``target + '.partial'``), verified; see the module doc.

    ``progress`` gets a fraction in [0, 1] as bytes arrive (when the total is known).
    ``cancel`` set from another thread stops the transfer, keeping the partial for a resume.
    ``record_url`` appends the URL to the ``urls.txt`` of the target's directory, if it has one.
    """
    url = strip_fragment(url)
    if run is not None and run.offline and not is_file_url(url):
        raise OfflineError(url)
    partial = target + ".partial"
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    fd = _open_locked_partial(partial, cancel)
    try:
        if _is_regular_file(target) and expected_checksum(sha256, md5):
            # Someone finished this file while we waited for the lock: trust it once verified.
            got = hash_file(target)
            try:
                check_digests(
                    url,
                    target,
                    size=size,
                    sha256=sha256,
                    md5=md5,
                    got_size=got[0],
                    got_sha256=got[1],
                    got_md5=got[2],
                )
            except (ChecksumMismatchError, SizeMismatchError):
                pass  # a bad file in the way; replaced below
            else:
                _unlink(partial)
                return DownloadResult(url, target, got[0], got[1], got[2], reused=True)
        result = _fill_partial(fd, url, partial, size, sha256, md5, progress, run, cancel)
        os.replace(partial, target)
    finally:
        os.close(fd)  # drops the byte lock, after the rename like conda
    result.target = target
    if record_url:
        layout = CacheLayout(os.path.dirname(os.path.abspath(target)))
        if os.path.exists(layout.urls_txt):
            from .urls import append_urls

            append_urls(layout, [url])
    return result


def _fill_partial(fd, url, partial, size, sha256, md5, progress, run, cancel) -> DownloadResult:
    # conda resumes only when the size is known too; the checksum alone decides whether the
    # result can be trusted (a bad resume is retried from scratch), so we resume on it alone.
    resumable = expected_checksum(sha256, md5) is not None
    for attempt in (0, 1):
        have = os.fstat(fd).st_size
        if not resumable or is_file_url(url) or (size is not None and have > size):
            have = 0
        os.ftruncate(fd, have)
        digests = _Digests()
        pos = 0
        while pos < have:  # the kept bytes enter the hashes through the locked descriptor
            chunk = os.pread(fd, min(1 << 20, have - pos), pos)
            if not chunk:
                break
            digests.update(chunk)
            pos += len(chunk)
        try:
            total, transferred = _transfer(
                fd, url, have, size, digests, progress, run, cancel, partial
            )
            # What was really kept: nothing when the server ignored the Range (a 200 with the
            # whole file) or refused it (416), however long the partial was.
            resumed_from = total - transferred
        except (DownloadError, OfflineError) as exc:
            if getattr(exc, "status", None) and 400 <= exc.status < 500:
                _unlink(partial)  # a 4xx will not get better by resuming
            raise
        except SizeMismatchError:
            _unlink(partial)  # more bytes than declared: nothing of it can be trusted
            raise
        try:
            check_digests(
                url,
                partial,
                size=size,
                sha256=sha256,
                md5=md5,
                got_size=total,
                got_sha256=digests.sha.hexdigest(),
                got_md5=digests.md5.hexdigest(),
            )
        except (ChecksumMismatchError, SizeMismatchError):
            if resumed_from and attempt == 0:
                # The kept bytes may be what is wrong (a changed file on the server): once more
                # from scratch, as conda does.
                os.ftruncate(fd, 0)
                continue
            _unlink(partial)
            raise
        return DownloadResult(
            url,
            partial,
            total,
            digests.sha.hexdigest(),
            digests.md5.hexdigest(),
            transferred=transferred,
            resumed_from=resumed_from,
        )
    raise AssertionError("unreachable")


def _transfer(fd, url, offset, size, digests, progress, run, cancel, partial) -> tuple[int, int]:
    """Append the body of ``url`` (from ``offset``) to ``fd``; returns (file size, bytes read)."""
    if is_file_url(url):
        return _copy_local(fd, url, size, digests, progress, cancel)
    if size is not None and offset >= size:
        return offset, 0  # complete already; the checksum decides
    tmo = timeouts(run)
    use_conda = run is not None and getattr(run, "conda", False)
    resp = None
    watch = _CancelWatch(cancel)
    try:
        if use_conda:
            resp = _conda_request(url, offset, tmo)
        else:
            resp = _stdlib_request(url, offset, tmo, watch)
        watch.watch(resp.socket())
        if cancel is not None and cancel.is_set():
            raise DownloadCancelled(partial)
        if resp.status == 416 and offset:
            # The kept part is as long as (or longer than) the file: start over.
            resp.close()
            os.ftruncate(fd, 0)
            raise _Restart
        if resp.status >= 400:
            raise DownloadError(url, http.client.responses.get(resp.status, "error"), resp.status)
        if offset and resp.status != 206:
            # The server ignored the Range: its body is the whole file.
            os.ftruncate(fd, 0)
            digests.reset()
            offset = 0
        total = size
        if total is None and resp.length is not None:
            total = offset + resp.length
        pos = offset
        read = 0
        limit = size if size is not None else None
        for chunk in resp.chunks():
            if cancel is not None and cancel.is_set():
                raise DownloadCancelled(partial)
            os.pwrite(fd, chunk, pos)
            digests.update(chunk)
            pos += len(chunk)
            read += len(chunk)
            if limit is not None and pos > limit:
                raise SizeMismatchError(url, partial, limit, pos)
            if progress is not None and total:
                _report(progress, pos, total)
        if cancel is not None and cancel.is_set():
            raise DownloadCancelled(partial)  # the watcher cut the connection short
        if resp.length is not None and read != resp.length:
            raise DownloadError(
                url, f"connection closed after {read} of {resp.length} bytes; can be resumed"
            )
        return pos, read
    except _Restart:
        digests.reset()
        return _transfer(fd, url, 0, size, digests, progress, run, cancel, partial)
    except (DownloadError, OfflineError, DownloadCancelled, SizeMismatchError):
        raise
    except Exception as exc:
        if cancel is not None and cancel.is_set():
            raise DownloadCancelled(partial) from None  # the watcher cut the connection
        mapped = _transfer_error(exc, url)
        if mapped is None:
            raise
        raise mapped from exc
    finally:
        watch.close()
        if resp is not None:
            resp.close()


def _transfer_error(exc: Exception, url: str) -> BaseException | None:
    """A failed transfer as our error (all say whether a resume can help), or None."""
    if isinstance(exc, TimeoutError):
        return DownloadError(url, f"timed out ({exc or 'no data'}); can be resumed")
    if isinstance(exc, (OSError, http.client.HTTPException)):
        return DownloadError(url, f"{type(exc).__name__}: {exc}; can be resumed")
    return _conda_error(exc, url)


class _Restart(Exception):
    pass


def _report(progress: Progress, pos: int, total: int) -> None:
    """``progress(fraction)``; a callback with a ``total_known`` attribute also learns the
    total bytes (an @EXPLICIT line has no size: only the server's Content-Length tells)."""
    told = getattr(progress, "total_known", None)
    if told is not None:
        told(total)
    progress(min(pos / total, 1.0))


def _copy_local(fd, url, size, digests, progress, cancel) -> tuple[int, int]:
    src = file_url_path(url)
    try:
        fh = open(src, "rb")  # noqa: SIM115
    except FileNotFoundError:
        raise DownloadError(url, "no such file", 404) from None
    except OSError as exc:
        raise DownloadError(url, exc.strerror or str(exc)) from None
    with fh:
        total = size or os.fstat(fh.fileno()).st_size
        pos = 0
        while chunk := fh.read(1 << 20):
            if cancel is not None and cancel.is_set():
                raise DownloadCancelled(src)
            os.pwrite(fd, chunk, pos)
            digests.update(chunk)
            pos += len(chunk)
            if progress is not None and total:
                _report(progress, pos, total)
    return pos, pos


def read_url_bytes(url: str, run=None, limit: int = 512 << 20) -> bytes:
    """The whole body of a small document (an explicit file, a repodata.json)."""
    url = strip_fragment(url)
    if is_file_url(url):
        path = file_url_path(url)
        try:
            with open(path, "rb") as fh:
                return fh.read(limit)
        except OSError as exc:
            raise InputError(path, f"cannot read it: {exc.strerror or exc}") from None
    if run is not None and run.offline:
        raise OfflineError(url)
    tmo = timeouts(run)
    use_conda = run is not None and getattr(run, "conda", False)
    try:
        resp = _conda_request(url, 0, tmo) if use_conda else _stdlib_request(url, 0, tmo)
    except (DownloadError, OfflineError):
        raise
    except ValueError as exc:  # a malformed URL (e.g. "Invalid IPv6 URL")
        raise InputError(url, f"not a valid URL ({exc})") from None
    except (TimeoutError, OSError, http.client.HTTPException) as exc:
        raise DownloadError(url, str(exc))
    except Exception as exc:
        mapped = _conda_error(exc, url)
        if mapped is not None:
            raise mapped from exc
        raise
    try:
        if resp.status >= 400:
            raise DownloadError(url, http.client.responses.get(resp.status, "error"), resp.status)
        out = bytearray()
        for chunk in resp.chunks():
            out += chunk
            if len(out) > limit:
                raise DownloadError(url, f"larger than {limit} bytes")
        return bytes(out)
    finally:
        resp.close()


def copy_or_link(src: str, dst: str) -> str:
    """Hard-link ``src`` to ``dst`` (same file system), else copy; returns "linked" or "copied".

    Goes through a temporary name so ``dst`` never exists half-written.
    """
    tmp = f"{dst}.cpx-{os.getpid()}-{threading.get_ident()}"
    _unlink(tmp)
    try:
        os.link(src, tmp)
        how = "linked"
    except OSError:
        shutil.copyfile(src, tmp)
        how = "copied"
    try:
        os.replace(tmp, dst)
    except BaseException:
        _unlink(tmp)
        raise
    return how
