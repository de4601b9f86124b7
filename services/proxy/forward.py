"""Forwarding one request to a pool: streaming both ways, retrying on the next instance when
that cannot duplicate or lose anything.

A request may move to the next instance when the attempt failed before any response came back
and either the method is idempotent with no body, or the body has not been read yet (the
connection failed first), or the body was small enough to be held (`retry_body_bytes`). A large
body that was partly sent is never replayed: the client gets 502 and retries itself (an upload
can be resumed on any instance).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from wharf_proxy.pools import Pool, Upstream

WRITE_HIGH = 1024 * 1024
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# Hop-by-hop headers (RFC 9110 §7.6.1) and those the proxy sets itself.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)


class NoUpstream(Exception):
    """Every instance of the pool failed (or the pool is empty)."""

    def __init__(self, pool: str, reason: str) -> None:
        super().__init__(f"{pool}: {reason}")
        self.pool = pool
        self.reason = reason


class Truncated(Exception):
    """The upstream's response body broke off after its headers went to the client."""


@dataclass
class Outcome:
    upstream: str
    status: int
    attempts: int
    sent_bytes: int


class _Body:
    """The request body as an async iterator that remembers whether it was touched."""

    def __init__(self, request: web.Request) -> None:
        self._content = request.content
        self.touched = False
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.touched = True
        while True:
            chunk = await self._content.readany()  # whatever arrived, without re-slicing it
            if not chunk:
                return
            self.sent += len(chunk)
            yield chunk


def upstream_headers(request: web.Request, request_id: str, *, scheme: str) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in request.headers.items():
        if name.lower() not in HOP_BY_HOP and not name.lower().startswith("x-forwarded-"):
            headers.add(name, value)
    peer = request.remote or ""
    earlier = request.headers.get("X-Forwarded-For")
    headers["X-Forwarded-For"] = f"{earlier}, {peer}" if earlier else peer
    headers["X-Forwarded-Proto"] = scheme
    headers["X-Forwarded-Host"] = request.host
    headers["X-Request-Id"] = request_id
    return headers


def response_headers(upstream: aiohttp.ClientResponse, base: str, external: str) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in upstream.headers.items():
        lower = name.lower()
        if lower in HOP_BY_HOP or lower == "content-length":
            continue
        if lower == "location" and value.startswith(base + "/"):
            value = external + value[len(base) :]  # an upstream's own address never leaks out
        headers.add(name, value)
    return headers


class Forwarder:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        retry_body_bytes: int,
        connect_timeout: float,
    ) -> None:
        self._session = session
        self._retry_body_bytes = retry_body_bytes
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=None)

    async def forward(
        self, request: web.Request, pool: Pool, request_id: str, *, scheme: str, external: str
    ) -> tuple[web.StreamResponse, Outcome]:
        headers = upstream_headers(request, request_id, scheme=scheme)
        has_body = request.body_exists
        held: bytes | None = None
        length = request.content_length
        if has_body and length is not None and length <= self._retry_body_bytes:
            held = await request.read()  # small: keep it, so any attempt can send it again
        body = _Body(request) if has_body and held is None else None
        candidates = pool.candidates()
        if not candidates:
            raise NoUpstream(pool.name, "no instance is configured")
        last_error = "no attempt"
        for attempt, upstream in enumerate(candidates, 1):
            data: object = held if held is not None else body
            upstream.in_flight += 1
            try:
                response = await self._session.request(
                    request.method,
                    upstream.url + request.raw_path,
                    headers=headers,
                    data=data,
                    allow_redirects=False,
                    auto_decompress=False,
                    timeout=self._timeout,
                    skip_auto_headers=("Content-Type", "User-Agent", "Accept-Encoding"),
                )
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                upstream.in_flight -= 1
                last_error = f"{type(exc).__name__}: {exc}"
                pool.failed(upstream, last_error)
                replayable = held is not None or body is None or not body.touched
                if replayable and (request.method in IDEMPOTENT or not _reached(exc)):
                    continue
                raise NoUpstream(pool.name, last_error) from exc
            try:
                pool.succeeded(upstream)
                out = await self._relay(request, response, upstream, external, request_id)
            finally:
                upstream.in_flight -= 1
                response.release()
            sent = len(held) if held is not None else body.sent if body is not None else 0
            return out, Outcome(upstream.url, response.status, attempt, sent)
        raise NoUpstream(pool.name, last_error)

    async def _relay(
        self,
        request: web.Request,
        upstream_response: aiohttp.ClientResponse,
        upstream: Upstream,
        external: str,
        request_id: str,
    ) -> web.StreamResponse:
        headers = response_headers(upstream_response, upstream.url, external)
        headers["X-Request-Id"] = request_id
        out = web.StreamResponse(
            status=upstream_response.status, reason=upstream_response.reason, headers=headers
        )
        length = upstream_response.headers.get("Content-Length")
        if length is not None and length.isdigit():
            out.content_length = int(length)
        await out.prepare(request)
        if request.method != "HEAD":
            if request.transport is not None:
                # Let a MiB queue towards the client before pausing: fewer wake-ups per MiB.
                request.transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_HIGH // 4)
            try:
                async for chunk in upstream_response.content.iter_any():
                    await out.write(chunk)  # waits while the client is slow: back-pressure
            except (TimeoutError, aiohttp.ClientError) as exc:
                # The upstream died mid-body: cut the client off too, so it sees a short read
                # (never a complete-looking truncated blob).
                raise Truncated(str(exc)) from exc
        await out.write_eof()
        return out


def _reached(exc: BaseException) -> bool:
    """Whether the upstream may have seen the request (anything but a failed connect)."""
    return not isinstance(exc, aiohttp.ClientConnectorError | asyncio.TimeoutError)
