"""Turning credentials into an identity: the auth backend, behind throttling and a short cache.

Every failure reads the same to the client (401, one message), whether the user is unknown or
the password wrong; a throttled caller gets 429 with Retry-After before any password check.
"""

from __future__ import annotations

from wharf_shared.auth.backends import AuthBackend
from wharf_shared.auth.credentials import CredentialCache, fingerprint
from wharf_shared.auth.throttle import LoginThrottle
from wharf_shared.db import accounts
from wharf_shared.db.engine import Database
from wharf_shared.errors.oci import TooManyRequests, Unauthorized
from wharf_shared.logging import get_logger
from wharf_shared.rbac import Identity

log = get_logger(__name__)

FAILED = "authentication failed: incorrect username or password"


class Authenticator:
    def __init__(
        self, db: Database, backend: AuthBackend, throttle: LoginThrottle, cache: CredentialCache
    ) -> None:
        self._db = db
        self._backend = backend
        self._throttle = throttle
        self._cache = cache

    async def login(self, username: str, password: str, address: str) -> Identity:
        locked = await self._throttle.locked_for(username, address)
        if locked:
            raise TooManyRequests(
                message="too many failed logins: try again later", headers={"Retry-After": str(locked)}
            )
        remembered = await self._cache.lookup(username, password)
        if remembered is not None:
            identity = await self._still_valid(username, *remembered)
            if identity is not None:
                return identity
        identity = await self._backend.authenticate(username, password)
        if identity is None or identity.user_id is None:
            await self._throttle.failed(username, address)
            log.info("login_failed", username=username, address=address)
            raise Unauthorized(message=FAILED, headers={"WWW-Authenticate": 'Basic realm="wharf"'})
        await self._throttle.succeeded(username)
        async with self._db.read() as conn:
            user = await accounts.get_user(conn, identity.user_id)
        await self._cache.remember(username, password, identity.user_id, user.password_hash if user else None)
        return identity

    async def _still_valid(self, username: str, user_id: int, mark: str) -> Identity | None:
        """The remembered user, if it still exists under that name with the same password hash."""
        async with self._db.read() as conn:
            user = await accounts.get_user(conn, user_id)
        if user is None or user.username != username or fingerprint(user.password_hash) != mark:
            return None
        return Identity(user.id, user.username, user.sysadmin)
