"""What the `/projects/{project_name}/repositories/{repository_name}/…` handlers share: reading
the project and repository names from the path and checking the caller's access to the project
before anything in it is looked up (Harbor's order)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from wharf_shared.errors.harbor import BadRequest, NotFound
from wharf_shared.keys import DB
from wharf_shared.rbac import Identity, ProjectAccess
from wharf_shared.references import NAME_MAX_LENGTH
from wharf_ui import access
from wharf_ui.keys import RUNTIME
from wharf_ui.paths import decoded_name
from wharf_ui.security import caller


@dataclass(frozen=True, slots=True)
class Scope:
    identity: Identity
    project: ProjectAccess
    project_name: str


def project_name(request: web.Request) -> str:
    name = request.match_info["project_name"]
    if not name or "\x00" in name or len(name) > NAME_MAX_LENGTH:
        raise BadRequest(message="project_name: empty, too long or holding a NUL character")
    try:
        name.encode()
    except UnicodeEncodeError:
        raise BadRequest(message="project_name: not valid UTF-8") from None
    return name


def repository_name(request: web.Request, project: str) -> str:
    """The full name (`proj/team/app`) of the path's repository, given without the project and
    encoded twice when it holds slashes (`team%252Fapp`); one encoding is taken as well."""
    full = f"{project}/{decoded_name(request, 'repository_name')}"
    if len(full) > NAME_MAX_LENGTH:  # no repository has such a name
        raise NotFound(message=f"repository {full[:300]!r} not found")
    return full


async def project_scope(request: web.Request, resource: str, action: str) -> Scope:
    """The caller, once they may do `action` on `resource` in the path's project (401/403
    otherwise, whether or not the project exists; 404 for a system admin when it does not)."""
    identity = await caller(request)
    name = project_name(request)
    runtime = await request.app[RUNTIME].get()
    async with request.app[DB].read() as conn:
        project = await access.require(
            conn, identity, name, resource, action, anonymous_access=runtime.anonymous_access
        )
    return Scope(identity, project, name)


def flag(request: web.Request, name: str, default: bool) -> bool:
    """A boolean query parameter (`true`/`false`, any case)."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() not in ("true", "false"):
        raise BadRequest(message=f"{name}: true or false, not {raw[:40]!r}")
    return raw.lower() == "true"
