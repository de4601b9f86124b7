"""A site's load-balanced address in front of its proxies, as a keepalived VIP or a DNS name with
several addresses gives: each TCP connection goes to the next proxy in turn, and to the other
one when that one refuses the connection. It knows nothing of HTTP: a connection cut by a dying
proxy is cut for the client too (whose retries then find the other proxy).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import Sequence

from tests.support.processes import free_port

CONNECT_TIMEOUT = 2.0


class Balancer:
    def __init__(self, targets: Sequence[tuple[str, int]], host: str = "127.0.0.1") -> None:
        self.targets = list(targets)
        self.host = host
        self.port = free_port(host)
        self.connections = 0
        self.refused = 0  # connects a target refused (moved on to the next)
        self._turn = itertools.count()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="balancer", daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> Balancer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)
        return self

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, backlog=512)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        start = next(self._turn)
        for i in range(len(self.targets)):
            host, port = self.targets[(start + i) % len(self.targets)]
            try:
                return await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
            except (OSError, TimeoutError):
                self.refused += 1
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        upstream = await self._connect()
        try:
            if upstream is None:
                return
            up_reader, up_writer = upstream
            try:
                await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
            finally:
                up_writer.close()
        finally:
            writer.close()
            self._tasks.discard(task)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(256 * 1024):
                writer.write(data)
                await writer.drain()
        # One side finished: the other must see it too, cut (reset) or closed.
        with contextlib.suppress(OSError):
            if writer.can_write_eof():
                writer.write_eof()
