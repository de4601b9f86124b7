"""Forwarding one request to a pool: streaming both ways, retrying on the next instance when
that cannot duplicate or lose anything, and giving up on an upstream that falls silent.

A request moves to the next instance when the attempt failed before any response came back,
its body can be sent again (`bodies.RequestBody.replayable`), and either the request is
`repeatable` or the upstream cannot have seen the request (the connection failed), or it is a
write to an upload whose body is held: that carries an id of the proxy's (`X-Wharf-Upload-Write`)
by which the registry takes a repeat of it once. A large body that was partly sent is never
replayed whole; when it goes to an upload, it is continued on another instance from the
upload's committed offset, out of the spool (continuation.py), and only when that cannot be done
does the client get 503 (it may retry itself).

An upstream that dies in the middle of a blob's body is continued the same way: the rest is
asked of another instance with a Range request, and the client sees one unbroken response; only
when no instance can send it is the client cut off (a short read, never a complete-looking one).

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
from aiohttp.payload import AsyncIterablePayload
from multidict import CIMultiDict, MultiMapping

from wharf_proxy import continuation
from wharf_proxy.bodies import RequestBody, holds
from wharf_proxy.continuation import Download, Refused
from wharf_proxy.local_blobs import Offer
from wharf_proxy.metrics import ProxyMetrics
from wharf_proxy.paths import origin_form
from wharf_proxy.pools import Pool, Upstream
from wharf_proxy.spool import SpoolBudget
from wharf_shared.accel import ACCEL_BLOBS, ACCEL_REDIRECT, ACCEL_REQUEST, INTERNAL_HEADERS, UPLOAD_WRITE
from wharf_shared.logging import get_logger

log = get_logger(__name__)

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
    """The response body broke off after its headers went to the client; the message says how."""


class ClientGone(Truncated):
    """The client stopped taking the response: no upstream is to blame."""


class _Broken(Exception):
    """The upstream's body broke off after `written` of its bytes went to the client."""

    def __init__(self, cause: BaseException, written: int) -> None:
        super().__init__(_describe(cause))
        self.cause = cause
        self.written = written


@dataclass
class Outcome:
    upstream: str
    status: int
    attempts: int
    sent_bytes: int
    local: bool = False  # the body was sent from the storage root, by the upstream's redirect
    continued: int = 0  # times the transfer moved to another instance after its upstream died


@dataclass
class _Upload:
    """A body going to an upload, spooled: where the upload stood when the body began."""

    upload_id: str
    start: int


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
        spools: SpoolBudget,
    ) -> None:
        self._session = session
        self._spools = spools
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
        upload = continuation.upload_id(request.method, request.path) if request.body_exists else None
        spooled = (
            upload is not None
            and not holds(request.content_length, self._retry_body_bytes)
            and self._spools.fits(request.content_length)
        )
        spool = self._spools.spool() if spooled else None
        body = RequestBody(
            request, hold_up_to=self._retry_body_bytes, stall_seconds=self._read_timeout, spool=spool
        )
        try:
            return await self._forward(request, pool, request_id, offer, candidates, body, upload)
        finally:
            if spool is not None:
                await spool.close()

    async def _forward(
        self,
        request: web.Request,
        pool: Pool,
        request_id: str,
        offer: Offer | None,
        candidates: list[Upstream],
        body: RequestBody,
        upload_id: str | None,
    ) -> tuple[web.StreamResponse, Outcome]:
        await body.read_if_held()
        headers = upstream_headers(request, request_id)
        target = origin_form(request.raw_path)
        upload = None
        if body.spool is not None and upload_id is not None:
            upload = await self._upload_start(request, pool, upload_id, headers, target)
            if upload is None:
                await body.spool.close()  # no continuation without knowing where the body began
        if offer is not None:
            headers[ACCEL_REQUEST] = ACCEL_BLOBS
        once = body.held is not None and upload_write(request.method, request.path)
        if once:
            headers[UPLOAD_WRITE] = uuid.uuid4().hex
        last: BaseException | None = None
        response: aiohttp.ClientResponse | None = None
        continued = 0
        attempts = 0
        for candidate in candidates:
            upstream = candidate  # the continuation of an upload may end on another one
            attempts += 1
            if attempts > 1:
                self._metrics.retries.labels(pool.name).inc()
            upstream.in_flight += 1
            try:
                response = await self._attempt(request.method, upstream.url + target, headers, body)
                break
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
                if upload_id is not None:  # an upload's body, cut off: go on elsewhere if it can
                    pushed = None
                    if upload is not None:
                        pushed = await self._continue_push(
                            request, pool, upload, body, headers, target, upstream
                        )
                    if pushed is None:
                        self._metrics.continued.labels(pool.name, "push", "failed").inc()
                    else:
                        upstream, response, continued = pushed
                break
        if response is None:
            reason = _describe(last) if last is not None else "no attempt"
            if isinstance(last, TimeoutError) and _reached(last):
                raise UpstreamTimedOut(pool.name, reason)
            raise NoUpstream(pool.name, reason)
        try:
            pool.succeeded(upstream)
            local = offer is not None and response.status == 200 and ACCEL_REDIRECT in response.headers
            if local and offer is not None:
                out = await self._send_local(request, response, upstream, request_id, offer)
            else:
                headers.pop(ACCEL_REQUEST, None)
                out, pulled = await self._relay(
                    request, response, upstream, request_id, pool, headers, target
                )
                continued += pulled
        finally:
            upstream.in_flight -= 1
            response.release()
        return out, Outcome(upstream.url, response.status, attempts + continued, body.sent, local, continued)

    async def _attempt(
        self,
        method: str,
        url: str,
        headers: CIMultiDict[str],
        body: RequestBody | None,
        payload: AsyncIterablePayload | None = None,
    ) -> aiohttp.ClientResponse:
        """One request upstream: with `body`'s payload for an attempt, or `payload` (the body's
        continuation); without a body when `body` is None."""
        if payload is None and body is not None:
            payload = body.payload()
        request = self._session.request(
            method,
            url,
            headers=headers,
            data=payload,
            allow_redirects=False,
            auto_decompress=False,
            timeout=self._timeout,
        )
        if body is None or not body.exists:
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
        headers: CIMultiDict[str],
        target: str,
    ) -> tuple[web.StreamResponse, int]:
        """The response relayed, and how many times it moved to another instance on the way."""
        client_headers = self._client_headers(upstream_response, upstream, request_id)
        length = upstream_response.headers.get("Content-Length")
        size = int(length) if length is not None and length.isdigit() else None
        small = request.method == "HEAD" or (size is not None and size <= SMALL_BODY)
        out = (_HeadersWithBody if small else web.StreamResponse)(
            status=upstream_response.status, reason=upstream_response.reason, headers=client_headers
        )
        if size is not None:
            out.content_length = size
        await out.prepare(request)
        continued = 0
        if request.method != "HEAD":
            if request.transport is not None:
                # Let a MiB queue towards the client before pausing: fewer wake-ups per MiB.
                request.transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_HIGH // 4)
            download = Download.of(
                request.method, request.path, upstream_response.status, upstream_response.headers
            )
            try:
                await _copy(upstream_response, out, size)
            except _Broken as broken:
                # The upstream died or fell silent mid-body: continue from another instance, or
                # cut the client off too, so that it sees a short read.
                self._failed(pool, upstream, broken.cause)
                if download is None:
                    raise Truncated(f"upstream cut off: {broken}") from broken.cause
                continued = await self._continue_pull(
                    request, out, download, broken, pool, headers, target, upstream
                )
        await out.write_eof()
        return out, continued

    async def _continue_pull(
        self,
        request: web.Request,
        out: web.StreamResponse,
        download: Download,
        broken: _Broken,
        pool: Pool,
        headers: CIMultiDict[str],
        target: str,
        failed: Upstream,
    ) -> int:
        """Send the client the rest of `download`, asked of other instances (Range requests)
        until it is all there; the number of continuations. Truncated when no instance could
        send the next byte, or none moved it on in as many tries as the pool has instances."""
        written = broken.written
        asked: CIMultiDict[str] = CIMultiDict(
            (name, value) for name, value in headers.items() if name.lower() not in continuation.PULL_DROPPED
        )
        continued = 0
        idle = 0  # continuations in a row that broke off before sending a byte
        while written < download.length:
            next_byte = download.first + written
            asked["Range"] = download.range_header(next_byte)
            opened = None
            if idle < len(pool.upstreams):
                opened = await self._open_rest(pool, target, asked, download, next_byte, failed)
            if opened is None:
                self._metrics.continued.labels(pool.name, "pull", "failed").inc()
                raise Truncated(f"upstream cut off: {broken}; no instance could continue at byte {next_byte}")
            upstream, response = opened
            self._metrics.continued.labels(pool.name, "pull", "continued").inc()
            log.info("transfer_continued", direction="pull", upstream=upstream.url, at=next_byte)
            continued += 1
            try:
                written += await _copy(response, out, download.last - next_byte + 1)
                idle = 0
            except _Broken as again:
                self._failed(pool, upstream, again.cause)
                written += again.written
                idle = 0 if again.written else idle + 1
                broken, failed = again, upstream
            finally:
                upstream.in_flight -= 1
                response.release()
        return continued

    async def _open_rest(
        self,
        pool: Pool,
        target: str,
        asked: CIMultiDict[str],
        download: Download,
        next_byte: int,
        failed: Upstream,
    ) -> tuple[Upstream, aiohttp.ClientResponse] | None:
        """The first instance's answer that continues `download` at `next_byte` (its in_flight
        counted); None when none does."""
        for upstream in _failed_last(pool, failed):
            upstream.in_flight += 1
            try:
                response = await self._attempt("GET", upstream.url + target, asked, None)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                upstream.in_flight -= 1
                self._failed(pool, upstream, exc)
                continue
            try:
                download.check(next_byte, response.status, response.headers)
            except Refused as exc:
                upstream.in_flight -= 1
                response.release()
                log.warning("continuation_refused", direction="pull", upstream=upstream.url, reason=str(exc))
                continue
            pool.succeeded(upstream)
            return upstream, response
        return None

    async def _upload_start(
        self, request: web.Request, pool: Pool, upload_id: str, headers: CIMultiDict[str], target: str
    ) -> _Upload | None:
        """Where the upload stands as the body begins: the client's Content-Range, else its status;
        None when neither says."""
        start = continuation.client_start(request.headers)
        if start is None:
            start = await self._upload_offset(pool, upload_id, headers, target, None)
        return _Upload(upload_id, start) if start is not None else None

    async def _upload_offset(
        self,
        pool: Pool,
        upload_id: str,
        headers: CIMultiDict[str],
        target: str,
        failed: Upstream | None,
    ) -> int | None:
        """The upload's committed offset, asked of the first instance that answers (`GET` on the
        upload); None when none answers, or the answer is not an upload's status."""
        asked: CIMultiDict[str] = CIMultiDict(
            (name, value) for name, value in headers.items() if not name.lower().startswith("content-")
        )
        status_target = target.split("?", 1)[0]
        for upstream in _failed_last(pool, failed):
            upstream.in_flight += 1
            try:
                response = await self._attempt("GET", upstream.url + status_target, asked, None)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                self._failed(pool, upstream, exc)
                continue
            finally:
                upstream.in_flight -= 1
            try:
                await response.read()
                return continuation.upload_offset(upload_id, response.status, response.headers)
            except Refused as exc:
                log.warning("upload_status_refused", upload=upload_id, upstream=upstream.url, reason=str(exc))
                return None
            except (TimeoutError, aiohttp.ClientError) as exc:
                self._failed(pool, upstream, exc)
            finally:
                response.release()
        return None

    async def _continue_push(
        self,
        request: web.Request,
        pool: Pool,
        upload: _Upload,
        body: RequestBody,
        headers: CIMultiDict[str],
        target: str,
        failed: Upstream,
    ) -> tuple[Upstream, aiohttp.ClientResponse, int] | None:
        """After `failed` died with the body partly sent: send the rest of it, from the upload's
        committed offset, to another instance; its answer (its in_flight counted) and the number
        of continuations sent, or None when no instance could take it."""
        continued = 0
        for _round in range(2 * len(pool.upstreams) + 1):
            if not await body.freeze():
                break  # the spool does not hold what was sent
            committed = await self._upload_offset(pool, upload.upload_id, headers, target, failed)
            if committed is None:
                break
            try:
                skip = continuation.resume_point(upload.start, committed, body.sent)
            except Refused as exc:
                log.warning(
                    "continuation_refused", direction="push", upload=upload.upload_id, reason=str(exc)
                )
                break
            length = request.content_length
            remaining = None if length is None else length - skip
            sent: CIMultiDict[str] = CIMultiDict(
                (name, value)
                for name, value in headers.items()
                if name.lower() not in continuation.PUSH_DROPPED
            )
            if remaining is not None:
                sent["Content-Length"] = str(remaining)
            fence = continuation.fence(committed, remaining)
            if fence is not None:
                sent[fence[0]] = fence[1]
            upstream = _failed_last(pool, failed)[0]
            upstream.in_flight += 1
            try:
                response = await self._attempt(
                    request.method, upstream.url + target, sent, body, body.resume(skip)
                )
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                upstream.in_flight -= 1
                if body.failure is not None:
                    raise body.failure from exc
                self._failed(pool, upstream, exc)
                failed = upstream
                continue
            continued += 1
            if response.status == 416:
                # The upload moved on since its status was read (the dead instance's request
                # recorded after all): read it again.
                upstream.in_flight -= 1
                response.release()
                log.info("continuation_fenced", upload=upload.upload_id, at=committed, upstream=upstream.url)
                continue
            self._metrics.continued.labels(pool.name, "push", "continued").inc()
            log.info("transfer_continued", direction="push", upstream=upstream.url, at=committed, skip=skip)
            return upstream, response, continued
        return None

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


async def _copy(upstream_response: aiohttp.ClientResponse, out: web.StreamResponse, size: int | None) -> int:
    """The upstream's body to the client; the bytes copied. _Broken when the upstream's side
    breaks or ends short of `size`, ClientGone when the client's does."""
    content = upstream_response.content
    written = 0
    while True:
        try:
            chunk = await content.readany()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _Broken(exc, written) from exc
        if not chunk:
            break
        try:
            await out.write(chunk)  # waits while the client is slow: back-pressure
        except (ConnectionError, aiohttp.ClientError) as exc:
            raise ClientGone(f"the client went away: {_describe(exc)}") from exc
        written += len(chunk)
    if size is not None and written < size:
        raise _Broken(aiohttp.ClientPayloadError(f"received {written} of {size} bytes"), written)
    return written


def _failed_last(pool: Pool, failed: Upstream | None) -> list[Upstream]:
    """The pool's candidates, the instance that just failed last (it may have been a passing
    fault), or only once the others were tried."""
    candidates = pool.candidates()
    return [u for u in candidates if u is not failed] + [u for u in candidates if u is failed]


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
