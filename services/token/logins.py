"""The token service's logins: the shared password flow (`wharf_shared.auth.logins`) plus
OAuth2 refresh tokens, which only this service issues and reads."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from wharf_shared.auth.logins import Login, Logins
from wharf_shared.db import projects
from wharf_shared.errors.domain import RefreshTokenInvalid
from wharf_shared.passwords import fingerprint
from wharf_shared.rbac import Identity
from wharf_token.metrics import REFRESH_BACKEND
from wharf_token.refresh import RefreshTokens


class TokenLogins(Logins):
    def __init__(self, *args: Any, refresh_tokens: RefreshTokens, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refresh_tokens = refresh_tokens

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
        if (
            caller is None
            or caller.username != claims.username
            or fingerprint(caller.password_hash) != claims.mark
        ):
            raise RefreshTokenInvalid("the refresh token is no longer valid: sign in again")
        return Login(Identity(caller.id, caller.username, caller.sysadmin), access, claims.mark)
