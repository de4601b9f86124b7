"""No event lost: push and delete events commit with their change (the outbox) and a relay moves
them to the stream at least once; consumers read them in groups and skip ids they have seen.

Redis outages are real here: a private redis-server (never the shared one) is stopped between a
push and its relay and started again.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from tests.service.registry.conftest import registry_settings
from tests.support.oci import V2, image_manifest
from tests.support.redis_server import RedisServer
from wharf_registry.app import create_app
from wharf_shared.db import outbox
from wharf_shared.db.engine import Database
from wharf_shared.events import EventConsumer, EventRelay, decode, new_event, write_events
from wharf_shared.metrics import Metrics

STREAM = "wharf:events"
GROUPS = ("audit", "replication")


async def eventually(condition: Callable[[], Any], within: float = 20.0) -> None:
    """Poll an async condition until it holds."""
    deadline = asyncio.get_running_loop().time() + within
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def outbox_rows(db: Database) -> int:
    async with db.read() as conn:
        return await outbox.count(conn)


class Collector:
    """A consumer group whose handler records every event it is given."""

    def __init__(self, redis: Redis, group: str) -> None:
        self.consumer = EventConsumer(redis, STREAM, group, f"{group}-1")
        self.handled: list[dict[str, Any]] = []

    async def handle(self, event: dict[str, Any]) -> None:
        self.handled.append(event)

    async def poll(self) -> None:
        await self.consumer.consume(self.handle)

    def ids(self) -> list[str]:
        return [event["id"] for event in self.handled]


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=4)
    try:
        yield database
    finally:
        await database.close()


async def test_events_survive_a_redis_outage(
    aiohttp_client: Any, tmp_path: Path, database_url: str, private_redis: RedisServer, db: Database
) -> None:
    settings = registry_settings(tmp_path, database_url, private_redis.url).model_copy(
        update={"events_relay_interval_seconds": 0.1, "events_relay_backoff_max_seconds": 0.4}
    )
    client: TestClient = await aiohttp_client(create_app(settings))  # type: ignore[type-arg]
    v2 = V2(client)
    before = Redis.from_url(private_redis.url)
    for group in GROUPS:  # the groups exist before the outage (and survive it: append-only file)
        await EventConsumer(before, STREAM, group, f"{group}-1").ensure_group()
    await before.aclose()
    redis = Redis.from_url(private_redis.url)
    try:
        config, layer = b'{"os":"linux"}', b"a layer"
        await v2.push_blob("library/app", config)
        await v2.push_blob("library/app", layer)
        body = image_manifest(config, [layer])

        private_redis.stop()
        # Redis is down between the commits and their relay: the push and the tag delete still
        # succeed, and their events wait in the outbox.
        assert (await v2.push_manifest("library/app", "v1", body)).status == 201
        assert (await v2.push_manifest("library/app", "v2", body)).status == 201
        assert (await v2.request("DELETE", "/v2/library/app/manifests/v2")).status == 202
        assert await outbox_rows(db) == 3

        private_redis.start()
        collectors = [Collector(redis, group) for group in GROUPS]
        for collector in collectors:
            await eventually(lambda c=collector: _polled_until(c, 3))
        await eventually(lambda: _equals(outbox_rows(db), 0))
        for collector in collectors:
            kinds = sorted((e["type"], e["data"]["tag"]) for e in collector.handled)
            assert kinds == [("delete", "v2"), ("push", "v1"), ("push", "v2")]
            assert len(set(collector.ids())) == 3  # once per group
        assert collectors[0].ids() == collectors[1].ids()
        push = next(e for e in collectors[0].handled if e["type"] == "push")
        assert push["data"]["repository"] == "library/app"
        assert push["request_id"]
    finally:
        await redis.aclose()


async def _polled_until(collector: Collector, want: int) -> bool:
    await collector.poll()
    return len(collector.handled) >= want


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


def _relay(db: Database, redis: Redis, **kwargs: Any) -> EventRelay:
    return EventRelay(db, redis, STREAM, 10_000, Metrics("test"), interval=0.1, backoff_max=0.4, **kwargs)


async def test_relay_crash_after_append_duplicates_an_entry_that_consumers_skip(
    db: Database, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis = Redis.from_url(redis_url)
    try:
        collectors = [Collector(redis, group) for group in GROUPS]
        for collector in collectors:
            await collector.consumer.ensure_group()
        events = [new_event("push", repository="library/app", n=i) for i in range(3)]
        await db.run(lambda conn: write_events(conn, events))
        relay = _relay(db, redis)

        async def crash(_conn: Any, _ids: Any) -> None:
            raise RuntimeError("the relay died after XADD")

        monkeypatch.setattr(outbox, "remove", crash)
        with pytest.raises(RuntimeError):
            await relay.relay_once()
        monkeypatch.undo()
        assert await outbox_rows(db) == 3  # not deleted: Redis got them, but the delete never ran
        assert await relay.drain() == 3
        assert await outbox_rows(db) == 0
        entries = await redis.xrange(STREAM)
        assert len(entries) == 2
        assert [e["id"] for e in decode(entries[0][1])] == [e["id"] for e in decode(entries[1][1])]

        for collector in collectors:
            await collector.poll()
            assert collector.ids() == [e["id"] for e in events]  # each once, in order
            pending = await redis.xpending(STREAM, collector.consumer._group)
            assert pending["pending"] == 0  # the duplicate entry was acknowledged too
    finally:
        await redis.aclose()


async def test_a_failing_handler_leaves_the_entry_pending(db: Database, redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        consumer = EventConsumer(redis, STREAM, "webhooks", "w-1")
        await consumer.ensure_group()
        event = new_event("delete", repository="library/app", kind="tag")
        await db.run(lambda conn: write_events(conn, [event]))
        await _relay(db, redis).drain()
        calls: list[str] = []

        async def flaky(received: dict[str, Any]) -> None:
            calls.append(received["id"])
            if len(calls) == 1:
                raise RuntimeError("webhook endpoint down")

        with pytest.raises(RuntimeError):
            await consumer.consume(flaky)
        assert (await redis.xpending(STREAM, "webhooks"))["pending"] == 1
        assert await consumer.consume(flaky) == 1  # read again from the pending list
        assert calls == [event["id"], event["id"]]
        assert await consumer.consume(flaky) == 0
        assert (await redis.xpending(STREAM, "webhooks"))["pending"] == 0
    finally:
        await redis.aclose()


async def test_many_relays_at_once_deliver_every_event(
    db: Database, redis_url: str, database_url: str
) -> None:
    # Three relays (three processes' worth, each with its own connections) drain one outbox.
    redis = Redis.from_url(redis_url)
    others = [Database(database_url, pool_size=2) for _ in range(2)]
    try:
        events = [new_event("push", repository="library/app", n=i) for i in range(120)]
        for start in range(0, len(events), 40):
            await db.run(lambda conn, batch=events[start : start + 40]: write_events(conn, batch))
        relays = [_relay(database, redis, batch=7) for database in (db, *others)]
        await asyncio.gather(*(relay.drain() for relay in relays))
        await eventually(lambda: _equals(outbox_rows(db), 0))
        delivered = [e["id"] for _id, fields in await redis.xrange(STREAM) for e in decode(fields)]
        assert set(delivered) == {e["id"] for e in events}
        # Row locks (PostgreSQL, MariaDB) or the relay lock file (SQLite): no batch went twice.
        assert len(delivered) == len(events)
    finally:
        for database in others:
            await database.close()
        await redis.aclose()


async def test_relay_wakes_after_commit_and_polls_for_rows_left_behind(db: Database, redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    relay = EventRelay(db, redis, STREAM, 10_000, Metrics("test"), interval=0.2, backoff_max=1.0)
    try:
        await relay.start()
        # Left behind by another instance (nobody wakes this relay): found by the poll.
        left = new_event("push", repository="library/app", origin=os.getpid())
        await db.run(lambda conn: write_events(conn, [left]))
        await eventually(lambda: _equals(redis.xlen(STREAM), 1), within=5)
        # Written here: relayed right after the wake.
        mine = new_event("delete", repository="library/app", kind="blob")
        await db.run(lambda conn: write_events(conn, [mine]))
        relay.wake()
        await eventually(lambda: _equals(redis.xlen(STREAM), 2), within=5)
        assert await outbox_rows(db) == 0
    finally:
        await relay.close()
        await redis.aclose()
