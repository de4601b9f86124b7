"""`Database.run` on every backend: each run is atomic and alone in what it commits, however many
run at once. On SQLite they go through one writer that commits queued runs together
(`wharf_shared.db.writer`): a run that fails there is rolled back alone, a transient failure is
retried, and a run that awaits anything but its connection is refused. The writer runs a group
on the event loop when no other process holds the lock file, in its thread otherwise, and never
stalls the loop on a writer that ignores the lock file."""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import os
import sqlite3
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database

NOW = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


class Refused(Exception):
    pass


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=4)
    try:
        yield database
    finally:
        await database.close()


async def _add(conn: AsyncConnection, name: str) -> int:
    result = await conn.execute(sa.insert(t.repository).values(name=name, created_at=NOW, updated_at=NOW))
    return int(result.inserted_primary_key[0])


async def _names(db: Database) -> list[str]:
    async with db.read() as conn:
        return sorted((await conn.execute(sa.select(t.repository.c.name))).scalars())


def _commits(db: Database) -> list[int]:
    counted = [0]
    for engine in db.write_engines:
        sa.event.listen(engine, "commit", lambda _conn: counted.__setitem__(0, counted[0] + 1))
    return counted


async def test_concurrent_runs_each_commit_alone_and_a_failing_one_writes_nothing(db: Database) -> None:
    async def ok(conn: AsyncConnection, name: str) -> int:
        return await _add(conn, name)

    async def half_then_fail(conn: AsyncConnection) -> None:
        await _add(conn, "app/half")
        raise Refused("after one row")

    commits = _commits(db)
    runs: list[Any] = [db.run(lambda c, n=f"app/{i:02d}": ok(c, n)) for i in range(20)]
    runs.insert(7, db.run(half_then_fail))
    results = await asyncio.gather(*runs, return_exceptions=True)
    assert isinstance(results[7], Refused)
    ids = [r for i, r in enumerate(results) if i != 7]
    assert all(isinstance(r, int) for r in ids)
    assert len(set(ids)) == 20
    assert await _names(db) == [f"app/{i:02d}" for i in range(20)]
    if db.dialect == "sqlite":
        assert commits[0] < 20  # committed in groups, not one by one


async def test_a_unique_conflict_fails_only_its_own_run(db: Database) -> None:
    await db.run(lambda c: _add(c, "app/taken"))
    results = await asyncio.gather(
        db.run(lambda c: _add(c, "app/one")),
        db.run(lambda c: _add(c, "app/taken")),
        db.run(lambda c: _add(c, "app/two")),
        return_exceptions=True,
    )
    assert isinstance(results[1], sa.exc.IntegrityError)
    assert await _names(db) == ["app/one", "app/taken", "app/two"]


async def test_a_transient_failure_is_retried(db: Database) -> None:
    attempts: list[int] = []

    async def flaky(conn: AsyncConnection) -> int:
        attempts.append(1)
        await _add(conn, f"app/try-{len(attempts)}")
        if len(attempts) < 3:
            raise OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))
        return len(attempts)

    assert await db.run(flaky) == 3
    assert await _names(db) == ["app/try-3"]  # the failed attempts left nothing


@pytest.mark.parametrize("db_kind", ["sqlite"])  # only SQLite queues runs
async def test_a_run_cancelled_while_queued_does_not_write(db: Database) -> None:
    async with db.transaction():  # holds the write lock: runs wait in the queue
        queued = asyncio.ensure_future(db.run(lambda c: _add(c, "app/cancelled")))
        await asyncio.sleep(0.05)
        queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    await db.run(lambda c: _add(c, "app/after"))
    assert await _names(db) == ["app/after"]


@pytest.mark.parametrize("db_kind", ["sqlite"])  # only SQLite runs writes in a thread of their own
async def test_the_sqlite_writer_refuses_a_run_that_awaits_something_else(db: Database) -> None:

    async def sleeps(conn: AsyncConnection) -> None:
        await _add(conn, "app/sleepy")
        await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="awaited something other than its connection"):
        await db.run(sleeps)
    assert await _names(db) == []
    await db.run(lambda c: _add(c, "app/next"))  # the writer goes on
    assert await _names(db) == ["app/next"]


def _sqlite_file(database_url: str) -> str:
    path = make_url(database_url).database
    assert path
    return path


async def _where(conn: AsyncConnection, name: str, seen: list[int]) -> int:
    seen.append(threading.get_ident())
    return await _add(conn, name)


@pytest.mark.parametrize("db_kind", ["sqlite"])
async def test_with_the_lock_file_free_a_group_runs_on_the_event_loop(db: Database) -> None:
    seen: list[int] = []
    await db.run(lambda c: _where(c, "app/here", seen))
    assert seen == [threading.get_ident()]
    assert await _names(db) == ["app/here"]


@pytest.mark.parametrize("db_kind", ["sqlite"])
async def test_while_another_process_holds_the_lock_file_runs_wait_in_the_thread(
    db: Database, database_url: str
) -> None:
    # flock(2) locks belong to an open file description: this one stands for another process.
    other = os.open(_sqlite_file(database_url) + ".write.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(other, fcntl.LOCK_EX)
        seen: list[int] = []
        run = asyncio.ensure_future(db.run(lambda c: _where(c, "app/later", seen)))
        for _ in range(5):
            await asyncio.sleep(0.01)  # the loop is free meanwhile
        assert not run.done()
        assert await _names(db) == []
        fcntl.flock(other, fcntl.LOCK_UN)
        await run
    finally:
        os.close(other)
    assert seen
    assert seen[0] != threading.get_ident()
    assert await _names(db) == ["app/later"]


@pytest.mark.parametrize("db_kind", ["sqlite"])
async def test_a_writer_that_ignores_the_lock_file_does_not_stall_the_loop(
    db: Database, database_url: str
) -> None:
    """A sqlite3 shell holding the write lock: the run waits for it, the event loop does not
    (a busy wait on the loop would block it for the whole 30 s busy timeout)."""
    outsider = sqlite3.connect(_sqlite_file(database_url), isolation_level=None, check_same_thread=False)
    outsider.execute("BEGIN IMMEDIATE")
    released = threading.Event()

    def release(why: str) -> None:
        if not released.is_set():
            released.set()
            outsider.execute("ROLLBACK")
            outcome.append(why)

    outcome: list[str] = []
    watchdog = threading.Timer(20, release, args=("watchdog",))  # never needed unless the loop stalls
    watchdog.start()
    try:
        run = asyncio.ensure_future(db.run(lambda c: _add(c, "app/patient")))
        for _ in range(10):
            await asyncio.sleep(0.02)
        release("test")
        assert await run
    finally:
        watchdog.cancel()
        outsider.close()
    assert outcome == ["test"]
    assert await _names(db) == ["app/patient"]
