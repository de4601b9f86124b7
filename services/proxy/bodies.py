"""The request body as the forwarder sends it, and the one rule for holding it for a retry.

A body is held (read whole before the first attempt, so that any attempt can send it again)
when its length is announced and at most `retry_body_bytes`. Any other body streams from the
client to one upstream, and can move to the next instance only while none of it has been read.

While a chunk is on its way to the upstream the attempt's stall clock runs: an upstream that
takes no byte for `read_timeout_seconds` is silent, like one that sends no byte back. While the
proxy waits for the client the clock stops: a slow client is not the upstream's fault (the
client's silence is `WHARF_SERVING__BODY_TIMEOUT_SECONDS`' business).

A streamed body with a `Content-Length`, between plain TCP connections on Linux, is relayed by
`splice(2)` (`splices`): the kernel moves the bytes from the client's socket through a pipe to
the upstream's, so no body byte passes through Python. The same rules hold there, kept by the
relay thread itself (`wharf_proxy.splicing`): the stall clock runs only while bytes wait for the
upstream, the client's silence ends the body, and a client that breaks off is ClientBodyFailed.
The client's HTTP parser never sees the spliced bytes, so that connection closes after its answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import AsyncIterablePayload

from wharf_proxy import splicing
from wharf_shared.logging import get_logger

log = get_logger(__name__)


class ClientBodyFailed(Exception):
    """Reading the client's body failed: it broke off, or its framing was malformed."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = cause


def holds(length: int | None, limit: int) -> bool:
    """Whether a body of `length` bytes (None: not announced, i.e. chunked) is held for a retry."""
    return length is not None and length <= limit


class RequestBody:
    def __init__(
        self,
        request: web.Request,
        *,
        hold_up_to: int,
        stall_seconds: float,
        silence_seconds: float = 60.0,
    ) -> None:
        self._request = request
        self._silence_seconds = silence_seconds  # the client's, as WHARF_SERVING__BODY_TIMEOUT_SECONDS
        self._hold = request.body_exists and holds(request.content_length, hold_up_to)
        self._stall_seconds = stall_seconds
        self.exists = request.body_exists
        self.held: bytes | None = None
        self.touched = False
        self.sent = 0
        self.failure: ClientBodyFailed | None = None
        self.clock: asyncio.Timeout | None = None  # the current attempt's stall clock
        self._upstream: asyncio.BaseTransport | None = None  # the current attempt's connection
        self._relay: splicing.Relay | None = None  # the current attempt's splice, while it runs

    async def read_if_held(self) -> None:
        if self._hold:
            try:
                self.held = await self._request.read()
            except Exception as exc:
                raise ClientBodyFailed(exc) from exc
            self.sent = len(self.held)

    @property
    def replayable(self) -> bool:
        """Whether another attempt can send the whole body again."""
        return self.held is not None or not self.exists or not self.touched

    def payload(self) -> AsyncIterablePayload | None:
        """The body for one attempt (a held body starts over each time)."""
        if self.held is not None:
            return _Payload(self, self._replay(self.held))
        return _Payload(self, self._stream()) if self.exists else None

    def abort_upstream(self) -> None:
        """Drop the attempt's connection at once: a graceful close would wait for the unsent
        body to drain into an upstream that takes none of it."""
        if self._relay is not None:
            self._relay.stop()  # its thread lets go of the sockets
        if self._upstream is not None:
            self._upstream.abort()  # type: ignore[attr-defined]
            self._upstream = None

    async def _replay(self, held: bytes) -> AsyncIterator[bytes]:
        if held:
            self._set_clock(asyncio.get_running_loop().time() + self._stall_seconds)
            yield held
        self._set_clock(None)

    async def _stream(self) -> AsyncIterator[bytes]:
        self.touched = True
        content = self._request.content
        loop = asyncio.get_running_loop()
        while True:
            self._set_clock(None)
            try:
                chunk = await content.readany()  # whatever arrived, without re-slicing it
            except Exception as exc:
                self.failure = ClientBodyFailed(exc)
                raise
            if not chunk:
                return
            self.sent += len(chunk)
            self._set_clock(loop.time() + self._stall_seconds)
            yield chunk  # resumed once the upstream connection took the chunk

    async def splice(self, writer: AbstractStreamWriter) -> bool:
        """Send the body by splice(2) if both connections allow it; False (nothing sent) if not."""
        request = self._request
        length = request.content_length
        upstream = getattr(writer, "transport", None)
        if length is None or upstream is None or getattr(writer, "chunked", True):
            return False
        client = request.transport
        if client is None or request.protocol is None:
            return False
        source = splicing.socket_fd(client)
        dest = splicing.socket_fd(upstream)
        if source is None or dest is None:
            return False
        self.touched = True
        # The client connection's parser never sees the spliced bytes: the connection closes after
        # the answer (set before the first await: the upstream may answer before the body is sent).
        request._message = request._message._replace(should_close=True)
        # Bytes aiohttp already received (and any its parser held back) go first, the usual way,
        # and nothing queued for the upstream may be overtaken by what the kernel appends.
        content = request.content
        protocol = request.protocol
        loop = asyncio.get_running_loop()
        while True:
            data = content.read_nowait(-1)  # may resume reading: the parser hands on what it held
            queued = isinstance(upstream, asyncio.WriteTransport) and upstream.get_write_buffer_size()
            if not data and not queued:
                if protocol._reading_paused:
                    return False  # the parser still holds bytes back: stream the usual way
                break
            self.sent += len(data)
            self._set_clock(loop.time() + self._stall_seconds)
            await _flushed(writer, upstream, data)
            self._set_clock(None)
        protocol.pause_reading()  # from here on the client's socket is the relay's alone
        writer.send_headers()  # a body that had no byte buffered yet: the head goes first
        if isinstance(upstream, asyncio.WriteTransport) and upstream.get_write_buffer_size():
            self._set_clock(loop.time() + self._stall_seconds)
            await _flushed(writer, upstream, b"")
            self._set_clock(None)
        relay = splicing.Relay(
            source,
            dest,
            length - content.total_bytes,
            stall_seconds=self._stall_seconds,
            silence_seconds=self._silence_seconds,
        )
        self._relay = relay
        try:
            await relay.run()
        except splicing.ClientBroke as exc:
            self.failure = ClientBodyFailed(exc.cause)
            if isinstance(exc.cause, TimeoutError):
                # As the server does for a silent body it parses (shared/serving.py): close.
                log.info("request_body_timeout", remote=request.remote, seconds=self._silence_seconds)
                protocol.force_close()
            raise self.failure from exc
        except TimeoutError:
            self.abort_upstream()  # silent: no graceful close into an upstream that takes nothing
            raise
        finally:
            self.sent += relay.sent
            self._relay = None
            content.feed_eof()  # the handler sees the body as read: nothing lingers for it
        return True

    def _set_clock(self, when: float | None) -> None:
        clock = self.clock
        if clock is not None and not clock.expired():
            clock.reschedule(when)


async def _flushed(writer: AbstractStreamWriter, upstream: asyncio.BaseTransport, data: bytes) -> None:
    """Write `data` (the head, if not sent yet, goes first) and wait until none of it is queued."""
    limits = None
    if isinstance(upstream, asyncio.WriteTransport):
        limits = upstream.get_write_buffer_limits()
        upstream.set_write_buffer_limits(high=0)  # drain then waits for an empty buffer
    try:
        if data:
            await writer.write(data)
        else:
            writer.send_headers()
        await writer.drain()
    finally:
        if limits is not None and isinstance(upstream, asyncio.WriteTransport):
            upstream.set_write_buffer_limits(high=limits[1], low=limits[0])  # the pool reuses it


class _Payload(AsyncIterablePayload):
    """aiohttp's payload for an async iterator, noting which connection it is written to."""

    def __init__(self, body: RequestBody, chunks: AsyncIterator[bytes]) -> None:
        super().__init__(chunks)
        self._body = body

    async def write_with_length(self, writer: AbstractStreamWriter, content_length: int | None) -> None:
        self._body._upstream = getattr(writer, "transport", None)
        if self._body.held is None and self._body.exists and await self._body.splice(writer):
            return
        await super().write_with_length(writer, content_length)
