"""The portal's URL map: every page (GET only: changes go through `/api/v2.0`, from the page's
script) and the static files."""

from __future__ import annotations

from aiohttp import web

from wharf_ui.portal.pages import (
    account,
    artifacts,
    audit,
    configs,
    dashboard,
    project,
    project_logs,
    project_members,
    project_repositories,
    project_settings,
    projects,
    registries,
    replication,
    session,
    users,
)
from wharf_ui.portal.render import STATIC, STATIC_PREFIX

PAGES = (
    *session.PAGES,
    *projects.PAGES,
    *users.PAGES,
    *configs.PAGES,
    *audit.PAGES,
    *account.PAGES,
    *project.PAGES,
    *project_repositories.PAGES,
    *project_members.PAGES,
    *project_logs.PAGES,
    *project_settings.PAGES,
    *artifacts.PAGES,
    *dashboard.PAGES,
    *registries.PAGES,
    *replication.PAGES,
)


def add_portal_routes(app: web.Application) -> None:
    for path, handler, name in PAGES:
        app.router.add_get(path, handler, name=name, allow_head=False)
    app.router.add_static(STATIC_PREFIX, STATIC, name="portal_static")
