"""Who is looking at a portal page: the user of the session cookie, and nobody else. Pages take
no Basic credentials (a browser would send them to any page of this origin); a page that needs
a signed-in user sends anyone else to the sign-in page with the way back in `next`."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from aiohttp import web

from wharf_shared.rbac import Identity
from wharf_ui.keys import SECURE_COOKIES, SESSIONS
from wharf_ui.security import IDENTITY, SESSION, expired_cookie
from wharf_ui.sessions import COOKIE, Session

SIGN_IN = "/harbor/sign-in"


@dataclass(frozen=True, slots=True)
class Viewer:
    identity: Identity
    session: Session

    @property
    def sysadmin(self) -> bool:
        return self.identity.sysadmin

    @property
    def username(self) -> str:
        return self.identity.username


VIEWER = web.RequestKey("viewer", Viewer)


async def current_viewer(request: web.Request) -> Viewer | None:
    """The session's user, or None (no cookie, or a session that ended)."""
    known: Viewer | None = request.get(VIEWER)
    if known is not None:
        return known
    sid = request.cookies.get(COOKIE)
    if not sid:
        return None
    session = await request.app[SESSIONS].resume(sid)
    if session is None:
        return None
    viewer = Viewer(session.identity, session)
    request[VIEWER] = viewer
    # What the API's helpers read (`security.caller`), and what makes the response carry the
    # session's CSRF token (`app._csrf_token`).
    request[IDENTITY] = session.identity
    request[SESSION] = session
    return viewer


def sign_in_location(request: web.Request) -> str:
    return SIGN_IN + "?" + urllib.parse.urlencode({"next": request.path_qs})


async def require_viewer(request: web.Request) -> Viewer:
    """The signed-in viewer; anyone else is sent to sign in (303), their ended cookie removed."""
    viewer = await current_viewer(request)
    if viewer is None:
        response = web.HTTPSeeOther(sign_in_location(request))
        if request.cookies.get(COOKIE):
            secure = request.app[SECURE_COOKIES]
            response.headers.add("Set-Cookie", expired_cookie(COOKIE, secure=secure, http_only=True))
        raise response
    return viewer


async def require_sysadmin(request: web.Request) -> Viewer:
    """A system admin's page: anyone else signed in gets the portal's 403 page."""
    viewer = await require_viewer(request)
    if not viewer.sysadmin:
        raise PortalForbidden("Only system administrators can see this page.")
    return viewer


class PortalError(Exception):
    """A page that cannot be shown, rendered as the portal's error page with this status."""

    status = 400
    heading = "Something is wrong with this request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PortalForbidden(PortalError):
    status = 403
    heading = "Not allowed"


class PortalNotFound(PortalError):
    status = 404
    heading = "Not found"
