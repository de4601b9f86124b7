"""The audit log as Harbor's API reads it: `/audit-logs` (everything, for system admins) and
`/projects/{p}/logs` (one project's rows). The rows are written by the job service's events
consumer (`wharf_shared.db.audit`); here they are only filtered, sorted and paged.
Plain async functions over a connection; they raise domain errors and know nothing of HTTP."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.db import projects
from wharf_shared.db import tables as t
from wharf_shared.errors.domain import Forbidden, NotFound
from wharf_shared.rbac import Identity, ProjectAccess, can
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

_COLUMNS = (a.id, a.username, a.resource, a.resource_type, a.operation, a.op_time)


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


async def readable_project(
    conn: AsyncConnection, identity: Identity, project: int | str, *, anonymous_access: bool
) -> ProjectAccess:
    """The project whose log `identity` may read (`project`: an id or a name).

    A project the caller may not see (private, not a member) is a 404, as one that does not
    exist: its name says nothing. One they see without the right to its log is a 403.
    """
    access: ProjectAccess | None
    if isinstance(project, int):
        access = await projects.access_by_id(conn, project, identity.user_id)
    else:
        found = await projects.find_project(conn, project)
        access = await projects.access_by_id(conn, found.id, identity.user_id) if found else None
    if access is None or not can(identity, access, "project", "read", anonymous_access=anonymous_access):
        raise NotFound(f"project {str(project)[:100]!r} not found")
    if not can(identity, access, "log", "list", anonymous_access=anonymous_access):
        raise Forbidden("only project admins and system admins may read a project's logs")
    return access
