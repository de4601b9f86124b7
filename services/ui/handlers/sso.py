"""The portal's single sign-on (`/c/oidc/…`, `/c/cas/…`): off to the provider, back with a code or
a ticket, a session opened; CAS's single-logout POST ends one. Every failure is a page with a
message (and a log line with the detail), never a 500; every sign-in is a login event."""

from __future__ import annotations

import dataclasses
import urllib.parse
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from wharf_shared import events
from wharf_shared.accounts import check_username
from wharf_shared.addresses import client_address
from wharf_shared.auth.cas import CasError, CasTicketError, login_url, logout_url, parse_logout_request
from wharf_shared.auth.oidc import AuthorizationRequest, OidcError, subject_key
from wharf_shared.db.groups import GroupType
from wharf_shared.errors.domain import InvalidInput
from wharf_shared.keys import DB, EVENTS, REDIS, RUNTIME, SETTINGS
from wharf_shared.logging import get_logger
from wharf_shared.passwords import fingerprint
from wharf_shared.rbac import Identity
from wharf_shared.secrets import SecretError
from wharf_ui.keys import BOX, SECURE_COOKIES, SESSIONS, TRUSTED_PROXIES
from wharf_ui.portal.errors import error_page
from wharf_ui.portal.pages.session import safe_next
from wharf_ui.portal.render import page
from wharf_ui.portal.viewer import SIGN_IN
from wharf_ui.security import set_session_cookies
from wharf_ui.sso import (
    CAS,
    CAS_CALLBACK,
    OIDC,
    OIDC_CALLBACK,
    OIDC_ONBOARD,
    ONBOARD_PAGE,
    PENDING_COOKIE,
    PENDING_SECONDS,
    SSO,
    NeedsOnboarding,
    Person,
    SsoRefused,
    UsernameTaken,
    cas_config,
    drop_pending,
    oidc_config,
    onboard,
    put_pending,
    take_pending,
)

log = get_logger(__name__)

_MAX_FORM = 64 * 1024  # a logout request is a few hundred bytes
ONBOARDING = "oidc_onboard"  # a sign-in in progress that waits for the chosen username


def _wanted_next(request: web.Request) -> str:
    """Where to land after signing in: `next` (our portal's), or `redirect_url` (Harbor's portal
    passes it); checked to be a path of this site when used (`safe_next`)."""
    return request.query.get("next") or request.query.get("redirect_url", "")


def _external(request: web.Request) -> str:
    return request.app[SETTINGS].external_url.rstrip("/")


async def _refused(request: web.Request, status: int, message: str) -> web.Response:
    response = await error_page(request, status, message, heading="Sign-in failed")
    _drop_pending(request, response)
    return response


def _drop_pending(request: web.Request, response: web.StreamResponse) -> None:
    if request.cookies.get(PENDING_COOKIE):
        response.del_cookie(PENDING_COOKIE, path="/c/")


async def _to_provider(request: web.Request, url: str, entry: dict[str, Any]) -> web.Response:
    value = await put_pending(request.app[REDIS], entry)
    response = web.Response(status=302, headers={"Location": url})
    # Lax: the provider's redirect back is a top-level GET from another site, which Lax lets through.
    response.set_cookie(
        PENDING_COOKIE,
        value,
        path="/c/",
        max_age=PENDING_SECONDS,
        httponly=True,
        samesite="Lax",
        secure=request.app[SECURE_COOKIES],
    )
    return response


async def _signed_in(
    request: web.Request,
    mode: str,
    person: Person,
    group_type: GroupType,
    pending: dict[str, Any] | None,
    *,
    create: bool = True,
    chosen: bool = False,
    sso: dict[str, str],
    index: str | None = None,
    refresh_token: str = "",
) -> web.Response:
    user = await onboard(
        request.app[DB],
        request.app[BOX],
        mode,
        person,
        group_type,
        create=create,
        chosen=chosen,
        refresh_token=refresh_token,
    )
    identity = Identity(user.id, user.username, user.sysadmin)
    # An SSO user has no password: the session is bound to that (a password set later ends it).
    session = await request.app[SESSIONS].start(identity, fingerprint(None), sso=sso, index=index)
    trusted = request.app[TRUSTED_PROXIES]
    address = client_address(request, trusted)
    request.app[EVENTS].publish_soon(events.LOGIN, operator=user.username, address=address, backend=mode)
    log.info("sso_login", username=user.username, backend=mode, address=address)
    target = safe_next(str((pending or {}).get("next", "")))
    response = web.Response(status=302, headers={"Location": target})
    set_session_cookies(response, session, secure=request.app[SECURE_COOKIES])
    _drop_pending(request, response)
    return response


# -- OIDC ------------------------------------------------------------------------------------------


async def oidc_login(request: web.Request) -> web.Response:
    runtime = await request.app[RUNTIME].get()
    if runtime.auth_mode != OIDC:
        return await _refused(request, 404, "Single sign-on through OIDC is not configured here.")
    try:
        settings = oidc_config(runtime, request.app[BOX])
        auth = await request.app[SSO].oidc.authorization_request(settings, _external(request) + OIDC_CALLBACK)
    except SsoRefused as exc:
        return await _refused(request, 502, str(exc))
    except OidcError as exc:
        log.warning("oidc_login_failed", error=str(exc)[:500])
        return await _refused(
            request, 502, "The OIDC provider cannot be reached or is misconfigured: try again later."
        )
    entry = {"mode": OIDC, "next": _wanted_next(request), "request": auth.as_dict()}
    return await _to_provider(request, auth.url, entry)


async def oidc_callback(request: web.Request) -> web.Response:
    pending = await take_pending(request.app[REDIS], request.cookies.get(PENDING_COOKIE))
    error = request.query.get("error")
    if error:
        log.info("oidc_login_refused_by_provider", error=error[:100])
        return await _refused(request, 401, f"The provider did not sign you in ({error[:100]}).")
    runtime = await request.app[RUNTIME].get()
    if runtime.auth_mode != OIDC:
        return await _refused(request, 404, "Single sign-on through OIDC is not configured here.")
    if pending is None or pending.get("mode") != OIDC:
        return await _refused(
            request, 400, "No sign-in is in progress in this browser (it expired): start again."
        )
    try:
        settings = oidc_config(runtime, request.app[BOX])
        auth = AuthorizationRequest.from_dict(pending.get("request") or {})
        user = await request.app[SSO].oidc.complete_login(
            settings, auth, code=request.query.get("code", ""), state=request.query.get("state", "")
        )
        realname = user.claims.get("name")
        person = Person(
            username=user.username,
            email=user.email or None,
            realname=realname if isinstance(realname, str) else "",
            groups=user.groups,
            # Admin by oidc_admin_group when one is set: leaving the group takes it away.
            sysadmin=user.admin if settings.oidc_admin_group else None,
            subject=subject_key(user.issuer, user.subject),
        )
        return await _signed_in(
            request,
            OIDC,
            person,
            GroupType.OIDC,
            pending,
            create=settings.oidc_auto_onboard,
            sso={"mode": OIDC, "id_token": user.id_token},
            refresh_token=user.refresh_token,
        )
    except NeedsOnboarding as suggested:
        # Harbor's onboarding: the person chooses their username; what the provider proved waits
        # (the refresh token encrypted: Redis holds it meanwhile).
        entry = {
            "mode": ONBOARDING,
            "next": (pending or {}).get("next", ""),
            "person": dataclasses.asdict(person),
            "id_token": user.id_token,
            "refresh_token": request.app[BOX].encrypt(user.refresh_token) if user.refresh_token else "",
        }
        target = ONBOARD_PAGE + "?" + urllib.parse.urlencode({"username": str(suggested)})
        return await _to_provider(request, target, entry)
    except SsoRefused as exc:
        log.info("oidc_login_refused", reason=str(exc)[:300])
        return await _refused(request, 403, str(exc))
    except OidcError as exc:
        log.warning("oidc_login_failed", error=str(exc)[:500])
        return await _refused(request, 401, "The sign-in through the OIDC provider failed: start again.")


async def oidc_onboard(request: web.Request) -> web.Response:
    """The onboarding form's POST (`username`): the account made under the chosen name, signed in.
    A name taken or not allowed shows the form again; the sign-in in progress waits meanwhile."""
    redis, value = request.app[REDIS], request.cookies.get(PENDING_COOKIE)
    pending = await take_pending(redis, value, keep=True)
    runtime = await request.app[RUNTIME].get()
    if runtime.auth_mode != OIDC:
        return await _refused(request, 404, "Single sign-on through OIDC is not configured here.")
    if pending is None or pending.get("mode") != ONBOARDING or not isinstance(pending.get("person"), dict):
        return await _refused(
            request, 400, "No sign-in is in progress in this browser (it expired): start again."
        )
    form = await request.post()
    username = form.get("username")
    username = username.strip() if isinstance(username, str) else ""
    try:
        check_username(username)
        known = pending["person"]
        person = Person(**{**known, "username": username, "groups": tuple(known.get("groups") or ())})
    except InvalidInput as exc:
        return await onboarding_form(request, username, exc.message, status=400)
    except TypeError:
        return await _refused(request, 400, "The sign-in in progress is damaged: start again.")
    try:
        response = await _signed_in(
            request,
            OIDC,
            person,
            GroupType.OIDC,
            pending,
            chosen=True,
            sso={"mode": OIDC, "id_token": str(pending.get("id_token", ""))},
            refresh_token=_pending_refresh_token(request, pending),
        )
    except UsernameTaken as exc:
        return await onboarding_form(request, username, str(exc), status=409)
    except SsoRefused as exc:
        log.info("oidc_onboarding_refused", reason=str(exc)[:300])
        return await _refused(request, 403, str(exc))
    await drop_pending(redis, value)
    return response


def _pending_refresh_token(request: web.Request, pending: Mapping[str, Any]) -> str:
    """The refresh token an onboarding kept (encrypted), "" when none or unreadable."""
    stored = pending.get("refresh_token")
    if not isinstance(stored, str) or not stored:
        return ""
    try:
        return request.app[BOX].decrypt(stored)
    except SecretError:
        return ""


async def onboarding_form(
    request: web.Request, username: str, error: str = "", *, status: int = 200
) -> web.Response:
    return await page(
        request,
        "oidc_onboard.html",
        title="Choose your username",
        status=status,
        username=username,
        error=error,
        action=OIDC_ONBOARD,
    )


async def onboarding_page(request: web.Request) -> web.Response:
    """`/harbor/oidc-onboard?username=…`: the form, the provider's suggestion filled in."""
    return await onboarding_form(request, request.query.get("username", "")[:255])


# -- CAS -------------------------------------------------------------------------------------------


def _service(request: web.Request) -> str:
    """The URL CAS returns to and validates the ticket for (the same both times)."""
    return _external(request) + CAS_CALLBACK


async def cas_login(request: web.Request) -> web.Response:
    runtime = await request.app[RUNTIME].get()
    if runtime.auth_mode != CAS:
        return await _refused(request, 404, "Single sign-on through CAS is not configured here.")
    try:
        url = login_url(cas_config(runtime), _service(request))
    except CasError as exc:
        log.warning("cas_login_failed", error=str(exc)[:500])
        return await _refused(request, 502, "CAS is misconfigured here: ask a system administrator.")
    return await _to_provider(request, url, {"mode": CAS, "next": _wanted_next(request)})


async def cas_callback(request: web.Request) -> web.Response:
    pending = await take_pending(request.app[REDIS], request.cookies.get(PENDING_COOKIE))
    runtime = await request.app[RUNTIME].get()
    if runtime.auth_mode != CAS:
        return await _refused(request, 404, "Single sign-on through CAS is not configured here.")
    ticket = request.query.get("ticket", "")
    if not ticket:
        return await _refused(request, 400, "CAS sent no ticket: start again.")
    settings = cas_config(runtime)
    try:
        user = await request.app[SSO].cas.validate(settings, ticket=ticket, service=_service(request))
        realname = next(iter(user.attributes.get("displayName", ())), "")
        person = Person(user.username, user.email or None, realname, user.groups, None)
        return await _signed_in(
            request, CAS, person, GroupType.CAS, pending, sso={"mode": CAS}, index=user.ticket
        )
    except SsoRefused as exc:
        log.info("cas_login_refused", reason=str(exc)[:300])
        return await _refused(request, 403, str(exc))
    except CasTicketError as exc:
        log.info("cas_ticket_refused", code=exc.code)
        return await _refused(
            request, 401, "CAS did not accept the sign-in (the ticket is used or expired): start again."
        )
    except CasError as exc:
        log.warning("cas_login_failed", error=str(exc)[:500])
        return await _refused(request, 502, "CAS cannot be reached or answered oddly: try again later.")


async def cas_logout(request: web.Request) -> web.Response:
    """CAS's single-logout POST (`logoutRequest`, SessionIndex = the ticket): end that session.
    Answers 200 for a session already gone, as CAS needs no more."""
    if (request.content_length or 0) > _MAX_FORM:
        return web.Response(status=413, text="too large")
    form = await request.post()
    body = form.get("logoutRequest")
    if not isinstance(body, str):
        return web.Response(status=400, text="no logoutRequest")
    try:
        ticket = parse_logout_request(body)
    except CasError as exc:
        log.info("cas_logout_refused", error=str(exc)[:300])
        return web.Response(status=400, text="unusable logoutRequest")
    ended = await request.app[SESSIONS].end_indexed(ticket)
    log.info("cas_single_logout", ended=ended)
    return web.Response(status=200, text="ok")


async def provider_logout(request: web.Request, sso: Mapping[str, str]) -> str | None:
    """Where to end the provider's session of a single sign-on session that just ended (None:
    nowhere; a provider that cannot say is logged, the local sign-out stands)."""
    runtime = await request.app[RUNTIME].get()
    back = _external(request) + SIGN_IN
    try:
        if sso.get("mode") == OIDC and runtime.auth_mode == OIDC:
            settings = oidc_config(runtime, request.app[BOX])
            return await request.app[SSO].oidc.end_session_url(
                settings, id_token=sso.get("id_token", ""), post_logout_redirect_uri=back
            )
        if sso.get("mode") == CAS and runtime.auth_mode == CAS:
            return logout_url(cas_config(runtime), back)
    except (OidcError, CasError, SsoRefused) as exc:
        log.warning("sso_logout_url_failed", error=str(exc)[:300])
    return None
