"""`/api/v2.0/usergroups…`: Harbor's user group endpoints. System admins list, read, create,
rename and delete groups; anyone signed in searches them by name (as in Harbor: project admins
look groups up to add them as members)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from wharf_shared.db import groups
from wharf_shared.db.groups import UserGroup
from wharf_shared.errors.harbor import BadRequest
from wharf_shared.keys import DB
from wharf_ui import usergroups
from wharf_ui.bodies import Text, read_json
from wharf_ui.pages import list_query, listed
from wharf_ui.paths import path_id
from wharf_ui.query import INT_MAX, QueryError, as_text
from wharf_ui.responses import created, empty_ok, json_response
from wharf_ui.security import signed_in, sysadmin

USERGROUPS_PATH = "/api/v2.0/usergroups"


class UserGroupReq(BaseModel):
    group_name: Text | None = None
    group_type: int | None = None
    ldap_group_dn: Text | None = None


def group_json(group: UserGroup) -> dict[str, Any]:
    return {
        "id": group.id,
        "group_name": group.group_name,
        "group_type": int(group.group_type),
        "ldap_group_dn": group.ldap_group_dn or "",
    }


def _text(request: web.Request, name: str) -> str:
    value = request.query.get(name, "")
    try:
        as_text(name, value)
    except QueryError as exc:
        raise BadRequest(message=str(exc).removeprefix("q: ")) from None
    if len(value) > groups.KEY_MAX:
        raise BadRequest(message=f"{name}: longer than {groups.KEY_MAX} characters")
    return value


def _group_id(request: web.Request) -> int:
    group_id = path_id(request, "group_id")
    if group_id > INT_MAX:
        raise BadRequest(message="group_id: too large")
    return group_id


async def list_usergroups(request: web.Request) -> web.Response:
    await sysadmin(request)
    query = list_query(request)
    group_name, dn = _text(request, "group_name"), _text(request, "ldap_group_dn")
    async with request.app[DB].read() as conn:
        found, total = await groups.search_groups(
            conn,
            offset=query.page.offset,
            limit=query.page.size,
            name_contains=group_name,
            ldap_group_dn=dn,
        )
    return listed(request, [group_json(x) for x in found], total, query.page)


async def search_usergroups(request: web.Request) -> web.Response:
    await signed_in(request)
    groupname = _text(request, "groupname")
    if not groupname:
        raise BadRequest(message="groupname: required")
    query = list_query(request)
    async with request.app[DB].read() as conn:
        found, total = await groups.search_groups(
            conn, offset=query.page.offset, limit=query.page.size, name_contains=groupname
        )
    items = [{"id": x.id, "group_name": x.group_name, "group_type": int(x.group_type)} for x in found]
    return listed(request, items, total, query.page)


async def create_usergroup(request: web.Request) -> web.Response:
    identity = await sysadmin(request)
    body = await read_json(request, UserGroupReq)
    group = await usergroups.create(
        request.app[DB], identity, body.group_name, body.group_type, body.ldap_group_dn
    )
    return created(request, USERGROUPS_PATH, group.id, group.group_name)


async def get_usergroup(request: web.Request) -> web.Response:
    await sysadmin(request)
    group_id = _group_id(request)
    async with request.app[DB].read() as conn:
        group = await groups.get_group(conn, group_id)
    return json_response(group_json(group))


async def update_usergroup(request: web.Request) -> web.Response:
    identity = await sysadmin(request)
    group_id = _group_id(request)
    body = await read_json(request, UserGroupReq)
    await usergroups.rename(request.app[DB], identity, group_id, body.group_name)
    return empty_ok()


async def delete_usergroup(request: web.Request) -> web.Response:
    identity = await sysadmin(request)
    group_id = _group_id(request)
    await usergroups.remove(request.app[DB], identity, group_id)
    return empty_ok()
