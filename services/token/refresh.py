"""OAuth2 refresh tokens (`access_type=offline`): signed, self-contained, bound to the password.

A refresh token names the user and carries a fingerprint of their password hash, so changing
the password (or deleting the user) ends every refresh token issued before.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from wharf_shared.auth.credentials import fingerprint
from wharf_shared.db import accounts
from wharf_shared.db.engine import Database
from wharf_shared.errors.oci import Unauthorized
from wharf_shared.rbac import Identity
from wharf_shared.tokens import algorithm_for, key_id

_TYPE = "wharf-refresh"


class RefreshTokens:
    def __init__(self, private_key: PrivateKeyTypes, *, service: str, issuer: str, lifetime: int) -> None:
        self._key = private_key
        self._public = private_key.public_key()
        self._algorithm = algorithm_for(private_key)
        self._kid = key_id(self._public)
        self._service = service
        self._issuer = issuer
        self._lifetime = lifetime

    def issue(self, user_id: int, username: str, password_hash: str | None) -> str:
        now = int(time.time())
        claims = {
            "iss": self._issuer,
            "aud": self._service,
            "sub": username,
            "uid": user_id,
            "typ": _TYPE,
            "pwd": fingerprint(password_hash),
            "iat": now,
            "exp": now + self._lifetime,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._key, algorithm=self._algorithm, headers={"kid": self._kid})  # type: ignore[arg-type]

    async def redeem(self, db: Database, token: str) -> Identity:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._public,  # type: ignore[arg-type]
                algorithms=[self._algorithm],
                audience=self._service,
                issuer=self._issuer,
                options={"require": ["exp", "sub", "uid", "typ"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(message="invalid refresh token", detail={"reason": str(exc)}) from None
        if claims.get("typ") != _TYPE:
            raise Unauthorized(message="invalid refresh token")
        async with db.read() as conn:
            user = await accounts.get_user(conn, int(claims["uid"]))
        if (
            user is None
            or user.username != claims["sub"]
            or fingerprint(user.password_hash) != claims.get("pwd")
        ):
            raise Unauthorized(message="refresh token no longer valid: sign in again")
        return Identity(user.id, user.username, user.sysadmin)
