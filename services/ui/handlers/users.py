"""`/api/v2.0/users…`: Harbor's user endpoints."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from wharf_shared import rbac
from wharf_shared.accounts import MAX_NAME
from wharf_shared.auth import cli_secrets
from wharf_shared.db import projects
from wharf_shared.db.accounts import User
from wharf_shared.errors.domain import PreconditionFailed as DomainPreconditionFailed
from wharf_shared.errors.harbor import BadRequest, Forbidden, PreconditionFailed, Unauthorized
from wharf_shared.keys import DB
from wharf_shared.passwords import PASSWORD_RULE, meets_policy
from wharf_ui import users
from wharf_ui.bodies import Text, read_json
from wharf_ui.keys import BOX, RUNTIME
from wharf_ui.listing import order_by, where
from wharf_ui.pages import list_query, listed
from wharf_ui.paths import path_id
from wharf_ui.query import QueryError
from wharf_ui.responses import created, empty_ok, json_response, timestamp
from wharf_ui.security import caller, signed_in, sysadmin

USERS_PATH = "/api/v2.0/users"


class UserCreationReq(BaseModel):
    username: Text
    password: Text
    email: Text | None = None
    realname: Text = ""
    comment: Text = ""


class UserProfile(BaseModel):
    email: Text | None = None
    realname: Text | None = None
    comment: Text | None = None


class PasswordReq(BaseModel):
    old_password: Text | None = None
    new_password: Text


class UserSysAdminFlag(BaseModel):
    sysadmin_flag: bool


class OIDCCliSecretReq(BaseModel):
    secret: Text


def user_json(user: User) -> dict[str, Any]:
    return {
        "user_id": user.id,
        "username": user.username,
        "email": user.email or "",
        "realname": user.realname,
        "comment": user.comment,
        "sysadmin_flag": user.sysadmin,
        "admin_role_in_auth": False,
        "creation_time": timestamp(user.created_at),
        "update_time": timestamp(user.updated_at),
    }


async def list_users(request: web.Request) -> web.Response:
    await sysadmin(request)
    query = list_query(request, users.USERS)
    try:
        conditions = where(users.USERS, query.terms)
    except QueryError as exc:
        raise BadRequest(message=str(exc)) from None
    async with request.app[DB].read() as conn:
        found, total = await users.list_users(conn, conditions, order_by(users.USERS, query.sort), query.page)
    return listed(request, [user_json(x) for x in found], total, query.page)


async def search_users(request: web.Request) -> web.Response:
    await signed_in(request)
    username = request.query.get("username", "")
    if not username or "\x00" in username or len(username) > MAX_NAME:
        raise BadRequest(message=f"username: required, 1 to {MAX_NAME} characters")
    query = list_query(request)
    async with request.app[DB].read() as conn:
        found, total = await users.search(conn, username, query.page)
    return listed(request, [{"user_id": i, "username": n} for i, n in found], total, query.page)


async def create_user(request: web.Request) -> web.Response:
    identity = await caller(request)
    runtime = await request.app[RUNTIME].get()
    if runtime.auth_mode != "db_auth":
        raise Forbidden(message=f"users are created in the directory while auth_mode is {runtime.auth_mode}")
    if identity.anonymous and not runtime.self_registration:
        raise Unauthorized(message="sign in as a system admin to create users (self-registration is off)")
    if not identity.anonymous and not identity.sysadmin:
        raise Forbidden(message="only system admins may create users")
    body = await read_json(request, UserCreationReq)
    user = await users.create(
        request.app[DB],
        users.NewUser(body.username, body.password, body.email, body.realname, body.comment),
        identity,
    )
    return created(request, USERS_PATH, user.id, user.username)


async def current_user(request: web.Request) -> web.Response:
    identity = await signed_in(request)
    assert identity.user_id is not None
    async with request.app[DB].read() as conn:
        user = await users.get(conn, identity.user_id)
        stored = await cli_secrets.stored_secret(conn, identity.user_id)
    body = user_json(user)
    secret = cli_secrets.shown_secret(request.app[BOX], stored)
    if secret is not None:
        # Harbor's `oidc_user_meta`: the user's own CLI secret, shown to them again (CAS users too).
        body["oidc_user_meta"] = {"user_id": user.id, "secret": secret}
    return json_response(body)


def _project_scope(scope: str) -> int | None:
    """`/project/{id}` → id; `/system` (or no scope) → None."""
    if scope in ("", "/", "/system"):
        return None
    parts = scope.strip("/").split("/")
    if len(parts) == 2 and parts[0] == "project" and parts[1].isascii() and parts[1].isdigit():
        project_id = int(parts[1])
        if 1 <= project_id < 2**63:
            return project_id
    raise BadRequest(message=f"scope: {scope[:80]!r} is neither /system nor /project/{{id}}")


async def current_permissions(request: web.Request) -> web.Response:
    identity = await signed_in(request)
    scope = request.query.get("scope", "")
    relative_raw = request.query.get("relative", "false").lower()
    if relative_raw not in ("true", "false"):
        raise BadRequest(message="relative: true or false")
    relative = relative_raw == "true"
    project_id = _project_scope(scope)
    if project_id is None:
        runtime = await request.app[RUNTIME].get()
        granted = rbac.system_permissions(
            identity, project_creation_restriction=runtime.project_creation_restriction
        )
        prefix = "/system/"
    else:
        async with request.app[DB].read() as conn:
            access = await projects.access_by_id(conn, project_id, identity.user_id)
        runtime = await request.app[RUNTIME].get()
        granted = rbac.project_permissions(identity, access, anonymous_access=runtime.anonymous_access)
        prefix = f"/project/{project_id}/"
    body = [
        {"resource": resource if relative else prefix + resource, "action": action}
        for resource, action in sorted(granted)
    ]
    return json_response(body)


async def get_user(request: web.Request) -> web.Response:
    identity = await signed_in(request)
    user_id = path_id(request, "user_id")
    users.may_see(identity, user_id)
    async with request.app[DB].read() as conn:
        user = await users.get(conn, user_id)
    return json_response(user_json(user))


async def update_user(request: web.Request) -> web.Response:
    identity = await signed_in(request)
    user_id = path_id(request, "user_id")
    users.may_see(identity, user_id)
    body = await read_json(request, UserProfile)
    await users.update_profile(
        request.app[DB], user_id, email=body.email, realname=body.realname, comment=body.comment
    )
    return empty_ok()


async def update_password(request: web.Request) -> web.Response:
    identity = await signed_in(request)
    user_id = path_id(request, "user_id")
    users.may_see(identity, user_id)
    body = await read_json(request, PasswordReq)
    await users.change_password(request.app[DB], identity, user_id, body.old_password, body.new_password)
    return empty_ok()


async def set_sysadmin(request: web.Request) -> web.Response:
    identity = await sysadmin(request)
    user_id = path_id(request, "user_id")
    body = await read_json(request, UserSysAdminFlag)
    await users.set_sysadmin(request.app[DB], identity, user_id, body.sysadmin_flag)
    return empty_ok()


async def set_cli_secret(request: web.Request) -> web.Response:
    """Harbor's `PUT /users/{id}/cli_secret` (`{"secret": …}`): a single sign-on user's new CLI
    secret, by Harbor's rule for passwords; the old one stops working at once."""
    identity = await signed_in(request)
    user_id = path_id(request, "user_id")
    users.may_see(identity, user_id)
    body = await read_json(request, OIDCCliSecretReq)
    runtime = await request.app[RUNTIME].get()
    if runtime.auth_mode not in cli_secrets.SSO_MODES:
        raise PreconditionFailed(message="CLI secrets are for the single sign-on modes (oidc_auth, cas_auth)")
    if not meets_policy(body.secret):
        raise BadRequest(message="the secret: " + PASSWORD_RULE.removeprefix("the password "))
    box = request.app[BOX]

    async def go(conn: Any) -> None:
        user = await users.get(conn, user_id)  # NotFound for a user that is not there
        if user.password_hash is not None:
            raise DomainPreconditionFailed(f"{user.username} signs in with a password, not a CLI secret")
        await cli_secrets.store_secret(conn, box, user_id, body.secret)

    await request.app[DB].run(go)
    return empty_ok()


async def delete_user(request: web.Request) -> web.Response:
    identity = await sysadmin(request)
    user_id = path_id(request, "user_id")
    await users.remove(request.app[DB], identity, user_id)
    return empty_ok()
