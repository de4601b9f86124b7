"""The events consumer on every backend: a batch of stream entries is written in one transaction
(audit rows, pull counts, pull times), an event delivered twice counts once, and a consumer
process killed with entries in hand loses none: another claims them (XAUTOCLAIM) and every
event is audited exactly once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from redis.asyncio import Redis
from sqlalchemy import event as sa_event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.processes import ServiceProcess, jobservice_process
from wharf_jobservice.audit_file import AuditFile
from wharf_jobservice.consumer import StreamConsumer
from wharf_jobservice.writer import AuditWriter
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database, normalize_url
from wharf_shared.events import new_event

STREAM = "wharf:events"
GROUP = "audit"
DIGEST = "sha256:" + "d" * 64
NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=4)
    try:
        async with database.transaction() as conn:
            await conn.execute(
                sa.insert(t.user_account),
                [{"id": 1, "username": "admin", "sysadmin": True, "created_at": NOW, "updated_at": NOW}],
            )
            await conn.execute(
                sa.insert(t.project),
                [
                    {
                        "id": 5,
                        "name": "library",
                        "public": True,
                        "owner_id": 1,
                        "created_at": NOW,
                        "updated_at": NOW,
                    }
                ],
            )
            await conn.execute(
                sa.insert(t.repository),
                [{"id": 9, "name": "library/app", "created_at": NOW, "updated_at": NOW}],
            )
            await conn.execute(
                sa.insert(t.manifest),
                [
                    {
                        "id": 3,
                        "repository_id": 9,
                        "digest": DIGEST,
                        "media_type": "application/vnd.oci.image.manifest.v1+json",
                        "size": 10,
                        "created_at": NOW,
                    }
                ],
            )
        yield database
    finally:
        await database.close()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def append(redis: Redis, events: list[dict[str, Any]]) -> None:
    await redis.xadd(STREAM, {"events": json.dumps(events), "count": len(events)})


def pushes_pulls_deletes(n: int) -> list[dict[str, Any]]:
    """n events cycling push, pull, tag delete, by user-<i>."""
    kinds: list[Callable[[int], dict[str, Any]]] = [
        lambda i: new_event(
            "push", repository="library/app", digest=DIGEST, tag=f"v{i}", operator=f"user-{i}"
        ),
        lambda i: new_event("pull", repository="library/app", digest=DIGEST, tag=None, operator=f"user-{i}"),
        lambda i: new_event(
            "delete", repository="library/app", digest=DIGEST, tag=f"v{i}", kind="tag", operator=f"user-{i}"
        ),
    ]
    return [kinds[i % 3](i) for i in range(n)]


async def audit_rows(db: Database) -> list[Any]:
    async with db.read() as conn:
        return list(await conn.execute(sa.select(t.audit_log).order_by(t.audit_log.c.id)))


async def pull_state(db: Database) -> tuple[int, dt.datetime | None]:
    async with db.read() as conn:
        count = (await conn.execute(sa.select(t.repository.c.pull_count))).scalar_one()
        when = (await conn.execute(sa.select(t.manifest.c.pull_time))).scalar_one()
    return int(count), when


@contextmanager
def counting_commits(db: Database) -> Iterator[list[int]]:
    commits: list[int] = []

    def on_commit(_conn: Any) -> None:
        commits.append(1)

    for engine in db.write_engines:
        sa_event.listen(engine, "commit", on_commit)
    try:
        yield commits
    finally:
        for engine in db.write_engines:
            sa_event.remove(engine, "commit", on_commit)


def consumer(redis: Redis, writer: AuditWriter, name: str = "c-1", **kwargs: Any) -> StreamConsumer:
    return StreamConsumer(redis, STREAM, GROUP, name, writer.apply, block_ms=50, **kwargs)


async def test_a_batch_is_one_transaction(db: Database, redis: Redis) -> None:
    events = pushes_pulls_deletes(30)
    reader = consumer(redis, AuditWriter(db), batch=100)
    await reader.ensure_group()
    for start in range(0, 30, 3):  # ten entries of three events
        await append(redis, events[start : start + 3])
    with counting_commits(db) as commits:
        assert await reader.round() == 30
    assert len(commits) == 1
    rows = await audit_rows(db)
    assert [r.event_id for r in rows] == [e["id"] for e in events]
    first = rows[:3]
    assert [(r.resource_type, r.operation, r.resource, r.username) for r in first] == [
        ("artifact", "create", "library/app:v0", "user-0"),
        ("artifact", "pull", f"library/app@{DIGEST}", "user-1"),
        ("tag", "delete", "library/app:v2", "user-2"),
    ]
    assert {r.project_id for r in rows} == {5}
    pulls = [e for e in events if e["type"] == "pull"]
    assert await pull_state(db) == (len(pulls), max(dt.datetime.fromisoformat(e["time"]) for e in pulls))
    assert await redis.xpending(STREAM, GROUP) == {"pending": 0, "min": None, "max": None, "consumers": []}
    assert await reader.round() == 0  # nothing new


async def test_an_event_delivered_twice_counts_once(db: Database, redis: Redis) -> None:
    events = pushes_pulls_deletes(6)
    login = new_event("login", operator="admin", address="127.0.0.1", backend="db_auth")
    unknown = new_event("robot.create", name="robot$ci", operator="admin")
    writer = AuditWriter(db)
    reader = consumer(redis, writer)
    await reader.ensure_group()
    # A relay that crashed between its append and its delete appends the same events again.
    await append(redis, [*events, login, unknown])
    await append(redis, [*events, login])
    assert await reader.round() == 15  # events read (duplicates included)
    # And a consumer that crashed after its commit, before its acknowledgement, writes it again.
    await writer.apply([*events, login])
    rows = await audit_rows(db)
    assert sorted(r.event_id for r in rows) == sorted(e["id"] for e in [*events, login])
    assert [r.username for r in rows if r.operation == "login"] == ["admin"]
    assert [r.project_id for r in rows if r.operation == "login"] == [None]
    assert [r.operation_description for r in rows if r.operation == "login"] == ["db_auth"]
    assert {r.operation_description for r in rows if r.operation != "login"} == {None}
    assert (await pull_state(db))[0] == 2


async def test_a_group_that_redis_lost_is_created_again(db: Database, redis: Redis) -> None:
    reader = consumer(redis, AuditWriter(db))
    await reader.ensure_group()
    await redis.delete(STREAM)  # the stream and its group are gone (a Redis without persistence)
    [event] = pushes_pulls_deletes(1)
    await append(redis, [event])
    assert await reader.round() == 0  # NOGROUP: the group is made again, from the stream's start
    assert await reader.round() == 1
    assert [r.event_id for r in await audit_rows(db)] == [event["id"]]


async def test_concurrent_consumers_record_each_event_once(db: Database, redis: Redis) -> None:
    """Two writers given the same batch at once (a claim of a consumer that was only slow)."""
    events = pushes_pulls_deletes(12)
    await asyncio.gather(AuditWriter(db).apply(events), AuditWriter(db).apply(events))
    assert len(await audit_rows(db)) == 12
    assert (await pull_state(db))[0] == 4


async def test_the_audit_file_gets_a_line_per_record_and_follows_rotation(
    db: Database, redis: Redis, tmp_path: Path
) -> None:
    path = tmp_path / "audit" / "audit.jsonl"
    audit_file = AuditFile(path)
    writer = AuditWriter(db, audit_file=audit_file)
    first, second, third = pushes_pulls_deletes(3)
    try:
        await writer.apply([first])
        await writer.apply([first])  # recorded already: no second line
        path.rename(tmp_path / "audit" / "audit.jsonl.1")  # logrotate's create: moved away
        await writer.apply([second])
        path.write_text("")  # copytruncate: emptied in place
        await writer.apply([third])
    finally:
        audit_file.close()
    rotated = [json.loads(line) for line in (tmp_path / "audit" / "audit.jsonl.1").read_text().splitlines()]
    current = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["event_id"] for line in rotated] == [first["id"]]
    assert [line["event_id"] for line in current] == [third["id"]]
    assert rotated[0] | {"op_time": None} == {
        "event_id": first["id"],
        "op_time": None,
        "username": "user-0",
        "operation": "create",
        "resource_type": "artifact",
        "resource": "library/app:v0",
        "project": "library",
        "project_id": None,
        "operation_description": None,  # said of logins only (their backend)
    }


async def test_a_failed_write_leaves_the_batch_pending_and_retries_it(db: Database, redis: Redis) -> None:
    events = pushes_pulls_deletes(3)
    writer = AuditWriter(db)
    failures = [RuntimeError("database went away")]

    async def flaky(batch: list[dict[str, Any]]) -> None:
        if failures:
            raise failures.pop()
        await writer.apply(batch)

    reader = StreamConsumer(redis, STREAM, GROUP, "c-1", flaky, block_ms=50)
    await reader.ensure_group()
    await append(redis, events)
    task = asyncio.create_task(reader.run())
    try:
        await eventually(lambda: _count(db, 3))
    finally:
        reader.stop()
        await task
    assert (await redis.xpending(STREAM, GROUP))["pending"] == 0
    # Stopped with nothing pending: it left the group.
    assert await redis.xinfo_consumers(STREAM, GROUP) == []


async def _count(db: Database, want: int) -> bool:
    return len(await audit_rows(db)) == want


async def eventually(condition: Callable[[], Any], within: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


# -- a consumer process killed with entries in hand ---------------------------------------------


@contextmanager
def writes_blocked(db_kind: str, database_url: str) -> Iterator[None]:
    """Another session holds the audit table (SQLite: the write lock) until the block ends."""
    if db_kind == "sqlite":
        path = make_url(database_url).database
        assert path
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    _, url = normalize_url(database_url)
    engine = create_async_engine(url)
    statement = (
        "LOCK TABLE audit_log IN ACCESS EXCLUSIVE MODE"
        if db_kind == "postgresql"
        else "LOCK TABLES audit_log WRITE"
    )
    loop = asyncio.new_event_loop()
    conn = loop.run_until_complete(engine.connect())
    try:
        loop.run_until_complete(conn.exec_driver_sql(statement))
        yield
    finally:
        if db_kind != "postgresql":
            loop.run_until_complete(conn.exec_driver_sql("UNLOCK TABLES"))
        loop.run_until_complete(conn.rollback())
        loop.run_until_complete(conn.close())
        loop.run_until_complete(engine.dispose())
        loop.close()


def start_consumer(
    tmp_path: Path, database_url: str, redis_url: str, name: str, **extra: str
) -> ServiceProcess:
    env = {
        "WHARF_DATA_DIR": str(tmp_path / "var"),
        "WHARF_DATABASE_URL": database_url,
        "WHARF_REDIS_URL": redis_url,
        "WHARF_JOBSERVICE__EVENTS_CONSUMER": name,
        "WHARF_JOBSERVICE__EVENTS_BATCH": "100",
        "WHARF_JOBSERVICE__EVENTS_BLOCK_MS": "100",
        "WHARF_JOBSERVICE__EVENTS_CLAIM_IDLE_SECONDS": "1",
        **extra,
    }
    return jobservice_process(env, tmp_path / "logs", name=f"jobservice-{name}").start()


def pending_of(redis_sync: Any, name: str) -> int:
    for entry in redis_sync.xinfo_consumers(STREAM, GROUP):
        if entry["name"].decode() == name:
            return int(entry["pending"])
    return 0


@pytest.mark.slow
def test_a_consumer_killed_mid_batch_loses_nothing(
    db_kind: str, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    import redis as redis_sync_module

    redis_sync = redis_sync_module.Redis.from_url(redis_url)
    events = pushes_pulls_deletes(50)
    seeded = asyncio.run(_seed(database_url))
    first = start_consumer(tmp_path, database_url, redis_url, "first")
    second: ServiceProcess | None = None
    try:
        for start in range(0, 20, 5):
            redis_sync.xadd(STREAM, {"events": json.dumps(events[start : start + 5])})
        _wait(lambda: asyncio.run(_rows(database_url)) == 20, first)
        with writes_blocked(db_kind, database_url):
            with redis_sync.pipeline(transaction=True) as pipe:  # one read takes all six entries
                for start in range(20, 50, 5):
                    pipe.xadd(STREAM, {"events": json.dumps(events[start : start + 5])})
                pipe.execute()
            # The first consumer read them and is stuck writing: they are pending in its name.
            _wait(lambda: pending_of(redis_sync, "first") == 6, first)
            first.process.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
            first.process.wait()  # type: ignore[union-attr]
        # A relay's duplicate of an entry already recorded, for good measure.
        redis_sync.xadd(STREAM, {"events": json.dumps(events[0:5])})
        second = start_consumer(tmp_path, database_url, redis_url, "second")
        _wait(lambda: pending_of(redis_sync, "first") == 0 and asyncio.run(_rows(database_url)) == 50, second)
        _wait(lambda: redis_sync.xpending(STREAM, GROUP)["pending"] == 0, second)
        second.stop()
        assert second.process is not None
        assert second.process.returncode == 0, second.tail()  # SIGTERM: a clean stop
    finally:
        first.kill()
        if second is not None:
            second.kill()
        redis_sync.close()
    ids, pulls = asyncio.run(_audited(database_url))
    assert sorted(ids) == sorted(e["id"] for e in events)  # each exactly once
    assert pulls == seeded + sum(1 for e in events if e["type"] == "pull")
    assert "events_claimed" in second.log_path.read_text()


async def _seed(database_url: str) -> int:
    database = Database(database_url, pool_size=1)
    try:
        async with database.transaction() as conn:
            await conn.execute(
                sa.insert(t.repository),
                [{"id": 9, "name": "library/app", "created_at": NOW, "updated_at": NOW}],
            )
        return 0
    finally:
        await database.close()


async def _rows(database_url: str) -> int:
    database = Database(database_url, pool_size=1)
    try:
        return len(await audit_rows(database))
    finally:
        await database.close()


async def _audited(database_url: str) -> tuple[list[str], int]:
    database = Database(database_url, pool_size=1)
    try:
        rows = await audit_rows(database)
        return [r.event_id for r in rows], (await _pull_count(database))
    finally:
        await database.close()


async def _pull_count(database: Database) -> int:
    async with database.read() as conn:
        return int((await conn.execute(sa.select(t.repository.c.pull_count))).scalar_one())


def _wait(condition: Callable[[], bool], process: ServiceProcess, within: float = 90.0) -> None:
    import time

    deadline = time.monotonic() + within
    while not condition():
        assert process.process is not None
        assert time.monotonic() < deadline, f"condition not met in time\n{process.tail()}"
        time.sleep(0.1)


@pytest.mark.slow
def test_sigterm_finishes_the_batch_in_hand(
    db_kind: str, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    import redis as redis_sync_module

    redis_sync = redis_sync_module.Redis.from_url(redis_url)
    events = pushes_pulls_deletes(12)
    asyncio.run(_seed(database_url))
    process = start_consumer(tmp_path, database_url, redis_url, "stopping")
    try:
        with writes_blocked(db_kind, database_url):
            with redis_sync.pipeline(transaction=True) as pipe:
                for start in range(0, 12, 4):
                    pipe.xadd(STREAM, {"events": json.dumps(events[start : start + 4])})
                pipe.execute()
            _wait(lambda: pending_of(redis_sync, "stopping") == 3, process)
            assert process.process is not None
            process.process.send_signal(signal.SIGTERM)  # while its write waits
        assert process.process.wait(timeout=60) == 0, process.tail()
        assert redis_sync.xpending(STREAM, GROUP)["pending"] == 0
        assert redis_sync.xinfo_consumers(STREAM, GROUP) == []  # it left the group
    finally:
        process.kill()
        redis_sync.close()
    ids, _ = asyncio.run(_audited(database_url))
    assert sorted(ids) == sorted(e["id"] for e in events)
