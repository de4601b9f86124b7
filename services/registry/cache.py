"""Manifest lookups and tags-list pages cached in Redis, so that pulls touch no SQL on the hot path.

Keys carry a per-repository generation (`wharf_shared.manifest_cache`, which the management API
bumps too). Writers bump it after their transaction commits;
a reader fetches the generation and the entry in one round trip (a Lua script). A reader that
filled the cache from SQL before a commit wrote under the old generation, which no one reads
after the bump, so a stale entry is never served (a TTL bounds what a crash between commit
and bump could leave).
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from wharf_shared import manifest_cache
from wharf_shared.logging import get_logger
from wharf_shared.manifest_cache import entry_prefix as _entry_prefix
from wharf_shared.manifest_cache import generation_key as _gen_key
from wharf_shared.redis import Script

log = get_logger(__name__)

MAX_CACHED_BYTES = 256 * 1024
_GET = """
local gen = redis.call('GET', KEYS[1]) or '0'
return {gen, redis.call('GET', ARGV[1] .. gen .. ':' .. ARGV[2])}
"""


@dataclass(frozen=True, slots=True)
class CachedManifest:
    digest: str
    media_type: str
    body: bytes


class ManifestCache:
    def __init__(self, redis: Redis, ttl_seconds: int) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._script = Script(redis, _GET)

    @property
    def enabled(self) -> bool:
        return self._ttl > 0

    async def fetch(self, repository: str, key: str) -> tuple[str, bytes | None]:
        """(generation, cached bytes or None). Redis trouble reads as a miss: SQL still answers."""
        if not self.enabled:
            return "", None
        try:
            gen, raw = await self._script(keys=[_gen_key(repository)], args=[_entry_prefix(repository), key])
        except RedisError as exc:
            log.warning("manifest_cache_unavailable", error=str(exc))
            return "", None
        return (gen.decode() if isinstance(gen, bytes) else str(gen)), (raw or None)

    async def store(self, repository: str, generation: str, key: str, value: bytes) -> None:
        if not self.enabled or not generation or len(value) > MAX_CACHED_BYTES:
            return
        try:
            await self._redis.set(f"{_entry_prefix(repository)}{generation}:{key}", value, ex=self._ttl)
        except RedisError as exc:
            log.warning("manifest_cache_unavailable", error=str(exc))

    async def get(self, repository: str, reference: str) -> tuple[str, CachedManifest | None]:
        generation, raw = await self.fetch(repository, reference)
        if raw is None:
            return generation, None
        digest, media_type, body = raw.split(b"\n", 2)
        return generation, CachedManifest(digest.decode(), media_type.decode(), body)

    async def put(self, repository: str, generation: str, reference: str, entry: CachedManifest) -> None:
        value = entry.digest.encode() + b"\n" + entry.media_type.encode() + b"\n" + entry.body
        await self.store(repository, generation, reference, value)

    async def invalidate(self, repository: str) -> None:
        """Call after committing any change to the repository's tags or manifests."""
        await manifest_cache.invalidate(self._redis, repository)
