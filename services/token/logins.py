"""Turning credentials into a login: the auth backend, behind throttling and a short cache.

Every failure reads the same to the client (401, one message), whether the user is unknown or
the password wrong; a throttled caller gets 429 with Retry-After before any password check.

A login served from the credential cache is provisional: it carries the fingerprint of the
password hash it was verified against, and the caller confirms it (`confirm`) against the user
row it reads anyway with the caller's project roles, so a warm token request costs one Redis
round trip and one SQL query.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from wharf_shared.auth.backends import AuthBackend
from wharf_shared.auth.credentials import CredentialCache, fingerprint
from wharf_shared.auth.throttle import LoginThrottle
from wharf_shared.db import accounts
from wharf_shared.db.engine import Database
from wharf_shared.db.projects import Caller
from wharf_shared.errors.oci import TooManyRequests, Unauthorized
from wharf_shared.logging import get_logger
from wharf_shared.rbac import Identity

log = get_logger(__name__)

FAILED = "authentication failed: incorrect username or password"


def failed() -> Unauthorized:
    return Unauthorized(message=FAILED, headers={"WWW-Authenticate": 'Basic realm="wharf"'})


# KEYS: the two lockout keys, then (optionally) the credential-cache key. Returns their TTLs
# and the cached value.
_CHECK = """
local out = {redis.call('TTL', KEYS[1]), redis.call('TTL', KEYS[2])}
if KEYS[3] then out[3] = redis.call('GET', KEYS[3]) end
return out
"""


@dataclass(frozen=True, slots=True)
class Login:
    user_id: int
    username: str
    mark: str | None = None  # set for a login taken from the cache: the hash fingerprint to confirm


class Authenticator:
    def __init__(
        self,
        db: Database,
        redis: Redis,
        backend: AuthBackend,
        throttle: LoginThrottle,
        cache: CredentialCache,
    ) -> None:
        self._db = db
        self._redis = redis
        self._backend = backend
        self._throttle = throttle
        self._cache = cache
        self._check = redis.register_script(_CHECK)

    async def login(self, username: str, password: str, address: str, *, cached: bool = True) -> Login:
        use_cache = cached and self._cache.enabled
        # One round trip (one command: cheaper for the client than a pipeline of three).
        keys = [*self._throttle.lock_keys(username, address)]
        if use_cache:
            keys.append(self._cache.key(username, password))
        results = await self._check(keys=keys)
        locked = self._throttle.locked_from(results)
        if locked:
            raise TooManyRequests(
                message="too many failed logins: try again later", headers={"Retry-After": str(locked)}
            )
        remembered = self._cache.parse(results[2]) if use_cache and len(results) > 2 else None
        if remembered is not None:
            return Login(remembered[0], username, remembered[1])
        identity = await self._backend.authenticate(username, password)
        if identity is None or identity.user_id is None:
            await self._throttle.failed(username, address)
            log.info("login_failed", username=username, address=address)
            raise failed()
        await self._throttle.succeeded(username)
        async with self._db.read() as conn:
            user = await accounts.get_user(conn, identity.user_id)
        await self._cache.remember(username, password, identity.user_id, user.password_hash if user else None)
        return Login(identity.user_id, identity.username)

    @staticmethod
    def confirm(login: Login, caller: Caller | None) -> Identity | None:
        """The identity, if the user row still matches the login (None: a stale cached login, or
        a user deleted or renamed since)."""
        if caller is None or caller.username != login.username:
            return None
        if login.mark is not None and fingerprint(caller.password_hash) != login.mark:
            return None
        return Identity(caller.id, caller.username, caller.sysadmin)
