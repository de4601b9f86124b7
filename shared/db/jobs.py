"""Executions and their tasks as SQL rows: the truth about every job (Celery messages carry only ids).

An execution's status follows from its tasks (`refresh_execution`, in the transaction of every task
change): Running while one is Pending or Running; then Stopped if one was stopped, Error if one
failed, else Success. An execution with no task is Running until planned, then Success.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.db import tables as t
from wharf_shared.db.types import utcnow

REPLICATION = "REPLICATION"

# Execution statuses (Harbor's task manager's; the replication API shows them its own way).
RUNNING = "Running"
SUCCESS = "Success"
ERROR = "Error"
STOPPED = "Stopped"
# Task statuses: those and Pending.
PENDING = "Pending"
FINAL = frozenset({SUCCESS, ERROR, STOPPED})

TRIGGERS = ("manual", "scheduled", "event_based")


async def create_execution(
    conn: AsyncConnection,
    vendor_type: str,
    vendor_id: int,
    trigger: str,
    extra: Mapping[str, Any] | None = None,
) -> int:
    """A Running execution awaiting its plan (the caller enqueues the planning after commit)."""
    now = utcnow()
    result = await conn.execute(
        insert(t.execution).values(
            vendor_type=vendor_type,
            vendor_id=vendor_id,
            status=RUNNING,
            status_message="",
            trigger=trigger,
            extra=json.dumps(dict(extra or {})),
            planned=False,
            start_time=now,
            end_time=None,
            updated_at=now,
        )
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


async def refresh_execution(conn: AsyncConnection, execution_id: int) -> str:
    """Derive the execution's status from its tasks and store it (with its end time); the status."""
    rows = await conn.execute(
        select(t.task.c.status, func.count())
        .where(t.task.c.execution_id == execution_id)
        .group_by(t.task.c.status)
    )
    counts = {status: int(n) for status, n in rows}
    row = (
        await conn.execute(
            select(t.execution.c.status, t.execution.c.planned).where(t.execution.c.id == execution_id)
        )
    ).one_or_none()
    if row is None:
        return STOPPED
    if row.status == STOPPED:  # stopped by request: its end time was set then
        return STOPPED
    if counts.get(PENDING) or counts.get(RUNNING) or not row.planned:
        status = RUNNING
    elif counts.get(STOPPED):
        status = STOPPED
    elif counts.get(ERROR):
        status = ERROR
    else:
        status = SUCCESS
    now = utcnow()
    await conn.execute(
        update(t.execution)
        .where(t.execution.c.id == execution_id)
        .values(status=status, updated_at=now, end_time=now if status in FINAL else None)
    )
    return status


async def stop_execution(conn: AsyncConnection, execution_id: int) -> bool:
    """Stop an execution: its unfinished tasks become Stopped (a worker running one sees its lease
    gone at its next renewal and gives up). False when it had already ended."""
    row = (
        await conn.execute(select(t.execution.c.status).where(t.execution.c.id == execution_id))
    ).one_or_none()
    if row is None or row.status in FINAL:
        return False
    now = utcnow()
    await conn.execute(
        update(t.task)
        .where(t.task.c.execution_id == execution_id, t.task.c.status.in_((PENDING, RUNNING)))
        .values(status=STOPPED, status_message="stopped", end_time=now, updated_at=now, lease_until=None)
    )
    await conn.execute(
        update(t.execution)
        .where(t.execution.c.id == execution_id)
        .values(status=STOPPED, status_message="stopped by request", end_time=now, updated_at=now)
    )
    return True
