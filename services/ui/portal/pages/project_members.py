"""A project's members (`/harbor/projects/{project}/members`): each with their role, found by
name (`?name=`, contains), in pages. Those allowed (`member` create/update/delete) get the
forms that add a user by name, change a role and remove a member, sent to the API's
`/projects/{id}/members…` (which checks the same permissions again)."""

from __future__ import annotations

from aiohttp import web

from wharf_shared.errors.harbor import BadRequest
from wharf_shared.keys import DB
from wharf_ui import members
from wharf_ui.pages import list_query
from wharf_ui.portal.pages.project import ROLE_ORDER, project_page, project_view
from wharf_ui.portal.render import role_label
from wharf_ui.query import QueryError, as_text

PAGE_SIZE = "25"
ROLES = tuple((int(role), role_label(role)) for role in ROLE_ORDER)


async def member_list(request: web.Request) -> web.Response:
    view = await project_view(request, "members")
    if "page_size" not in request.query:
        request = request.clone(rel_url=request.rel_url.update_query(page_size=PAGE_SIZE))
    query = list_query(request)
    name = request.query.get("name", "")
    try:
        as_text("name", name)
    except QueryError as exc:
        raise BadRequest(message=str(exc).removeprefix("q: ")) from None
    async with request.app[DB].read() as conn:
        found, total = await members.list_members(conn, view.project.id, name, query.page)
    return await project_page(
        request,
        view,
        "members",
        "project_members.html",
        rows=found,
        total=total,
        page_number=query.page.number,
        page_size=query.page.size,
        name=name,
        roles=ROLES,
        may_add=view.may_change("member", "create"),
        may_update=view.may_change("member", "update"),
        may_remove=view.may_change("member", "delete"),
    )


PAGES = (("/harbor/projects/{project}/members", member_list, "portal_project_members"),)
