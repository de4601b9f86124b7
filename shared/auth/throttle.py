"""Failed logins throttled per account and per client address, in Redis (shared by instances).

After `failures` misses within the window, further attempts are refused for a lockout that
doubles with every further miss (up to an hour). A success clears the account's count.
"""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis

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
        ttls = []
        for key in (_account_key(username), _address_key(address)):
            ttls.append(await self._redis.ttl(key + ":locked"))
        return max(0, *ttls)

    async def failed(self, username: str, address: str) -> None:
        for key in (_account_key(username), _address_key(address)):
            await self._failed(
                keys=[key, key + ":locked"],
                args=[self._failures, self._lockout, MAX_LOCKOUT_SECONDS, _WINDOW_SECONDS],
            )

    async def succeeded(self, username: str) -> None:
        key = _account_key(username)
        await self._redis.delete(key)
