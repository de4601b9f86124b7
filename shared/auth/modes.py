"""The auth backend of each login, chosen by the runtime setting `auth_mode` (read per login from
the process's cached runtime settings, so a change applies within a second everywhere).

- A local user, a row with a password hash (`admin`, users made by the API or the CLI), is
  always checked against the database, whatever the mode: a directory outage must not lock ops
  out, and a directory never takes over a local account.
- Anyone else (no row, or a directory user's row, whose hash is NULL) is the mode's backend's
  to decide (`ldap_auth`, `http_auth`, ...); under `db_auth` they are refused. A mode whose backend this
  build does not have refuses them cleanly.

Timing: the argon2id check of a local user is the floor of every answer. For a directory login
the dummy check runs beside the directory's, so that no name answers faster than a local
account's wrong password (in every mode, as under `db_auth`, an unknown name and a wrong password
cost the same).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from wharf_shared.auth.backends import AuthBackend, DatabaseBackend, Verdict
from wharf_shared.auth.cli_secrets import SSO_MODES, CliSecretBackend
from wharf_shared.auth.http import HttpAuthBackend  # loaded with the service (a fork's parent preloads it)
from wharf_shared.auth.ldap_auth import LdapAuthBackend
from wharf_shared.db.accounts import USERNAME_MAX_LENGTH
from wharf_shared.db.projects import Caller
from wharf_shared.logging import get_logger
from wharf_shared.passwords import verify_password
from wharf_shared.runtime import RuntimeSettings
from wharf_shared.secrets import SecretBox

if TYPE_CHECKING:
    from wharf_shared.db.engine import Database

log = get_logger(__name__)

LOCAL = "db_auth"
Closer = Callable[[], Awaitable[None]]


class AuthModes:
    """The one backend the login flow talks to; `directories`: the backends of the modes this
    process has (by mode name)."""

    def __init__(
        self,
        runtime: Callable[[], Awaitable[RuntimeSettings]],
        directories: Mapping[str, AuthBackend],
        *,
        local: AuthBackend | None = None,
    ) -> None:
        self._runtime = runtime
        self._directories = dict(directories)
        self._local = local or DatabaseBackend()
        # The mode seen last: what the metrics name for outcomes with no verdict (a lockout, an
        # error); a verdict names its own backend.
        self.name = LOCAL

    def backend(self, mode: str) -> AuthBackend | None:
        """The backend of a directory mode (`ldap_auth`, ...), None when this build has none."""
        return self._directories.get(mode)

    async def verify(self, username: str, password: str, local: Caller | None) -> Verdict:
        if local is not None and local.password_hash is not None:
            return Verdict(LOCAL, await self._local.authenticate(username, password, local))
        mode = (await self._runtime()).auth_mode
        self.name = mode
        if mode == LOCAL:
            return Verdict(LOCAL, await self._local.authenticate(username, password, local))
        directory = self._directories.get(mode)
        floor = asyncio.create_task(asyncio.to_thread(verify_password, None, password))
        try:
            if directory is None:
                log.warning("auth_mode_not_available", auth_mode=mode, username=username[:255])
                return Verdict(mode, None)
            if len(username) > USERNAME_MAX_LENGTH or "\0" in username:
                return Verdict(mode, None)  # no local row could hold it: not worth the directory's time
            try:
                proven = await directory.authenticate(username, password, local)
            except Exception as exc:  # fail closed: a backend's bug must not become a 500 or a way in
                log.error("auth_backend_failed", auth_mode=mode, error=repr(exc)[:500])
                proven = None
            return Verdict(mode, proven)
        finally:
            await floor


def build_modes(
    db: Database,
    runtime: Callable[[], Awaitable[RuntimeSettings]],
    *,
    secret_key: bytes | None = None,
) -> tuple[AuthModes, list[Closer]]:
    """Every service's `AuthModes` with the directory backends this build has, and what to close
    at shutdown (their HTTP clients, the LDAP thread pool). `secret_key` decrypts the stored
    secrets a backend uses (`ldap_search_password`, the SSO users' CLI secrets)."""
    box = SecretBox(secret_key) if secret_key else None
    http = HttpAuthBackend(db, runtime)
    ldap = LdapAuthBackend(db, runtime, secret_key)
    directories: dict[str, AuthBackend] = {http.name: http, ldap.name: ldap}
    for mode in SSO_MODES:  # the portal signs in through the provider; docker with a CLI secret
        directories[mode] = CliSecretBackend(mode, lambda: box)
    return AuthModes(runtime, directories), [http.close, ldap.close]
