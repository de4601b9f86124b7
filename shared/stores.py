"""The database and Redis a service reads and writes, opened the same way by each."""

from __future__ import annotations

from redis.asyncio import Redis

from wharf_shared import runtime
from wharf_shared.config import Settings
from wharf_shared.db.engine import Database
from wharf_shared.db.schema import check_schema
from wharf_shared.metrics import Metrics
from wharf_shared.redis import open_redis


async def open_stores(settings: Settings, metrics: Metrics) -> tuple[Database, Redis]:
    """The database (its schema checked, the runtime settings' first values seeded) and Redis;
    both closed again when the check or the seed fails."""
    db = Database(settings.effective_database_url, pool_size=settings.database_pool_size, metrics=metrics)
    redis = open_redis(settings.redis_url, metrics=metrics)
    try:
        await check_schema(db)
        async with db.transaction() as conn:
            await runtime.seed(conn, runtime.defaults(settings))
    except BaseException:
        await db.close()
        await redis.aclose()
        raise
    return db, redis
