"""Reads on SQLite (`Database.read()`): one hop to aiosqlite's thread per statement, the same
rows and errors as the plain driver path, and a pool that does not reopen connections under load."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiosqlite
import aiosqlite.core
import pytest
import sqlalchemy as sa

from wharf_shared.db.engine import Database


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite:///{tmp_path}/reads.db", pool_size=4)
    async with database.transaction() as conn:
        await conn.execute(sa.text("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT)"))
        await conn.execute(sa.text("INSERT INTO item (name) VALUES ('a'), ('b'), ('c')"))
    yield database
    await database.close()


def _count_calls(monkeypatch: pytest.MonkeyPatch, target: Any, name: str) -> Callable[[], int]:
    calls = 0
    original = getattr(target, name)

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, counting)
    return lambda: calls


async def test_a_read_is_one_hop_and_gives_its_rows(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    async with db.read() as conn:  # a pooled connection, opened before counting
        await conn.execute(sa.text("SELECT 1"))
    hops = _count_calls(monkeypatch, aiosqlite.core.Connection, "_execute")
    async with db.read() as conn:
        rows = (await conn.execute(sa.text("SELECT id, name FROM item ORDER BY id"))).all()
        empty = (await conn.execute(sa.text("SELECT name FROM item WHERE id > 99"))).all()
        one = (await conn.execute(sa.text("SELECT name FROM item WHERE id = :id"), {"id": 2})).scalar_one()
    assert [tuple(r) for r in rows] == [(1, "a"), (2, "b"), (3, "c")]
    assert empty == []
    assert one == "b"
    assert hops() == 3  # one per statement: no cursor, fetch, close or ROLLBACK hops


async def test_a_failed_read_raises_the_driver_error_and_the_pool_goes_on(db: Database) -> None:
    with pytest.raises(sa.exc.OperationalError, match="no such table"):
        async with db.read() as conn:
            await conn.execute(sa.text("SELECT * FROM missing"))
    async with db.read() as conn:
        assert (await conn.execute(sa.text("SELECT count(*) FROM item"))).scalar_one() == 3


async def test_writes_see_their_rows_and_reads_see_commits(db: Database) -> None:
    async with db.transaction() as conn:
        result = await conn.execute(sa.text("INSERT INTO item (name) VALUES ('d')"))
        assert result.rowcount == 1
    async with db.read() as conn:
        assert (await conn.execute(sa.text("SELECT name FROM item WHERE id = 4"))).scalar_one() == "d"


async def test_concurrent_reads_reuse_the_pool(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """More readers than pooled connections wait for one: none is opened beyond the pool."""
    opened = _count_calls(monkeypatch, aiosqlite, "connect")  # what SQLAlchemy calls

    async def read() -> int:
        async with db.read() as conn:
            return int((await conn.execute(sa.text("SELECT count(*) FROM item"))).scalar_one())

    for _ in range(5):
        assert await asyncio.gather(*(read() for _ in range(16))) == [3] * 16
    assert opened() <= 4
