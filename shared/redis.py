"""The Redis client of a process: one bounded connection pool, and Lua scripts run by SHA.

Given the service's `Metrics`, the pool counts its connections in use and those it could not
have (`wharf_<service>_redis_*`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import NoScriptError, RedisError

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge

    from wharf_shared.metrics import Metrics


def open_redis(url: str, *, max_connections: int = 1024, metrics: Metrics | None = None) -> Redis:
    # A plain pool (not the blocking one, whose condition variable costs a few percent of a
    # manifest GET); the bound only stops a runaway, a request holds a connection briefly.
    pool = (ConnectionPool if metrics is None else _WatchedPool).from_url(
        url,
        max_connections=max_connections,
        socket_connect_timeout=5,
        socket_timeout=30,
        health_check_interval=30,
    )
    if isinstance(pool, _WatchedPool) and metrics is not None:
        pool.watch(metrics)
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes its connections


class _WatchedPool(ConnectionPool):
    """The pool, keeping its figures: connections in use after each checkout and return, and
    checkouts that failed (a connection could not be made, or a pooled one was found dead and
    could not be remade: Redis is down or out of reach)."""

    _in_use: Gauge
    _errors: Counter

    def watch(self, metrics: Metrics) -> None:
        self._in_use = metrics.redis_connections_in_use
        self._errors = metrics.redis_errors
        self._in_use.set(0)

    async def get_connection(
        self, command_name: Any = None, *keys: Any, **options: Any
    ) -> AbstractConnection:
        try:
            connection: AbstractConnection = await super().get_connection()  # type: ignore[no-untyped-call]
            return connection
        except (RedisError, OSError):
            self._errors.inc()
            raise
        finally:
            self._in_use.set(len(self._in_use_connections))

    async def release(self, connection: AbstractConnection) -> None:
        try:
            await super().release(connection)
        finally:
            self._in_use.set(len(self._in_use_connections))


class Script:
    """A Lua script run with EVALSHA, loaded again when Redis lost it (a restart, SCRIPT FLUSH).

    What redis-py's `register_script` does, without its per-call `isinstance(client, Pipeline)`:
    a check against a `typing.Protocol` subclass, which cost 4% of a manifest GET's CPU.
    """

    def __init__(self, redis: Redis, source: str) -> None:
        self._redis = redis
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()  # Redis names scripts so

    async def __call__(self, keys: Sequence[str] = (), args: Sequence[Any] = ()) -> Any:
        try:
            return await self._redis.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            self.sha = await self._redis.script_load(self.source)
            return await self._redis.evalsha(self.sha, len(keys), *keys, *args)
