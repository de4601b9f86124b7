"""OAuth2 refresh tokens (`access_type=offline`): signed, self-contained, bound to the password.

A refresh token names the user and carries a fingerprint of their password hash, so changing
the password (or deleting the user) ends every refresh token issued before. It is signed with
the registry token's key but for another audience (`<service>:refresh`) and with a `typ`, so
that no registry, ours or another, takes a 30-day refresh token for a bearer token.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from wharf_shared.errors.domain import RefreshTokenInvalid
from wharf_shared.tokens import LEEWAY_SECONDS, algorithm_for, key_id

TYPE = "wharf-refresh"
AUDIENCE_SUFFIX = ":refresh"


@dataclass(frozen=True, slots=True)
class RefreshClaims:
    user_id: int
    username: str
    mark: str  # the password hash's fingerprint when the token was issued


class RefreshTokens:
    def __init__(
        self,
        private_key: PrivateKeyTypes,
        *,
        service: str,
        issuer: str,
        lifetime: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = private_key
        self._public = private_key.public_key()
        self._algorithm = algorithm_for(private_key)
        self._kid = key_id(self._public)
        self.audience = service + AUDIENCE_SUFFIX
        self._issuer = issuer
        self._lifetime = lifetime
        self._clock = clock

    def issue(self, user_id: int, username: str, mark: str) -> str:
        now = int(self._clock())
        claims = {
            "iss": self._issuer,
            "aud": self.audience,
            "sub": username,
            "uid": user_id,
            "typ": TYPE,
            "pwd": mark,
            "iat": now,
            "exp": now + self._lifetime,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._key, algorithm=self._algorithm, headers={"kid": self._kid})  # type: ignore[arg-type]

    def read(self, token: str) -> RefreshClaims:
        """The claims of a refresh token this service issued and that has not expired; whatever
        is wrong with it, the answer is the same (never the JWT library's words)."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._public,  # type: ignore[arg-type]
                algorithms=[self._algorithm],
                audience=self.audience,
                issuer=self._issuer,
                # exp is checked below against the injected clock.
                options={"require": ["exp", "sub", "uid", "typ", "pwd"], "verify_exp": False},
            )
        except jwt.PyJWTError:
            raise RefreshTokenInvalid() from None
        expires, user_id = claims["exp"], claims["uid"]
        if (
            claims["typ"] != TYPE
            or not isinstance(expires, int)
            or expires + LEEWAY_SECONDS <= self._clock()
            or not isinstance(user_id, int)
        ):
            raise RefreshTokenInvalid()
        return RefreshClaims(user_id, str(claims["sub"]), str(claims["pwd"]))
