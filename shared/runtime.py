"""Settings an admin changes while Wharf runs (Harbor's `/configurations`), kept in SQL.

Environment variables only seed them: `seed` writes a default for each key that has no row
yet, so the first start of any service (or `wharf init`) fills the table and later changes
made through the API stick. Readers cache the values for a few seconds, and drop them at once
when a change is announced over Redis (`wharf_shared.runtime_watch`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
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
