"""Project-scoped checks for the `/api/` endpoints under `/projects/{project_name}/…`: the
project named in the path (always a name there, as in Harbor's paths), once the caller holds
the permission in it; one rule for every project path (`wharf_ui.projects.resolve_project`)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.rbac import Identity, ProjectAccess
from wharf_ui.projects import resolve_project


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
    project = await resolve_project(
        conn,
        project_name,
        is_name=True,
        identity=identity,
        anonymous_access=anonymous_access,
        permission=(resource, action),
    )
    return project.access
