"""Users: the SQL of the `user_account` table."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.db import tables as t
from wharf_shared.db.engine import insert_or_get_id
from wharf_shared.db.types import utcnow

USERNAME_MAX_LENGTH = 255  # the column's: a longer name cannot belong to anyone


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    email: str | None
    realname: str
    comment: str
    sysadmin: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    password_hash: str | None  # argon2id; never leaves the service that checks it


COLUMNS = (
    t.user_account.c.id,
    t.user_account.c.username,
    t.user_account.c.email,
    t.user_account.c.realname,
    t.user_account.c.comment,
    t.user_account.c.sysadmin,
    t.user_account.c.created_at,
    t.user_account.c.updated_at,
    t.user_account.c.password_hash,
)


def to_user(row: object) -> User:
    return User(*row)  # type: ignore[misc]


async def find_user(conn: AsyncConnection, username: str) -> User | None:
    row = (await conn.execute(select(*COLUMNS).where(t.user_account.c.username == username))).first()
    return to_user(row) if row else None


async def get_user(conn: AsyncConnection, user_id: int) -> User | None:
    row = (await conn.execute(select(*COLUMNS).where(t.user_account.c.id == user_id))).first()
    return to_user(row) if row else None


async def create_user(
    conn: AsyncConnection,
    username: str,
    password_hash: str | None,
    *,
    email: str | None = None,
    realname: str = "",
    comment: str = "",
    sysadmin: bool = False,
) -> User:
    now = utcnow()
    row = {
        "username": username,
        "email": email,
        "realname": realname,
        "comment": comment,
        "password_hash": password_hash,
        "sysadmin": sysadmin,
        "created_at": now,
        "updated_at": now,
    }
    user_id = await insert_or_get_id(conn, t.user_account, row, unique=("username",))
    created = await get_user(conn, user_id)
    assert created is not None
    return created
