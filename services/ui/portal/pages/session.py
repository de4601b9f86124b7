"""Signing in (the form posts to `/c/login`, the session flow the API shares) and the way in: `/`
and `/harbor` lead to the projects, or to the sign-in page for someone not signed in."""

from __future__ import annotations

import urllib.parse

from aiohttp import web

from wharf_shared.keys import RUNTIME
from wharf_ui.portal.render import page
from wharf_ui.portal.viewer import SIGN_IN, current_viewer
from wharf_ui.sso import provider_name, sso_login_path

HOME = "/harbor/projects"


def safe_next(target: str) -> str:
    """Where to go after signing in: a path of this site only (never `//elsewhere`)."""
    if not target.startswith("/") or target.startswith(("//", "/\\", SIGN_IN)):
        return HOME
    return target


def _next(request: web.Request) -> str:
    return safe_next(request.query.get("next", ""))


async def home(request: web.Request) -> web.Response:
    viewer = await current_viewer(request)
    raise web.HTTPSeeOther(HOME if viewer is not None else SIGN_IN)


async def sign_in(request: web.Request) -> web.Response:
    if await current_viewer(request) is not None:
        raise web.HTTPSeeOther(_next(request))
    runtime = await request.app[RUNTIME].get()
    return await page(
        request,
        "sign_in.html",
        title="Sign in",
        next=_next(request),
        self_registration=runtime.self_registration,
        sso_name=provider_name(runtime),
        sso_url=sso_login_path(runtime) + "?" + urllib.parse.urlencode({"next": _next(request)}),
    )


PAGES = (
    ("/", home, "portal_root"),
    ("/harbor", home, "portal_home"),
    ("/harbor/", home, "portal_home_slash"),
    (SIGN_IN, sign_in, "portal_sign_in"),
)
