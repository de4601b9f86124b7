"""Harbor's `/ldap` endpoints' work: a ping of the directory (stored settings, or an admin's
draft over them), user and group searches, the import of users (their local rows made ahead of
a first login). Domain code: `LdapError` for a directory
that cannot answer, no HTTP.

Import: each uid must name exactly one entry of the user search (as at a login); its row is
made or refreshed by `accounts.provision` under the directory's spelling. A uid that names
nobody (or several), or whose row cannot be theirs (a local user of that name, an e-mail taken),
is reported as failed with the reason; the others are imported all the same (Harbor's answer).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from wharf_shared.auth.ldap import LdapError, LdapGroup, LdapPing, LdapSettings, LdapUser
from wharf_shared.auth.ldap_auth import NAME, LdapAuthBackend
from wharf_shared.db import accounts
from wharf_shared.db.accounts import USERNAME_MAX_LENGTH, DirectoryUser
from wharf_shared.db.engine import Database
from wharf_shared.errors.domain import PreconditionFailed
from wharf_shared.rbac import Identity
from wharf_ui.changes import record

IMPORT_MAX = 1000  # uids per request
# Harbor's ping takes `ldap_connection_timeout`; ours is `ldap_timeout`.
_RENAMED = {"ldap_connection_timeout": "ldap_timeout"}


@dataclass(frozen=True, slots=True)
class FailedImport:
    uid: str
    error: str


async def ping(backend: LdapAuthBackend, draft: dict[str, Any]) -> LdapPing:
    """Whether the directory answers with the stored settings, or with `draft`'s keys over them
    (a draft without a search password uses the stored one, which the API never shows)."""
    overrides = {_RENAMED.get(key, key): value for key, value in draft.items() if value is not None}
    if not overrides.get("ldap_search_password"):
        overrides.pop("ldap_search_password", None)
    try:
        config = await backend.settings(overrides)
    except LdapError as exc:  # a stored password this key cannot read: say so
        return LdapPing(False, str(exc))
    if not config.ldap_url.strip():
        return LdapPing(False, "ldap_url is not set")
    return await backend.directory.ping(config)


async def _configured(backend: LdapAuthBackend) -> LdapSettings:
    """The stored settings, when they name a directory: without `ldap_url` there is nothing
    to ask (the admin's to fix, not an outage)."""
    config = await backend.settings()
    if not config.ldap_url.strip():
        raise PreconditionFailed("LDAP is not configured: set ldap_url in /configurations first")
    return config


async def search_users(backend: LdapAuthBackend, username: str) -> list[LdapUser]:
    config = await _configured(backend)
    return await backend.directory.search_users(config, username)


async def search_groups(backend: LdapAuthBackend, name_or_dn: str) -> list[LdapGroup]:
    config = await _configured(backend)
    return await backend.directory.search_groups(config, name_or_dn)


async def import_users(
    db: Database, identity: Identity, backend: LdapAuthBackend, uids: list[str]
) -> list[FailedImport]:
    """Make the local rows of these directory users (each new one a `user.create` event, for
    the audit log); those that could not be made, and why."""
    config = await _configured(backend)
    failed: list[FailedImport] = []
    for uid in dict.fromkeys(uids):
        if not uid.strip() or len(uid) > USERNAME_MAX_LENGTH:
            failed.append(FailedImport(uid, "not a username"))
            continue
        found = [u for u in await backend.directory.search_users(config, uid, limit=2) if u.username]
        if len(found) != 1:
            failed.append(FailedImport(uid, "not found in the directory" if not found else "ambiguous"))
            continue
        person = DirectoryUser(
            username=found[0].username,
            email=found[0].email.strip() or None,
            realname=found[0].realname[:255],
        )
        if person.email is not None and len(person.email) > 255:
            person = replace(person, email=None)

        async def go(conn: Any, person: DirectoryUser = person) -> accounts.User | None:
            known = await accounts.find_user(conn, person.username)
            user = await accounts.provision(conn, NAME, person)
            if user is not None and known is None:
                await record(conn, "user.create", identity, username=user.username)
            return user

        if await db.run(go) is None:
            failed.append(FailedImport(uid, "a local user has this name, or another user this e-mail"))
    return failed
