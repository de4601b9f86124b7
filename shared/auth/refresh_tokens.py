"""OIDC users' refresh tokens (`oidc_refresh_token`): what the provider gave at a user's last
sign-in, kept as `SecretBox` ciphertext so that the job service's group sync
(`wharf_shared.oidc_group_sync`) can ask the provider who they are now without them signing in
again. Replaced at each sign-in that brings one and when the provider rotates it; dropped when
the provider refuses it. Never shown by any API."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.db import tables as t
from wharf_shared.db.engine import upsert
from wharf_shared.db.types import utcnow
from wharf_shared.secrets import SecretBox

r = t.oidc_refresh_token.c


@dataclass(frozen=True)
class StoredToken:
    user_id: int
    username: str
    subject: str  # `user_account.sso_subject`: the identity the token must speak for
    ciphertext: str


async def store_refresh_token(conn: AsyncConnection, box: SecretBox, user_id: int, token: str) -> None:
    """The user's refresh token, replacing the one stored."""
    row = {"user_id": user_id, "token": box.encrypt(token), "updated_at": utcnow()}
    await upsert(conn, t.oidc_refresh_token, row, ["user_id"], ["token", "updated_at"])


async def drop_refresh_token(conn: AsyncConnection, user_id: int) -> None:
    await conn.execute(delete(t.oidc_refresh_token).where(r.user_id == user_id))


async def stored_refresh_tokens(conn: AsyncConnection) -> list[StoredToken]:
    """Every stored token of a user bound to an OIDC identity, by username."""
    u = t.user_account.c
    rows = await conn.execute(
        select(r.user_id, u.username, u.sso_subject, r.token)
        .select_from(t.oidc_refresh_token.join(t.user_account, u.id == r.user_id))
        .where(u.sso_subject.is_not(None))
        .order_by(u.username)
    )
    return [StoredToken(int(row[0]), str(row[1]), str(row[2]), str(row[3])) for row in rows]
