"""Replication executions and tasks (Harbor's `/replication/executions…`) as the API sees them:
starting one (the row in a transaction, then the planning job enqueued after the commit),
stopping one, and reading them with their tasks' counts and logs. Plain async functions; domain
errors; no HTTP.

The rows keep the job service's statuses (`wharf_shared.db.jobs`: Running, Success, Error,
Stopped, and Pending for tasks); Harbor's replication API shows them in its older words, and
takes those words back in its filters: Running is InProgress, Success is Succeed, Error is
Failed (Stopped and Pending read the same).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared import jobs as job_queue
from wharf_shared.db import executions as rows
from wharf_shared.db import jobs
from wharf_shared.db import replication as policy_rows
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.db.executions import Execution, Task, TaskCounts
from wharf_shared.errors.domain import NotFound, PreconditionFailed
from wharf_shared.rbac import Identity
from wharf_ui.changes import record
from wharf_ui.listing import Filter, ListSpec
from wharf_ui.query import Page, QueryError, SortKey, as_int, as_time

if TYPE_CHECKING:
    from wharf_shared.config import Settings

e = t.execution.c
k = t.task.c

# Row status → Harbor's word for it (executions and tasks alike).
SHOWN = {
    jobs.RUNNING: "InProgress",
    jobs.SUCCESS: "Succeed",
    jobs.ERROR: "Failed",
    jobs.STOPPED: "Stopped",
    jobs.PENDING: "Pending",
}
_READ_BACK = {shown: status for status, shown in SHOWN.items()}


def _status_reader(statuses: tuple[str, ...]) -> Any:
    def read(key: str, value: str) -> str:
        status = _READ_BACK.get(value, value if value in statuses else None)
        if status is None or status not in statuses:
            words = ", ".join(SHOWN[x] for x in statuses)
            raise QueryError(f"{key}: one of {words}, not {value[:40]!r}")
        return status

    return read


def _trigger(key: str, value: str) -> str:
    if value not in jobs.TRIGGERS:
        raise QueryError(f"{key}: one of {', '.join(jobs.TRIGGERS)}, not {value[:40]!r}")
    return value


EXECUTIONS = ListSpec(
    filters={
        "id": Filter(e.id, as_int, frozenset({"exact", "range", "any"})),
        "policy_id": Filter(e.vendor_id, as_int, frozenset({"exact", "any"})),
        "status": Filter(
            e.status,
            _status_reader((jobs.RUNNING, jobs.SUCCESS, jobs.ERROR, jobs.STOPPED)),
            frozenset({"exact", "any"}),
        ),
        "trigger": Filter(e.trigger, _trigger, frozenset({"exact", "any"})),
        "start_time": Filter(e.start_time, as_time, frozenset({"exact", "range"})),
        "end_time": Filter(e.end_time, as_time, frozenset({"exact", "range"})),
    },
    sorts={"id": e.id, "start_time": e.start_time, "end_time": e.end_time, "status": e.status},
    default_sort=(SortKey("start_time", True),),  # newest first
    tiebreak=e.id,
    tiebreak_descending=True,
)

TASKS = ListSpec(
    filters={
        "id": Filter(k.id, as_int, frozenset({"exact", "range", "any"})),
        "status": Filter(
            k.status,
            _status_reader((jobs.PENDING, jobs.RUNNING, jobs.SUCCESS, jobs.ERROR, jobs.STOPPED)),
            frozenset({"exact", "any"}),
        ),
        "resource_type": Filter(k.resource_type, kinds=frozenset({"exact", "any"})),
        "operation": Filter(k.operation, kinds=frozenset({"exact", "any"})),
        "start_time": Filter(k.start_time, as_time, frozenset({"exact", "range"})),
        "end_time": Filter(k.end_time, as_time, frozenset({"exact", "range"})),
    },
    sorts={"id": k.id, "start_time": k.start_time, "end_time": k.end_time, "status": k.status},
    default_sort=(SortKey("id", False),),
    tiebreak=k.id,
)


# -- reads -------------------------------------------------------------------------------------


async def get(conn: AsyncConnection, execution_id: int) -> tuple[Execution, TaskCounts]:
    execution = await rows.get_execution(conn, jobs.REPLICATION, execution_id)
    if execution is None:
        raise NotFound(f"replication execution {execution_id} not found")
    counts = await rows.task_counts(conn, [execution_id])
    return execution, counts[execution_id]


async def list_executions(
    conn: AsyncConnection, conditions: list[Any], order: list[Any], page: Page
) -> tuple[list[tuple[Execution, TaskCounts]], int]:
    """A page of replication executions with their tasks' counts (one grouped query for the page)."""
    found, total = await rows.list_executions(
        conn, jobs.REPLICATION, conditions, order, page.offset, page.size
    )
    counts = await rows.task_counts(conn, [x.id for x in found])
    return [(x, counts[x.id]) for x in found], total


async def latest(conn: AsyncConnection, policy_ids: list[int]) -> dict[int, tuple[Execution, TaskCounts]]:
    """Each policy's newest execution with its tasks' counts (policies that never ran: absent)."""
    found = await rows.latest_executions(conn, jobs.REPLICATION, policy_ids)
    counts = await rows.task_counts(conn, [x.id for x in found.values()])
    return {policy_id: (x, counts[x.id]) for policy_id, x in found.items()}


async def list_tasks(
    conn: AsyncConnection, execution_id: int, conditions: list[Any], order: list[Any], page: Page
) -> tuple[list[Task], int]:
    await get(conn, execution_id)
    return await rows.list_tasks(conn, execution_id, conditions, order, page.offset, page.size)


async def task(conn: AsyncConnection, execution_id: int, task_id: int) -> Task:
    """A task of this execution (404 unless the task belongs to it)."""
    await get(conn, execution_id)
    found = await rows.get_task(conn, task_id)
    if found is None or found.execution_id != execution_id:
        raise NotFound(f"replication execution {execution_id} has no task {task_id}")
    return found


async def task_log(conn: AsyncConnection, execution_id: int, task_id: int) -> list[tuple[dt.datetime, str]]:
    """The log of a task of this execution (404 unless the task belongs to it)."""
    await task(conn, execution_id, task_id)
    return await rows.task_log(conn, task_id)


# -- writes ------------------------------------------------------------------------------------


async def start(db: Database, settings: Settings, policy_id: int, identity: Identity) -> int:
    """A manual execution of the policy, Running until the job service plans it; its id. The
    planning job is enqueued after the commit (a lost message is the reconciler's to resend)."""

    async def go(conn: AsyncConnection) -> int:
        policy = await policy_rows.get_policy(conn, policy_id)
        if policy is None:
            raise NotFound(f"replication policy {policy_id} not found")
        if not policy.enabled:
            raise PreconditionFailed(f"the replication policy {policy_id} is disabled: enable it first")
        execution_id = await jobs.create_execution(conn, jobs.REPLICATION, policy_id, "manual")
        await record(
            conn,
            "replication.start",
            identity,
            policy=policy.name,
            policy_id=policy_id,
            execution_id=execution_id,
        )
        return execution_id

    execution_id = await db.run(go)
    await job_queue.enqueue(settings, job_queue.REPLICATION_PLAN, execution_id)
    return execution_id


async def stop(db: Database, execution_id: int, identity: Identity) -> None:
    """Stop the execution and its unfinished tasks; one that has already ended stays as it is."""

    async def go(conn: AsyncConnection) -> None:
        execution = await rows.get_execution(conn, jobs.REPLICATION, execution_id)
        if execution is None:
            raise NotFound(f"replication execution {execution_id} not found")
        await jobs.stop_execution(conn, execution_id)
        if execution.status != jobs.RUNNING:
            return  # ended already: nothing was stopped, nothing to audit
        policy = await policy_rows.get_policy(conn, execution.vendor_id)
        await record(
            conn,
            "replication.stop",
            identity,
            policy=policy.name if policy is not None else "",
            policy_id=execution.vendor_id,
            execution_id=execution_id,
        )

    await db.run(go)
