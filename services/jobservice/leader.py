"""One leader among the job service's worker processes: a Redis lock (SET NX PX) whose value is
the holder's id, extended only while it is still the holder's (a Lua check-and-extend). A holder
that dies stops renewing; another takes the lock once its lease lapsed."""

from __future__ import annotations

from redis.asyncio import Redis

from wharf_shared.logging import get_logger

log = get_logger(__name__)

# KEYS[1] the lock, ARGV[1] our id, ARGV[2] the lease (ms): extended only while it is ours.
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaderLock:
    def __init__(self, redis: Redis, key: str, owner: str, lease_seconds: float) -> None:
        self._redis = redis
        self.key = key
        self.owner = owner
        self._lease_ms = max(1, int(lease_seconds * 1000))
        self.leader = False

    async def hold(self) -> bool:
        """Renew the lock if ours, else try to take it; whether this process leads now."""
        was = self.leader
        if was:
            self.leader = bool(await self._redis.eval(_EXTEND, 1, self.key, self.owner, self._lease_ms))
        if not self.leader:
            self.leader = bool(await self._redis.set(self.key, self.owner, nx=True, px=self._lease_ms))
        if self.leader != was:
            log.info("scheduler_leadership", leader=self.leader, owner=self.owner)
        return self.leader

    async def release(self) -> None:
        if self.leader:
            await self._redis.eval(_RELEASE, 1, self.key, self.owner)
            self.leader = False
