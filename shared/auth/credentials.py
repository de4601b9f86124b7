"""Verified credentials remembered briefly, so a client's burst of token requests pays the
password KDF once.

The Redis key is an HMAC of username and password under the installation's secret key (the
password itself is never stored, not even hashed with a public function). The entry holds
the user id and a fingerprint of the stored password hash: a changed password, or a deleted
user, no longer matches, however fresh the entry.
"""

from __future__ import annotations

import hashlib
import hmac

from redis.asyncio import Redis


def fingerprint(password_hash: str | None) -> str:
    return hashlib.sha256((password_hash or "").encode()).hexdigest()[:32]


class CredentialCache:
    def __init__(self, redis: Redis, secret: bytes, ttl_seconds: int) -> None:
        self._redis = redis
        self._secret = secret
        self._ttl = ttl_seconds

    def key(self, username: str, password: str) -> str:
        mac = hmac.new(self._secret, f"{username}\0{password}".encode(), hashlib.sha256).hexdigest()
        return "wharf:credentials:" + mac

    @property
    def enabled(self) -> bool:
        return self._ttl > 0

    async def lookup(self, username: str, password: str) -> tuple[int, str] | None:
        """(user id, password-hash fingerprint) remembered for these credentials, if any."""
        if not self.enabled:
            return None
        return self.parse(await self._redis.get(self.key(username, password)))

    @staticmethod
    def parse(raw: bytes | str | None) -> tuple[int, str] | None:
        if not raw:
            return None
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        user_id, _, mark = text.partition(":")
        return int(user_id), mark

    async def remember(self, username: str, password: str, user_id: int, password_hash: str | None) -> None:
        if self._ttl > 0:
            await self._redis.set(
                self.key(username, password), f"{user_id}:{fingerprint(password_hash)}", ex=self._ttl
            )
