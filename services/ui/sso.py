"""Single sign-on in the portal (`oidc_auth`, `cas_auth`): what happens between the provider's
redirects, apart from HTTP (`wharf_ui.handlers.sso`).

- A sign-in in progress (OIDC's state, nonce and PKCE verifier; where to go afterwards) is kept
  in Redis under a hash of a random value in a short-lived cookie, never in the browser and
  never in one process: the provider's redirect back may reach any ui instance. It is taken
  once (GETDEL), so a redirect replayed finds nothing.
- Onboarding: the provider's person becomes a local user (`accounts.provision`, tagged with the
  mode), their groups of the provider's type the groups the provider named
  (`groups.replace_memberships`), and a user without a CLI secret gets one
  (`wharf_shared.auth.cli_secrets`), all in one transaction. An OIDC account is bound to the
  provider's issuer and subject at its first sign-in, as Harbor's are: it follows them, not the
  username claim, and a name bound to another identity refuses. With `oidc_auto_onboard` off a
  new person chooses their username first (`NeedsOnboarding`: Harbor's onboarding form), what
  the provider proved waiting in Redis meanwhile.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from redis.asyncio import Redis
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.accounts import check_profile, check_username
from wharf_shared.auth.cas import CasClient, CasSettings, cas_settings
from wharf_shared.auth.cli_secrets import generate_secret, store_secret, stored_secret
from wharf_shared.auth.oidc import OidcClient, OidcError, OidcSettings, decrypted_settings
from wharf_shared.auth.refresh_tokens import store_refresh_token
from wharf_shared.db import accounts, groups
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.errors.domain import InvalidInput
from wharf_shared.logging import get_logger
from wharf_shared.runtime import RuntimeSettings
from wharf_shared.secrets import SecretBox

log = get_logger(__name__)

OIDC = "oidc_auth"
CAS = "cas_auth"
OIDC_LOGIN, OIDC_CALLBACK = "/c/oidc/login", "/c/oidc/callback"  # Harbor's paths
OIDC_ONBOARD, ONBOARD_PAGE = "/c/oidc/onboard", "/harbor/oidc-onboard"
CAS_LOGIN, CAS_CALLBACK = "/c/cas/login", "/c/cas/callback"
PENDING_COOKIE = "wharf_sso"
PENDING_SECONDS = 600  # time to sign in at the provider
_PENDING = "wharf:sso:pending:"


class SsoRefused(Exception):
    """A sign-in that cannot go on; the message is for the person signing in."""


class UsernameTaken(SsoRefused):
    """The name chosen on the onboarding form is someone else's: the form asks again."""


class NeedsOnboarding(Exception):
    """A person the provider proved has no account here and may not get one by the claim alone:
    they choose a username first (Harbor's onboarding). The message: the suggested name."""


@dataclass(frozen=True)
class SsoClients:
    oidc: OidcClient
    cas: CasClient


SSO = web.AppKey("sso", SsoClients)


def oidc_config(runtime: RuntimeSettings, box: SecretBox) -> OidcSettings:
    """The OIDC client's settings, the client secret decrypted."""
    try:
        return decrypted_settings(dataclasses.asdict(runtime.oidc), box)
    except OidcError:
        log.error("oidc_client_secret_undecryptable")
        raise SsoRefused("the OIDC client secret cannot be read: an admin must set it again") from None


def cas_config(runtime: RuntimeSettings) -> CasSettings:
    return cas_settings(dataclasses.asdict(runtime.cas))


def provider_name(runtime: RuntimeSettings) -> str:
    """What the sign-in button names ("" when the mode has no single sign-on)."""
    if runtime.auth_mode == OIDC:
        return runtime.oidc.oidc_name or "OIDC provider"
    if runtime.auth_mode == CAS:
        return "CAS"
    return ""


async def drop_pending(redis: Redis, value: str | None) -> None:
    if value and len(value) <= 128:
        await redis.delete(_pending_key(value))


def sso_login_path(runtime: RuntimeSettings) -> str:
    return OIDC_LOGIN if runtime.auth_mode == OIDC else CAS_LOGIN


def _pending_key(value: str) -> str:
    return _PENDING + hashlib.sha256(value.encode()).hexdigest()


async def put_pending(redis: Redis, entry: dict[str, Any]) -> str:
    """Keep a sign-in in progress; the cookie value that finds it."""
    value = secrets.token_urlsafe(32)
    await redis.set(_pending_key(value), json.dumps(entry), ex=PENDING_SECONDS)
    return value


async def take_pending(redis: Redis, value: str | None, *, keep: bool = False) -> dict[str, Any] | None:
    """The sign-in in progress of this cookie, removed unless `keep` (None: none, expired or
    already used)."""
    if not value or len(value) > 128:
        return None
    raw = await (redis.get if keep else redis.getdel)(_pending_key(value))
    if raw is None:
        return None
    try:
        entry = json.loads(raw)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None


@dataclass(frozen=True)
class Person:
    """Who a provider says signed in. `sysadmin`: None leaves the local flag alone."""

    username: str
    email: str | None
    realname: str
    groups: tuple[str, ...]
    sysadmin: bool | None
    subject: str = ""  # OIDC: `subject_key` of the ID token's iss and sub; CAS has none


async def _by_subject(conn: AsyncConnection, subject: str) -> str | None:
    """The username of the account bound to this OIDC identity."""
    u = t.user_account.c
    name: str | None = (await conn.execute(select(u.username).where(u.sso_subject == subject))).scalar()
    return name


async def _subject_of(conn: AsyncConnection, username: str) -> str | None:
    u = t.user_account.c
    value: str | None = (await conn.execute(select(u.sso_subject).where(u.username == username))).scalar()
    return value


def _usable_email(email: str | None) -> str | None:
    """The provider's e-mail address, or None when it is not one (the user is still let in)."""
    if not email:
        return None
    try:
        check_profile(email, None, None)
    except InvalidInput:
        return None
    return email


async def onboard(
    db: Database,
    box: SecretBox,
    mode: str,
    person: Person,
    group_type: groups.GroupType,
    *,
    create: bool = True,
    chosen: bool = False,
    refresh_token: str = "",
) -> accounts.User:
    """The local user of a provider's person, their groups replaced. A person with no account
    yet gets one when `create`; otherwise `NeedsOnboarding` (Harbor's onboarding form, where they
    choose a name: `chosen`, which must then be free). An OIDC `refresh_token` replaces the one
    stored (the group sync's; a sign-in without one leaves the stored one)."""

    async def go(conn: AsyncConnection) -> accounts.User | None:
        username = person.username
        bound = await _by_subject(conn, person.subject) if person.subject else None
        if bound is not None:
            # The account follows the provider's identity: a changed username claim keeps it.
            username = bound
        else:
            if chosen and await accounts.find_user(conn, username) is not None:
                raise UsernameTaken(f"the username {username} is taken: choose another")
            try:
                # Harbor's username rule: a name with a colon or a space could not log in to docker.
                check_username(username)
            except InvalidInput as exc:
                if not create:
                    raise NeedsOnboarding(username) from None
                raise SsoRefused(
                    f"the provider's username {username[:80]!r} cannot be used here ({exc.message}): "
                    "ask a system administrator (oidc_user_claim, cas_username_attribute)"
                ) from None
            if person.subject and await _subject_of(conn, username) not in (None, person.subject):
                # A name bound to another identity is not this person's.
                raise SsoRefused(
                    f"the account {username} belongs to another identity at the provider: "
                    "ask a system administrator"
                )
            if not create and await accounts.find_user(conn, username) is None:
                raise NeedsOnboarding(username)
        found = accounts.DirectoryUser(
            username=username,
            email=_usable_email(person.email),
            realname=person.realname[:255],
            sysadmin=person.sysadmin,
            groups=person.groups,
        )
        user = await accounts.provision(conn, mode, found)
        if user is None:
            return None
        if person.subject:
            u = t.user_account.c
            bind = update(t.user_account).where(u.id == user.id, u.sso_subject.is_(None))
            await conn.execute(bind.values(sso_subject=person.subject))
        await groups.replace_memberships(conn, user.id, group_type, person.groups)
        if refresh_token:
            await store_refresh_token(conn, box, user.id, refresh_token)
        if await stored_secret(conn, user.id) is None:
            await store_secret(conn, box, user.id, generate_secret())
        return user

    user = await db.run(go)
    if user is None:
        # A local account of that name, or an e-mail address another user holds (logged).
        raise SsoRefused(
            f"the account {person.username} cannot be used with single sign-on here: "
            "ask a system administrator"
        )
    return user
