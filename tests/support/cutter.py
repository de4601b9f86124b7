"""TCP relays in front of upstream processes that break a transfer midway, as an instance that
dies mid-request does for the proxy: once a connection has carried a set number of bytes one
way since the plan was armed, both of its sides are reset (RST). Everything else is relayed
byte for byte."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, field

from tests.support.processes import free_port

DOWN = "down"  # upstream → proxy: a response body
UP = "up"  # proxy → upstream: a request body


@dataclass
class CutPlan:
    """Shared by relays: cut the next connections that carry `afters[k]` bytes `direction` since
    the plan was armed, one threshold per cut (0: at the first byte)."""

    direction: str = DOWN
    afters: tuple[int, ...] = ()
    generation: int = 0
    cuts: list[str] = field(default_factory=list)  # the relays that cut, in order
    _armed_cuts: int = 0  # len(cuts) when armed

    def arm(self, direction: str, *afters: int) -> None:
        self.direction, self.afters = direction, afters
        self.generation += 1
        self._armed_cuts = len(self.cuts)

    def threshold(self, direction: str) -> int | None:
        """How many bytes the next connection to cut carries first; None: no cut due."""
        done = len(self.cuts) - self._armed_cuts
        if direction != self.direction or done >= len(self.afters):
            return None
        return self.afters[done]


class CutRelay:
    def __init__(self, name: str, target_host: str, target_port: int, plan: CutPlan) -> None:
        self.name = name
        self._target = (target_host, target_port)
        self._plan = plan
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._open: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> CutRelay:
        self.port = free_port()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._open):
            writer.transport.abort()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._open.add(client_writer)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        except OSError:
            client_writer.transport.abort()
            self._open.discard(client_writer)
            self._tasks.discard(task)
            return
        writers = (client_writer, upstream_writer)
        self._open.add(upstream_writer)

        def cut() -> None:
            for writer in writers:
                sock = writer.get_extra_info("socket")
                if sock is not None:  # a reset, not an orderly close: SO_LINGER 0
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()

        async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: str) -> None:
            generation, moved = self._plan.generation, 0
            try:
                while data := await reader.read(256 * 1024):
                    plan = self._plan
                    if plan.generation != generation:
                        generation, moved = plan.generation, 0
                    moved += len(data)
                    threshold = plan.threshold(direction)
                    if threshold is not None and moved >= threshold:
                        plan.cuts.append(self.name)
                        cut()
                        return
                    writer.write(data)
                    await writer.drain()
                writer.write_eof()
            except (ConnectionError, OSError, RuntimeError):
                cut()

        try:
            await asyncio.gather(
                pump(client_reader, upstream_writer, UP), pump(upstream_reader, client_writer, DOWN)
            )
        finally:
            for writer in writers:
                writer.transport.abort()
                self._open.discard(writer)
            self._tasks.discard(task)
