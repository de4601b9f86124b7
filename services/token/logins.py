"""The token service's logins: the shared password flow (`wharf_shared.auth.logins`) plus
OAuth2 refresh tokens, which only this service issues and reads, and the job service's account
(`wharf$jobservice`, no user row: its password is derived from the secret key), which only this
service signs in. Its logins are throttled and counted like any other; a wrong password is the
same `LoginFailed`."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from wharf_shared.auth.cli_secrets import credential_mark
from wharf_shared.auth.logins import Login, Logins
from wharf_shared.db import projects
from wharf_shared.errors.domain import RefreshTokenInvalid
from wharf_shared.rbac import JOBSERVICE, Identity
from wharf_shared.secrets import is_jobservice_password
from wharf_token.metrics import REFRESH_BACKEND
from wharf_token.refresh import RefreshTokens


class TokenLogins(Logins):
    def __init__(
        self, *args: Any, refresh_tokens: RefreshTokens, jobservice_key: bytes | None, **kwargs: Any
    ) -> None:
        """`jobservice_key`: the secret key the job service's password derives from (None: no
        such account here)."""
        super().__init__(*args, **kwargs)
        self._refresh_tokens = refresh_tokens
        self._jobservice_key = jobservice_key

    async def _prove(self, username: str, password: str, names: Collection[str]) -> Login | str:
        if username != JOBSERVICE.username:
            return await super()._prove(username, password, names)
        if self._jobservice_key is None or not is_jobservice_password(self._jobservice_key, password):
            return self._backend.name
        return Login(JOBSERVICE)  # no roles to read: a system admin; no mark: no refresh token

    async def refresh(self, token: str, names: Collection[str]) -> Login:
        """Sign in with a refresh token: still the user it was issued to, with the same password."""
        try:
            login = await self._refresh(token, names)
        except RefreshTokenInvalid:
            self._count("failure", REFRESH_BACKEND)
            raise
        except Exception:
            self._count("error", REFRESH_BACKEND)
            raise
        self._count("success", REFRESH_BACKEND)
        return login

    async def _refresh(self, token: str, names: Collection[str]) -> Login:
        claims = self._refresh_tokens.read(token)
        async with self._db.read() as conn:
            caller, access = await projects.caller_and_access(conn, claims.user_id, names)
        if caller is None or caller.username != claims.username or credential_mark(caller) != claims.mark:
            raise RefreshTokenInvalid("the refresh token is no longer valid: sign in again")
        return Login(Identity(caller.id, caller.username, caller.sysadmin), access, claims.mark)
