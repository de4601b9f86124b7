"""The Redis client of a process: one bounded connection pool."""

from __future__ import annotations

from redis.asyncio import ConnectionPool, Redis


def open_redis(url: str, *, max_connections: int = 1024) -> Redis:
    # A plain pool (not the blocking one, whose condition variable costs a few percent of a
    # manifest GET); the bound only stops a runaway, a request holds a connection briefly.
    pool = ConnectionPool.from_url(
        url,
        max_connections=max_connections,
        socket_connect_timeout=5,
        socket_timeout=30,
        health_check_interval=30,
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes its connections
