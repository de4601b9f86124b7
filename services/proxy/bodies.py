"""The request body as the forwarder sends it, and the one rule for holding it for a retry.

A body is held (read whole before the first attempt, so that any attempt can send it again)
when its length is announced and at most `retry_body_bytes`. Any other body streams from the
client to one upstream, and can move to the next instance only while none of it has been read.

While a chunk is on its way to the upstream the attempt's stall clock runs: an upstream that
takes no byte for `read_timeout_seconds` is silent, like one that sends no byte back. While the
proxy waits for the client the clock stops: a slow client is not the upstream's fault (the
client's silence is `WHARF_SERVING__BODY_TIMEOUT_SECONDS`' business).

A streamed body can be given a spool (spool.py): each chunk read from the client is kept there
before it goes out, so that a continuation (`resume`) can send the upstream's next instance the
bytes from any point of it, then the rest of the client's body. `freeze` ends the current
attempt's hold on the client's body first: a reader of an attempt that failed never reads on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import AsyncIterablePayload

from wharf_proxy.spool import Spool


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
        self, request: web.Request, *, hold_up_to: int, stall_seconds: float, spool: Spool | None = None
    ) -> None:
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
        self.spool = spool if self.exists and not self._hold else None
        self._epoch = 0  # bumped by `freeze`: the readers of earlier attempts stop
        self._reading = asyncio.Lock()  # held while a chunk is read from the client and spooled

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

    async def freeze(self) -> bool:
        """Stop the readers of earlier attempts (one reading a chunk finishes it first) and
        write the spool out; whether the spool holds the `sent` bytes read so far."""
        async with self._reading:
            self._epoch += 1
        return self.spool is not None and await self.spool.settle() and self.spool.size == self.sent

    def resume(self, skip: int) -> _Payload:
        """The body from its byte `skip` on: what the spool holds past it, then the client's
        body as it comes (call after `freeze`)."""
        return _Payload(self, self._resume(skip, self._epoch))

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
        epoch = self._epoch
        content = self._request.content
        loop = asyncio.get_running_loop()
        while True:
            async with self._reading:
                if epoch != self._epoch:
                    return  # a later attempt reads the body now
                self._set_clock(None)
                try:
                    chunk = await content.readany()  # whatever arrived, without re-slicing it
                except Exception as exc:
                    self.failure = ClientBodyFailed(exc)
                    raise
                if not chunk:
                    return
                self.sent += len(chunk)
                if self.spool is not None:
                    await self.spool.add(chunk)  # kept before it leaves, however that ends
            self._set_clock(loop.time() + self._stall_seconds)
            yield chunk  # resumed once the upstream connection took the chunk

    async def _resume(self, skip: int, epoch: int) -> AsyncIterator[bytes]:
        assert self.spool is not None
        loop = asyncio.get_running_loop()
        async for data in self.spool.read(skip, self.sent):
            if epoch != self._epoch:
                return
            self._set_clock(loop.time() + self._stall_seconds)
            yield data
        if epoch == self._epoch:
            async for chunk in self._stream():
                yield chunk

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
