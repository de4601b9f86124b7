"""Real backing services for tests: databases made and dropped per run, Redis DB numbers leased.

Under `make test` (WHARF_TEST_REQUIRE_SERVICES=1) a service that does not answer fails the
test; run alone, the test is skipped with the reason.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis
from sqlalchemy import delete, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from wharf_shared.db.engine import Database, normalize_url
from wharf_shared.db.migrate import upgrade
from wharf_shared.db.tables import metadata

PG_URL = os.environ.get("WHARF_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("WHARF_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
REDIS_URL = os.environ.get("WHARF_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE = os.environ.get("WHARF_TEST_REQUIRE_SERVICES") == "1"

BACKENDS = ("sqlite", "postgresql", "mysql")


def unavailable(what: str, exc: BaseException) -> None:
    message = f"{what} is not available: {type(exc).__name__}: {exc}"
    if REQUIRE:
        pytest.fail(message + " (make test requires it)", pytrace=False)
    pytest.skip(message)


def _admin_url(kind: str) -> str:
    return PG_URL if kind == "postgresql" else MYSQL_URL


async def _admin(kind: str, statement: str) -> None:
    _, admin = normalize_url(_admin_url(kind))
    engine = create_async_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


def create_database(kind: str, tmp_dir: str) -> str:
    """A new, empty database of `kind`; returns its URL (drop it with `drop_database`)."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_dir}/wharf-{uuid.uuid4().hex[:8]}.db"
    name = f"wharf_t_{uuid.uuid4().hex[:12]}"
    quoted = f'"{name}"' if kind == "postgresql" else f"`{name}` CHARACTER SET utf8mb4"
    try:
        asyncio.run(_admin(kind, f"CREATE DATABASE {quoted}"))
    except Exception as exc:
        unavailable(kind, exc)
    return make_url(_admin_url(kind)).set(database=name).render_as_string(hide_password=False)


def drop_database(kind: str, url: str) -> None:
    if kind == "sqlite":
        return
    name = make_url(url).database
    if kind == "postgresql":
        asyncio.run(_admin(kind, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    else:
        asyncio.run(_admin(kind, f"DROP DATABASE IF EXISTS `{name}`"))


@contextmanager
def fresh_database(kind: str, tmp_dir: str, *, migrated: bool = True) -> Iterator[str]:
    url = create_database(kind, tmp_dir)
    try:
        if migrated:
            migrate(url)
        yield url
    finally:
        drop_database(kind, url)


def migrate(url: str) -> None:
    async def go() -> None:
        db = Database(url, pool_size=1)
        try:
            await upgrade(db)
        finally:
            await db.close()

    asyncio.run(go())


def empty_tables(url: str) -> None:
    """Delete every row (children first): the cheap reset between tests sharing a database."""

    async def go() -> None:
        db = Database(url, pool_size=1)
        try:
            async with db.transaction() as conn:
                for table in reversed(metadata.sorted_tables):
                    await conn.execute(delete(table))
        finally:
            await db.close()

    asyncio.run(go())


def redis_url_for(db: int) -> str:
    head, _, tail = REDIS_URL.rpartition("/")
    return f"{head}/{db}" if tail.isdigit() else f"{REDIS_URL.rstrip('/')}/{db}"


@contextmanager
def leased_redis_db() -> Iterator[str]:
    """A Redis DB number (1-15) no other test process on this machine holds; flushed before and after."""
    control = redis.Redis.from_url(redis_url_for(0))
    try:
        control.ping()
    except Exception as exc:
        control.close()
        unavailable("Redis", exc)
    token = uuid.uuid4().hex
    number = None
    deadline = time.monotonic() + 300
    while number is None:
        for candidate in range(1, 16):
            if control.set(f"wharf-test:lease:{candidate}", token, nx=True, ex=3 * 3600):
                number = candidate
                break
        else:
            if time.monotonic() > deadline:
                pytest.fail("no free Redis DB number for tests")
            time.sleep(0.5)
    url = redis_url_for(number)
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()
        if control.get(f"wharf-test:lease:{number}") == token.encode():
            control.delete(f"wharf-test:lease:{number}")
        control.close()


def flush_redis(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
