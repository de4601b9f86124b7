"""`/api/v2.0/ldap/…`: Harbor's LDAP endpoints (system admins only), and Wharf's group sync
request. A directory that cannot answer: the ping says so in its answer (200,
`{"success": false, "message": …}`, as Harbor's portal expects), the searches and the import
are a 503 `UNAVAILABLE` naming the directory's failure. An import with uids that could not be
imported is Harbor's 404, whose body lists them (`[{"uid", "error"}]`); the others are imported.
The group sync's endpoints (ours) are in `wharf_ui.handlers.syncs`.
"""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, Field

from wharf_shared.auth.ldap import LdapError, LdapGroup, LdapUser
from wharf_shared.errors.harbor import BadRequest, NotFound, Unavailable
from wharf_shared.keys import DB
from wharf_ui import ldap
from wharf_ui.bodies import Text, read_json
from wharf_ui.keys import LDAP
from wharf_ui.query import QueryError, as_text
from wharf_ui.responses import empty_ok, json_response
from wharf_ui.security import sysadmin


class LdapConf(BaseModel):
    """Harbor's `LdapConf` (a draft to ping), and Wharf's TLS keys."""

    ldap_url: Text | None = None
    ldap_search_dn: Text | None = None
    ldap_search_password: Text | None = None
    ldap_base_dn: Text | None = None
    ldap_filter: Text | None = None
    ldap_uid: Text | None = None
    ldap_scope: Annotated[int, Field(ge=0, le=2)] | None = None
    ldap_connection_timeout: Annotated[int, Field(ge=1, le=300)] | None = None
    ldap_verify_cert: bool | None = None
    ldap_starttls: bool | None = None
    ldap_ca_certificate: Text | None = None


class LdapImportUsers(BaseModel):
    ldap_uid_list: Annotated[list[Text], Field(max_length=ldap.IMPORT_MAX)] | None = None


def _query(request: web.Request, name: str) -> str:
    try:
        return as_text(name, request.query.get(name, "")).strip()
    except QueryError as exc:
        raise BadRequest(message=str(exc).removeprefix("q: ")) from None


def _unavailable(exc: LdapError) -> Unavailable:
    return Unavailable(message=f"the LDAP directory did not answer: {exc}")


def user_json(user: LdapUser) -> dict[str, Any]:
    return {"username": user.username, "realname": user.realname, "email": user.email}


def group_json(group: LdapGroup) -> dict[str, Any]:
    return {"group_name": group.name, "ldap_group_dn": group.dn}


async def ping_ldap(request: web.Request) -> web.Response:
    await sysadmin(request)
    draft = LdapConf()
    if request.body_exists:
        draft = await read_json(request, LdapConf)
    result = await ldap.ping(request.app[LDAP], draft.model_dump(exclude_none=True))
    return json_response({"success": result.success, "message": result.message})


async def search_ldap_users(request: web.Request) -> web.Response:
    await sysadmin(request)
    username = _query(request, "username")
    try:
        found = await ldap.search_users(request.app[LDAP], username)
    except LdapError as exc:
        raise _unavailable(exc) from None
    return json_response([user_json(user) for user in found])


async def search_ldap_groups(request: web.Request) -> web.Response:
    await sysadmin(request)
    name_or_dn = _query(request, "groupdn") or _query(request, "groupname")
    try:
        found = await ldap.search_groups(request.app[LDAP], name_or_dn)
    except LdapError as exc:
        raise _unavailable(exc) from None
    return json_response([group_json(group) for group in found])


async def import_ldap_users(request: web.Request) -> web.Response:
    identity = await sysadmin(request)
    body = await read_json(request, LdapImportUsers)
    if not body.ldap_uid_list:
        raise BadRequest(message="ldap_uid_list: at least one uid is required")
    try:
        failed = await ldap.import_users(request.app[DB], identity, request.app[LDAP], body.ldap_uid_list)
    except LdapError as exc:
        raise _unavailable(exc) from None
    if failed:
        return json_response([{"uid": f.uid, "error": f.error} for f in failed], status=NotFound.status)
    return empty_ok()
