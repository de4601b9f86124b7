"""What no well-behaved HTTP client sends, and how to tell when the server is done with it.

`exchange` writes raw HTTP/1.1 (unnormalised paths, lying lengths) and reads the one response;
`converse` writes raw bytes and reads every response until the server closes;
`hang_up` sends a head and part of a body, then closes the socket. `ProductionServer` serves
an app the way `wharf_shared.serving.serve_forever` does, and `wait_idle` / `server_errors` read
the app's own metrics to know that its handlers finished and what status each one ended with.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from wharf_shared.keys import METRICS
from wharf_shared.serving import Runner

TIMEOUT = 10.0


class ProductionServer(TestServer):
    """The app served by `wharf_shared.serving.Runner`, as `serve_forever` serves it: its
    connection limits, error answers and `Server` header. (aiohttp's TestServer also cancels a
    handler when its client hangs up; the real runner lets it run on and read the lost
    connection as an error.)"""

    async def _make_runner(self, **kwargs: Any) -> web.BaseRunner:  # type: ignore[override]
        kwargs["handler_cancellation"] = False
        return Runner(self.app, **kwargs)


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: CIMultiDict[str]
    body: bytes


def json_body(response: RawResponse) -> Any:
    return json.loads(response.body)


def request_head(method: str, target: str, headers: Mapping[str, str] | None = None) -> bytes:
    """A request line and headers, sent as written (no path normalisation, no computed lengths)."""
    lines = [f"{method} {target} HTTP/1.1", "Host: registry.test", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def exchange(host: str, port: int, head: bytes, body: bytes = b"") -> RawResponse:
    """Send one raw request and read the first final response (its body by its Content-Length)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(head + body)
        await writer.drain()
        header_block = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        while header_block.split(b" ", 2)[1].startswith(b"1"):  # an interim answer (100 Continue)
            header_block = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        status_line, *header_lines = header_block.decode("latin-1").strip().split("\r\n")
        headers: CIMultiDict[str] = CIMultiDict()
        for line in header_lines:
            name, _, value = line.partition(":")
            headers.add(name.strip(), value.strip())
        length = int(headers.get("Content-Length", "0"))
        payload = await asyncio.wait_for(reader.readexactly(length), TIMEOUT)
    finally:
        writer.close()
        await writer.wait_closed()
    return RawResponse(int(status_line.split()[1]), headers, payload)


def parse_responses(data: bytes) -> list[RawResponse]:
    """Every final response in `data`, in order: bodies by Content-Length or chunked, or to the
    end; interim (1xx) answers skipped. Fails on bytes that are not a response."""
    responses = []
    while data:
        head, found, rest = data.partition(b"\r\n\r\n")
        assert found, f"not a response: {data[:200]!r}"
        status_line, *lines = head.decode("latin-1").split("\r\n")
        version, status, *_ = status_line.split(" ", 2)
        assert version.startswith("HTTP/1."), f"not a status line: {status_line!r}"
        headers: CIMultiDict[str] = CIMultiDict()
        for line in lines:
            name, _, value = line.partition(":")
            headers.add(name.strip(), value.strip())
        if status.startswith("1"):
            data = rest
            continue
        if "Content-Length" in headers:
            length = int(headers["Content-Length"])
            body, data = rest[:length], rest[length:]
        elif headers.get("Transfer-Encoding", "").lower() == "chunked":
            body, data = _dechunk(rest)
        else:
            body, data = rest, b""
        responses.append(RawResponse(int(status), headers, body))
    return responses


def _dechunk(data: bytes) -> tuple[bytes, bytes]:
    """A chunked body and what follows it."""
    body = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            while True:  # trailer fields, up to an empty line
                line, _, data = data.partition(b"\r\n")
                if not line:
                    return body, data
        body, data = body + data[:size], data[size + 2 :]


async def converse(
    host: str, port: int, data: bytes, *, then: bytes = b"", body_size: int = 0
) -> list[RawResponse]:
    """Write `data` (then `then`, then `body_size` filler bytes, while reading), and read every
    response until the server closes the connection (a reset raises ConnectionResetError)."""
    reader, writer = await asyncio.open_connection(host, port)

    async def send() -> None:
        writer.write(data + then)
        for _ in range(0, body_size, 1024 * 1024):
            writer.write(b"x" * 1024 * 1024)
            await writer.drain()

    sending = asyncio.create_task(send())
    try:
        received = await asyncio.wait_for(reader.read(-1), TIMEOUT)
    finally:
        sending.cancel()
        await close(writer)
    return parse_responses(received)


async def close(writer: asyncio.StreamWriter) -> None:
    """Close a raw connection and wait until it is (whatever state the server left it in)."""
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def hang_up(
    host: str,
    port: int,
    head: bytes,
    partial_body: bytes,
    *,
    before_close: Callable[[], Awaitable[None]] | None,
) -> None:
    """Send a head and less body than it announces, wait for `before_close` (if any), then close."""
    _reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(head + partial_body)
        await writer.drain()
        if before_close is not None:
            await before_close()
    finally:
        writer.close()
        await writer.wait_closed()


def _gauge(app: web.Application, name: str) -> float:
    metrics = app[METRICS]
    value = metrics.registry.get_sample_value(f"wharf_{metrics.service}_{name}")
    return float(value or 0.0)


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def wait_busy(app: web.Application) -> None:
    """Until a handler of `app` is running (has the request in hand)."""
    await wait_until(lambda: _gauge(app, "http_in_flight_requests") >= 1, "a request in flight")


async def wait_idle(app: web.Application) -> None:
    """Until no handler of `app` is running: every request so far has ended, and was counted."""
    await wait_until(lambda: _gauge(app, "http_in_flight_requests") == 0, "requests to finish")


def server_errors(app: web.Application) -> dict[tuple[str, str, str], float]:
    """How many 5xx `app` has answered, by (method, route, status), as its metrics counted them."""
    metrics = app[METRICS]
    found = {}
    for family in metrics.http_requests.collect():
        for sample in family.samples:
            labels = sample.labels
            if sample.name.endswith("_total") and labels["status"].startswith("5") and sample.value:
                found[labels["method"], labels["route"], labels["status"]] = sample.value
    return found
