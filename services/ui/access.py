"""Project-scoped checks for the `/api/` endpoints under `/projects/{project_name}/…`, as Harbor
makes them: the permission is checked before anything in the project is looked up, and a caller
who lacks it learns nothing more — 401 when anonymous, 403 when signed in, whether the project
is private or does not exist at all. A system admin may do everything, so for them a missing
project is a plain 404 (Harbor answers 403 there too; a 404 tells an admin's script the truth).

Minimal on purpose: the projects module will own project look-ups; this reads the caller's
access through `wharf_shared.db.projects` and decides with `wharf_shared.rbac`.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared import rbac
from wharf_shared.db import projects
from wharf_shared.errors.domain import Forbidden, NotFound, Unauthenticated
from wharf_shared.rbac import Identity, ProjectAccess


async def require(
    conn: AsyncConnection,
    identity: Identity,
    project_name: str,
    resource: str,
    action: str,
    *,
    anonymous_access: bool,
) -> ProjectAccess:
    """The caller's access to the project, once they may do `action` on `resource` in it."""
    access = (await projects.project_access(conn, [project_name], identity.user_id)).get(project_name)
    if access is None and identity.sysadmin:
        raise NotFound(f"project {project_name[:100]!r} not found")
    if access is not None and rbac.can(identity, access, resource, action, anonymous_access=anonymous_access):
        return access
    if identity.anonymous:
        raise Unauthenticated(f"sign in to {action} {resource} in this project")
    raise Forbidden(
        f"{identity.username[:100]} may not {action} {resource} in project {project_name[:100]!r}"
    )
