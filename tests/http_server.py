"""A loopback HTTP file server with fault injection, for tests that download.

Serves the files under a folder on 127.0.0.1 (ephemeral port, daemon threads), honours ``Range: bytes=N-``
with 206 + ``Content-Range`` (416 past the end), and can be told to answer an error status, to cut a body
short after sending its full ``Content-Length``, or to ignore ``Range``. Every request is logged.

    with LoopbackServer(root) as server:
        server.drop_after("a.tar.gz", 1000)
        download(RemoteFile(server.url("a.tar.gz"), sha256=...), dest)
        assert ("a.tar.gz", "bytes=1000-") in server.requests
"""

from __future__ import annotations

import http.server
import re
import threading
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from typing import Self

_RANGE = re.compile(r"bytes=(\d+)-")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # idle keep-alive connections must not hold up shutdown
    loopback: LoopbackServer


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass  # tests read LoopbackServer.requests instead of stderr noise

    def do_GET(self) -> None:
        owner = self.server.loopback
        name = unquote(urlsplit(self.path).path).lstrip("/")
        asked = self.headers.get("Range")
        status, drop_at, ignore_range = owner._on_request(name, asked)
        if status is not None:
            self.send_error(status)
            return
        path = (owner.root / name).resolve()
        if not path.is_file() or not path.is_relative_to(owner.root):
            self.send_error(404)
            return
        data = path.read_bytes()
        match = _RANGE.fullmatch(asked) if asked and not ignore_range else None
        start = int(match[1]) if match else 0
        if match and start >= len(data):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = data[start:]
        self.send_response(206 if match else 200)
        if match:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if drop_at is not None:
            self.wfile.write(body[:drop_at])
            self.wfile.flush()
            self.close_connection = True  # the client sees EOF before Content-Length is reached
            return
        self.wfile.write(body)


class LoopbackServer:
    """Context manager serving ``root`` on 127.0.0.1; see the module docstring."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self._lock = threading.Lock()
        self._log: list[tuple[str, str | None]] = []
        self._fail: dict[str, tuple[int, int | None]] = {}
        self._drop: dict[str, tuple[int, int]] = {}
        self._ignore_range: set[str] = set()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.loopback = self
        # a short poll keeps shutdown (once per test) from costing the default half second
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="loopback-http", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    @property
    def requests(self) -> list[tuple[str, str | None]]:
        """(file name, Range header or None) of every request so far, in order."""
        with self._lock:
            return list(self._log)

    def fail(self, name: str, status: int, times: int | None = None) -> None:
        """Answer ``status`` to the next ``times`` requests for ``name`` (None: to all of them)."""
        with self._lock:
            self._fail[name] = (status, times)

    def drop_after(self, name: str, n_bytes: int, times: int = 1) -> None:
        """For the next ``times`` requests, send the full headers but close after ``n_bytes`` of body."""
        with self._lock:
            self._drop[name] = (n_bytes, times)

    def ignore_range(self, name: str) -> None:
        """Answer 200 with the whole file even when a Range is asked."""
        with self._lock:
            self._ignore_range.add(name)

    def _on_request(self, name: str, asked: str | None) -> tuple[int | None, int | None, bool]:
        """Log a request and consume the faults it triggers: (status to send, bytes before drop, ignore Range)."""
        with self._lock:
            self._log.append((name, asked))
            status = self._take(self._fail, name)
            drop_at = None if status is not None else self._take(self._drop, name)
            return status, drop_at, name in self._ignore_range

    @staticmethod
    def _take(faults: dict[str, tuple[int, int | None]], name: str) -> int | None:
        if name not in faults:
            return None
        value, times = faults[name]
        if times is not None:
            if times <= 1:
                del faults[name]
            else:
                faults[name] = (value, times - 1)
        return value

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
