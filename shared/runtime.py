"""Settings an admin changes while Wharf runs (Harbor's `/configurations`), kept in SQL.

Environment variables only seed them: `seed` writes a default for each key that has no row
yet, so the first start of any service (or `wharf init`) fills the table and later changes
made through the API stick. Readers cache the values for a few seconds.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.config import Settings
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database, insert_ignore, upsert
from wharf_shared.db.types import utcnow

CACHE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    anonymous_access: bool = True
    token_lifetime_seconds: int = 1800
    read_only: bool = False
    self_registration: bool = False
    project_creation_restriction: str = "everyone"  # or "adminonly"
    auth_mode: str = "db_auth"


def defaults(settings: Settings) -> RuntimeSettings:
    return RuntimeSettings(
        anonymous_access=settings.anonymous_access, token_lifetime_seconds=settings.token.lifetime_seconds
    )


async def seed(conn: AsyncConnection, initial: RuntimeSettings) -> None:
    now = utcnow()
    rows = [
        {"key": f.name, "value": json.dumps(getattr(initial, f.name)), "updated_at": now}
        for f in fields(initial)
    ]
    await insert_ignore(conn, t.configuration, rows)


async def store(conn: AsyncConnection, **values: Any) -> None:
    """Change runtime settings (each key must be a `RuntimeSettings` field)."""
    known = {f.name for f in fields(RuntimeSettings)}
    unknown = set(values) - known
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
    values: dict[str, Any] = {}
    for f in fields(RuntimeSettings):
        values[f.name] = json.loads(stored[f.name]) if f.name in stored else getattr(fallback, f.name)
    return RuntimeSettings(**values)


class RuntimeConfig:
    """The runtime settings as one process sees them: read from SQL at most every few seconds."""

    def __init__(
        self, db: Database, fallback: RuntimeSettings, *, cache_seconds: float = CACHE_SECONDS
    ) -> None:
        self._db = db
        self._fallback = fallback
        self._cache_seconds = cache_seconds
        self._value: RuntimeSettings | None = None
        self._read_at = 0.0

    def invalidate(self) -> None:
        """Read afresh on the next `get` (after this process changed a setting itself)."""
        self._value = None

    async def get(self) -> RuntimeSettings:
        now = time.monotonic()
        if self._value is None or now - self._read_at > self._cache_seconds:
            async with self._db.read() as conn:
                self._value = await load(conn, self._fallback)
            self._read_at = now
        return self._value
