"""A real HTTP/1.1 server on 127.0.0.1 for download tests and benchmarks.

Serves files from a directory with keep-alive and ``Range`` support, and can misbehave on
purpose, per path: cut the connection after N bytes, answer slowly, ignore ``Range``, or 404.
Every request is logged (path, Range header, status) so tests can assert what was asked.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Behaviour:
    def __init__(self):
        self.cut_after: dict[str, int] = {}  # path -> bytes sent before the connection drops
        self.cut_times: dict[str, int] = {}  # path -> how many more requests get cut (default 1)
        self.slow: dict[str, float] = {}  # path -> seconds to sleep before each 16 KiB
        self.stall: dict[str, float] = {}  # path -> seconds to sleep before the first byte
        # path -> bytes sent before the server goes silent (until it stops: a dead link)
        self.silent_after: dict[str, int] = {}
        self.no_range: set[str] = set()
        self.missing: set[str] = set()
        self.status: dict[str, int] = {}  # path -> forced status code
        # path -> an event the body waits for half-way: a test holds a download in flight until
        # it has seen what it looks for (a progress bar), whatever the machine's load
        self.gates: dict[str, threading.Event] = {}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self):
        super().setup()
        # Without it a kept-alive connection stalls ~40 ms per request (Nagle + delayed ACK).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt, *args):  # keep test output clean
        pass

    def do_GET(self):
        srv = self.server
        path = self.path.split("?", 1)[0]
        rng = self.headers.get("Range")
        beh = srv.behaviour
        with srv.lock:
            srv.requests.append({"path": path, "range": rng})
        if path in beh.status:
            return self._empty(beh.status[path])
        fs_path = os.path.join(srv.directory, path.lstrip("/"))
        if path in beh.missing or not os.path.isfile(fs_path):
            return self._empty(404)
        with open(fs_path, "rb") as fh:
            data = fh.read()
        start = 0
        status = 200
        if rng and path not in beh.no_range:
            m = re.fullmatch(r"bytes=(\d+)-", rng.strip())
            if m:
                start = int(m.group(1))
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                status = 206
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if path in beh.stall:
            time.sleep(beh.stall[path])
        cut = None
        with srv.lock:
            if path in beh.cut_after and beh.cut_times.get(path, 1) > 0:
                cut = beh.cut_after[path]
                beh.cut_times[path] = beh.cut_times.get(path, 1) - 1
        silent = beh.silent_after.get(path)
        if silent is not None:
            self.wfile.write(body[:silent])
            self.wfile.flush()
            srv.stopping.wait(600)
            self.close_connection = True
            return None
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return None
        gate = beh.gates.get(path)
        if gate is not None:
            half = len(body) // 2
            self.wfile.write(body[:half])
            self.wfile.flush()
            gate.wait(600)
            self.wfile.write(body[half:])
            return None
        delay = beh.slow.get(path)
        if delay:
            for i in range(0, len(body), 1 << 14):
                time.sleep(delay)
                self.wfile.write(body[i : i + (1 << 14)])
                self.wfile.flush()
            return None
        self.wfile.write(body)
        return None

    def _empty(self, code: int):
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # Clients hanging up mid-body (cancel, timeout, size limit) are part of the tests.
        pass

    def __init__(self, directory: str):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.directory = directory
        self.behaviour = Behaviour()
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()


class HTTPTestServer:
    """``with HTTPTestServer(dir) as srv: srv.url("noarch/x.conda")``."""

    def __init__(self, directory: str):
        self.directory = str(directory)
        self._server = _Server(self.directory)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, rel: str) -> str:
        return f"{self.base_url}/{rel.lstrip('/')}"

    @property
    def behaviour(self) -> Behaviour:
        return self._server.behaviour

    @property
    def requests(self) -> list[dict]:
        return self._server.requests

    def requests_for(self, rel: str) -> list[dict]:
        path = "/" + rel.lstrip("/")
        return [r for r in self._server.requests if r["path"] == path]

    def start(self) -> HTTPTestServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> HTTPTestServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_forever(directory: str) -> None:
    """``python tests/httpserver.py DIR``: serve DIR and print the URL (for subprocess tests)."""
    srv = HTTPTestServer(directory).start()
    print(srv.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop()


if __name__ == "__main__":
    import sys

    serve_forever(sys.argv[1])
