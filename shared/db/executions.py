"""Executions, their tasks and the tasks' logs as the API reads them (SQLAlchemy Core), and the
deletion of a policy's executions with it. What writes them is `wharf_shared.db.jobs` (the job
service's engine); these are reads over the same rows, by vendor (REPLICATION and its policy id).

Lists take their conditions and order as SQLAlchemy clauses over `execution` and `task` columns:
the caller (the ui) turns its query parameters into them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.db import tables as t
from wharf_shared.db.jobs import ERROR, FINAL, PENDING, RUNNING, STOPPED, SUCCESS

e = t.execution.c
k = t.task.c
g = t.task_log.c


@dataclass(frozen=True, slots=True)
class Execution:
    id: int
    vendor_type: str
    vendor_id: int
    status: str
    status_message: str
    trigger: str
    start_time: dt.datetime
    end_time: dt.datetime | None


@dataclass(frozen=True, slots=True)
class TaskCounts:
    """An execution's tasks by status (the row statuses of `wharf_shared.db.jobs`)."""

    pending: int = 0
    running: int = 0
    success: int = 0
    error: int = 0
    stopped: int = 0

    @property
    def total(self) -> int:
        return self.pending + self.running + self.success + self.error + self.stopped


@dataclass(frozen=True, slots=True)
class Task:
    id: int
    execution_id: int
    status: str
    status_message: str
    resource_type: str
    operation: str
    src_resource: str
    dst_resource: str
    start_time: dt.datetime | None
    end_time: dt.datetime | None


_EXECUTION_COLUMNS = [e[name] for name in Execution.__dataclass_fields__]
_TASK_COLUMNS = [k[name] for name in Task.__dataclass_fields__]
_COUNT_FIELDS = {
    PENDING: "pending",
    RUNNING: "running",
    SUCCESS: "success",
    ERROR: "error",
    STOPPED: "stopped",
}


async def get_execution(conn: AsyncConnection, vendor_type: str, execution_id: int) -> Execution | None:
    query = select(*_EXECUTION_COLUMNS).where(e.id == execution_id, e.vendor_type == vendor_type)
    row = (await conn.execute(query)).first()
    return Execution(**row._mapping) if row else None


async def list_executions(
    conn: AsyncConnection,
    vendor_type: str,
    conditions: Sequence[ColumnElement[bool]],
    order: Sequence[ColumnElement[Any]],
    offset: int,
    limit: int,
) -> tuple[list[Execution], int]:
    where = [e.vendor_type == vendor_type, *conditions]
    total = (await conn.execute(select(func.count()).select_from(t.execution).where(*where))).scalar()
    rows = await conn.execute(
        select(*_EXECUTION_COLUMNS).where(*where).order_by(*order).offset(offset).limit(limit)
    )
    return [Execution(**row._mapping) for row in rows], int(total or 0)


async def latest_executions(
    conn: AsyncConnection, vendor_type: str, vendor_ids: Sequence[int]
) -> dict[int, Execution]:
    """Each vendor's newest execution (the highest id: ids grow with the start), in one query;
    vendors that never ran are left out."""
    if not vendor_ids:
        return {}
    newest = (
        select(func.max(e.id))
        .where(e.vendor_type == vendor_type, e.vendor_id.in_(list(vendor_ids)))
        .group_by(e.vendor_id)
    )
    rows = await conn.execute(select(*_EXECUTION_COLUMNS).where(e.id.in_(newest)))
    return {int(row.vendor_id): Execution(**row._mapping) for row in rows}


async def task_counts(conn: AsyncConnection, execution_ids: Sequence[int]) -> dict[int, TaskCounts]:
    """Each execution's tasks by status, in one grouped query."""
    if not execution_ids:
        return {}
    rows = await conn.execute(
        select(k.execution_id, k.status, func.count())
        .where(k.execution_id.in_(list(execution_ids)))
        .group_by(k.execution_id, k.status)
    )
    found: dict[int, dict[str, int]] = {}
    for execution_id, status, count in rows:
        field = _COUNT_FIELDS.get(status)
        if field is not None:
            found.setdefault(int(execution_id), {})[field] = int(count)
    return {x: TaskCounts(**found.get(x, {})) for x in execution_ids}


async def running_executions(conn: AsyncConnection, vendor_type: str, vendor_id: int) -> list[int]:
    """The ids of this vendor's executions that have not ended."""
    rows = await conn.execute(
        select(e.id)
        .where(e.vendor_type == vendor_type, e.vendor_id == vendor_id, e.status.not_in(FINAL))
        .order_by(e.id)
    )
    return [int(row[0]) for row in rows]


async def delete_executions(conn: AsyncConnection, vendor_type: str, vendor_id: int) -> None:
    """Delete this vendor's executions with their tasks and logs (explicitly, child rows first: the
    foreign keys' cascades are not relied upon)."""
    executions = select(e.id).where(e.vendor_type == vendor_type, e.vendor_id == vendor_id)
    tasks = select(k.id).where(k.execution_id.in_(executions))
    await conn.execute(delete(t.task_log).where(g.task_id.in_(tasks)))
    await conn.execute(delete(t.task).where(k.execution_id.in_(executions)))
    await conn.execute(delete(t.execution).where(e.vendor_type == vendor_type, e.vendor_id == vendor_id))


async def list_tasks(
    conn: AsyncConnection,
    execution_id: int,
    conditions: Sequence[ColumnElement[bool]],
    order: Sequence[ColumnElement[Any]],
    offset: int,
    limit: int,
) -> tuple[list[Task], int]:
    where = [k.execution_id == execution_id, *conditions]
    total = (await conn.execute(select(func.count()).select_from(t.task).where(*where))).scalar()
    rows = await conn.execute(
        select(*_TASK_COLUMNS).where(*where).order_by(*order).offset(offset).limit(limit)
    )
    return [Task(**row._mapping) for row in rows], int(total or 0)


async def get_task(conn: AsyncConnection, task_id: int) -> Task | None:
    row = (await conn.execute(select(*_TASK_COLUMNS).where(k.id == task_id))).first()
    return Task(**row._mapping) if row else None


async def task_log(conn: AsyncConnection, task_id: int) -> list[tuple[dt.datetime, str]]:
    """The task's log lines with their times, in the order they were written."""
    rows = await conn.execute(select(g.time, g.line).where(g.task_id == task_id).order_by(g.id))
    return [(row[0], row[1]) for row in rows]
