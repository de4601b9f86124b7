"""The signed-in user's own account (profile and password, sent to `/api/v2.0/users/{id}` and
`…/password`, which take a user's own changes) and, while self-registration is on, the sign-up
page where a visitor creates an account (`POST /api/v2.0/users` takes anonymous callers then).

A changed password ends the user's sessions (`wharf_ui.sessions` binds each to the password's
fingerprint), this one included: the form leads to the sign-in page."""

from __future__ import annotations

from aiohttp import web

from wharf_shared.auth import cli_secrets
from wharf_shared.keys import DB, RUNTIME
from wharf_shared.passwords import PASSWORD_RULE
from wharf_ui import users
from wharf_ui.keys import BOX, SECURE_COOKIES
from wharf_ui.portal.pages.session import HOME
from wharf_ui.portal.render import page
from wharf_ui.portal.viewer import SIGN_IN, PortalNotFound, current_viewer, require_viewer
from wharf_ui.security import expired_cookie
from wharf_ui.sessions import COOKIE

SIGN_UP = "/harbor/sign-up"


def password_rule() -> str:
    return PASSWORD_RULE[0].upper() + PASSWORD_RULE[1:] + "."


async def account(request: web.Request) -> web.Response:
    viewer = await require_viewer(request)
    assert viewer.identity.user_id is not None  # a session is a user's
    async with request.app[DB].read() as conn:
        user = await users.get(conn, viewer.identity.user_id)
        stored = await cli_secrets.stored_secret(conn, user.id)
    return await page(
        request,
        "account.html",
        title="Your account",
        section="account",
        user=user,
        password_rule=password_rule(),
        sign_in_again=SIGN_IN + "?next=/harbor/account",
        # A single sign-on user's CLI secret (docker and skopeo), shown again as Harbor does,
        # and a fresh one offered for the form that replaces it.
        cli_secret=cli_secrets.shown_secret(request.app[BOX], stored),
        new_cli_secret=cli_secrets.generate_secret(),
    )


async def sign_up(request: web.Request) -> web.Response:
    if await current_viewer(request) is not None:
        raise web.HTTPSeeOther(HOME)
    runtime = await request.app[RUNTIME].get()
    if not runtime.self_registration or runtime.auth_mode != "db_auth":
        raise PortalNotFound("Self-registration is off: ask a system administrator for an account.")
    response = await page(request, "sign_up.html", title="Create an account", password_rule=password_rule())
    if request.cookies.get(COOKIE):
        # An ended session's cookie would make the API take the sign-up for that session (401).
        secure = request.app[SECURE_COOKIES]
        response.headers.add("Set-Cookie", expired_cookie(COOKIE, secure=secure, http_only=True))
    return response


PAGES = (
    ("/harbor/account", account, "portal_account"),
    (SIGN_UP, sign_up, "portal_sign_up"),
)
