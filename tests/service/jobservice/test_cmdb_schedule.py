"""The CMDB sync on its schedule against real Redis, SQL and a CMDB stand-in: nothing until the
first fire time after the schedule was first seen, then each fire time once across two instances
(a leader change), a changed expression starting afresh, and nothing while read-only mode is on
or the schedule is empty."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa
from redis.asyncio import Redis

from tests.support.cmdb import TOKEN, Cmdb
from wharf_jobservice.cmdb import CmdbSchedule
from wharf_shared import runtime
from wharf_shared.config import Settings
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.passwords import hash_password
from wharf_shared.secrets import SecretBox
from wharf_shared.setup import ensure_files

START = dt.datetime(2026, 12, 4, 12, 0, 30, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.at = START

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


@pytest.fixture
async def cmdb() -> AsyncIterator[Cmdb]:
    server = Cmdb(document=[{"name": "payments", "owner": "alice"}])
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def store(db: Database, **values: object) -> None:
    async def go(conn: object) -> None:
        await runtime.store(conn, **values)  # type: ignore[arg-type]

    await db.run(go)


async def projects(db: Database) -> list[str]:
    async with db.read() as conn:
        return [r[0] for r in await conn.execute(sa.select(t.project.c.name).order_by(t.project.c.name))]


@pytest.mark.parametrize("db_kind", ["postgresql"], indirect=True)
async def test_fires_each_time_once_and_syncs(
    db: Database, redis: Redis, session: aiohttp.ClientSession, cmdb: Cmdb, tmp_path: Path, database_url: str
) -> None:
    settings = Settings(data_dir=tmp_path / "var", database_url=database_url)
    ensure_files(settings)
    now = START

    async def seed(conn: object) -> None:
        await conn.execute(  # type: ignore[attr-defined]
            sa.insert(t.user_account).values(
                username="alice",
                password_hash=hash_password("Alice-secret-1"),
                created_at=now,
                updated_at=now,
            )
        )

    await db.run(seed)
    box = SecretBox(settings.secret_key_bytes())
    await store(db, cmdb_url=cmdb.url, cmdb_auth_header=box.encrypt(TOKEN), cmdb_schedule="0 * * * * *")
    clock = Clock()
    config = runtime.RuntimeConfig(db, runtime.defaults(settings), cache_seconds=0)
    a = CmdbSchedule(settings, db, redis, session, now=clock.now, runtime_config=config)
    b = CmdbSchedule(settings, db, redis, session, now=clock.now, runtime_config=config)

    assert await a.fire_due() is None  # first seen at 12:00:30: the first fire time is 12:01
    clock.advance(20)
    assert await a.fire_due() is None
    assert cmdb.requests == 0
    clock.advance(11)  # 12:01:01
    assert await a.fire_due() == START.replace(minute=1, second=0)
    assert await b.fire_due() is None  # another instance (a leader change) does not fire it again
    report = await a.idle()
    assert report is not None
    assert [c.action for c in report.changes] == ["project.create"]
    assert await projects(db) == ["payments"]
    assert cmdb.requests == 1

    clock.advance(60)  # 12:02:01, b leads now
    assert await b.fire_due() == START.replace(minute=2, second=0)
    second = await b.idle()
    assert second is not None
    assert second.changes == []

    await store(db, read_only=True)
    clock.advance(60)
    assert await a.fire_due() is None  # read-only mode: no sync
    await store(db, read_only=False, cmdb_schedule="0 0 * * * *")
    assert await a.fire_due() is None  # a new expression starts from now: the next hour
    clock.advance(3600)
    assert await a.fire_due() == START.replace(hour=13, minute=0, second=0)
    await a.idle()
    await store(db, cmdb_schedule="")
    clock.advance(3600)
    assert await a.fire_due() is None
    assert cmdb.requests == 3
