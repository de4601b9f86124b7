"""Executions and their tasks as SQL rows: the truth about every job (Celery messages carry only ids).

An execution's status follows from its tasks (`refresh_execution`, in the transaction of every task
change): Running while one is Pending or Running; then Stopped if one was stopped, Error if one
failed, else Success. An execution with no task is Running until planned, then Success.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
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


@dataclass(frozen=True, slots=True)
class Execution:
    id: int
    vendor_type: str
    vendor_id: int
    status: str
    status_message: str
    trigger: str
    extra: dict[str, Any]
    planned: bool
    start_time: dt.datetime
    end_time: dt.datetime | None


async def get_execution(conn: AsyncConnection, execution_id: int) -> Execution | None:
    c = t.execution.c
    row = (
        await conn.execute(
            select(
                c.id,
                c.vendor_type,
                c.vendor_id,
                c.status,
                c.status_message,
                c.trigger,
                c.extra,
                c.planned,
                c.start_time,
                c.end_time,
            ).where(c.id == execution_id)
        )
    ).one_or_none()
    if row is None:
        return None
    try:
        extra = json.loads(row.extra or "{}")
    except ValueError:
        extra = {}
    values = dict(row._mapping)
    values["extra"] = extra if isinstance(extra, dict) else {}
    values["planned"] = bool(values["planned"])
    return Execution(**values)


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


# -- tasks: plan, claim with a lease, renew, finish -------------------------------------------------

COPY = "copy"
DELETION = "deletion"


@dataclass(frozen=True, slots=True)
class NewTask:
    operation: str  # copy, deletion
    src_resource: str  # `library/app:v1`, `library/app@sha256:…`
    dst_resource: str
    job: Mapping[str, Any]  # what the runner needs (JSON)


@dataclass(frozen=True, slots=True)
class ClaimedTask:
    id: int
    execution_id: int
    operation: str
    src_resource: str
    dst_resource: str
    job: dict[str, Any]
    attempts: int  # this attempt's number (1 for the first)


async def add_tasks(
    conn: AsyncConnection, execution_id: int, tasks: Sequence[NewTask], now: dt.datetime
) -> list[int]:
    """The execution's tasks, Pending, in order; their ids (a few rows per statement)."""
    ids: list[int] = []
    for item in tasks:
        result = await conn.execute(
            insert(t.task).values(
                execution_id=execution_id,
                status=PENDING,
                status_message="",
                attempts=0,
                job=json.dumps(dict(item.job), separators=(",", ":")),
                resource_type="artifact",
                operation=item.operation,
                src_resource=item.src_resource[:1024],
                dst_resource=item.dst_resource[:1024],
                bytes_copied=0,
                created_at=now,
                updated_at=now,
            )
        )
        ids.append(int(result.inserted_primary_key[0]))  # type: ignore[index]
    return ids


async def mark_planned(conn: AsyncConnection, execution_id: int, message: str = "") -> bool:
    """Set `planned` on a Running execution not planned yet; False when another planner did (or
    it was stopped): the caller then rolls back what it added."""
    result = await conn.execute(
        update(t.execution)
        .where(
            t.execution.c.id == execution_id,
            t.execution.c.planned.is_(False),
            t.execution.c.status == RUNNING,
        )
        .values(planned=True, status_message=message, updated_at=utcnow())
    )
    return result.rowcount == 1


async def fail_execution(conn: AsyncConnection, execution_id: int, message: str, now: dt.datetime) -> None:
    """An execution that cannot be planned (its policy is gone, a registry is missing): Error."""
    await conn.execute(
        update(t.execution)
        .where(t.execution.c.id == execution_id, t.execution.c.status == RUNNING)
        .values(status=ERROR, status_message=message[:4000], planned=True, end_time=now, updated_at=now)
    )


async def claim_task(
    conn: AsyncConnection,
    task_id: int,
    worker: str,
    *,
    now: dt.datetime,
    lease_seconds: float,
    max_attempts: int,
) -> ClaimedTask | None:
    """Take task `task_id` for `worker`: Pending and due, or Running with its lease run out (its
    worker died), and attempts left. None: a stale or duplicate message, or someone else has it."""
    lease_until = now + dt.timedelta(seconds=lease_seconds)
    c = t.task.c
    result = await conn.execute(
        update(t.task)
        .where(
            c.id == task_id,
            c.attempts < max_attempts,
            or_(
                and_(c.status == PENDING, or_(c.run_after.is_(None), c.run_after <= now)),
                and_(c.status == RUNNING, c.lease_until < now),
            ),
        )
        .values(
            status=RUNNING,
            worker=worker[:255],
            lease_until=lease_until,
            attempts=c.attempts + 1,
            run_after=None,
            start_time=func.coalesce(c.start_time, now),
            updated_at=now,
        )
    )
    if result.rowcount != 1:
        return None
    row = (
        await conn.execute(
            select(
                c.id, c.execution_id, c.operation, c.src_resource, c.dst_resource, c.job, c.attempts
            ).where(c.id == task_id)
        )
    ).one()
    # The execution stays Running (a Pending task kept it so): no refresh needed here.
    return ClaimedTask(
        id=int(row.id),
        execution_id=int(row.execution_id),
        operation=row.operation,
        src_resource=row.src_resource,
        dst_resource=row.dst_resource,
        job=json.loads(row.job),
        attempts=int(row.attempts),
    )


async def renew_lease(
    conn: AsyncConnection,
    task_id: int,
    worker: str,
    *,
    now: dt.datetime,
    lease_seconds: float,
    bytes_copied: int | None = None,
) -> bool:
    """Extend the lease of a task this worker runs; False when it is no longer ours (stopped, or
    taken over after the lease ran out): the worker gives up without writing a result."""
    values: dict[str, Any] = {"lease_until": now + dt.timedelta(seconds=lease_seconds), "updated_at": now}
    if bytes_copied is not None:
        values["bytes_copied"] = bytes_copied
    result = await conn.execute(
        update(t.task)
        .where(t.task.c.id == task_id, t.task.c.status == RUNNING, t.task.c.worker == worker[:255])
        .values(**values)
    )
    return result.rowcount == 1


@dataclass(frozen=True, slots=True)
class Finished:
    status: str  # Success, Error, or Pending (a retry)
    retry_in: float | None = None  # seconds, for a retry


def backoff_seconds(attempt: int, base: float, cap: float, jitter: float) -> float:
    """Delay before the attempt after `attempt` (1-based): base·2^(attempt-1), capped, times a
    jitter factor in [0.75, 1.25) from `jitter` in [0, 1)."""
    delay: float = min(cap, base * 2.0 ** max(0, attempt - 1))
    return min(cap, delay * (0.75 + jitter / 2))


async def finish_task(
    conn: AsyncConnection,
    task_id: int,
    worker: str,
    status: str,
    *,
    now: dt.datetime,
    message: str = "",
    bytes_copied: int | None = None,
    retry_in: float | None = None,
    max_attempts: int = 1,
) -> Finished | None:
    """End this worker's run of the task: `status` Success or Error, or Pending with `retry_in`
    (a transient failure; Error instead once `max_attempts` are used up). The execution's status
    follows in the same transaction. None: the task was no longer ours (nothing written)."""
    c = t.task.c
    values: dict[str, Any] = {"status_message": message[:4000], "updated_at": now, "lease_until": None}
    if bytes_copied is not None:
        values["bytes_copied"] = bytes_copied
    outcome = Finished(status)
    if status == PENDING:
        if retry_in is None:
            raise ValueError("a retry needs its delay")
        values.update(status=PENDING, run_after=now + dt.timedelta(seconds=retry_in), worker=None)
        outcome = Finished(PENDING, retry_in)
        ours = (c.id == task_id, c.status == RUNNING, c.worker == worker[:255], c.attempts < max_attempts)
        result = await conn.execute(update(t.task).where(*ours).values(**values))
        if result.rowcount != 1:  # out of attempts (or not ours: the Error below finds out)
            status = ERROR
            values = {k: v for k, v in values.items() if k not in ("run_after", "worker")}
            values["status_message"] = f"{message} (gave up after {max_attempts} attempts)"[:4000]
            outcome = Finished(ERROR)
    if status in (SUCCESS, ERROR):
        values.update(status=status, end_time=now)
        result = await conn.execute(
            update(t.task)
            .where(c.id == task_id, c.status == RUNNING, c.worker == worker[:255])
            .values(**values)
        )
        if result.rowcount != 1:
            return None
    elif status != PENDING:
        raise ValueError(f"a task does not finish as {status}")
    execution_id = (await conn.execute(select(c.execution_id).where(c.id == task_id))).scalar_one()
    await refresh_execution(conn, int(execution_id))
    return outcome


async def early_by(conn: AsyncConnection, task_id: int, now: dt.datetime) -> float | None:
    """Seconds until a Pending task is due (its retry's backoff), None when it is not waiting:
    a message that came early (clocks apart) is sent again for then."""
    c = t.task.c
    run_after = (
        await conn.execute(select(c.run_after).where(c.id == task_id, c.status == PENDING))
    ).scalar_one_or_none()
    if run_after is None or run_after <= now:
        return None
    return float((run_after - now).total_seconds())


async def append_task_logs(
    conn: AsyncConnection, task_id: int, lines: Sequence[tuple[dt.datetime, str]]
) -> None:
    if lines:
        await conn.execute(
            insert(t.task_log), [{"task_id": task_id, "time": at, "line": line} for at, line in lines]
        )


async def task_log_text(conn: AsyncConnection, task_id: int) -> str:
    rows = await conn.execute(
        select(t.task_log.c.time, t.task_log.c.line)
        .where(t.task_log.c.task_id == task_id)
        .order_by(t.task_log.c.id)
    )
    return "".join(f"{at.isoformat()} {line}\n" for at, line in rows)


# -- reconciling: what a lost worker or a lost message left behind ---------------------------------


async def expire_leases(conn: AsyncConnection, *, now: dt.datetime, max_attempts: int) -> list[int]:
    """Running tasks whose lease ran out (their worker died): back to Pending, attempts kept, or
    Error when they are used up. The ids put back to Pending (to enqueue again)."""
    c = t.task.c
    lapsed = (c.status == RUNNING, c.lease_until < now)
    rows = (await conn.execute(select(c.id, c.execution_id, c.attempts).where(*lapsed))).all()
    again: list[int] = []
    executions: set[int] = set()
    for row in rows:
        exhausted = int(row.attempts) >= max_attempts
        values: dict[str, Any] = {"lease_until": None, "worker": None, "updated_at": now}
        if exhausted:
            values.update(
                status=ERROR,
                end_time=now,
                status_message=f"its worker was lost; gave up after {row.attempts} attempts",
            )
        else:
            values.update(status=PENDING, run_after=None, status_message="its worker was lost; retrying")
        result = await conn.execute(update(t.task).where(c.id == row.id, *lapsed).values(**values))
        if result.rowcount == 1:
            executions.add(int(row.execution_id))
            if not exhausted:
                again.append(int(row.id))
    for execution_id in sorted(executions):
        await refresh_execution(conn, execution_id)
    return again


async def lost_pending_tasks(
    conn: AsyncConnection, *, now: dt.datetime, idle_seconds: float, limit: int = 1000
) -> list[int]:
    """Pending tasks that are due and untouched for `idle_seconds` (their message was lost):
    touched now, so that the next round leaves them alone for as long again; their ids."""
    c = t.task.c
    idle = (
        c.status == PENDING,
        or_(c.run_after.is_(None), c.run_after <= now),
        c.updated_at < now - dt.timedelta(seconds=idle_seconds),
    )
    ids = [
        int(i) for i in (await conn.execute(select(c.id).where(*idle).order_by(c.id).limit(limit))).scalars()
    ]
    if ids:
        await conn.execute(update(t.task).where(c.id.in_(ids), *idle).values(updated_at=now))
    return ids


async def unplanned_executions(conn: AsyncConnection, *, now: dt.datetime, grace_seconds: float) -> list[int]:
    """Running executions still unplanned `grace_seconds` after their last change (the planning
    message was lost, or its worker died): touched now; their ids, to plan again."""
    c = t.execution.c
    stale = (
        c.status == RUNNING,
        c.planned.is_(False),
        c.updated_at < now - dt.timedelta(seconds=grace_seconds),
    )
    ids = [int(i) for i in (await conn.execute(select(c.id).where(*stale).order_by(c.id))).scalars()]
    if ids:
        await conn.execute(update(t.execution).where(c.id.in_(ids), *stale).values(updated_at=now))
    return ids


async def abandon_unplanned(
    conn: AsyncConnection, *, now: dt.datetime, older_than_seconds: float
) -> list[int]:
    """Running executions still unplanned `older_than_seconds` after they started (their source
    never answered): Error, so that none stays Running forever; their ids."""
    c = t.execution.c
    stale = (
        c.status == RUNNING,
        c.planned.is_(False),
        c.start_time < now - dt.timedelta(seconds=older_than_seconds),
    )
    ids = [int(i) for i in (await conn.execute(select(c.id).where(*stale))).scalars()]
    if ids:
        await conn.execute(
            update(t.execution)
            .where(c.id.in_(ids), *stale)
            .values(
                status=ERROR,
                status_message=f"not planned within {older_than_seconds:g} s (the source did not answer)",
                end_time=now,
                updated_at=now,
            )
        )
    return ids


async def settle_executions(conn: AsyncConnection) -> list[int]:
    """Planned executions still Running with no task left to run: their final status now; their ids."""
    e, k = t.execution.c, t.task.c
    unfinished = select(k.id).where(k.execution_id == e.id, k.status.in_((PENDING, RUNNING))).exists()
    ids = [
        int(i)
        for i in (
            await conn.execute(select(e.id).where(e.status == RUNNING, e.planned.is_(True), ~unfinished))
        ).scalars()
    ]
    for execution_id in ids:
        await refresh_execution(conn, execution_id)
    return ids
