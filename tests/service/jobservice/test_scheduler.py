"""The scheduler against real Redis and SQL: two instances with one injectable clock fire each
cron time exactly once (whichever leads, across a leader change), a fire time missed while no
leader lived is fired once, late, and the leader's lock passes to another instance only once the
leader stopped renewing it."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from redis.asyncio import Redis

from tests.support.replication_rows import NOW, add_policy
from wharf_jobservice.leader import LeaderLock
from wharf_jobservice.scheduler import Scheduler, due_fire_time
from wharf_shared.db import jobs
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database


class Clock:
    def __init__(self, start: dt.datetime) -> None:
        self.at = start

    def now(self) -> dt.datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += dt.timedelta(seconds=seconds)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def executions(db: Database) -> list[tuple[int, str]]:
    async with db.read() as conn:
        rows = await conn.execute(
            sa.select(t.execution.c.vendor_id, t.execution.c.extra).order_by(t.execution.c.id)
        )
        return [(int(r.vendor_id), r.extra) for r in rows]


@pytest.mark.parametrize("db_kind", ["postgresql"], indirect=True)
async def test_two_schedulers_fire_each_time_once(db: Database, redis: Redis) -> None:
    every_minute = await add_policy(db, "minutely", trigger_type="scheduled", cron="0 * * * * *")
    await add_policy(db, "off", trigger_type="scheduled", cron="0 * * * * *", enabled=False)
    await add_policy(db, "by-hand", trigger_type="manual")
    clock = Clock(NOW + dt.timedelta(seconds=30))
    sent: list[tuple[str, int]] = []

    async def enqueue(name: str, item: int) -> None:
        sent.append((name, item))

    a = Scheduler(db, redis, enqueue, now=clock.now)
    b = Scheduler(db, redis, enqueue, now=clock.now)
    assert await a.fire_due() == []  # 12:00:30: the first fire time after the policy's change is 12:01
    clock.advance(31)  # 12:01:01
    first = await a.fire_due()
    assert [(f.policy_id, f.fire_time) for f in first] == [(every_minute, NOW + dt.timedelta(minutes=1))]
    assert (
        await b.fire_due() == []
    )  # the other instance (a leader change, a stale leader) does not fire it again
    assert await a.fire_due() == []
    clock.advance(60)  # 12:02:01: b leads now
    second = await b.fire_due()
    assert [f.fire_time for f in second] == [NOW + dt.timedelta(minutes=2)]
    assert await a.fire_due() == []
    # No leader for ten minutes: one late fire (12:03), not ten.
    clock.advance(600)
    late = await a.fire_due()
    assert [f.fire_time for f in late] == [NOW + dt.timedelta(minutes=3)]
    assert await b.fire_due() == []
    clock.advance(60)  # 12:13:01
    assert [f.fire_time for f in await b.fire_due()] == [NOW + dt.timedelta(minutes=13)]
    made = await executions(db)
    assert [policy for policy, _ in made] == [every_minute] * 4
    assert sent == [("wharf.replication.plan", f.execution_id) for f in [*first, *second, *late]] + [
        ("wharf.replication.plan", sent[-1][1])
    ]
    async with db.read() as conn:
        triggers = (await conn.execute(sa.select(t.execution.c.trigger, t.execution.c.status))).all()
    assert set(triggers) == {("scheduled", jobs.RUNNING)}


async def test_concurrent_instances_fire_once(database_url: str, redis: Redis) -> None:
    db = Database(database_url, pool_size=4)
    try:
        await add_policy(db, "minutely", trigger_type="scheduled", cron="0 * * * * *")
        clock = Clock(NOW + dt.timedelta(minutes=1, seconds=1))

        async def enqueue(name: str, item: int) -> None:
            pass

        schedulers = [Scheduler(db, redis, enqueue, now=clock.now) for _ in range(4)]
        results = await asyncio.gather(*(s.fire_due() for s in schedulers))
        assert sum(len(r) for r in results) == 1
        assert len(await executions(db)) == 1
    finally:
        await db.close()


def test_due_fire_time() -> None:
    assert due_fire_time("0 0 * * * *", NOW, NOW + dt.timedelta(minutes=59)) is None
    assert due_fire_time("0 0 * * * *", NOW, NOW + dt.timedelta(hours=5)) == NOW + dt.timedelta(hours=1)
    assert due_fire_time("not cron", NOW, NOW) is None


async def test_leader_lock_passes_on_only_after_it_lapses(redis: Redis) -> None:
    lease = 0.6
    first = LeaderLock(redis, "wharf:scheduler:lock", "one", lease)
    second = LeaderLock(redis, "wharf:scheduler:lock", "two", lease)
    assert await first.hold()
    assert not await second.hold()
    # The leader renews: still its own well past one lease.
    deadline = time.monotonic() + 2 * lease
    while time.monotonic() < deadline:
        assert await first.hold()
        assert not await second.hold()
        await asyncio.sleep(lease / 4)
    # The leader dies (stops renewing): the other takes over once the lease lapsed, not before.
    died = time.monotonic()
    while not await second.hold():
        assert time.monotonic() - died < 5 * lease
        await asyncio.sleep(0.05)
    assert time.monotonic() - died >= lease * 0.5
    # The old leader comes back: it cannot renew what is no longer its own.
    assert not await first.hold()
    assert await redis.get("wharf:scheduler:lock") == b"two"
    await second.release()
    assert await redis.get("wharf:scheduler:lock") is None
    assert await first.hold()
