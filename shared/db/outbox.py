"""The event outbox's queries: rows written in a change's transaction, claimed and deleted by the relay."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.db import tables as t
from wharf_shared.db.types import utcnow


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    event_type: str
    payload: str


async def add(conn: AsyncConnection, events: Sequence[Mapping[str, Any]], payloads: Sequence[str]) -> None:
    """Write events (and their JSON) in the caller's transaction."""
    now = utcnow()
    await conn.execute(
        insert(t.event_outbox),
        [
            {"event_type": event["type"], "payload": payload, "created_at": now}
            for event, payload in zip(events, payloads, strict=True)
        ],
    )


async def oldest(conn: AsyncConnection, limit: int, *, lock: bool) -> list[OutboxRow]:
    """The oldest rows; with `lock`, row-locked and skipping rows another relay holds
    (PostgreSQL, MariaDB ≥ 10.6, MySQL ≥ 8)."""
    query = select(t.event_outbox.c.id, t.event_outbox.c.event_type, t.event_outbox.c.payload).order_by(
        t.event_outbox.c.id
    )
    query = query.limit(limit)
    if lock:
        query = query.with_for_update(skip_locked=True)
    return [OutboxRow(row.id, row.event_type, row.payload) for row in await conn.execute(query)]


async def remove(conn: AsyncConnection, ids: Sequence[int]) -> None:
    # One primary-key lookup per row: an `IN (…)` over a small table may be planned as a scan,
    # which on InnoDB waits for (and deadlocks with) the rows another relay holds.
    await conn.execute(
        delete(t.event_outbox).where(t.event_outbox.c.id == bindparam("row_id")), [{"row_id": i} for i in ids]
    )


async def count(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(func.count()).select_from(t.event_outbox))).scalar_one())
