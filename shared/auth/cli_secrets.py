"""CLI secrets: how a user who signs in to the portal through CAS or OIDC logs in to docker and
skopeo (Harbor's "CLI secret"): their username and a secret Wharf made for them, which does not
expire with the single sign-on session.

The secret is made at onboarding, stored as `SecretBox` ciphertext (`user_account.cli_secret`)
so that the portal can show it again, as Harbor does, and replaced by the user (`PUT
/api/v2.0/users/{id}/cli_secret`). `CliSecretBackend` is the `oidc_auth` and `cas_auth` modes'
backend in `AuthModes`: it checks a password against the stored secret in constant time and
fails closed (no secret, one that cannot be decrypted: refused).

A login's mark (what the credential cache, refresh tokens and nothing else bind to) is
`credential_mark`: the password hash's fingerprint for a user with a password, else the
fingerprint of the secret's ciphertext, which changes with every new secret (a fresh nonce), so
an old secret stops working at once, remembered or not.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.db import tables as t
from wharf_shared.db.projects import Caller
from wharf_shared.db.types import utcnow
from wharf_shared.logging import get_logger
from wharf_shared.passwords import fingerprint, meets_policy
from wharf_shared.secrets import SecretBox, SecretError

log = get_logger(__name__)

SSO_MODES = ("oidc_auth", "cas_auth")


def credential_mark(caller: Caller) -> str:
    """What a remembered login of this user is bound to (see the module's note)."""
    if caller.password_hash is None and caller.cli_secret:
        return fingerprint("cli:" + caller.cli_secret)
    return fingerprint(caller.password_hash)


def generate_secret() -> str:
    """A new CLI secret: 32 random characters (192 bits) that meet Harbor's rule for the secrets
    users choose (an upper, a lower, a digit), so that one made here can also be set again."""
    while True:
        secret = secrets.token_urlsafe(24)
        if meets_policy(secret):
            return secret


async def store_secret(conn: AsyncConnection, box: SecretBox, user_id: int, secret: str) -> bool:
    """Replace the user's secret (False: no such user). Remembered logins die with the old one."""
    u = t.user_account.c
    changed = update(t.user_account).where(u.id == user_id)
    result = await conn.execute(changed.values(cli_secret=box.encrypt(secret), updated_at=utcnow()))
    return bool(result.rowcount)


async def stored_secret(conn: AsyncConnection, user_id: int) -> str | None:
    """The user's secret as stored (ciphertext), None when they have none."""
    u = t.user_account.c
    value: str | None = (await conn.execute(select(u.cli_secret).where(u.id == user_id))).scalar()
    return value


def shown_secret(box: SecretBox, ciphertext: str | None) -> str | None:
    """The secret to show its owner; None when there is none (or it cannot be decrypted)."""
    if not ciphertext:
        return None
    try:
        return box.decrypt(ciphertext)
    except SecretError:
        log.error("cli_secret_undecryptable")
        return None


class CliSecretBackend:
    """The backend of one single sign-on mode (`name`: oidc_auth or cas_auth) for passwords:
    only a CLI secret is one. `box`: the process's SecretBox (None: no secret key, refuse)."""

    def __init__(self, name: str, box: Callable[[], SecretBox | None]) -> None:
        self.name = name
        self._box = box

    async def authenticate(self, username: str, password: str, local: Caller | None) -> Caller | None:
        if local is None or not local.cli_secret or local.password_hash is not None:
            return None
        box = self._box()
        if box is None:
            log.error("cli_secret_no_secret_key", auth_mode=self.name)
            return None
        stored = shown_secret(box, local.cli_secret)
        if stored is None or not hmac.compare_digest(stored.encode(), password.encode()):
            return None
        return local
