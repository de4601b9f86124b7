"""Who is calling: the identity of an `/api/` request, looked up once per request and only when
a handler asks (`/ping` touches nothing).

Credentials come from sources tried in order; the first that recognises the request decides.
Today there is one, HTTP Basic through the shared login flow (`wharf_shared.auth.logins`: the
login backends, the credential cache and the same throttling as `docker login`); the portal's
session cookie will be a second source beside it. A request no source recognises is anonymous;
credentials that a source recognises but cannot verify are a 401, never silently anonymous (a
script with a wrong password should not see the anonymous view and carry on).
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

IDENTITY = web.RequestKey("identity", Identity)


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
        raise Unauthorized(message="sign in first (Basic credentials)")
    return identity


async def sysadmin(request: web.Request) -> Identity:
    """The caller, who must be a system admin (401 anonymous, 403 anyone else)."""
    identity = await signed_in(request)
    if not identity.sysadmin:
        raise Forbidden(message="only system admins may do this")
    return identity
