"""`/api/v2.0/projects/{project_name}/repositories/{repository_name}/artifacts…`: Harbor's
artifact and tag endpoints."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from wharf_shared.errors.harbor import BadRequest
from wharf_shared.keys import DB, REDIS
from wharf_ui import artifacts
from wharf_ui.artifacts import ArtifactInfo, ArtifactRef, Reference, TagInfo
from wharf_ui.bodies import Text, read_json
from wharf_ui.handlers.scope import flag, project_scope, repository_name
from wharf_ui.listing import ListSpec, order_by, where
from wharf_ui.pages import ListQuery, list_query, listed
from wharf_ui.paths import decoded_name
from wharf_ui.query import QueryError
from wharf_ui.responses import empty_ok, json_response, timestamp


class TagReq(BaseModel):
    """Harbor's Tag body: only the name is read."""

    name: Text


def tag_json(tag: TagInfo) -> dict[str, Any]:
    return {
        "id": tag.id,
        "repository_id": tag.repository_id,
        "artifact_id": tag.artifact_id,
        "name": tag.name,
        "push_time": timestamp(tag.pushed_at),
        "pull_time": timestamp(tag.pulled_at),
        "immutable": False,
    }


def reference_json(reference: Reference) -> dict[str, Any]:
    found: dict[str, Any] = {
        "parent_id": reference.parent_id,
        "child_id": reference.child_id,
        "child_digest": reference.child_digest,
    }
    if reference.platform is not None:  # Harbor leaves the key out when the index gives none
        found["platform"] = reference.platform.to_json()
    return found


def artifact_json(artifact: ArtifactInfo, project_id: int) -> dict[str, Any]:
    return {
        "id": artifact.id,
        "type": artifact.type,
        "media_type": artifact.media_type,
        "manifest_media_type": artifact.manifest_media_type,
        "artifact_type": artifact.artifact_type or artifact.media_type,
        "project_id": project_id,
        "repository_id": artifact.repository_id,
        "digest": artifact.digest,
        "size": artifact.size,
        "icon": "",
        "push_time": timestamp(artifact.pushed_at),
        "pull_time": timestamp(artifact.pulled_at),
        "extra_attrs": {},
        "annotations": artifact.annotations or {},
        "references": [reference_json(r) for r in artifact.references],
        "tags": [tag_json(tag) for tag in artifact.tags] if artifact.tags is not None else None,
        "labels": [],
    }


def _reference(request: web.Request) -> ArtifactRef:
    return artifacts.parse_reference(decoded_name(request, "reference"))


def _filters(request: web.Request, spec: ListSpec) -> tuple[ListQuery, list[Any], list[Any]]:
    query = list_query(request, spec)
    terms = dict(query.terms)
    try:
        # `tags` on artifacts is a condition on another table, not a column of the list's own.
        tagged = (
            [artifacts.tag_condition(terms.pop("tags"))]
            if spec is artifacts.ARTIFACTS and "tags" in terms
            else []
        )
        conditions = where(spec, terms) + tagged
    except QueryError as exc:
        raise BadRequest(message=str(exc)) from None
    return query, conditions, order_by(spec, query.sort)


async def list_artifacts(request: web.Request) -> web.Response:
    scope = await project_scope(request, "artifact", "list")
    full_name = repository_name(request, scope.project_name)
    query, conditions, order = _filters(request, artifacts.ARTIFACTS)
    with_tag = flag(request, "with_tag", True)
    async with request.app[DB].read() as conn:
        repository_id = await artifacts.repository_id(conn, full_name)
        found, total = await artifacts.list_artifacts(
            conn, repository_id, conditions, order, query.page, with_tags=with_tag
        )
    body = [artifact_json(a, scope.project.project_id) for a in found]
    return listed(request, body, total, query.page)


async def get_artifact(request: web.Request) -> web.Response:
    scope = await project_scope(request, "artifact", "read")
    full_name = repository_name(request, scope.project_name)
    reference = _reference(request)
    with_tag = flag(request, "with_tag", True)
    async with request.app[DB].read() as conn:
        artifact = await artifacts.get_artifact(conn, full_name, reference, with_tags=with_tag)
    return json_response(artifact_json(artifact, scope.project.project_id))


async def delete_artifact(request: web.Request) -> web.Response:
    scope = await project_scope(request, "artifact", "delete")
    full_name = repository_name(request, scope.project_name)
    reference = _reference(request)
    await artifacts.delete_artifact(request.app[DB], request.app[REDIS], scope.identity, full_name, reference)
    return empty_ok()


async def list_tags(request: web.Request) -> web.Response:
    scope = await project_scope(request, "tag", "list")
    full_name = repository_name(request, scope.project_name)
    reference = _reference(request)
    query, conditions, order = _filters(request, artifacts.TAGS)
    async with request.app[DB].read() as conn:
        found, total = await artifacts.list_tags(conn, full_name, reference, conditions, order, query.page)
    return listed(request, [tag_json(x) for x in found], total, query.page)


async def create_tag(request: web.Request) -> web.Response:
    scope = await project_scope(request, "tag", "create")
    full_name = repository_name(request, scope.project_name)
    reference = _reference(request)
    body = await read_json(request, TagReq)
    await artifacts.create_tag(
        request.app[DB], request.app[REDIS], scope.identity, full_name, reference, body.name
    )
    # Harbor answers 201 without a Location: there is no endpoint for one tag.
    response = web.Response(status=201)
    response.content_type = "text/plain"
    return response


async def delete_tag(request: web.Request) -> web.Response:
    scope = await project_scope(request, "tag", "delete")
    full_name = repository_name(request, scope.project_name)
    reference = _reference(request)
    tag = decoded_name(request, "tag_name")
    await artifacts.delete_tag(request.app[DB], request.app[REDIS], scope.identity, full_name, reference, tag)
    return empty_ok()
