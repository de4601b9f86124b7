"""A project's audit log (`/harbor/projects/{project}/logs`, for those with `log:list`: project
admins): operation, resource, user and time, newest first, in pages. The filters are the URL's
`operation`, `resource_type` (exact), `username` and `resource` (contains): the terms the
API's `q` takes, read by the same query as `/projects/{p}/logs`."""

from __future__ import annotations

from aiohttp import web

from wharf_shared.errors.harbor import BadRequest
from wharf_shared.keys import DB
from wharf_ui import audit_logs
from wharf_ui.listing import order_by, where
from wharf_ui.pages import list_query
from wharf_ui.portal.pages.project import project_page, project_view
from wharf_ui.query import Exact, Fuzzy, QueryError, Term

PAGE_SIZE = "25"
# What the job service records in a project (`wharf_jobservice.audit`'s rules).
OPERATIONS = ("create", "update", "delete", "pull")
RESOURCE_TYPES = ("artifact", "tag", "repository", "member", "project")
FILTERS: dict[str, type[Exact] | type[Fuzzy]] = {
    "operation": Exact,
    "resource_type": Exact,
    "username": Fuzzy,
    "resource": Fuzzy,
}


async def log_list(request: web.Request) -> web.Response:
    view = await project_view(request, "logs")
    if "page_size" not in request.query:
        request = request.clone(rel_url=request.rel_url.update_query(page_size=PAGE_SIZE))
    query = list_query(request, audit_logs.AUDIT_LOGS)
    chosen = {key: request.query.get(key, "") for key in FILTERS}
    terms: dict[str, Term] = dict(query.terms)
    terms.update({key: FILTERS[key](value) for key, value in chosen.items() if value})
    try:
        conditions = where(audit_logs.AUDIT_LOGS, terms)
    except QueryError as exc:
        raise BadRequest(message=str(exc)) from None
    order = order_by(audit_logs.AUDIT_LOGS, query.sort)
    async with request.app[DB].read() as conn:
        rows, total = await audit_logs.list_logs(
            conn, conditions, order, query.page, project_id=view.project.id
        )
    return await project_page(
        request,
        view,
        "logs",
        "project_logs.html",
        rows=rows,
        total=total,
        page_number=query.page.number,
        page_size=query.page.size,
        filters=chosen,
        filtered=any(chosen.values()),
        operations=OPERATIONS,
        resource_types=RESOURCE_TYPES,
    )


PAGES = (("/harbor/projects/{project}/logs", log_list, "portal_project_logs"),)
