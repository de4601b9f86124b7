"""Settings an admin changes while Wharf runs (Harbor's `/configurations`), kept in SQL.

Environment variables only seed them: `seed` writes a default for each key that has no row
yet, so the first start of any service (or `wharf init`) fills the table and later changes
made through the API stick. Readers cache the values for a few seconds, and drop them at once
when a change is announced over Redis (`wharf_shared.runtime_watch`).

Each identity mode's settings are a group of their own (`RuntimeSettings.ldap`, `.http_auth`,
`.oidc`, `.cas`, `.cmdb`), whose field names are the keys themselves (Harbor's `ldap_url`, ...;
all prefixed, so unique): one row per key, flat in the table, nested when loaded. Secrets
(`SECRET_KEYS`) are stored as `wharf_shared.secrets.SecretBox` ciphertext, "" when unset, and
stay ciphertext here: only the backend that uses one decrypts it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.config import Settings
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database, insert_ignore, is_unavailable, upsert
from wharf_shared.db.types import utcnow
from wharf_shared.logging import get_logger

log = get_logger(__name__)

CACHE_SECONDS = 5.0
STALE_RETRY_SECONDS = 1.0  # while the database is away, how often a re-read is tried
# Harbor's words for a refused change while read-only mode is on (its code: DENIED, 403).
READ_ONLY_MESSAGE = "The system is in read only mode. Any modification is prohibited."


AUTH_MODES = ("db_auth", "ldap_auth", "http_auth", "oidc_auth", "cas_auth")
# Stored encrypted (SecretBox ciphertext, "" when unset) and never shown by the API.
SECRET_KEYS = frozenset({"ldap_search_password", "oidc_client_secret", "cmdb_auth_header"})


@dataclass(frozen=True, slots=True)
class LdapSettings:
    """`ldap_auth` (Harbor's keys; ours: ldap_ca_certificate, ldap_starttls, the two attribute
    names and ldap_group_sync_schedule). `ldap_search_password` is ciphertext here."""

    ldap_url: str = ""
    ldap_search_dn: str = ""
    ldap_search_password: str = ""
    ldap_base_dn: str = ""
    ldap_uid: str = "cn"
    ldap_filter: str = ""
    ldap_scope: int = 2  # 0 base, 1 one level, 2 subtree
    ldap_timeout: int = 5
    ldap_verify_cert: bool = True
    ldap_group_base_dn: str = ""
    ldap_group_search_filter: str = ""
    ldap_group_attribute_name: str = "cn"
    ldap_group_search_scope: int = 2
    ldap_group_admin_dn: str = ""
    ldap_group_membership_attribute: str = "memberof"
    ldap_ca_certificate: str = ""  # PEM, for LDAPS and StartTLS
    ldap_starttls: bool = False
    ldap_email_attribute: str = "mail"
    ldap_realname_attribute: str = "cn"
    # The job service's sync of LDAP groups' members (Harbor's 6-field cron; "" = never).
    ldap_group_sync_schedule: str = "0 0 * * * *"


@dataclass(frozen=True, slots=True)
class HttpAuthSettings:
    """`http_auth`: an in-house endpoint (OA) that checks passwords (Harbor's keys; ours: the
    timeout and the dotted paths of the user's attributes in its JSON answer)."""

    http_authproxy_endpoint: str = ""
    http_authproxy_tokenreview_endpoint: str = ""
    http_authproxy_verify_cert: bool = True
    http_authproxy_skip_search: bool = False
    http_authproxy_server_certificate: str = ""  # PEM: the CA that signed the endpoint's certificate
    http_authproxy_admin_groups: str = ""  # comma-separated
    http_authproxy_admin_usernames: str = ""  # comma-separated
    http_authproxy_timeout: int = 5  # seconds
    http_authproxy_username_field: str = ""
    http_authproxy_email_field: str = ""
    http_authproxy_realname_field: str = ""
    http_authproxy_groups_field: str = ""


@dataclass(frozen=True, slots=True)
class OidcSettings:
    """`oidc_auth` (Harbor's keys; ours: oidc_group_sync_schedule). `oidc_client_secret` is
    ciphertext."""

    oidc_name: str = ""
    oidc_endpoint: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: str = ""
    oidc_groups_claim: str = ""
    oidc_admin_group: str = ""
    oidc_group_filter: str = ""
    oidc_scope: str = "openid,offline_access"
    oidc_user_claim: str = ""
    oidc_verify_cert: bool = True
    oidc_auto_onboard: bool = False
    oidc_extra_redirect_parms: str = "{}"  # a JSON object, as Harbor takes it
    # Ours: the job service's sync of OIDC users' groups by their refresh tokens (Harbor's
    # 6-field cron; "" = never).
    oidc_group_sync_schedule: str = "0 0 * * * *"


@dataclass(frozen=True, slots=True)
class CasSettings:
    """`cas_auth` (Wharf's keys: Harbor has no CAS)."""

    cas_url: str = ""
    cas_version: str = "3.0"  # or "2.0"
    cas_username_attribute: str = ""  # empty: the CAS user name itself
    cas_email_attribute: str = "mail"
    cas_groups_attribute: str = ""


@dataclass(frozen=True, slots=True)
class CmdbSettings:
    """The CMDB ownership sync (Wharf's keys; `wharf_shared.cmdb`). `cmdb_auth_header` (the whole
    header line's value, e.g. `Bearer …`) is ciphertext; `cmdb_schedule` is Harbor's 6-field
    cron, "" = off. Roles are Harbor's ids; nothing is removed or downgraded unless
    `cmdb_remove_members` says so."""

    cmdb_url: str = ""
    cmdb_auth_header: str = ""
    cmdb_projects_field: str = ""
    cmdb_name_field: str = "name"
    cmdb_owner_field: str = "owner"
    cmdb_team_field: str = ""
    cmdb_schedule: str = ""
    cmdb_timeout: int = 30  # seconds, the whole fetch
    cmdb_verify_cert: bool = True
    cmdb_owner_role: int = 1  # projectAdmin
    cmdb_team_role: int = 2  # developer
    cmdb_team_group_type: int = 2  # the user groups teams name: 2 HTTP (by name), 1 LDAP (by DN), ...
    cmdb_remove_members: bool = False  # remove (and downgrade) what the sync itself granted
    cmdb_public: bool = False  # projects the sync creates


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    anonymous_access: bool = True
    token_lifetime_seconds: int = 1800
    read_only: bool = False
    self_registration: bool = False
    project_creation_restriction: str = "everyone"  # or "adminonly"
    auth_mode: str = "db_auth"  # one of AUTH_MODES
    ldap: LdapSettings = LdapSettings()
    http_auth: HttpAuthSettings = HttpAuthSettings()
    oidc: OidcSettings = OidcSettings()
    cas: CasSettings = CasSettings()
    cmdb: CmdbSettings = CmdbSettings()


def _keys() -> dict[str, str | None]:
    """Every stored key and the group it belongs to (None: a top-level field)."""
    keys: dict[str, str | None] = {}
    for f in fields(RuntimeSettings):
        group = getattr(RuntimeSettings(), f.name)
        if is_dataclass(group):
            keys.update((g.name, f.name) for g in fields(group))
        else:
            keys[f.name] = None
    return keys


KEYS = _keys()


def flat(settings: RuntimeSettings) -> dict[str, Any]:
    """Every key's value, as the table stores them (groups flattened)."""
    values: dict[str, Any] = {}
    for key, group in KEYS.items():
        values[key] = getattr(getattr(settings, group), key) if group else getattr(settings, key)
    return values


def _nest(values: dict[str, Any]) -> RuntimeSettings:
    top: dict[str, Any] = {}
    groups: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        group = KEYS[key]
        if group is None:
            top[key] = value
        else:
            groups.setdefault(group, {})[key] = value
    base = RuntimeSettings(**top)
    return replace(base, **{g: replace(getattr(base, g), **v) for g, v in groups.items()})


def defaults(settings: Settings) -> RuntimeSettings:
    return RuntimeSettings(
        anonymous_access=settings.anonymous_access, token_lifetime_seconds=settings.token.lifetime_seconds
    )


async def seed(conn: AsyncConnection, initial: RuntimeSettings) -> None:
    now = utcnow()
    rows = [
        {"key": key, "value": json.dumps(value), "updated_at": now} for key, value in flat(initial).items()
    ]
    await insert_ignore(conn, t.configuration, rows)


async def store(conn: AsyncConnection, **values: Any) -> None:
    """Change runtime settings (each key a top-level `RuntimeSettings` field or a group's)."""
    unknown = set(values) - set(KEYS)
    if unknown:
        raise KeyError(f"unknown runtime settings: {sorted(unknown)}")
    now = utcnow()
    for key, value in values.items():
        row = {"key": key, "value": json.dumps(value), "updated_at": now}
        await upsert(conn, t.configuration, row, ["key"], ["value", "updated_at"])


async def load(conn: AsyncConnection, fallback: RuntimeSettings) -> RuntimeSettings:
    stored = {
        row.key: row.value
        for row in await conn.execute(select(t.configuration.c.key, t.configuration.c.value))
    }
    defaults = flat(fallback)
    values = {key: json.loads(stored[key]) if key in stored else defaults[key] for key in KEYS}
    return _nest(values)


def _unreachable(exc: Exception) -> bool:
    return isinstance(exc, OSError | TimeoutError) or is_unavailable(exc)


class RuntimeConfig:
    """The runtime settings as one process sees them: read from SQL at most every few seconds,
    and afresh after `invalidate` (called when another process announces a change: see
    `wharf_shared.runtime_watch`; the periodic re-read covers an announcement that was lost)."""

    def __init__(
        self,
        db: Database,
        fallback: RuntimeSettings,
        *,
        cache_seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._fallback = fallback
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._value: RuntimeSettings | None = None
        self._read_at = 0.0
        # Bumped by `invalidate`: a read that began before a change committed must not be
        # kept as current when it lands after the announcement.
        self._generation = 0
        self._read_generation = -1
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        """Read afresh on the next `get`."""
        self._generation += 1

    def _current(self) -> RuntimeSettings | None:
        if self._value is None or self._read_generation != self._generation:
            return None
        if self._clock() - self._read_at > self._cache_seconds:
            return None
        return self._value

    async def get(self) -> RuntimeSettings:
        value = self._current()
        if value is not None:
            return value
        async with self._lock:  # one read per process, however many requests wait for it
            value = self._current()
            if value is not None:
                return value
            generation, started = self._generation, self._clock()
            try:
                async with self._db.read() as conn:
                    value = await load(conn, self._fallback)
            except Exception as exc:
                if self._value is None or not _unreachable(exc):
                    raise
                # The database is away: keep answering with what was read last (an upload
                # in progress needs no SQL and should not fail for this), and try again soon.
                log.warning("runtime_settings_reread_failed", error=str(exc))
                self._read_at = started - self._cache_seconds + STALE_RETRY_SECONDS
                self._read_generation = generation
                return self._value
            self._value, self._read_at, self._read_generation = value, started, generation
            return value
