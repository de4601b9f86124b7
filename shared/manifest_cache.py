"""The registry's manifest cache, as every writer of manifests and tags must know it.

The registry caches tag → manifest lookups and tags-list pages in Redis under a per-repository
generation (`wharf_registry.cache`). Whoever changes a repository's tags or manifests — the
registry's own push and delete, the management API's deletes and retags — bumps that generation
after the transaction commits, so no pull is served a deleted or moved manifest from the cache.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import RedisError

from wharf_shared.logging import get_logger

log = get_logger(__name__)


def generation_key(repository: str) -> str:
    return f"wharf:mgen:{repository}"


def entry_prefix(repository: str) -> str:
    return f"wharf:m:{repository}:"


async def invalidate(redis: Redis, repository: str) -> None:
    """Call after committing any change to the repository's tags or manifests. A Redis failure
    is logged: the cache's TTL then bounds how long a stale entry may be served."""
    try:
        await redis.incr(generation_key(repository))
    except RedisError as exc:
        log.error("manifest_cache_invalidate_failed", repository=repository, error=str(exc))
