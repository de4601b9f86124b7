"""The SQL and Redis pools' figures, on the real servers: connections in use, the pool's size,
requests waiting for a connection, and connections that could not be had or were found broken."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from tests.support import backends, wire
from tests.support.processes import free_port
from wharf_shared.db.engine import Database
from wharf_shared.metrics import Metrics
from wharf_shared.redis import open_redis


def figure(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(f"wharf_test_{name}", labels)
    assert value is not None, f"wharf_test_{name}{labels} is not exported"
    return float(value)


async def test_in_use_waiting_and_size(database_url: str) -> None:
    metrics = Metrics("test")
    db = Database(database_url, pool_size=1, metrics=metrics)
    try:
        for pool in ("read", "write"):
            assert figure(metrics, "db_pool_size", pool=pool) == 1
            assert figure(metrics, "db_connections_in_use", pool=pool) == 0
            assert figure(metrics, "db_waiting", pool=pool) == 0
        async with db.read() as held:
            await held.exec_driver_sql("SELECT 1")
            assert figure(metrics, "db_connections_in_use", pool="read") == 1

            async def another_read() -> None:
                async with db.read() as conn:
                    await conn.exec_driver_sql("SELECT 1")

            waiter = asyncio.create_task(another_read())
            await wire.wait_until(
                lambda: figure(metrics, "db_waiting", pool="read") == 1, "a read to wait for the connection"
            )
        await waiter
        async with db.transaction() as conn:
            await conn.exec_driver_sql("SELECT 1")
            assert figure(metrics, "db_connections_in_use", pool="write") == 1
        for pool in ("read", "write"):
            assert figure(metrics, "db_connections_in_use", pool=pool) == 0
            assert figure(metrics, "db_waiting", pool=pool) == 0
            assert figure(metrics, "db_errors_total", pool=pool) == 0
    finally:
        await db.close()


@pytest.mark.parametrize("db_kind", ["postgresql"])
async def test_a_connection_found_broken_is_an_error(database_url: str) -> None:
    """The server ends the pooled connection (a restart, a failover): the read that finds it
    dead fails and is counted, and the connection goes back (none is left counted in use)."""
    metrics = Metrics("test")
    db = Database(database_url, pool_size=1, metrics=metrics)
    try:
        async with db.read() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        admin = Database(backends.PG_URL, pool_size=1)
        try:
            async with admin.read() as conn:
                await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        finally:
            await admin.close()
        with pytest.raises(DBAPIError):
            async with db.read() as conn:
                await conn.exec_driver_sql("SELECT 1")
        assert figure(metrics, "db_errors_total", pool="read") == 1
        assert figure(metrics, "db_connections_in_use", pool="read") == 0
        async with db.read() as conn:  # a fresh connection serves again
            await conn.exec_driver_sql("SELECT 1")
    finally:
        await db.close()


@pytest.mark.parametrize("db_kind", ["postgresql"])
async def test_a_connection_that_cannot_be_had_is_an_error(database_url: str) -> None:
    unreachable = make_url(database_url).set(host="127.0.0.1", port=free_port())
    metrics = Metrics("test")
    db = Database(unreachable.render_as_string(hide_password=False), pool_size=1, metrics=metrics)
    try:
        with pytest.raises((OSError, DBAPIError)):
            async with db.read() as conn:
                await conn.exec_driver_sql("SELECT 1")
        assert figure(metrics, "db_errors_total", pool="read") == 1
        assert figure(metrics, "db_waiting", pool="read") == 0
        assert figure(metrics, "db_connections_in_use", pool="read") == 0
    finally:
        await db.close()


async def test_redis_in_use_and_errors(redis_url: str) -> None:
    metrics = Metrics("test")
    redis = open_redis(redis_url, metrics=metrics)
    try:
        assert figure(metrics, "redis_connections_in_use") == 0
        async with redis.pipeline(transaction=False) as pipe:
            pipe.set("wharf-test:pool", 1)
            pipe.get("wharf-test:pool")
            await pipe.execute()
        assert await redis.ping()
        assert figure(metrics, "redis_connections_in_use") == 0
        assert figure(metrics, "redis_errors_total") == 0
    finally:
        await redis.aclose()
    metrics = Metrics("test")
    dead = open_redis(f"redis://127.0.0.1:{free_port()}/0", metrics=metrics)
    try:
        for _ in range(2):
            with pytest.raises(RedisConnectionError):
                await dead.ping()
        assert figure(metrics, "redis_errors_total") == 2
        assert figure(metrics, "redis_connections_in_use") == 0
    finally:
        await dead.aclose()
