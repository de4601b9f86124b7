"""`RuntimeConfig` on a real PostgreSQL reached through a TCP relay the test can cut: the cache's
lifetime on an injected clock, and the last value kept while the database is away (an upload in
progress needs no SQL and must not fail because the settings cannot be re-read)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from tests.support.processes import free_port
from wharf_shared import runtime
from wharf_shared.db.engine import Database
from wharf_shared.runtime import STALE_RETRY_SECONDS, RuntimeConfig, RuntimeSettings


class Relay:
    """127.0.0.1:port → the database's address, byte for byte, until `cut`."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("db_kind", ["postgresql"], indirect=True)
async def test_the_last_value_serves_while_the_database_is_away(database_url: str) -> None:
    url = make_url(database_url)
    relay = Relay(url.host or "127.0.0.1", url.port or 5432)
    await relay.start()
    direct = Database(database_url, pool_size=1)
    relayed = Database(
        url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False), pool_size=1
    )
    clock = Clock()
    config = RuntimeConfig(relayed, RuntimeSettings(), cache_seconds=5, clock=clock)

    async def store(**values: Any) -> None:
        async with direct.transaction() as conn:
            await runtime.store(conn, **values)

    try:
        await store(read_only=False)
        assert (await config.get()).read_only is False
        # Kept for the cache's lifetime, then read afresh.
        await store(read_only=True)
        clock.now += 4
        assert (await config.get()).read_only is False
        clock.now += 2
        assert (await config.get()).read_only is True

        # The database goes away: the last value answers, whether the cache aged or was dropped.
        await relay.cut()
        await store(read_only=False)
        clock.now += 6
        assert (await config.get()).read_only is True
        config.invalidate()
        assert (await config.get()).read_only is True
        # It comes back: the next try (within STALE_RETRY_SECONDS) reads the change.
        await relay.start()
        clock.now += STALE_RETRY_SECONDS + 0.1
        assert (await config.get()).read_only is False
    finally:
        await relayed.close()
        await direct.close()
        with contextlib.suppress(Exception):
            await relay.cut()


async def test_a_first_read_that_fails_is_an_error() -> None:
    """With nothing read yet there is no last value to fall back on: the error surfaces."""
    dead = Database(f"postgresql://wharf:x@127.0.0.1:{free_port()}/none", pool_size=1)
    config = RuntimeConfig(dead, RuntimeSettings())
    try:
        with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the driver raises
            await config.get()
    finally:
        await dead.close()
