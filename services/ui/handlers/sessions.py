"""`POST /c/login` and `GET /c/logout` (`/c/log_out`, Harbor's path): the portal's sessions.

Under single sign-on the form is for local accounts: a CLI secret opens no portal session (it
is for docker and skopeo; the portal signs in through the provider). Signing out of a single
sign-on session answers where to end the provider's session too (`redirect_url`)."""

from __future__ import annotations

from aiohttp import web

from wharf_shared import events
from wharf_shared.addresses import client_address
from wharf_shared.auth.cli_secrets import SSO_MODES
from wharf_shared.errors.harbor import BadRequest, Unauthorized
from wharf_shared.keys import EVENTS
from wharf_ui.handlers.sso import provider_logout
from wharf_ui.keys import LOGINS, SECURE_COOKIES, SESSIONS, TRUSTED_PROXIES
from wharf_ui.responses import empty_ok, json_response
from wharf_ui.security import expired_cookie, set_session_cookies
from wharf_ui.sessions import COOKIE, CSRF_COOKIE

_MAX_FIELD = 4096


async def login(request: web.Request) -> web.Response:
    """The form Harbor's portal posts (`principal`, `password`), through the same throttled login
    flow as Basic credentials and `docker login`; a login event for the audit log."""
    form = await request.post()
    principal, password = form.get("principal"), form.get("password")
    if not isinstance(principal, str) or not isinstance(password, str) or not principal:
        raise BadRequest(message="sign in with the form fields principal and password")
    if len(principal) > _MAX_FIELD or len(password) > _MAX_FIELD:
        raise BadRequest(message=f"principal and password: at most {_MAX_FIELD} characters each")
    trusted = request.app[TRUSTED_PROXIES]
    address = client_address(request, trusted)
    signed_in = await request.app[LOGINS].login(principal, password, address, ())
    if signed_in.backend in SSO_MODES:
        raise Unauthorized(message="sign in through single sign-on: the CLI secret is for docker and skopeo")
    session = await request.app[SESSIONS].start(signed_in.identity, signed_in.mark)
    request.app[EVENTS].publish_soon(
        events.LOGIN, operator=signed_in.identity.username, address=address, backend=signed_in.backend
    )
    response = empty_ok()
    set_session_cookies(response, session, secure=request.app[SECURE_COOKIES])
    return response


async def logout(request: web.Request) -> web.Response:
    """Ends the session of the cookie, if any (nothing to refuse: signing out is always fine)."""
    sid = request.cookies.get(COOKIE)
    redirect = None
    if sid:
        session = await request.app[SESSIONS].resume(sid)
        await request.app[SESSIONS].end(sid)
        if session is not None and session.sso:
            redirect = await provider_logout(request, session.sso)
    response = empty_ok() if redirect is None else json_response({"redirect_url": redirect})
    secure = request.app[SECURE_COOKIES]
    response.headers.add("Set-Cookie", expired_cookie(COOKIE, secure=secure, http_only=True))
    response.headers.add("Set-Cookie", expired_cookie(CSRF_COOKIE, secure=secure, http_only=False))
    return response
