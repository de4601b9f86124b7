"""Failed logins throttled per account and per client address, in Redis (shared by instances).

After `failures` misses within the window, further attempts are refused for a lockout that
doubles with every further miss (up to an hour). A success clears the account's count.
"""

from __future__ import annotations

import hashlib
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

MAX_LOCKOUT_SECONDS = 3600
_WINDOW_SECONDS = 3600

# KEYS[1]: failure counter; ARGV: failures before lockout, first lockout, cap, window.
# Counts the miss and returns the lockout now in force (0 while under the limit).
_FAILED = """
local n = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
local over = n - tonumber(ARGV[1])
if over < 0 then return 0 end
local lockout = math.min(tonumber(ARGV[2]) * 2 ^ over, tonumber(ARGV[3]))
redis.call('SET', KEYS[2], '1', 'EX', math.floor(lockout))
return math.floor(lockout)
"""


def _account_key(username: str) -> str:
    return "wharf:login:account:" + hashlib.sha256(username.encode()).hexdigest()[:32]


def _address_key(address: str) -> str:
    return "wharf:login:address:" + address


class LoginThrottle:
    def __init__(self, redis: Redis, *, failures: int, lockout_seconds: int) -> None:
        self._redis = redis
        self._failures = failures
        self._lockout = lockout_seconds
        self._failed = redis.register_script(_FAILED)

    async def locked_for(self, username: str, address: str) -> int:
        """Seconds until the account or the address may try again (0: now)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            self.queue_check(pipe, username, address)
            return self.locked_from(await pipe.execute())

    def queue_check(self, pipe: Pipeline, username: str, address: str) -> None:
        """Queue the lockout check on a pipeline (two results) so that callers batch round trips."""
        for key in self.lock_keys(username, address):
            pipe.ttl(key)

    @staticmethod
    def lock_keys(username: str, address: str) -> tuple[str, str]:
        """The keys that exist (with a TTL) while the account or the address is locked out."""
        return _account_key(username) + ":locked", _address_key(address) + ":locked"

    @staticmethod
    def locked_from(results: list[Any]) -> int:
        return max(0, *(int(ttl) for ttl in results[:2]))

    async def failed(self, username: str, address: str) -> None:
        for key in (_account_key(username), _address_key(address)):
            await self._failed(
                keys=[key, key + ":locked"],
                args=[self._failures, self._lockout, MAX_LOCKOUT_SECONDS, _WINDOW_SECONDS],
            )

    async def succeeded(self, username: str) -> None:
        key = _account_key(username)
        await self._redis.delete(key)
