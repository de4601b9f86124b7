"""Blob files sent with sendfile(2) under uvloop.

aiohttp's FileResponse (Range, conditional requests, 416) calls `loop.sendfile`, which uvloop
does not implement: it then reads the file into Python a chunk at a time and writes each one,
about twice the CPU per MiB. `BlobFileResponse` keeps FileResponse's logic and sends the body
with `os.sendfile` on the connection's socket instead, when the connection is plain TCP (TLS
needs the bytes in user space: FileResponse's own path then).

Each sendfile call runs in a worker thread, so that a file that is not in the page cache (or
on a slow network file system) stalls one thread rather than the event loop; the socket is
non-blocking, so a call returns as soon as the socket's buffer is full, and the loop waits for
the socket to drain without holding a thread. A call works on duplicates of both descriptors,
closed by the thread itself: a connection closed meanwhile (its number reused by another)
never receives bytes meant for this one.

The response is also exactly the file named: FileResponse would send a compressed sibling
(`data.gz`) to a client accepting gzip, and blob bytes must match their digest.
"""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import IO, Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.web_fileresponse import NOSENDFILE  # AIOHTTP_NOSENDFILE=1 turns it off here too

MAX_CALL = 8 * 1024 * 1024  # bytes per sendfile call: bounds one thread's disk wait


class BlobFileResponse(web.FileResponse):
    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:  # sent by a handler that times it: FileResponse's prepare would start over
            return await web.StreamResponse.prepare(self, request)
        return await super().prepare(request)

    def _get_file_path_stat_encoding(self, accept_encoding: str) -> tuple[Path | None, os.stat_result, None]:
        st = self._path.stat()
        return (self._path if stat.S_ISREG(st.st_mode) else None), st, None

    async def _sendfile(
        self, request: web.BaseRequest, fobj: IO[Any], offset: int, count: int
    ) -> AbstractStreamWriter:
        transport = request.transport
        tls = transport is not None and transport.get_extra_info("sslcontext") is not None
        if NOSENDFILE or transport is None or tls or self.compression:
            return await super()._sendfile(request, fobj, offset, count)
        sock = transport.get_extra_info("socket")
        if sock is None:
            return await super()._sendfile(request, fobj, offset, count)
        writer = await web.StreamResponse.prepare(self, request)  # the status line and headers
        assert writer is not None
        await send_file(transport, sock.fileno(), fobj.fileno(), offset, count)
        await self.write_eof()
        return writer


async def send_file(transport: asyncio.Transport, sock: int, file: int, offset: int, count: int) -> None:
    """`count` bytes of `file` from `offset` to the socket under `transport`, after whatever the
    transport holds. ConnectionResetError when the connection goes away."""
    loop = asyncio.get_running_loop()
    while count > 0:
        while transport.get_write_buffer_size():  # the headers (or anything before) go first
            await _writable(loop, transport, sock)
        if transport.is_closing():
            raise ConnectionResetError("the client went away")
        sent = await loop.run_in_executor(
            None, _send_some, os.dup(sock), os.dup(file), offset, min(count, MAX_CALL)
        )
        if sent is None:  # the socket's buffer is full
            await _writable(loop, transport, sock)
            continue
        if sent == 0:
            raise OSError(f"the file ended {count} bytes early")
        offset += sent
        count -= sent


def _send_some(sock: int, file: int, offset: int, count: int) -> int | None:
    """One sendfile call on descriptors this call owns; None when the socket would block."""
    try:
        return os.sendfile(sock, file, offset, count)
    except BlockingIOError:
        return None
    finally:
        os.close(sock)
        os.close(file)


async def _writable(loop: asyncio.AbstractEventLoop, transport: asyncio.Transport, sock: int) -> None:
    """Wait until the socket takes bytes again (watched through a duplicate: the transport's
    own descriptor is the loop's, and a loop refuses a second watcher on it)."""
    if transport.is_closing():
        raise ConnectionResetError("the client went away")
    waiter = loop.create_future()
    watched = os.dup(sock)

    def ready() -> None:
        if not waiter.done():
            waiter.set_result(None)

    loop.add_writer(watched, ready)
    try:
        await waiter
    finally:
        loop.remove_writer(watched)
        os.close(watched)
