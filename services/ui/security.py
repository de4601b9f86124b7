"""Who is calling: the identity of an `/api/` request, looked up once per request and only when
a handler asks (`/ping` touches nothing).

Credentials come from sources tried in order; the first that recognises the request decides:
HTTP Basic through the shared login flow (`wharf_shared.auth.logins`: the login backends, the
credential cache and the same throttling as `docker login`), then the portal's session cookie
(`wharf_ui.sessions`). A request no source recognises is anonymous; credentials that a source
recognises but cannot verify are a 401, never silently anonymous (a script with a wrong password
should not see the anonymous view and carry on; a portal whose session ended signs in again).

A write (POST, PUT, PATCH, DELETE) the session cookie authenticates must carry the session's
CSRF token in `X-Harbor-CSRF-Token`, as Harbor's portal sends it: another site can make a
browser send the cookie, not read the token. Basic credentials need none (a browser never adds
them on its own to a request another site makes).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Sequence
from typing import Protocol

from aiohttp import web

from wharf_shared.addresses import client_address
from wharf_shared.auth.logins import Logins
from wharf_shared.errors.harbor import Forbidden, Unauthorized
from wharf_shared.rbac import ANONYMOUS, Identity
from wharf_ui.sessions import COOKIE, CSRF_COOKIE, CSRF_HEADER, Session, Sessions

IDENTITY = web.RequestKey("identity", Identity)
SESSION = web.RequestKey("session", Session)
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


class CredentialSource(Protocol):
    async def identify(self, request: web.Request) -> Identity | None:
        """The caller this source proves, None when the request carries nothing of its kind;
        raises (401, 429) when it carries credentials that do not prove anyone."""


class BasicAuth:
    def __init__(
        self, logins: Logins, trusted_proxies: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
    ) -> None:
        self._logins = logins
        self._trusted = trusted_proxies

    async def identify(self, request: web.Request) -> Identity | None:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized(message="malformed Basic credentials") from None
        username, sep, password = decoded.partition(":")
        if not sep or not username:
            raise Unauthorized(message="malformed Basic credentials")
        login = await self._logins.login(username, password, client_address(request, self._trusted), ())
        return login.identity


class SessionCookie:
    """The portal's session (`sid` cookie), and for a write the CSRF token that goes with it."""

    def __init__(self, sessions: Sessions, *, secure: bool) -> None:
        self._sessions = sessions
        self._secure = secure

    async def identify(self, request: web.Request) -> Identity | None:
        sid = request.cookies.get(COOKIE)
        if sid is None:
            return None
        session = await self._sessions.resume(sid)
        if session is None:
            raise Unauthorized(
                message="the session has ended: sign in again",
                headers={"Set-Cookie": expired_cookie(COOKIE, secure=self._secure, http_only=True)},
            )
        if request.method not in _SAFE and not session.csrf_matches(request.headers.get(CSRF_HEADER)):
            raise Forbidden(
                message=f"a change made in a portal session needs the session's CSRF token in {CSRF_HEADER} "
                "(sent in that response header and the __csrf cookie)"
            )
        request[SESSION] = session
        return session.identity


def expired_cookie(name: str, *, secure: bool, http_only: bool) -> str:
    """A `Set-Cookie` value that removes the cookie."""
    flags = "; HttpOnly" if http_only else ""
    flags += "; Secure" if secure else ""
    return f"{name}=; Path=/; Max-Age=0; SameSite=Lax{flags}"


def set_session_cookies(response: web.StreamResponse, session: Session, *, secure: bool) -> None:
    """The session cookie (script-proof), and its CSRF token where the portal's script reads it."""
    response.set_cookie(COOKIE, session.sid, path="/", httponly=True, samesite="Lax", secure=secure)
    set_csrf(response, session, secure=secure)


def set_csrf(response: web.StreamResponse, session: Session, *, secure: bool) -> None:
    """The token in the header and the `__csrf` cookie. Written as a header, not through
    `set_cookie`: this also runs in `on_response_prepare`, after aiohttp wrote out the cookies."""
    response.headers[CSRF_HEADER] = session.csrf
    flags = "; Secure" if secure else ""
    response.headers.add("Set-Cookie", f"{CSRF_COOKIE}={session.csrf}; Path=/; SameSite=Lax{flags}")


class Authenticator:
    def __init__(self, sources: Sequence[CredentialSource]) -> None:
        self.sources = list(sources)

    async def identify(self, request: web.Request) -> Identity:
        for source in self.sources:
            identity = await source.identify(request)
            if identity is not None:
                return identity
        return ANONYMOUS


AUTHENTICATOR = web.AppKey("authenticator", Authenticator)


async def caller(request: web.Request) -> Identity:
    """The request's identity (anonymous when it carries no credentials), looked up once."""
    identity = request.get(IDENTITY)
    if identity is None:
        identity = await request.app[AUTHENTICATOR].identify(request)
        request[IDENTITY] = identity
    return identity


async def signed_in(request: web.Request) -> Identity:
    """The caller, who must not be anonymous (401)."""
    identity = await caller(request)
    if identity.anonymous:
        raise Unauthorized(message="sign in first (Basic credentials or a portal session)")
    return identity


async def sysadmin(request: web.Request) -> Identity:
    """The caller, who must be a system admin (401 anonymous, 403 anyone else)."""
    identity = await signed_in(request)
    if not identity.sysadmin:
        raise Forbidden(message="only system admins may do this")
    return identity
