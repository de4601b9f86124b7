"""A lean blocking HTTP/1.1 client: one keep-alive socket, large sends and `recv_into` reads.

The load generators run many of these in threads. Sends and receives release the GIL, bodies
go out as one `sendall` of a memoryview and come in through one preallocated buffer, so the
client spends its CPU in the kernel's copies rather than in Python (aiohttp's client costs
several times more per request, and on a 2-core machine the client shares the cores with
the server it measures).
"""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

_MAX_HEAD = 64 * 1024
_RECV = 1024 * 1024


class HTTPError(Exception):
    """A response the scenario did not expect, or a broken connection."""


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)


class Connection:
    """HTTP/1.1 to one `http://host:port`, reconnecting when the server closed the socket."""

    def __init__(self, base_url: str, *, timeout: float = 120.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"not an http:// URL: {base_url}")
        self.base_url = f"http://{parts.hostname}:{parts.port or 80}"
        self._address = (parts.hostname, parts.port or 80)
        self._host_header = f"{parts.hostname}:{parts.port or 80}"
        self._timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = bytearray()
        self._scratch = bytearray(_RECV)

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buf.clear()

    def url(self, location: str) -> str:
        """An absolute URL for a `Location` header (relative or absolute)."""
        return urljoin(self.base_url + "/", location)

    def target(self, location: str) -> str:
        """The request target (path and query) for a `Location` header."""
        parts = urlsplit(self.url(location))
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def _connect(self) -> socket.socket:
        if self._sock is None:
            sock = socket.create_connection(self._address, timeout=self._timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock = sock
            self._buf.clear()
        return self._sock

    # -- requests ------------------------------------------------------------------------

    def request(
        self,
        method: str,
        target: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | memoryview = b"",
    ) -> Response:
        """Send one request and read the whole response."""
        self._send(method, target, headers, body)
        status, resp_headers = self._read_head()
        data = self._read_body(method, status, resp_headers, sink=None)
        return Response(status, resp_headers, data)

    def stream_get(
        self,
        target: str,
        *,
        headers: dict[str, str] | None = None,
        on_data: Callable[[memoryview], None] | None = None,
        deadline: float | None = None,
    ) -> tuple[int, int, bool]:
        """GET a (large) body without keeping it: (status, bytes received, complete).

        `on_data` sees each piece (for hashing). At `deadline` the connection is dropped and the
        bytes received so far are reported.
        """
        self._send("GET", target, headers, b"")
        status, resp_headers = self._read_head()
        counter = _Counter(on_data, deadline)
        try:
            self._read_body("GET", status, resp_headers, sink=counter)
        except _DeadlineReached:
            self.close()
            return status, counter.received, False
        return status, counter.received, True

    def _send(
        self, method: str, target: str, headers: dict[str, str] | None, body: bytes | memoryview
    ) -> None:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self._host_header}"]
        merged = {"User-Agent": "wharf-bench", **(headers or {})}
        if body or method in ("POST", "PUT", "PATCH"):
            merged.setdefault("Content-Length", str(len(body)))
        lines.extend(f"{k}: {v}" for k, v in merged.items())
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        for attempt in (1, 2):
            reused = self._sock is not None
            sock = self._connect()
            try:
                if len(body) <= 64 * 1024:
                    sock.sendall(head + bytes(body))
                else:
                    sock.sendall(head)
                    sock.sendall(body)
                return
            except OSError as exc:
                self.close()
                # A keep-alive socket the server closed while idle: retry once on a new one.
                if reused and attempt == 1 and isinstance(exc, BrokenPipeError | ConnectionResetError):
                    continue
                raise HTTPError(f"{method} {target}: {exc}") from exc

    def _recv_more(self) -> None:
        assert self._sock is not None
        try:
            n = self._sock.recv_into(self._scratch)
        except OSError as exc:
            self.close()
            raise HTTPError(f"receive failed: {exc}") from exc
        if n == 0:
            self.close()
            raise HTTPError("connection closed by the server")
        self._buf += memoryview(self._scratch)[:n]

    def _read_head(self) -> tuple[int, dict[str, str]]:
        while True:
            end = self._buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self._buf) > _MAX_HEAD:
                raise HTTPError("response head too large")
            self._recv_more()
        head = bytes(self._buf[:end]).decode("latin-1")
        del self._buf[: end + 4]
        status_line, *header_lines = head.split("\r\n")
        try:
            status = int(status_line.split(" ", 2)[1])
        except (IndexError, ValueError):
            raise HTTPError(f"bad status line {status_line!r}") from None
        headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if status == 100:  # an interim response: the real one follows
            return self._read_head()
        return status, headers

    def _read_body(
        self, method: str, status: int, headers: dict[str, str], *, sink: _Counter | None
    ) -> bytes:
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            data = self._read_chunked()
            if sink is not None:
                sink.feed(memoryview(data))
                return b""
            body = data
        elif "content-length" in headers:
            length = int(headers["content-length"])
            if sink is not None:
                self._drain(length, sink)
                body = b""
            else:
                while len(self._buf) < length:
                    self._recv_more()
                body = bytes(self._buf[:length])
                del self._buf[:length]
        else:  # read to the end of the connection
            chunks = []
            try:
                while True:
                    self._recv_more()
                    chunks.append(bytes(self._buf))
                    self._buf.clear()
            except HTTPError:
                pass
            body = b"".join(chunks)
        if headers.get("connection", "").lower() == "close":
            self.close()
        return body

    def _drain(self, length: int, sink: _Counter) -> None:
        """Consume `length` body bytes straight from the socket into the scratch buffer."""
        take = min(len(self._buf), length)
        if take:
            head = bytes(self._buf[:take])  # a copy: the buffer is resized below (and on close)
            del self._buf[:take]
            sink.feed(memoryview(head))
        remaining = length - take
        sock = self._sock
        view = memoryview(self._scratch)
        while remaining > 0:
            assert sock is not None
            try:
                n = sock.recv_into(view, min(remaining, len(view)))
            except OSError as exc:
                self.close()
                raise HTTPError(f"receive failed: {exc}") from exc
            if n == 0:
                self.close()
                raise HTTPError("connection closed mid-body")
            remaining -= n
            sink.feed(view[:n])

    def _read_chunked(self) -> bytes:
        parts = []
        while True:
            while (eol := self._buf.find(b"\r\n")) < 0:
                self._recv_more()
            size = int(bytes(self._buf[:eol]).split(b";", 1)[0], 16)
            del self._buf[: eol + 2]
            while len(self._buf) < size + 2:
                self._recv_more()
            parts.append(bytes(self._buf[:size]))
            del self._buf[: size + 2]
            if size == 0:
                # Trailers (rare) end with an empty line; the final CRLF was consumed above.
                return b"".join(parts)


class _DeadlineReached(Exception):
    pass


class _Counter:
    def __init__(self, on_data: Callable[[memoryview], None] | None, deadline: float | None) -> None:
        self.received = 0
        self._on_data = on_data
        self._deadline = deadline

    def feed(self, piece: memoryview) -> None:
        self.received += len(piece)
        if self._on_data is not None:
            self._on_data(piece)
        if self._deadline is not None and time.monotonic() >= self._deadline:
            raise _DeadlineReached


def expect(response: Response, *statuses: int, what: str) -> Response:
    if response.status not in statuses:
        detail = response.body[:300].decode("utf-8", "replace")
        request_id = response.header("X-Request-Id")
        rid = f" [request id {request_id}]" if request_id else ""
        raise HTTPError(f"{what}: HTTP {response.status} (expected {statuses}){rid}: {detail}")
    return response


def timed_gets(
    base_url: str, path: str, headers: dict[str, str], *, samples: int, warmup: int
) -> tuple[Response, float, float]:
    """GET `path` `warmup + samples` times on one connection (each must be 200): the last
    answer, and the median and p95 of the timed samples in milliseconds."""
    timings: list[float] = []
    answer: Response | None = None
    with Connection(base_url) as conn:
        for i in range(warmup + samples):
            started = time.perf_counter()
            answer = expect(conn.request("GET", path, headers=headers), 200, what=f"GET {path}")
            took = (time.perf_counter() - started) * 1000
            if i >= warmup:
                timings.append(took)
    if answer is None or not timings:
        raise ValueError("timed_gets needs at least one timed sample")
    ordered = sorted(timings)
    return answer, statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
