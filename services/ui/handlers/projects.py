"""`/api/v2.0/projects…`: Harbor's project endpoints."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared import rbac
from wharf_shared.errors.harbor import BadRequest, NotFound, Unauthorized
from wharf_shared.keys import DB
from wharf_shared.rbac import Identity, Permission, Role
from wharf_ui import projects
from wharf_ui.bodies import Text, read_json
from wharf_ui.keys import RUNTIME
from wharf_ui.listing import order_by, where
from wharf_ui.pages import list_query, listed
from wharf_ui.query import Exact, Fuzzy, QueryError, Term
from wharf_ui.responses import created, empty_ok, json_response, timestamp
from wharf_ui.security import caller, signed_in

PROJECTS_PATH = "/api/v2.0/projects"
IS_NAME = "X-Is-Resource-Name"
_BOOLEANS = {"true": "true", "1": "true", "false": "false", "0": "false"}


class ProjectMetadata(BaseModel):
    """Harbor's metadata values are strings ("true"); keys Harbor knows and Wharf does not are
    checked by `projects.check_metadata`, others ignored as Harbor ignores them."""

    public: Text | None = None
    enable_content_trust: Text | None = None
    enable_content_trust_cosign: Text | None = None
    prevent_vul: Text | None = None
    severity: Text | None = None
    auto_scan: Text | None = None
    auto_sbom_generation: Text | None = None
    reuse_sys_cve_allowlist: Text | None = None
    retention_id: Text | None = None


class ProjectReq(BaseModel):
    project_name: Text | None = None
    public: bool | None = None  # deprecated in Harbor; `metadata.public` wins
    metadata: ProjectMetadata | None = None
    # Accepted so that Harbor's clients (Terraform sends both) are not refused; Wharf keeps no
    # per-project quota or CVE allowlist yet.
    storage_limit: int | None = None
    cve_allowlist: dict[str, Any] | None = None
    registry_id: int | None = None


def is_name(request: web.Request) -> bool:
    """`X-Is-Resource-Name: true`: `{project_name_or_id}` is a name even when it reads as a number."""
    return request.headers.get(IS_NAME, "").lower() == "true"


async def anonymous_access(request: web.Request) -> bool:
    return (await request.app[RUNTIME].get()).anonymous_access


async def path_project(
    request: web.Request,
    conn: AsyncConnection,
    identity: Identity,
    permission: Permission = projects.READ,
    *,
    anonymous: bool | None = None,
) -> projects.Project:
    """The project the path's `{project_name_or_id}` names, once `identity` holds `permission` in
    it (`anonymous`: the runtime's anonymous access, when the handler has already read it)."""
    return await projects.resolve_project(
        conn,
        request.match_info["project_name_or_id"],
        is_name=is_name(request),
        identity=identity,
        anonymous_access=await anonymous_access(request) if anonymous is None else anonymous,
        permission=permission,
    )


async def lister(request: web.Request) -> Identity:
    """The caller of a list or search: anyone, but an anonymous caller only while anonymous access
    is on (off, the anonymous view is nothing: say sign in rather than answer an empty list)."""
    identity = await caller(request)
    if identity.anonymous and not await anonymous_access(request):
        raise Unauthorized(message="sign in first: anonymous access is off")
    return identity


def project_json(
    project: projects.Project, repo_count: int, identity: Identity, *, anonymous_access: bool
) -> dict[str, Any]:
    role = int(project.role) if project.role is not None else 0
    return {
        "project_id": project.id,
        "owner_id": project.owner_id,
        "name": project.name,
        "creation_time": timestamp(project.created_at),
        "update_time": timestamp(project.updated_at),
        "deleted": False,
        "owner_name": project.owner_name,
        # For the portal: whether this caller may flip the project's visibility.
        "togglable": rbac.can(
            identity, project.access, "project", "update", anonymous_access=anonymous_access
        ),
        "current_user_role_id": role,
        "current_user_role_ids": [role] if role else [],
        "repo_count": repo_count,
        "chart_count": 0,
        "metadata": {"public": "true" if project.public else "false"},
        "cve_allowlist": {"id": 0, "project_id": project.id, "items": []},
    }


def _requested(body: ProjectReq) -> bool | None:
    """The visibility a create or update asks for, after checking the rest of the request."""
    if body.registry_id is not None:
        raise BadRequest(message="registry_id: Wharf has no proxy-cache projects")
    metadata = body.metadata.model_dump() if body.metadata is not None else {}
    if metadata.get("retention_id"):
        raise BadRequest(message="metadata.retention_id: Wharf has no retention policies; leave it out")
    projects.check_metadata(metadata)
    return projects.requested_public(metadata.get("public"), body.public)


def _list_terms(request: web.Request) -> dict[str, Term]:
    """Harbor's own list parameters, as `q` terms: `name` (contains), `owner`, `public`."""
    terms: dict[str, Term] = {}
    name, owner, public = (request.query.get(k) for k in ("name", "owner", "public"))
    if name:
        terms["name"] = Fuzzy(name)
    if owner:
        terms["owner"] = Exact(owner)
    if public is not None:
        normalized = _BOOLEANS.get(public.lower())
        if normalized is None:
            raise BadRequest(message=f"public: true or false, not {public[:40]!r}")
        terms["public"] = Exact(normalized)
    return terms


async def list_projects(request: web.Request) -> web.Response:
    identity = await lister(request)
    query = list_query(request, projects.PROJECTS)
    try:
        conditions = where(projects.PROJECTS, query.terms) + where(projects.PROJECTS, _list_terms(request))
    except QueryError as exc:
        raise BadRequest(message=str(exc)) from None
    order = order_by(projects.PROJECTS, query.sort)
    anonymous = await anonymous_access(request)
    async with request.app[DB].read() as conn:
        found, total = await projects.list_projects(conn, identity, conditions, order, query.page)
        counts = await projects.repo_counts(conn, [x.id for x in found])
    body = [project_json(x, counts[x.id], identity, anonymous_access=anonymous) for x in found]
    return listed(request, body, total, query.page)


async def head_project(request: web.Request) -> web.Response:
    """Whether a project name is taken (by any project, visible to the caller or not: a private
    project's name is as taken as a public one's)."""
    await signed_in(request)
    name = request.query.get("project_name", "")
    if not name:
        raise BadRequest(message="project_name: required")
    async with request.app[DB].read() as conn:
        taken = await projects.name_taken(conn, name)
    if not taken:
        raise NotFound(message=f"no project named {name[:100]!r}")
    return empty_ok()


async def create_project(request: web.Request) -> web.Response:
    identity = await caller(request)
    runtime = await request.app[RUNTIME].get()
    projects.may_create(identity, runtime.project_creation_restriction)
    body = await read_json(request, ProjectReq)
    if body.project_name is None:
        raise BadRequest(message="project_name: required")
    public = _requested(body)
    project_id = await projects.create(request.app[DB], identity, body.project_name, bool(public))
    return created(request, PROJECTS_PATH, project_id, body.project_name)


async def get_project(request: web.Request) -> web.Response:
    identity = await caller(request)
    anonymous = await anonymous_access(request)
    async with request.app[DB].read() as conn:
        project = await path_project(request, conn, identity, anonymous=anonymous)
        count = await projects.repo_count(conn, project.name)
    return json_response(project_json(project, count, identity, anonymous_access=anonymous))


async def update_project(request: web.Request) -> web.Response:
    identity = await caller(request)
    body = await read_json(request, ProjectReq)
    public = _requested(body)
    await projects.set_visibility(
        request.app[DB],
        identity,
        request.match_info["project_name_or_id"],
        is_name=is_name(request),
        anonymous_access=await anonymous_access(request),
        public=public,
    )
    return empty_ok()


async def delete_project(request: web.Request) -> web.Response:
    identity = await caller(request)
    await projects.remove(
        request.app[DB],
        identity,
        request.match_info["project_name_or_id"],
        is_name=is_name(request),
        anonymous_access=await anonymous_access(request),
    )
    return empty_ok()


async def project_deletable(request: web.Request) -> web.Response:
    identity = await caller(request)
    async with request.app[DB].read() as conn:
        project = await path_project(request, conn, identity, ("project", "delete"))
        reason = projects.deletable_message(await projects.repo_count(conn, project.name))
    body: dict[str, Any] = {"deletable": reason is None}
    if reason is not None:
        body["message"] = reason
    return json_response(body)


_SUMMARY_COUNTS = {
    Role.PROJECT_ADMIN: "project_admin_count",
    Role.MAINTAINER: "maintainer_count",
    Role.DEVELOPER: "developer_count",
    Role.GUEST: "guest_count",
    Role.LIMITED_GUEST: "limited_guest_count",
}


async def project_summary(request: web.Request) -> web.Response:
    """Repositories for whoever may read the project; member counts, as Harbor, only for those
    who may list its members."""
    identity = await caller(request)
    anonymous = await anonymous_access(request)
    async with request.app[DB].read() as conn:
        project = await path_project(request, conn, identity, anonymous=anonymous)
        found = await projects.summary(conn, project, identity, anonymous_access=anonymous)
    body: dict[str, Any] = {"repo_count": found.repo_count, "chart_count": 0}
    if found.member_counts is not None:
        body.update({field: found.member_counts[role] for role, field in _SUMMARY_COUNTS.items()})
    return json_response(body)
