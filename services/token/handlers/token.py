"""`GET /service/token` (Docker token spec) and `POST /service/token` (OAuth2 password and
refresh-token grants, RFC 6749 §4.3 and §6). Each parses, calls the login flow, and renders."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import urllib.parse
from typing import Any

from aiohttp import web

from wharf_shared import events
from wharf_shared.addresses import client_address
from wharf_shared.auth.logins import Login
from wharf_shared.auth.modes import LOCAL
from wharf_shared.keys import EVENTS, SETTINGS
from wharf_token import grants
from wharf_token.errors import AuthenticationRequired, InvalidRequest, UnsupportedGrantType
from wharf_token.keys import ISSUER, LOGINS, REFRESH, RUNTIME, TOKEN_METRICS, TRUSTED_PROXIES
from wharf_token.scopes import SCOPE_MAX_LENGTH, Scope, parse_scopes

FORM = "application/x-www-form-urlencoded"
# The parameters of RFC 6749 §4.3.2 and §6 and Docker's additions; each may come at most once
# (RFC 6749 §3.1). Others are ignored, as the RFC asks.
FORM_FIELDS = frozenset(
    {"grant_type", "username", "password", "refresh_token", "scope", "service", "client_id", "access_type"}
)
MAX_FORM_FIELDS = 32
_FORM_BASE_BYTES = 16 * 1024  # everything but the scopes: credentials, a refresh token, names


def _basic_credentials(request: web.Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        username, sep, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidRequest("malformed Basic credentials") from None
    if not sep or not username:
        raise InvalidRequest("malformed Basic credentials")
    return username, password


def _check_service(request: web.Request, service: str | None) -> None:
    expected = request.app[SETTINGS].token.service
    if service and service != expected:
        raise InvalidRequest(f"unknown service {service[:100]!r}", detail={"service": service[:100]})


def _address(request: web.Request) -> str:
    trusted = request.app[TRUSTED_PROXIES]
    return client_address(request, trusted)


def _scopes(request: web.Request, values: list[str]) -> list[Scope]:
    return parse_scopes(values, limit=request.app[SETTINGS].token.max_scopes)


def _form_limit(request: web.Request) -> int:
    # Room for every scope allowed, percent-encoded at worst (three bytes a character).
    return _FORM_BASE_BYTES + request.app[SETTINGS].token.max_scopes * 3 * (SCOPE_MAX_LENGTH + 1)


async def _read_form(request: web.Request) -> dict[str, str]:
    """The OAuth2 form: URL-encoded UTF-8, bounded in size and fields, each known field once."""
    if request.content_type != FORM:
        raise InvalidRequest(f"the body must be {FORM}", detail={"content_type": request.content_type[:100]})
    charset = request.charset
    if charset is not None and charset.lower() not in ("utf-8", "utf8"):
        raise InvalidRequest("the form must be UTF-8", detail={"charset": charset[:40]})
    limit = _form_limit(request)
    if request.content_length is not None and request.content_length > limit:
        raise InvalidRequest(f"the form exceeds {limit} bytes", detail={"limit": limit})
    body = bytearray()
    try:
        while chunk := await request.content.read(64 * 1024):
            body += chunk
            if len(body) > limit:
                raise InvalidRequest(f"the form exceeds {limit} bytes", detail={"limit": limit})
    except web.RequestPayloadError:
        raise InvalidRequest("the form's body is malformed (its chunked framing broke)") from None
    try:
        pairs = urllib.parse.parse_qsl(
            body.decode(),
            keep_blank_values=True,
            strict_parsing=True,
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except UnicodeDecodeError:
        raise InvalidRequest("the form is not valid UTF-8") from None
    except ValueError:
        raise InvalidRequest(
            f"malformed form (name=value pairs joined by &, at most {MAX_FORM_FIELDS})"
        ) from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name not in FORM_FIELDS:
            continue
        if name in form:
            raise InvalidRequest(f"parameter {name!r} is repeated", detail={"parameter": name})
        form[name] = value
    return form


def _logged_in(request: web.Request, login: Login, scopes: list[Scope], address: str) -> None:
    """A password check that asks for no scope is a login (`docker login`): audited. The token
    requests of pushes and pulls name scopes, and are not."""
    if not scopes:
        request.app[EVENTS].publish_soon(
            events.LOGIN, operator=login.identity.username, address=address, backend=login.backend
        )


def _required(form: dict[str, str], name: str) -> str:
    value = form.get(name)
    if value is None or (name != "password" and not value):
        raise InvalidRequest(f"parameter {name!r} is required", detail={"parameter": name})
    return value


async def _token(request: web.Request, login: Login, scopes: list[Scope], grant: str) -> dict[str, Any]:
    """`grant`: how the caller signed in (password, refresh_token, anonymous), for the metrics."""
    runtime = await request.app[RUNTIME].get()
    access = grants.resolve(login.identity, login.access, scopes, anonymous_access=runtime.anonymous_access)
    lifetime = runtime.token_lifetime_seconds
    token, issued = request.app[ISSUER].issue(login.identity.username, access, lifetime)
    request.app[TOKEN_METRICS].issued.labels(grant).inc()
    return {
        "token": token,
        "access_token": token,
        "expires_in": lifetime,
        "issued_at": dt.datetime.fromtimestamp(issued, dt.UTC).isoformat().replace("+00:00", "Z"),
    }


async def get_token(request: web.Request) -> web.Response:
    _check_service(request, request.query.get("service"))
    scopes = _scopes(request, request.query.getall("scope", []))
    credentials = _basic_credentials(request)
    logins = request.app[LOGINS]
    names = grants.project_names(scopes)
    if credentials is not None:
        address = _address(request)
        login, grant = await logins.login(*credentials, address, names), "password"
        _logged_in(request, login, scopes, address)
    elif scopes:
        login, grant = await logins.anonymous(names), "anonymous"
    else:
        # `docker login` without credentials: there is nothing to log in as.
        raise AuthenticationRequired()
    return web.json_response(await _token(request, login, scopes, grant))


async def post_token(request: web.Request) -> web.Response:
    form = await _read_form(request)
    _check_service(request, form.get("service"))
    scopes = _scopes(request, [form.get("scope", "")])
    names = grants.project_names(scopes)
    logins = request.app[LOGINS]
    grant_type = _required(form, "grant_type")
    if grant_type == "password":
        username, password = _required(form, "username"), _required(form, "password")
        address = _address(request)
        login = await logins.login(username, password, address, names)
        _logged_in(request, login, scopes, address)
        body = await _token(request, login, scopes, "password")
        # Only for passwords checked here: a refresh token is voided by a change of the stored
        # hash, and a directory's user has none (their password changes where Wharf cannot see).
        if (
            form.get("access_type") == "offline"
            and login.identity.user_id is not None
            and login.mark
            and login.backend == LOCAL
        ):
            body["refresh_token"] = request.app[REFRESH].issue(
                login.identity.user_id, login.identity.username, login.mark
            )
    elif grant_type == "refresh_token":
        refresh_token = _required(form, "refresh_token")
        login = await logins.refresh(refresh_token, names)
        body = await _token(request, login, scopes, "refresh_token")
        body["refresh_token"] = refresh_token
    else:
        raise UnsupportedGrantType(
            f"unsupported grant_type {grant_type[:40]!r}: use password or refresh_token"
        )
    body.pop("token")  # OAuth2 answers with access_token
    body["scope"] = " ".join(str(s) for s in scopes)
    return web.json_response(body)
