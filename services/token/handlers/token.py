"""`GET /service/token` (Docker token spec) and `POST /service/token` (OAuth2 password and
refresh-token grants)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Any

from aiohttp import web

from wharf_shared import rbac
from wharf_shared.addresses import client_address
from wharf_shared.db import accounts, projects
from wharf_shared.errors.oci import TokenRequestInvalid, Unauthorized
from wharf_shared.keys import DB, SETTINGS
from wharf_token import grants
from wharf_token.keys import AUTHENTICATOR, ISSUER, REFRESH, RUNTIME, TRUSTED_PROXIES
from wharf_token.logins import failed
from wharf_token.scopes import Scope, parse_scopes


def _basic_credentials(request: web.Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        username, sep, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise TokenRequestInvalid(message="malformed Basic credentials") from None
    if not sep or not username:
        raise TokenRequestInvalid(message="malformed Basic credentials")
    return username, password


def _check_service(request: web.Request, service: str | None) -> None:
    expected = request.app[SETTINGS].token.service
    if service and service != expected:
        raise TokenRequestInvalid(detail={"service": service}, message=f"unknown service {service!r}")


def _address(request: web.Request) -> str:
    trusted = request.app[TRUSTED_PROXIES]
    return client_address(request, trusted)


async def _access(
    request: web.Request, identity: rbac.Identity, scopes: list[Scope]
) -> dict[str, rbac.ProjectAccess]:
    async with request.app[DB].read() as conn:
        return await projects.project_access(conn, grants.project_names(scopes), identity.user_id)


async def _login(
    request: web.Request, username: str, password: str, scopes: list[Scope]
) -> tuple[rbac.Identity, dict[str, rbac.ProjectAccess]]:
    """Who the credentials belong to, and their view of the scopes' projects: one SQL query,
    which also confirms a login the credential cache remembered."""
    authenticator = request.app[AUTHENTICATOR]
    names = grants.project_names(scopes)
    login = await authenticator.login(username, password, _address(request))
    async with request.app[DB].read() as conn:
        caller, access = await projects.caller_and_access(conn, login.user_id, names)
    identity = authenticator.confirm(login, caller)
    if identity is None and login.mark is not None:
        # The remembered login is stale (password changed, user gone): check the password itself.
        login = await authenticator.login(username, password, _address(request), cached=False)
        async with request.app[DB].read() as conn:
            caller, access = await projects.caller_and_access(conn, login.user_id, names)
        identity = authenticator.confirm(login, caller)
    if identity is None:
        raise failed()
    return identity, access


async def _token(
    request: web.Request,
    identity: rbac.Identity,
    access_by_project: dict[str, rbac.ProjectAccess],
    scopes: list[Scope],
) -> dict[str, Any]:
    runtime = await request.app[RUNTIME].get()
    access = grants.resolve(identity, access_by_project, scopes, anonymous_access=runtime.anonymous_access)
    lifetime = runtime.token_lifetime_seconds
    token, issued = request.app[ISSUER].issue(identity.username, access, lifetime)
    return {
        "token": token,
        "access_token": token,
        "expires_in": lifetime,
        "issued_at": dt.datetime.fromtimestamp(issued, dt.UTC).isoformat().replace("+00:00", "Z"),
    }


async def get_token(request: web.Request) -> web.Response:
    _check_service(request, request.query.get("service"))
    scopes = parse_scopes(request.query.getall("scope", []))
    credentials = _basic_credentials(request)
    if credentials is not None:
        identity, access = await _login(request, *credentials, scopes)
    elif scopes:
        identity = rbac.ANONYMOUS
        access = await _access(request, identity, scopes)
    else:
        # `docker login` without credentials: there is nothing to log in as.
        raise Unauthorized(headers={"WWW-Authenticate": 'Basic realm="wharf"'})
    return web.json_response(await _token(request, identity, access, scopes))


async def post_token(request: web.Request) -> web.Response:
    form = await request.post()
    _check_service(request, str(form.get("service") or "") or None)
    scopes = parse_scopes([str(form.get("scope") or "")])
    grant_type = form.get("grant_type")
    body: dict[str, Any]
    if grant_type == "password":
        username, password = str(form.get("username") or ""), str(form.get("password") or "")
        if not username:
            raise TokenRequestInvalid(message="username is required")
        identity, access = await _login(request, username, password, scopes)
        body = await _token(request, identity, access, scopes)
        if form.get("access_type") == "offline":
            async with request.app[DB].read() as conn:
                user = await accounts.get_user(conn, identity.user_id or 0)
            if user is not None:
                body["refresh_token"] = request.app[REFRESH].issue(user.id, user.username, user.password_hash)
    elif grant_type == "refresh_token":
        identity = await request.app[REFRESH].redeem(request.app[DB], str(form.get("refresh_token") or ""))
        body = await _token(request, identity, await _access(request, identity, scopes), scopes)
        body["refresh_token"] = str(form.get("refresh_token"))
    else:
        raise TokenRequestInvalid(detail={"grant_type": grant_type}, message="unsupported grant_type")
    body.pop("token")  # OAuth2 answers with access_token
    body["scope"] = " ".join(f"{s.type}:{s.name}:{','.join(sorted(s.actions))}" for s in scopes)
    return web.json_response(body)
