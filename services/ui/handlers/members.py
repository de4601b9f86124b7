"""`/api/v2.0/projects/{project_name_or_id}/members…`: Harbor's member endpoints."""

from __future__ import annotations

import urllib.parse
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from wharf_shared.errors.harbor import BadRequest
from wharf_shared.keys import DB
from wharf_shared.rbac import ROLE_NAMES
from wharf_ui import members
from wharf_ui.bodies import Text, read_json
from wharf_ui.handlers.projects import PROJECTS_PATH, anonymous_access, is_name, path_project
from wharf_ui.pages import list_query, listed
from wharf_ui.paths import path_id
from wharf_ui.query import QueryError, as_text
from wharf_ui.responses import created, empty_ok, json_response
from wharf_ui.security import caller


class UserEntity(BaseModel):
    user_id: int | None = None
    username: Text | None = None


class GroupEntity(BaseModel):
    id: int | None = None
    group_name: Text | None = None
    group_type: int | None = None
    ldap_group_dn: Text | None = None


class ProjectMember(BaseModel):
    role_id: int | None = None
    member_user: UserEntity | None = None
    member_group: GroupEntity | None = None


class RoleRequest(BaseModel):
    role_id: int | None = None


def member_json(member: members.Member) -> dict[str, Any]:
    return {
        "id": member.id,
        "project_id": member.project_id,
        "entity_name": member.entity_name,
        "role_name": ROLE_NAMES[member.role],
        "role_id": int(member.role),
        "entity_id": member.entity_id,
        "entity_type": member.entity_type,
    }


def _raw(request: web.Request) -> str:
    return request.match_info["project_name_or_id"]


async def list_members(request: web.Request) -> web.Response:
    identity = await caller(request)
    query = list_query(request)
    entityname = request.query.get("entityname", "")
    try:
        as_text("entityname", entityname)
    except QueryError as exc:
        raise BadRequest(message=str(exc).removeprefix("q: ")) from None
    async with request.app[DB].read() as conn:
        project = await path_project(request, conn, identity, ("member", "list"))
        found, total = await members.list_members(conn, project.id, entityname, query.page)
    return listed(request, [member_json(x) for x in found], total, query.page)


async def get_member(request: web.Request) -> web.Response:
    identity = await caller(request)
    member_id = path_id(request, "mid")
    async with request.app[DB].read() as conn:
        project = await path_project(request, conn, identity, ("member", "read"))
        member = await members.get_member(conn, project, member_id)
    return json_response(member_json(member))


async def add_member(request: web.Request) -> web.Response:
    identity = await caller(request)
    body = await read_json(request, ProjectMember)
    user = body.member_user or UserEntity()
    named_user = bool((user.user_id and user.user_id > 0) or user.username)
    group = None
    if body.member_group is not None and body.member_group.model_dump(exclude_none=True):
        if named_user:
            raise BadRequest(message="give member_user or member_group, not both")
        group = members.GroupRef(**body.member_group.model_dump())
    raw = _raw(request)
    member_id = await members.add(
        request.app[DB],
        identity,
        raw,
        is_name=is_name(request),
        anonymous_access=await anonymous_access(request),
        role_id=body.role_id,
        user_id=user.user_id,
        username=user.username,
        group=group,
    )
    # As Harbor: the project as the client named it, and always the member's id.
    collection = f"{PROJECTS_PATH}/{urllib.parse.quote(raw, safe='')}/members"
    return created(request, collection, member_id, str(member_id))


async def update_member(request: web.Request) -> web.Response:
    identity = await caller(request)
    member_id = path_id(request, "mid")
    body = await read_json(request, RoleRequest)
    await members.change_role(
        request.app[DB],
        identity,
        _raw(request),
        member_id,
        is_name=is_name(request),
        anonymous_access=await anonymous_access(request),
        role_id=body.role_id,
    )
    return empty_ok()


async def delete_member(request: web.Request) -> web.Response:
    identity = await caller(request)
    member_id = path_id(request, "mid")
    await members.remove(
        request.app[DB],
        identity,
        _raw(request),
        member_id,
        is_name=is_name(request),
        anonymous_access=await anonymous_access(request),
    )
    return empty_ok()
