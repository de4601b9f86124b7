"""Forwarding one request to a pool: streaming both ways, retrying on the next instance when
that cannot duplicate or lose anything, and giving up on an upstream that falls silent.

A request moves to the next instance when the attempt failed before any response came back,
its body can be sent again (`bodies.RequestBody.replayable`), and either the request is
`repeatable` or the upstream cannot have seen the request (the connection failed), or it is a
write to an upload whose body is held: that carries an id of the proxy's (`X-Wharf-Upload-Write`)
by which the registry takes a repeat of it once. A large body that was partly sent is never
replayed: the client gets 503 and retries itself (an upload can be resumed on any instance).

Timeouts are about silence, never total time: connecting (`connect_timeout_seconds`), and no
byte from the upstream once the request is sent, or no byte taken by it while the body is sent
(`read_timeout_seconds`; aiohttp's `sock_read` starts only once the body is written, the body's
stall clock covers the time before). A silent upstream counts as a failed attempt; when the last
attempt timed out the client gets 504.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, MultiMapping

from wharf_proxy.bodies import RequestBody
from wharf_proxy.local_blobs import Offer
from wharf_proxy.metrics import ProxyMetrics
from wharf_proxy.paths import origin_form
from wharf_proxy.pools import Pool, Upstream
from wharf_shared.accel import ACCEL_BLOBS, ACCEL_REDIRECT, ACCEL_REQUEST, INTERNAL_HEADERS, UPLOAD_WRITE

WRITE_HIGH = 1024 * 1024
SMALL_BODY = 64 * 1024  # answers up to this size send their headers with the body
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# The start of a blob upload (`POST /v2/<name>/blobs/uploads/`, also with `?digest=` or `?mount=`)
# may be sent again: a session a lost attempt opened is never used and is purged, a blob sent
# whole is content-addressed, and a mount links what is already there.
_UPLOAD_START = re.compile(r"^/v2/.+/blobs/uploads/?$")
_UPLOAD = re.compile(r"^/v2/.+/blobs/uploads/[^/]+$")
# Hop-by-hop headers (RFC 9110 §7.6.1), and those the proxy sets or handles itself: the body is
# re-framed (Content-Length canonical, or chunked), `Expect` was answered here, and `Server` is
# Wharf's own.
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
        "content-length",
        "expect",
        "server",
    }
)
# Dropped in both directions whatever `Connection` says: hop-by-hop headers, and the internal
# redirect's (a client may neither offer nor see one).
ALWAYS_DROPPED = HOP_BY_HOP | INTERNAL_HEADERS


class NoUpstream(Exception):
    """Every instance of the pool failed (or the pool is empty)."""

    def __init__(self, pool: str, reason: str) -> None:
        super().__init__(f"{pool}: {reason}")
        self.pool = pool
        self.reason = reason


class UpstreamTimedOut(NoUpstream):
    """The last instance tried fell silent before it answered."""


class Truncated(Exception):
    """The upstream's response body broke off after its headers went to the client."""


@dataclass
class Outcome:
    upstream: str
    status: int
    attempts: int
    sent_bytes: int
    local: bool = False  # the body was sent from the storage root, by the upstream's redirect


def _dropped(headers: MultiMapping[str]) -> frozenset[str]:
    """Hop-by-hop headers plus those the `Connection` header names."""
    values = headers.getall("Connection", ())
    if not values:
        return ALWAYS_DROPPED
    return ALWAYS_DROPPED | {part.strip().lower() for value in values for part in value.split(",")}


def upstream_headers(request: web.Request, request_id: str) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    dropped = _dropped(request.headers)
    for name, value in request.headers.items():
        lower = name.lower()
        if lower not in dropped and not lower.startswith("x-forwarded-"):
            headers.add(name, value)
    if request.content_length is not None:
        headers["Content-Length"] = str(request.content_length)  # canonical (no `+`, no zeros)
    peer = request.remote or ""
    earlier = request.headers.get("X-Forwarded-For")
    headers["X-Forwarded-For"] = f"{earlier}, {peer}" if earlier else peer
    headers["X-Forwarded-Proto"] = request.scheme
    headers["X-Forwarded-Host"] = request.host
    headers["X-Request-Id"] = request_id
    return headers


def response_headers(upstream: aiohttp.ClientResponse, base: str, external: str) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    dropped = _dropped(upstream.headers)
    for name, value in upstream.headers.items():
        lower = name.lower()
        if lower in dropped:
            continue
        if lower == "location" and value.startswith(base + "/"):
            value = external + value[len(base) :]  # an upstream's own address never leaks out
        headers.add(name, value)
    return headers


class Forwarder:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        metrics: ProxyMetrics,
        *,
        retry_body_bytes: int,
        connect_timeout: float,
        read_timeout: float,
        external: str,
    ) -> None:
        self._session = session
        self._external = external.rstrip("/")  # what Location headers naming an upstream become
        self._metrics = metrics
        self._retry_body_bytes = retry_body_bytes
        self._read_timeout = read_timeout
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )

    async def forward(
        self, request: web.Request, pool: Pool, request_id: str, offer: Offer | None = None
    ) -> tuple[web.StreamResponse, Outcome]:
        """The upstream's answer, relayed; with `offer`, the upstream may answer with an internal
        redirect, sent from here (local_blobs.Unavailable, before any byte went to the client,
        when that file will not do)."""
        candidates = pool.candidates()
        if not candidates:
            raise NoUpstream(pool.name, "no instance is configured")
        body = RequestBody(request, hold_up_to=self._retry_body_bytes, stall_seconds=self._read_timeout)
        await body.read_if_held()
        headers = upstream_headers(request, request_id)
        if offer is not None:
            headers[ACCEL_REQUEST] = ACCEL_BLOBS
        once = body.held is not None and upload_write(request.method, request.path)
        if once:
            headers[UPLOAD_WRITE] = uuid.uuid4().hex
        target = origin_form(request.raw_path)
        last: BaseException | None = None
        for attempt, upstream in enumerate(candidates, 1):
            if attempt > 1:
                self._metrics.retries.labels(pool.name).inc()
            upstream.in_flight += 1
            try:
                response = await self._attempt(request.method, upstream.url + target, headers, body)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                upstream.in_flight -= 1
                if body.failure is not None:
                    raise body.failure from exc  # the client's body broke: no upstream is to blame
                last = exc
                self._failed(pool, upstream, exc)
                if body.replayable and (
                    once or repeatable(request.method, request.path) or not _reached(exc)
                ):
                    continue
                break
            try:
                pool.succeeded(upstream)
                local = offer is not None and response.status == 200 and ACCEL_REDIRECT in response.headers
                if local and offer is not None:
                    out = await self._send_local(request, response, upstream, request_id, offer)
                else:
                    out = await self._relay(request, response, upstream, request_id, pool)
            finally:
                upstream.in_flight -= 1
                response.release()
            return out, Outcome(upstream.url, response.status, attempt, body.sent, local)
        reason = _describe(last) if last is not None else "no attempt"
        if isinstance(last, TimeoutError) and _reached(last):
            raise UpstreamTimedOut(pool.name, reason)
        raise NoUpstream(pool.name, reason)

    async def _attempt(
        self, method: str, url: str, headers: CIMultiDict[str], body: RequestBody
    ) -> aiohttp.ClientResponse:
        request = self._session.request(
            method,
            url,
            headers=headers,
            data=body.payload(),
            allow_redirects=False,
            auto_decompress=False,
            timeout=self._timeout,
        )
        if not body.exists:
            return await request  # nothing to send: sock_read covers the wait for the answer
        clock = asyncio.timeout(None)
        try:
            async with clock:
                body.clock = clock
                try:
                    return await request
                finally:
                    body.clock = None
        except TimeoutError:
            if clock.expired():
                body.abort_upstream()
            raise

    def _failed(self, pool: Pool, upstream: Upstream, exc: BaseException) -> None:
        pool.failed(upstream, _describe(exc), failure_kind(exc))

    async def _relay(
        self,
        request: web.Request,
        upstream_response: aiohttp.ClientResponse,
        upstream: Upstream,
        request_id: str,
        pool: Pool,
    ) -> web.StreamResponse:
        headers = self._client_headers(upstream_response, upstream, request_id)
        length = upstream_response.headers.get("Content-Length")
        size = int(length) if length is not None and length.isdigit() else None
        small = request.method == "HEAD" or (size is not None and size <= SMALL_BODY)
        out = (_HeadersWithBody if small else web.StreamResponse)(
            status=upstream_response.status, reason=upstream_response.reason, headers=headers
        )
        if size is not None:
            out.content_length = size
        await out.prepare(request)
        if request.method != "HEAD":
            if request.transport is not None:
                # Let a MiB queue towards the client before pausing: fewer wake-ups per MiB.
                request.transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_HIGH // 4)
            try:
                async for chunk in upstream_response.content.iter_any():
                    await out.write(chunk)  # waits while the client is slow: back-pressure
            except (TimeoutError, aiohttp.ClientError) as exc:
                if isinstance(exc, ConnectionResetError):
                    raise  # a write to the client failed: it left, and no upstream is to blame
                # The upstream died or fell silent mid-body: cut the client off too, so it sees
                # a short read (never a complete-looking truncated blob).
                self._failed(pool, upstream, exc)
                raise Truncated(_describe(exc)) from exc
        await out.write_eof()
        return out

    def _client_headers(
        self, upstream_response: aiohttp.ClientResponse, upstream: Upstream, request_id: str
    ) -> CIMultiDict[str]:
        headers = response_headers(upstream_response, upstream.url, self._external)
        headers["X-Request-Id"] = request_id
        return headers

    async def _send_local(
        self,
        request: web.Request,
        upstream_response: aiohttp.ClientResponse,
        upstream: Upstream,
        request_id: str,
        offer: Offer,
    ) -> web.StreamResponse:
        """The file the upstream redirected to, with the upstream's headers, by sendfile."""
        headers = self._client_headers(upstream_response, upstream, request_id)
        out = await offer.respond(upstream_response.headers, headers)
        await out.prepare(request)  # FileResponse sends it all here: Range, 304, 416 included
        return out


class _HeadersWithBody(web.StreamResponse):
    """Headers held back until the body's first bytes (or its end), so that a small answer
    leaves in one write, as aiohttp's `Response` does; `StreamResponse` sends them on `prepare`,
    one more syscall per request (a tenth of the proxy's CPU on a manifest GET)."""

    _send_headers_immediately = False


def repeatable(method: str, path: str) -> bool:
    """Whether sending the request twice does what sending it once does."""
    return method in IDEMPOTENT or (method == "POST" and _UPLOAD_START.match(path) is not None)


def upload_write(method: str, path: str) -> bool:
    """Whether the request writes to an upload (a PATCH, or the closing PUT, with a body)."""
    return method in ("PATCH", "PUT") and _UPLOAD.match(path) is not None


def _reached(exc: BaseException) -> bool:
    """Whether the upstream may have seen the request (anything but a failed connect)."""
    return not isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)


def failure_kind(exc: BaseException) -> str:
    """How an attempt failed, for the failures metric (its kinds are listed in metrics.py)."""
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return "connect"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "truncated"  # raised only for a body, once its headers came
    if isinstance(exc, aiohttp.ClientConnectionError | ConnectionError):
        return "reset"
    if isinstance(exc, aiohttp.ClientResponseError):
        return "protocol"
    return "other"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not isinstance(exc, aiohttp.ClientError):
        return "TimeoutError: the upstream took no request byte in time"
    return f"{type(exc).__name__}: {exc}"
