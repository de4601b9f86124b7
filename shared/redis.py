"""The Redis client of a process: one bounded connection pool, and Lua scripts run by SHA."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.exceptions import NoScriptError


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
