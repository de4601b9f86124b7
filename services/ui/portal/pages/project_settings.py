"""A project's settings (`/harbor/projects/{project}/settings`): its visibility, which those who
may update the project flip (`PUT /api/v2.0/projects/{id}`), and its deletion under Harbor's
rule: refused (412) while it holds repositories. The page says why before anyone tries
(`projects.deletable_message`, the API's own reason) and offers the delete button only when
the API would take it."""

from __future__ import annotations

from aiohttp import web

from wharf_ui import projects
from wharf_ui.portal.pages.project import project_page, project_view


async def project_settings(request: web.Request) -> web.Response:
    view = await project_view(request, "settings")
    may_delete = view.may_change("project", "delete")
    return await project_page(
        request,
        view,
        "settings",
        "project_settings.html",
        may_update=view.may_change("project", "update"),
        may_delete=may_delete,
        undeletable=projects.deletable_message(view.summary.repo_count) if may_delete else None,
    )


PAGES = (("/harbor/projects/{project}/settings", project_settings, "portal_project_settings"),)
