"""The request body as the forwarder sends it, and the one rule for holding it for a retry.

A body is held (read whole before the first attempt, so that any attempt can send it again)
when its length is announced and at most `retry_body_bytes`. Any other body streams from the
client to one upstream, and can move to the next instance only while none of it has been read.

While a chunk is on its way to the upstream the attempt's stall clock runs: an upstream that
takes no byte for `read_timeout_seconds` is silent, like one that sends no byte back. While the
proxy waits for the client the clock stops: a slow client is not the upstream's fault (the
client's silence is `WHARF_SERVING__BODY_TIMEOUT_SECONDS`' business).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import AsyncIterablePayload


class ClientBodyFailed(Exception):
    """Reading the client's body failed: it broke off, or its framing was malformed."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = cause


def holds(length: int | None, limit: int) -> bool:
    """Whether a body of `length` bytes (None: not announced, i.e. chunked) is held for a retry."""
    return length is not None and length <= limit


class RequestBody:
    def __init__(self, request: web.Request, *, hold_up_to: int, stall_seconds: float) -> None:
        self._request = request
        self._hold = request.body_exists and holds(request.content_length, hold_up_to)
        self._stall_seconds = stall_seconds
        self.exists = request.body_exists
        self.held: bytes | None = None
        self.touched = False
        self.sent = 0
        self.failure: ClientBodyFailed | None = None
        self.clock: asyncio.Timeout | None = None  # the current attempt's stall clock
        self._upstream: asyncio.BaseTransport | None = None  # the current attempt's connection

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

    def _set_clock(self, when: float | None) -> None:
        clock = self.clock
        if clock is not None and not clock.expired():
            clock.reschedule(when)


class _Payload(AsyncIterablePayload):
    """aiohttp's payload for an async iterator, noting which connection it is written to."""

    def __init__(self, body: RequestBody, chunks: AsyncIterator[bytes]) -> None:
        super().__init__(chunks)
        self._body = body

    async def write_with_length(self, writer: AbstractStreamWriter, content_length: int | None) -> None:
        self._body._upstream = getattr(writer, "transport", None)
        await super().write_with_length(writer, content_length)
