"""`/api/v2.0/audit-logs` and `/api/v2.0/projects/{project_name_or_id}/logs`: Harbor's audit log."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from wharf_shared.errors.harbor import BadRequest, Unauthorized
from wharf_shared.keys import DB
from wharf_ui import audit_logs
from wharf_ui.handlers.projects import path_project
from wharf_ui.listing import order_by, where
from wharf_ui.pages import list_query, listed
from wharf_ui.query import QueryError
from wharf_ui.responses import timestamp
from wharf_ui.security import caller, sysadmin


def log_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "username": row.username,
        "resource": row.resource,
        "resource_type": row.resource_type,
        "operation": row.operation,
        "op_time": timestamp(row.op_time),
        # Harbor's newer audit entries' field; a login's: the auth backend that checked it.
        "operation_description": row.operation_description or "",
    }


async def _page(request: web.Request, project_id: int | None) -> web.Response:
    query = list_query(request, audit_logs.AUDIT_LOGS)
    try:
        conditions = where(audit_logs.AUDIT_LOGS, query.terms)
    except QueryError as exc:
        raise BadRequest(message=str(exc)) from None
    order = order_by(audit_logs.AUDIT_LOGS, query.sort)
    async with request.app[DB].read() as conn:
        rows, total = await audit_logs.list_logs(conn, conditions, order, query.page, project_id=project_id)
    return listed(request, [log_json(row) for row in rows], total, query.page)


async def list_audit_logs(request: web.Request) -> web.Response:
    await sysadmin(request)
    return await _page(request, None)


async def list_project_logs(request: web.Request) -> web.Response:
    identity = await caller(request)
    if identity.anonymous:
        # No role grants an anonymous caller a project's log: say so before looking the project up.
        raise Unauthorized(message="sign in to read a project's logs")
    async with request.app[DB].read() as conn:
        project = await path_project(request, conn, identity, ("log", "list"))
    return await _page(request, project.id)
