"""Portal sessions (`/c/login`), kept in Redis so that any ui instance serves any session.

A session is a random id in the `sid` cookie; Redis holds, under a hash of it (a dump of Redis
gives no live session away), who signed in, the fingerprint of their password hash, the CSRF
token of the session and when it ends. Every use moves the end `lifetime` seconds ahead
(sliding expiry); the end is measured against the injected clock, the Redis TTL only cleans up.

A session never outlives its user: each use re-reads the user row, and a user deleted, renamed
or with another password since the login (their hash's fingerprint differs) ends it.

A single sign-on session (CAS, OIDC) also keeps how it began (`Session.sso`: the mode, the ID
token for the provider's logout) and may carry an index, the CAS service ticket: CAS's
single-logout request names the session by it (`end_indexed`), so the index maps to the session's
key for as long as the session lives.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from redis.asyncio import Redis

from wharf_shared.db import projects
from wharf_shared.db.engine import Database
from wharf_shared.passwords import fingerprint
from wharf_shared.rbac import Identity

COOKIE = "sid"
CSRF_COOKIE = "__csrf"
CSRF_HEADER = "X-Harbor-CSRF-Token"
_PREFIX = "wharf:session:"
_INDEX = "wharf:session-index:"


@dataclass(frozen=True, slots=True)
class Session:
    sid: str
    identity: Identity
    csrf: str
    sso: Mapping[str, str] = field(default_factory=dict)  # single sign-on: mode, id_token

    def csrf_matches(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token.encode(), self.csrf.encode())


def _key(sid: str) -> str:
    return _PREFIX + hashlib.sha256(sid.encode()).hexdigest()


def _index_key(index: str) -> str:
    return _INDEX + hashlib.sha256(index.encode()).hexdigest()


class Sessions:
    def __init__(
        self, db: Database, redis: Redis, *, lifetime: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._db = db
        self._redis = redis
        self._lifetime = lifetime
        self._clock = clock

    async def _store(self, sid: str, fields: dict[str, object], *, new: bool) -> bool:
        """Write the entry, ending `lifetime` from now; an extension (`new` False) only while the
        entry is there, so a request in flight does not bring back a session just ended."""
        fields["until"] = self._clock() + self._lifetime
        stored = await self._redis.set(_key(sid), json.dumps(fields), ex=self._lifetime, xx=not new)
        index = fields.get("index")
        if stored and isinstance(index, str):
            await self._redis.set(_index_key(index), _key(sid), ex=self._lifetime)
        return bool(stored)

    async def start(
        self,
        identity: Identity,
        mark: str | None,
        *,
        sso: Mapping[str, str] | None = None,
        index: str | None = None,
    ) -> Session:
        """A new session for a user who just proved their password (`mark`: its fingerprint), or
        signed in through single sign-on (`sso`; `index`: what single logout names it by)."""
        assert identity.user_id is not None
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        fields: dict[str, object] = {
            "user_id": identity.user_id,
            "username": identity.username,
            "mark": mark,
            "csrf": csrf,
        }
        if sso:
            fields["sso"] = dict(sso)
        if index:
            fields["index"] = index
        await self._store(sid, fields, new=True)
        return Session(sid, identity, csrf, dict(sso or {}))

    async def resume(self, sid: str) -> Session | None:
        """The live session of this id, extended; None when it ended, was never, or its user
        changed (the entry is then removed)."""
        if not sid or len(sid) > 128:
            return None
        raw = await self._redis.get(_key(sid))
        if raw is None:
            return None
        try:
            fields = json.loads(raw)
            user_id, username, mark = int(fields["user_id"]), str(fields["username"]), fields["mark"]
            csrf, until = str(fields["csrf"]), float(fields["until"])
            sso = {str(k): str(v) for k, v in (fields.get("sso") or {}).items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            await self.end(sid)
            return None
        if until <= self._clock():
            await self.end(sid)
            return None
        async with self._db.read() as conn:
            user, _ = await projects.caller_and_access(conn, user_id, ())
        if user is None or user.username != username or fingerprint(user.password_hash) != mark:
            await self.end(sid)
            return None
        if not await self._store(sid, fields, new=False):
            return None  # signed out meanwhile
        return Session(sid, Identity(user.id, user.username, user.sysadmin), csrf, sso)

    async def end(self, sid: str) -> None:
        await self._redis.delete(_key(sid))

    async def end_indexed(self, index: str) -> bool:
        """End the session opened with this index (a CAS service ticket); False when none is."""
        key = await self._redis.getdel(_index_key(index))
        if key is None:
            return False
        return bool(await self._redis.delete(key))
