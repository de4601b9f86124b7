"""What a client connection may do, as every service is served (`wharf_shared.serving.Runner`):
malformed HTTP answered in JSON and delivered, request heads and bodies that fall silent, idle
keep-alive connections, the per-address connection cap, and `Server: Wharf` on every answer.

A small app stands in for a service: the limits are the serving layer's, the same for all.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.web_protocol import RequestPayloadError

from tests.support import wire
from wharf_shared.config import Settings
from wharf_shared.keys import SETTINGS

MiB = 1024 * 1024
HEADER_TIMEOUT = 0.6
BODY_TIMEOUT = 0.8
KEEPALIVE = 1.0
TIMEOUT = 10.0
READING = web.AppKey("reading", asyncio.Event)  # set when a handler starts reading a body


def service_app(**serving: Any) -> web.Application:
    """Echoes the size of the body it read (or the error reading it); `/boom` fails."""

    async def echo(request: web.Request) -> web.Response:
        request.app[READING].set()
        try:
            body = await request.read()
        except RequestPayloadError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"size": len(body)})

    async def boom(_request: web.Request) -> web.Response:
        raise RuntimeError("a handler bug")

    app = web.Application(client_max_size=1024**3)
    app[READING] = asyncio.Event()
    app[SETTINGS] = Settings(
        trusted_proxies=[],
        serving={  # type: ignore[arg-type]
            "header_timeout_seconds": HEADER_TIMEOUT,
            "body_timeout_seconds": BODY_TIMEOUT,
            "keepalive_seconds": KEEPALIVE,
            "linger_seconds": 3.0,
            **serving,
        },
    )
    app.router.add_get("/boom", boom)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


@pytest.fixture
async def served() -> AsyncIterator[TestServer]:
    server = wire.ProductionServer(service_app())
    await server.start_server()
    yield server
    await server.close()


def error_code(reply: wire.RawResponse) -> str:
    code: str = wire.json_body(reply)["errors"][0]["code"]
    return code


async def converse(
    server: TestServer, head: bytes, body_size: int = 0
) -> tuple[list[wire.RawResponse], float]:
    """Send `head`, then `body_size` bytes while reading; read until the server closes.
    Returns the responses and the seconds until the close."""
    assert server.host is not None
    assert server.port is not None
    reader, writer = await asyncio.open_connection(server.host, server.port)
    start = time.monotonic()

    async def send() -> None:
        writer.write(head)
        for _ in range(body_size // MiB):
            writer.write(b"x" * MiB)
            await writer.drain()

    sending = asyncio.create_task(send())
    try:
        data = await asyncio.wait_for(reader.read(-1), TIMEOUT)  # ConnectionResetError if reset
        closed = time.monotonic() - start
    finally:
        sending.cancel()
        await wire.close(writer)
    return wire.parse_responses(data), closed


BIG = 16 * MiB  # more than the kernel buffers: a close with it unread would reset the connection

# (case, request head, status, code); each is sent with a large body behind it.
MALFORMED = [
    ("non-numeric length", b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", 400, "BAD_REQUEST"),
    ("negative length", b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400, "BAD_REQUEST"),
    ("signed length", b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 400, "BAD_REQUEST"),
    ("length list", b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", 400, "BAD_REQUEST"),
    (
        "duplicate length",
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        400,
        "BAD_REQUEST",
    ),
    (
        "length and chunked",
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
        "BAD_REQUEST",
    ),
    (
        "bad chunk size",
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
        "BAD_REQUEST",
    ),
    ("bare LF", b"POST /x HTTP/1.1\nHost: a\nContent-Length: 5\n\n", 400, "BAD_REQUEST"),
    ("obs-fold", b"POST /x HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n folded\r\n\r\n", 400, "BAD_REQUEST"),
    ("no host", b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\n", 400, "BAD_REQUEST"),
    ("long request line", b"POST /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414, "URI_TOO_LONG"),
    (
        "long header",
        b"POST / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
        431,
        "HEADERS_TOO_LARGE",
    ),
    (
        "too many headers",
        b"POST / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n",
        431,
        "HEADERS_TOO_LARGE",
    ),
]


@pytest.mark.parametrize(
    ("head", "status", "code"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
async def test_malformed_http_gets_a_json_answer_the_client_reads(
    served: TestServer, caplog: pytest.LogCaptureFixture, head: bytes, status: int, code: str
) -> None:
    """The answer arrives although a large body follows the head (no reset), in JSON, logged at
    info without a traceback (aiohttp alone logs one at error level and answers in plain text)."""
    with structlog.testing.capture_logs() as events, caplog.at_level(logging.DEBUG, "aiohttp"):
        replies, _ = await converse(served, head, BIG)
    [reply] = replies
    assert reply.status == status
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.headers["Server"] == "Wharf"
    assert error_code(reply) == code
    [event] = [e for e in events if e["event"] == "malformed_request"]
    assert event["log_level"] == "info"
    assert event["status"] == status
    assert "exc_info" not in event
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_bad_chunk_mid_body_fails_the_read_of_the_handler(served: TestServer) -> None:
    """Framing that breaks after the handler began reading: the handler's read fails (rather
    than waiting for a body that never ends) and its answer is the only one."""
    assert served.host is not None
    assert served.port is not None
    reader, writer = await asyncio.open_connection(served.host, served.port)
    writer.write(b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    await writer.drain()
    await asyncio.wait_for(served.app[READING].wait(), TIMEOUT)
    writer.write(b"zz\r\n")
    data = await asyncio.wait_for(reader.read(-1), TIMEOUT)
    await wire.close(writer)
    [reply] = wire.parse_responses(data)
    assert reply.status == 400
    assert json.loads(reply.body) == {"error": "malformed body: Invalid character in chunk size"}


async def test_a_head_that_never_completes_gets_408(served: TestServer) -> None:
    """Half a request line and header, then nothing (slowloris)."""
    replies, closed = await converse(served, b"GET /x HTTP/1.1\r\nHost: a\r\nX-Half")
    [reply] = replies
    assert (reply.status, error_code(reply), reply.headers["Server"]) == (408, "REQUEST_TIMEOUT", "Wharf")
    assert HEADER_TIMEOUT <= closed < HEADER_TIMEOUT + 2


async def test_the_next_head_counts_from_the_previous_response(served: TestServer) -> None:
    first = b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n"
    replies, _ = await converse(served, first + b"GET /two HTTP/1.1\r\nHo")
    assert [r.status for r in replies] == [200, 408]


async def test_an_idle_keepalive_connection_closes_without_an_answer(served: TestServer) -> None:
    replies, closed = await converse(served, b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n")
    assert [r.status for r in replies] == [200]  # no 408: no request was begun
    assert KEEPALIVE <= closed < KEEPALIVE + 2


async def test_a_trickled_body_longer_than_the_header_timeout_succeeds(served: TestServer) -> None:
    pieces = 8
    assert served.host is not None
    assert served.port is not None
    reader, writer = await asyncio.open_connection(served.host, served.port)
    start = time.monotonic()
    writer.write(b"PUT /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % pieces)
    for _ in range(pieces):
        writer.write(b"t")
        await writer.drain()
        await asyncio.sleep(HEADER_TIMEOUT / 3)  # the slow client: the pace is what is tested
    data = await asyncio.wait_for(reader.read(-1), TIMEOUT)
    await wire.close(writer)
    assert time.monotonic() - start > 2 * HEADER_TIMEOUT
    [reply] = wire.parse_responses(data)
    assert (reply.status, json.loads(reply.body)) == (200, {"size": pieces})


async def test_a_body_that_falls_silent_closes_the_connection(served: TestServer) -> None:
    replies, closed = await converse(served, b"PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
    assert replies == []  # the handler was reading: the connection just closes
    assert BODY_TIMEOUT <= closed < BODY_TIMEOUT + 2


async def test_connections_per_client_are_capped() -> None:
    server = wire.ProductionServer(service_app(max_connections_per_client=2))
    await server.start_server()
    assert server.host is not None
    assert server.port is not None
    try:
        held = [await asyncio.open_connection(server.host, server.port) for _ in range(2)]
        await wire.wait_until(lambda: len(server.handler.connections) == 2, "two connections")
        replies, _ = await converse(server, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        [reply] = replies
        assert (reply.status, error_code(reply)) == (429, "TOOMANYREQUESTS")
        assert reply.headers["Retry-After"] == "5"
        await wire.close(held[0][1])
        await wire.wait_until(lambda: len(server.handler.connections) == 1, "a connection to close")
        replies, _ = await converse(server, b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert [r.status for r in replies] == [200]
        await wire.close(held[1][1])
    finally:
        await server.close()


async def test_trusted_proxies_are_not_capped() -> None:
    app = service_app(max_connections_per_client=1)
    app[SETTINGS] = app[SETTINGS].model_copy(update={"trusted_proxies": ["127.0.0.0/8"]})
    server = wire.ProductionServer(app)
    await server.start_server()
    assert server.host is not None
    assert server.port is not None
    try:
        held = [await asyncio.open_connection(server.host, server.port) for _ in range(3)]
        replies, _ = await converse(server, b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert [r.status for r in replies] == [200]
        for _reader, writer in held:
            await wire.close(writer)
    finally:
        await server.close()


async def test_every_answer_says_wharf(served: TestServer) -> None:
    requests = {
        b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n": 200,
        b"GET /boom HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n": 500,  # aiohttp's own answer
        b"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n": 400,
    }
    for head, status in requests.items():
        [reply], _ = await converse(served, head)
        assert (reply.status, reply.headers["Server"]) == (status, "Wharf")
