"""The login flow every service that takes a password shares (the token service, the ui):
credentials in, the caller and their view of some projects out, throttled alike on every
surface (one set of Redis keys), so a guesser gains nothing by switching from `docker login` to
`/api/`. The handlers only parse and render; the token service adds refresh tokens on top.

A password login:

1. One Redis call (a script): the lockouts in force for this account from this client address
   and for the address, and what the credential cache remembers for these credentials.
2. A lockout in force: `Throttled`, before any password check, whichever the account.
3. Remembered (warm): one SQL query reads the user by id and their roles in the scopes'
   projects. The entry holds the fingerprint of the password hash it was verified against; a
   user row whose hash no longer matches (password changed), or a user gone or renamed, voids
   it, and the login goes on cold.
4. Cold: one SQL query reads the user by name with their roles (the only read of the user),
   the auth backend of the mode in force checks the credentials (`wharf_shared.auth.modes`;
   `db_auth`: argon2id against the row's hash, a dummy hash for an unknown user so that it
   takes as long), then one Redis call: a miss is counted, a success clears the count of this
   account from this address and remembers the credentials (a keyed hash, never the password)
   with the backend that proved them, so that a remembered login names it too.

Every failure is the same `LoginFailed`, whether the user is unknown or the password wrong.

Throttling keys on (account, client address) and on the client address alone, never on the
account alone, so that a guesser elsewhere cannot keep the owner out. After `pair_failures`
misses within the window the account is locked for that address; after `address_failures`
misses, whatever the accounts, the whole address is. A lockout starts at `lockout_seconds` and
doubles with each further miss, up to an hour. Times come from the injected clock and the
lock is stored as "locked until <time>", so tests can advance it; Redis TTLs only clean up.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from redis.asyncio import Redis

from wharf_shared.auth.cli_secrets import credential_mark
from wharf_shared.auth.modes import AuthModes
from wharf_shared.db import projects
from wharf_shared.db.accounts import USERNAME_MAX_LENGTH
from wharf_shared.db.engine import Database
from wharf_shared.errors.domain import LoginFailed, Throttled
from wharf_shared.logging import get_logger
from wharf_shared.rbac import ANONYMOUS, Identity, ProjectAccess
from wharf_shared.redis import Script

if TYPE_CHECKING:  # a forked parent must not load prometheus_client (wharf_shared.forks)
    from prometheus_client import Counter

log = get_logger(__name__)

MAX_LOCKOUT_SECONDS = 3600
WINDOW_SECONDS = 3600

# KEYS: the pair's and the address's throttle hashes, then (optionally) the credential-cache key.
# Returns when each lock ends (nil: never locked) and the remembered login.
_CHECK = """
local out = {redis.call('HGET', KEYS[1], 'until'), redis.call('HGET', KEYS[2], 'until')}
if KEYS[3] then out[3] = redis.call('GET', KEYS[3]) end
return out
"""

# KEYS: the pair's and the address's throttle hashes. ARGV: now, the pair's and the address's
# limits, first lockout, lockout cap, window. Counts the miss in each key's window (a fixed
# window from its first miss) and, over the limit, locks until now + the doubled lockout.
_FAILED = """
local now, first, cap, window = tonumber(ARGV[1]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
for i, key in ipairs(KEYS) do
  local start = tonumber(redis.call('HGET', key, 'start'))
  local n
  if not start or now - start >= window then
    n = 1
    redis.call('HSET', key, 'n', 1, 'start', ARGV[1])
  else
    n = redis.call('HINCRBY', key, 'n', 1)
  end
  local over = n - tonumber(ARGV[1 + i])
  local lockout = 0
  if over >= 0 then
    lockout = math.min(first * 2 ^ over, cap)
    redis.call('HSET', key, 'until', string.format('%.17g', now + lockout))
  end
  redis.call('EXPIRE', key, math.ceil(window + lockout))
end
return 0
"""


def _pair_key(username: str, address: str) -> str:
    digest = hashlib.sha256(f"{username}\0{address}".encode()).hexdigest()[:32]
    return "wharf:login:pair:" + digest


def _address_key(address: str) -> str:
    return "wharf:login:address:" + address


_CASELESS_BACKENDS = frozenset({"ldap_auth"})  # directories whose names match without case


def _same_name(row: str, typed: str, backend: str) -> bool:
    """Whether a remembered login's user row still answers to the name typed. An `ldap_auth`
    row carries the directory's spelling (its names match without case: "ALICE" signs in as
    the row "alice"); any other name is exact. The entry exists only after these very
    credentials were proven for this row, so this only guards against a rename."""
    if backend in _CASELESS_BACKENDS:
        return row.casefold() == typed.casefold()
    return row == typed


def _storable(username: str) -> bool:
    """Whether a user could have this name (else the database would refuse even to look)."""
    return len(username) <= USERNAME_MAX_LENGTH and "\0" not in username


@dataclass(frozen=True, slots=True)
class Login:
    """Who signed in, their view of the projects asked about, their password hash's
    fingerprint (what a refresh token is bound to; None for anonymous callers) and the auth
    backend that checked the password ("" when none did)."""

    identity: Identity
    access: dict[str, ProjectAccess] = field(default_factory=dict)
    mark: str | None = None
    backend: str = ""


class _Refused(Exception):
    """Internal: credentials refused by `backend` (the caller sees `LoginFailed`)."""

    def __init__(self, backend: str) -> None:
        super().__init__(backend)
        self.backend = backend


class LoginMetrics(Protocol):
    """Where a service counts sign-ins (`logins`: result, backend) and lockout refusals
    (`throttled`: lock); the token service's `TokenMetrics` is one."""

    @property
    def logins(self) -> Counter: ...

    @property
    def throttled(self) -> Counter: ...


@dataclass(frozen=True, slots=True)
class Throttling:
    pair_failures: int
    address_failures: int
    lockout_seconds: int


class Logins:
    def __init__(
        self,
        db: Database,
        redis: Redis,
        backend: AuthModes,
        *,
        secret: bytes,
        cache_seconds: int,
        throttling: Throttling,
        clock: Callable[[], float] = time.time,
        metrics: LoginMetrics | None = None,
    ) -> None:
        self._db = db
        self._redis = redis
        self._backend = backend
        self._metrics = metrics
        self._secret = secret
        self._cache_seconds = cache_seconds
        self._throttling = throttling
        self._clock = clock
        self._check = Script(redis, _CHECK)
        self._failed = Script(redis, _FAILED)

    async def login(self, username: str, password: str, address: str, names: Collection[str]) -> Login:
        """Sign in with a password (`names`: the projects the scopes name)."""
        try:
            login = await self._login(username, password, address, names)
        except Throttled:
            self._count("throttled", self._backend.name)
            raise
        except _Refused as refused:
            self._count("failure", refused.backend)
            raise LoginFailed() from None
        except LoginFailed:
            self._count("failure", self._backend.name)
            raise
        except Exception:
            self._count("error", self._backend.name)  # no verdict: Redis or the database failed
            raise
        self._count("success", login.backend or self._backend.name)
        return login

    async def _login(self, username: str, password: str, address: str, names: Collection[str]) -> Login:
        throttle_keys = [_pair_key(username, address), _address_key(address)]
        cache_key = self._cache_key(username, password) if self._cache_seconds > 0 else None
        results = await self._check(keys=[*throttle_keys, *([cache_key] if cache_key else [])])
        now = self._clock()
        pair_until, address_until = (float(v) if v is not None else 0.0 for v in results[:2])
        until = max(pair_until, address_until)
        if until > now:
            if self._metrics is not None:
                lock = "address" if address_until > now else "account"
                self._metrics.throttled.labels(lock).inc()
            raise Throttled(retry_after=max(1, math.ceil(round(until - now, 3))))
        remembered = results[2] if len(results) > 2 else None
        if remembered is not None:
            login = await self._remembered(remembered, username, names)
            if login is not None:
                return login
        return await self._verify(username, password, address, names, throttle_keys, cache_key)

    async def anonymous(self, names: Collection[str]) -> Login:
        async with self._db.read() as conn:
            access = await projects.project_access(conn, names, None)
        return Login(ANONYMOUS, access)

    def _count(self, result: str, backend: str) -> None:
        if self._metrics is not None:
            self._metrics.logins.labels(result, backend).inc()

    def _cache_key(self, username: str, password: str) -> str:
        mac = hmac.new(self._secret, f"{username}\0{password}".encode(), hashlib.sha256).hexdigest()
        return "wharf:credentials:" + mac

    async def _remembered(self, entry: bytes, username: str, names: Collection[str]) -> Login | None:
        """The login a cache entry remembers, if the user row still matches it."""
        user_id, _, rest = entry.decode().partition(":")
        mark, _, backend = rest.partition(":")
        async with self._db.read() as conn:
            caller, access = await projects.caller_and_access(conn, int(user_id), names)
        if (
            caller is None
            or not _same_name(caller.username, username, backend)
            or credential_mark(caller) != mark
        ):
            return None
        return Login(
            Identity(caller.id, caller.username, caller.sysadmin), access, mark, backend or "db_auth"
        )

    async def _verify(
        self,
        username: str,
        password: str,
        address: str,
        names: Collection[str],
        throttle_keys: list[str],
        cache_key: str | None,
    ) -> Login:
        login = await self._prove(username, password, names)
        if not isinstance(login, Login):
            await self._count_failure(throttle_keys)
            log.info("login_failed", username=username[:USERNAME_MAX_LENGTH], address=address, backend=login)
            raise _Refused(login)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.delete(throttle_keys[0])  # this address's misses on this account; not the address's
            if cache_key is not None and login.identity.user_id is not None and login.mark is not None:
                entry = f"{login.identity.user_id}:{login.mark}:{login.backend}"
                pipe.set(cache_key, entry, ex=self._cache_seconds)
            await pipe.execute()
        return login

    async def _prove(self, username: str, password: str, names: Collection[str]) -> Login | str:
        """The login the credentials prove (the user's row read once, the backend's verdict), else
        the name of the backend that refused them. The token service also knows the job
        service's account here (`wharf_token.logins`)."""
        caller: projects.Caller | None = None
        access: dict[str, ProjectAccess] = {}
        if _storable(username):
            async with self._db.read() as conn:
                caller, access = await projects.caller_and_access(conn, username, names)
        verdict = await self._backend.verify(username, password, caller)
        proven = verdict.caller
        if proven is None:
            return verdict.backend
        if caller is None or proven != caller:
            # The backend made (or refreshed) the local row: read it and its roles afresh.
            async with self._db.read() as conn:
                proven, access = await projects.caller_and_access(conn, proven.id, names)
            if proven is None:
                return verdict.backend
        mark = credential_mark(proven)
        return Login(Identity(proven.id, proven.username, proven.sysadmin), access, mark, verdict.backend)

    async def _count_failure(self, throttle_keys: list[str]) -> None:
        t = self._throttling
        args: list[Any] = [
            repr(self._clock()),
            t.pair_failures,
            t.address_failures,
            t.lockout_seconds,
            MAX_LOCKOUT_SECONDS,
            WINDOW_SECONDS,
        ]
        await self._failed(keys=throttle_keys, args=args)
