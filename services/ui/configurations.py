"""The runtime settings as Harbor's `/configurations` shows and takes them: Harbor's key names,
each shown as `{"value", "editable"}` and changed by a flat body of keys and values.

Harbor's keys map onto `wharf_shared.runtime.RuntimeSettings` fields; `token_expiration` is in
minutes (Harbor's unit) and kept in seconds (`token_lifetime_seconds`, which the environment
may seed with a finer value: it is then shown rounded up to whole minutes). Harbor has no key
for anonymous pulls of public projects; ours is `anonymous_access`.

A change commits, drops this process's cached copy and is then announced over Redis
(`wharf_shared.runtime_watch`), so every process of every service applies it within a second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared import runtime
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.errors.domain import InvalidInput
from wharf_shared.rbac import Identity
from wharf_shared.runtime import RuntimeConfig, RuntimeSettings
from wharf_shared.runtime_watch import announce
from wharf_ui.changes import record

AUTH_MODES = ("db_auth",)  # what Wharf implements; Harbor's others are refused by name
HARBOR_AUTH_MODES = ("db_auth", "ldap_auth", "uaa_auth", "http_auth", "oidc_auth")
PROJECT_CREATION = ("everyone", "adminonly")
# Token lifetimes in minutes: at least one, and short of 2**31 seconds (JWT `exp` stays a sane int).
TOKEN_MINUTES_MAX = (2**31 - 1) // 60
ADMIN = "admin"  # the user `wharf init` creates; the only one that lets auth_mode change


@dataclass(frozen=True, slots=True)
class Key:
    """One of Harbor's keys: the `RuntimeSettings` field behind it and its JSON type."""

    field: str
    kind: str  # "string", "boolean", "integer" (Harbor's StringConfigItem, BoolConfigItem, ...)


KEYS: dict[str, Key] = {
    "auth_mode": Key("auth_mode", "string"),
    "project_creation_restriction": Key("project_creation_restriction", "string"),
    "self_registration": Key("self_registration", "boolean"),
    "token_expiration": Key("token_lifetime_seconds", "integer"),
    "read_only": Key("read_only", "boolean"),
    "anonymous_access": Key("anonymous_access", "boolean"),
}


def token_minutes(seconds: int) -> int:
    return max(1, math.ceil(seconds / 60))


async def auth_mode_editable(conn: AsyncConnection) -> bool:
    """Harbor's rule: the auth mode may change only while `admin` is the only user (users made
    under one mode would not sign in under another)."""
    u = t.user_account.c
    others = (await conn.execute(select(func.count()).where(u.username != ADMIN))).scalar()
    return not others


async def current(conn: AsyncConnection, fallback: RuntimeSettings) -> dict[str, dict[str, Any]]:
    """Harbor's ConfigurationsResponse: every key with its value and whether it may change."""
    values = await runtime.load(conn, fallback)
    editable = await auth_mode_editable(conn)
    shown: dict[str, dict[str, Any]] = {}
    for name, key in KEYS.items():
        value = getattr(values, key.field)
        if name == "token_expiration":
            value = token_minutes(value)
        shown[name] = {"value": value, "editable": editable if name == "auth_mode" else True}
    return shown


def changes(body: dict[str, Any]) -> dict[str, Any]:
    """The `RuntimeSettings` fields a Configurations body sets (types already checked); a key
    given as null is left as it is (Harbor's keys are nullable: null means "not given")."""
    fields: dict[str, Any] = {}
    for name, value in body.items():
        if value is None:
            continue
        if name == "auth_mode" and value not in AUTH_MODES:
            if value in HARBOR_AUTH_MODES:
                raise InvalidInput(f"auth_mode: {value} is not available in Wharf (only db_auth)")
            raise InvalidInput(f"auth_mode: {str(value)[:40]!r} is not an auth mode (db_auth)")
        if name == "project_creation_restriction" and value not in PROJECT_CREATION:
            raise InvalidInput(
                f"project_creation_restriction: {str(value)[:40]!r} is not everyone or adminonly"
            )
        if name == "token_expiration":
            value = value * 60
        fields[KEYS[name].field] = value
    return fields


def _harbor_keys(fields: dict[str, Any]) -> list[str]:
    """Harbor's names of the keys behind these `RuntimeSettings` fields (what the audit shows)."""
    return sorted(name for name, key in KEYS.items() if key.field in fields)


async def update(
    db: Database,
    redis: Redis,
    config: RuntimeConfig,
    channel: str,
    fields: dict[str, Any],
    by: Identity,
) -> None:
    """Store `fields` in one transaction, then make every process see them; the change is
    audited (`configuration.update`, naming the keys whose value changed; none: no event)."""
    if not fields:
        return

    async def go(conn: AsyncConnection) -> None:
        stored = await runtime.load(conn, RuntimeSettings())
        new_mode = fields.get("auth_mode", stored.auth_mode)
        if new_mode != stored.auth_mode and not await auth_mode_editable(conn):
            raise InvalidInput(
                "auth_mode can not be modified as users other than admin exist in the database"
            )
        await runtime.store(conn, **fields)
        # The portal's form sends every key: the audit names only those whose value changed.
        changed = {name: value for name, value in fields.items() if getattr(stored, name) != value}
        if changed:
            await record(conn, "configuration.update", by, keys=_harbor_keys(changed))

    await db.run(go)
    config.invalidate()  # this process at once, whatever becomes of the announcement
    await announce(redis, channel)
