"""The Redis client of a process: one bounded, blocking connection pool."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis


def open_redis(url: str, *, max_connections: int = 64) -> Redis:
    # Blocking: under a burst, callers wait for a connection instead of failing.
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=10,
        socket_connect_timeout=5,
        socket_timeout=30,
        health_check_interval=30,
    )
    return Redis(connection_pool=pool)
