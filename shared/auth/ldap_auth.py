"""`ldap_auth`: the LDAP / Active Directory backend of a login, over `LdapDirectory`.

A login is search-then-bind with the runtime `ldap_*` settings (the stored search password
decrypted for the call). On success, in ONE transaction: the local row is made or refreshed
(`wharf_shared.db.accounts.provision`) under the directory's spelling of the username (the
`ldap_uid` value: "ALICE" and "alice" are one person and one row), and the user's LDAP group
memberships become exactly the groups the directory lists for them (`groups.replace_memberships`,
keyed by `groups.dn_key` of each group DN). With `ldap_group_admin_dn` set, the directory decides
the admin flag (a member is a system admin, a non-member is not); without it the flag is left as
an admin set it.

FAIL CLOSED: a directory that cannot be reached, bound or read (the login, the groups or the
admin group), a search password that cannot be decrypted: refused (None), logged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from wharf_shared.auth.ldap import LdapDirectory, LdapError, LdapGroup, LdapUser
from wharf_shared.db import accounts, groups
from wharf_shared.db.accounts import DirectoryUser
from wharf_shared.db.engine import Database
from wharf_shared.db.projects import Caller
from wharf_shared.logging import get_logger
from wharf_shared.runtime import LdapSettings, RuntimeSettings
from wharf_shared.secrets import SecretBox, SecretError

log = get_logger(__name__)

NAME = "ldap_auth"


def decrypted(config: LdapSettings, secret_key: bytes | None) -> LdapSettings:
    """`config` with its search password in clear; LdapError when it cannot be decrypted."""
    if not config.ldap_search_password:
        return config
    if not secret_key:
        raise LdapError("ldap_search_password is set but this service has no secret key to decrypt it")
    try:
        plain = SecretBox(secret_key).decrypt(config.ldap_search_password)
    except SecretError:
        raise LdapError("ldap_search_password cannot be decrypted with this service's secret key") from None
    return replace(config, ldap_search_password=plain)


class LdapAuthBackend:
    """`runtime`: the current runtime settings (read per login); `directory`: this process's one
    `LdapDirectory` (its thread pool), shared with the ui's `/ldap` endpoints."""

    name = NAME

    def __init__(
        self,
        db: Database,
        runtime: Callable[[], Awaitable[RuntimeSettings]],
        secret_key: bytes | None,
        *,
        directory: LdapDirectory | None = None,
    ) -> None:
        self._db = db
        self._runtime = runtime
        self._secret_key = secret_key
        self.directory = directory or LdapDirectory()

    async def close(self) -> None:
        self.directory.close()

    async def settings(self, overrides: dict[str, Any] | None = None) -> LdapSettings:
        """The directory's settings now, search password in clear (LdapError when it cannot be);
        `overrides`: flat `ldap_*` keys in clear (Harbor's ping with an `ldap_conf`)."""
        stored = (await self._runtime()).ldap
        config = decrypted(stored, self._secret_key)
        if overrides:
            config = replace(config, **overrides)
        return config

    async def authenticate(self, username: str, password: str, local: Caller | None) -> Caller | None:
        try:
            config = await self.settings()
        except LdapError as exc:
            log.warning("ldap_auth_not_usable", error=str(exc))
            return None
        if not config.ldap_url.strip():
            log.warning("ldap_auth_not_configured")
            return None
        # One connection: the bind that proves the password, then the groups and the admin
        # group read as the service account. The groups unreadable: refused, rather than let
        # in with memberships (or an admin flag) the directory may have withdrawn.
        signed = await self.directory.sign_in(config, username, password)
        if signed is None:
            return None
        found, member_of, admin = signed.user, signed.groups, signed.admin
        person = _person(found, member_of, admin)

        async def go(conn: Any) -> accounts.User | None:
            user = await accounts.provision(conn, NAME, person)
            if user is not None:
                await groups.replace_memberships(conn, user.id, groups.GroupType.LDAP, person.groups)
            return user

        user = await self._db.run(go)
        if user is None:
            return None
        return Caller(user.id, user.username, user.sysadmin, user.password_hash)


def _person(found: LdapUser, member_of: list[LdapGroup], admin: bool | None) -> DirectoryUser:
    email = found.email.strip()
    return DirectoryUser(
        username=found.username,  # the directory's spelling: one row per person
        # A cut address would be someone else's: one too long for the column is left out.
        email=email if 0 < len(email) <= 255 else None,
        realname=found.realname[:255],
        sysadmin=admin,
        groups=tuple(group.dn for group in member_of),
    )
