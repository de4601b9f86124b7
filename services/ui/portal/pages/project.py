"""What every page of one project shares (`/harbor/projects/{project}/…`): the project looked up
by name with the viewer's permission checked as the API checks it, the header (visibility, the
viewer's role, Harbor's summary counts) and the tabs the viewer may use. The tab pages
(`project_repositories`, `project_members`, `project_logs`, `project_settings`) read their own
lists with the domain functions the API handlers use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from wharf_shared import rbac
from wharf_shared.keys import DB, RUNTIME
from wharf_shared.rbac import Identity, Permission, Role
from wharf_ui import projects
from wharf_ui.portal.render import page, role_label, segment
from wharf_ui.portal.viewer import Viewer, require_viewer


@dataclass(frozen=True, slots=True)
class Tab:
    key: str
    label: str
    href: str


@dataclass(frozen=True, slots=True)
class MemberCounts:
    total: int
    by_role: list[str]  # "2 developers", from project admin down, roles nobody holds left out


# From the most a member may do to the least (Harbor's role ids are not in that order).
ROLE_ORDER = (Role.PROJECT_ADMIN, Role.MAINTAINER, Role.DEVELOPER, Role.GUEST, Role.LIMITED_GUEST)


@dataclass(frozen=True, slots=True)
class ProjectView:
    """One project as the signed-in viewer sees it."""

    viewer: Viewer
    project: projects.Project
    summary: projects.Summary
    anonymous_access: bool
    read_only: bool  # the site's read-only mode: nothing is offered that it would refuse
    tabs: tuple[Tab, ...]

    @property
    def identity(self) -> Identity:
        return self.viewer.identity

    @property
    def base(self) -> str:
        """The project's pages' path prefix."""
        return f"/harbor/projects/{segment(self.project.name)}"

    @property
    def role(self) -> str:
        if self.project.role is not None:
            return role_label(self.project.role)
        return "System admin" if self.identity.sysadmin else "Not a member"

    @property
    def members(self) -> MemberCounts | None:
        """The summary's member counts (None: the viewer may not list the members)."""
        counts = self.summary.member_counts
        if counts is None:
            return None
        by_role = [
            f"{counts[role]} {role_label(role).lower()}{'s' if counts[role] != 1 else ''}"
            for role in ROLE_ORDER
            if counts[role]
        ]
        return MemberCounts(sum(counts.values()), by_role)

    def can(self, resource: str, action: str) -> bool:
        return rbac.can(
            self.identity, self.project.access, resource, action, anonymous_access=self.anonymous_access
        )

    def may_change(self, resource: str, action: str) -> bool:
        """Whether to offer a change: allowed to the viewer, and the site not read-only."""
        return not self.read_only and self.can(resource, action)


# The tabs, in order, with the permission that shows each (Harbor's portal hides what a role
# cannot open: a guest sees no Logs).
_TABS: tuple[tuple[str, str, tuple[Permission, ...]], ...] = (
    ("repositories", "Repositories", (("repository", "list"),)),
    ("members", "Members", (("member", "list"),)),
    ("logs", "Logs", (("log", "list"),)),
    ("settings", "Settings", (("configuration", "read"), ("project", "update"), ("project", "delete"))),
)
TAB_PERMISSIONS: dict[str, tuple[Permission, ...]] = {key: needs for key, _, needs in _TABS}


async def project_view(request: web.Request, tab: str) -> ProjectView:
    """The path's project, once the viewer may open `tab` in it. No such project, or one the
    viewer may not see: the API's answer (404 for a system admin, 403 otherwise) as a page."""
    viewer = await require_viewer(request)
    runtime = await request.app[RUNTIME].get()
    identity = viewer.identity
    anonymous = runtime.anonymous_access
    async with request.app[DB].read() as conn:
        project = await projects.resolve_project(
            conn, request.match_info["project"], is_name=True, identity=identity, anonymous_access=anonymous
        )
        needs = TAB_PERMISSIONS[tab]
        if not any(rbac.can(identity, project.access, *n, anonymous_access=anonymous) for n in needs):
            projects.require(identity, project, needs[0], anonymous_access=anonymous)  # raises the 403
        summary = await projects.summary(conn, project, identity, anonymous_access=anonymous)
    base = f"/harbor/projects/{segment(project.name)}"
    tabs = tuple(
        Tab(key, label, f"{base}/{key}")
        for key, label, perms in _TABS
        if any(rbac.can(identity, project.access, *n, anonymous_access=anonymous) for n in perms)
    )
    return ProjectView(viewer, project, summary, anonymous, runtime.read_only, tabs)


async def project_page(
    request: web.Request, view: ProjectView, tab: str, template: str, **context: Any
) -> web.Response:
    label = next(t.label for t in view.tabs if t.key == tab)
    return await page(
        request,
        template,
        title=f"{label} · {view.project.name}",
        section="projects",
        view=view,
        project=view.project,
        tab=tab,
        **context,
    )


async def project_home(request: web.Request) -> web.Response:
    """`/harbor/projects/{project}`: its first tab, the repositories."""
    raise web.HTTPSeeOther(f"/harbor/projects/{segment(request.match_info['project'])}/repositories")


PAGES = (("/harbor/projects/{project}", project_home, "portal_project"),)
