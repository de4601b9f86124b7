"""The audit log as Harbor's API reads it: `/audit-logs` (everything, for system admins) and
`/projects/{p}/logs` (one project's rows). The rows are written by the job service's events
consumer (`wharf_shared.db.audit`); here they are only filtered, sorted and paged.
Plain async functions over a connection; they raise domain errors and know nothing of HTTP."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.db import tables as t
from wharf_ui.listing import Filter, ListSpec
from wharf_ui.query import Page, SortKey, as_int, as_time

a = t.audit_log.c

AUDIT_LOGS = ListSpec(
    filters={
        "username": Filter(a.username),
        "resource": Filter(a.resource),
        "resource_type": Filter(a.resource_type),
        "operation": Filter(a.operation),
        "op_time": Filter(a.op_time, as_time, frozenset({"exact", "range"})),
        "id": Filter(a.id, as_int, frozenset({"exact", "range", "any"})),
    },
    sorts={
        "op_time": a.op_time,
        "id": a.id,
        "username": a.username,
        "resource": a.resource,
        "resource_type": a.resource_type,
        "operation": a.operation,
    },
    # Newest first, as Harbor; rows of the same instant by id, the later one first.
    default_sort=(SortKey("op_time", True), SortKey("id", True)),
    tiebreak=a.id,
)

_COLUMNS = (a.id, a.username, a.resource, a.resource_type, a.operation, a.op_time, a.operation_description)


async def list_logs(
    conn: AsyncConnection,
    conditions: list[ColumnElement[bool]],
    order: list[ColumnElement[Any]],
    page: Page,
    *,
    project_id: int | None = None,
) -> tuple[list[Any], int]:
    """One page of rows (all projects' and none's when `project_id` is None) and the total."""
    where = list(conditions)
    if project_id is not None:
        where.append(a.project_id == project_id)
    total = (await conn.execute(select(func.count()).select_from(t.audit_log).where(*where))).scalar()
    rows = await conn.execute(
        select(*_COLUMNS).where(*where).order_by(*order).offset(page.offset).limit(page.size)
    )
    return list(rows), int(total or 0)
