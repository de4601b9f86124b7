"""Projects: the list (search by name, public/private, create, delete) that every user starts
from. Reads call the same domain functions as `/api/v2.0/projects`; changes are the API's own
calls, sent by the page's script (`macros.api_form`)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from wharf_shared import rbac
from wharf_shared.errors.domain import DomainError
from wharf_shared.keys import DB, RUNTIME
from wharf_ui import projects
from wharf_ui.handlers.projects import _list_terms
from wharf_ui.listing import order_by, where
from wharf_ui.pages import list_query
from wharf_ui.portal.render import page, role_label
from wharf_ui.portal.viewer import require_viewer

PAGE_SIZE = "15"


@dataclass(frozen=True, slots=True)
class ProjectRow:
    project: projects.Project
    repositories: int
    role: str  # what the viewer is in it
    may_delete: bool  # allowed to the viewer, and the project empty (Harbor's 412 rule)
    undeletable: str | None  # why the viewer, allowed to delete it, cannot yet


async def project_list(request: web.Request) -> web.Response:
    viewer = await require_viewer(request)
    identity = viewer.identity
    runtime = await request.app[RUNTIME].get()
    if "page_size" not in request.query:
        request = request.clone(rel_url=request.rel_url.update_query(page_size=PAGE_SIZE))
    query = list_query(request, projects.PROJECTS)
    conditions = where(projects.PROJECTS, query.terms) + where(projects.PROJECTS, _list_terms(request))
    order = order_by(projects.PROJECTS, query.sort)
    async with request.app[DB].read() as conn:
        found, total = await projects.list_projects(conn, identity, conditions, order, query.page)
        counts = await projects.repo_counts(conn, [x.id for x in found])
    rows = []
    for x in found:
        allowed = not runtime.read_only and rbac.can(
            identity, x.access, "project", "delete", anonymous_access=runtime.anonymous_access
        )
        reason = projects.deletable_message(counts[x.id]) if allowed else None
        role = role_label(x.role) if x.role is not None else ("System admin" if identity.sysadmin else "—")
        rows.append(ProjectRow(x, counts[x.id], role, allowed and reason is None, reason))
    try:
        projects.may_create(identity, runtime.project_creation_restriction)
        may_create = not runtime.read_only  # a form the API would refuse is not offered
    except DomainError:
        may_create = False
    return await page(
        request,
        "projects.html",
        title="Projects",
        section="projects",
        rows=rows,
        total=total,
        page_number=query.page.number,
        page_size=query.page.size,
        name=request.query.get("name", ""),
        public=request.query.get("public", ""),
        may_create=may_create,
    )


PAGES = (("/harbor/projects", project_list, "portal_projects"),)
