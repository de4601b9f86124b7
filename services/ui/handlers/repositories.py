"""`/api/v2.0/repositories` and `/projects/{project_name}/repositories…`: Harbor's repository
endpoints."""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, Field

from wharf_shared.errors.harbor import BadRequest
from wharf_shared.keys import DB, REDIS
from wharf_ui import repositories
from wharf_ui.bodies import Text, read_json
from wharf_ui.handlers.scope import project_scope, repository_name
from wharf_ui.keys import RUNTIME
from wharf_ui.listing import order_by, where
from wharf_ui.pages import list_query, listed
from wharf_ui.query import QueryError
from wharf_ui.repositories import RepositoryInfo
from wharf_ui.responses import empty_ok, json_response, timestamp
from wharf_ui.security import caller

# Characters: four bytes each at most fit MySQL's TEXT (64 KiB), the column on every backend.
DESCRIPTION_MAX = 16_000


class RepositoryReq(BaseModel):
    """Harbor's Repository body: only the description changes (other fields are ignored)."""

    description: Annotated[Text, Field(max_length=DESCRIPTION_MAX)] = ""


def repository_json(repo: RepositoryInfo) -> dict[str, Any]:
    return {
        "id": repo.id,
        "project_id": repo.project_id,
        "name": repo.name,
        "description": repo.description,
        "artifact_count": repo.artifact_count,
        "pull_count": repo.pull_count,
        "creation_time": timestamp(repo.created_at),
        "update_time": timestamp(repo.updated_at),
    }


def _filters(request: web.Request) -> tuple[Any, list[Any], list[Any]]:
    query = list_query(request, repositories.REPOSITORIES)
    try:
        conditions = where(repositories.REPOSITORIES, query.terms)
    except QueryError as exc:
        raise BadRequest(message=str(exc)) from None
    return query, conditions, order_by(repositories.REPOSITORIES, query.sort)


async def list_all_repositories(request: web.Request) -> web.Response:
    """Every repository the caller may see (Harbor's `/repositories`: not for admins only)."""
    identity = await caller(request)
    query, conditions, order = _filters(request)
    runtime = await request.app[RUNTIME].get()
    visible = repositories.visible_to(identity, anonymous_access=runtime.anonymous_access)
    if visible is None:
        return listed(request, [], 0, query.page)
    async with request.app[DB].read() as conn:
        found, total = await repositories.list_visible(conn, visible, conditions, order, query.page)
    return listed(request, [repository_json(x) for x in found], total, query.page)


async def list_repositories(request: web.Request) -> web.Response:
    scope = await project_scope(request, "repository", "list")
    query, conditions, order = _filters(request)
    async with request.app[DB].read() as conn:
        found, total = await repositories.list_in_project(
            conn, scope.project.project_id, scope.project_name, conditions, order, query.page
        )
    return listed(request, [repository_json(x) for x in found], total, query.page)


async def get_repository(request: web.Request) -> web.Response:
    scope = await project_scope(request, "repository", "list")  # Harbor's check for a read
    full_name = repository_name(request, scope.project_name)
    async with request.app[DB].read() as conn:
        repo = await repositories.get(conn, scope.project.project_id, full_name)
    return json_response(repository_json(repo))


async def update_repository(request: web.Request) -> web.Response:
    scope = await project_scope(request, "repository", "update")
    full_name = repository_name(request, scope.project_name)
    body = await read_json(request, RepositoryReq)
    await repositories.update_description(
        request.app[DB], scope.project.project_id, full_name, body.description
    )
    return empty_ok()


async def delete_repository(request: web.Request) -> web.Response:
    scope = await project_scope(request, "repository", "delete")
    full_name = repository_name(request, scope.project_name)
    await repositories.remove(
        request.app[DB], request.app[REDIS], scope.identity, scope.project.project_id, full_name
    )
    return empty_ok()
