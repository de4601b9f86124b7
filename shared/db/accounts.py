"""Users: the SQL of the `user_account` table."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.db import tables as t
from wharf_shared.db.engine import insert_or_get_id
from wharf_shared.db.types import utcnow
from wharf_shared.errors.domain import PreconditionFailed
from wharf_shared.logging import get_logger

log = get_logger(__name__)

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


async def find_user_by_email(conn: AsyncConnection, email: str) -> User | None:
    row = (await conn.execute(select(*COLUMNS).where(t.user_account.c.email == email))).first()
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
    auth_backend: str | None = None,
) -> User:
    """`auth_backend`: the auth mode whose directory made the user (None: a local user)."""
    now = utcnow()
    row = {
        "auth_backend": auth_backend,
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


async def set_password(conn: AsyncConnection, user_id: int, password_hash: str) -> bool:
    """False when there is no such user. Remembered logins die with the old hash."""
    changed = update(t.user_account).where(t.user_account.c.id == user_id)
    result = await conn.execute(changed.values(password_hash=password_hash, updated_at=utcnow()))
    return bool(result.rowcount)


async def delete_user(conn: AsyncConnection, user_id: int) -> None:
    """Remove a user, their memberships (of projects and of groups) and OIDC refresh token;
    refused while they own projects (a project keeps an owner: it is deleted or handed over
    first)."""
    p = t.project.c
    owned = [row.name for row in await conn.execute(select(p.name).where(p.owner_id == user_id).limit(5))]
    if owned:
        raise PreconditionFailed(
            f"the user owns projects ({', '.join(owned)}): delete them or give them another owner first"
        )
    await conn.execute(delete(t.project_member).where(t.project_member.c.user_id == user_id))
    await conn.execute(delete(t.user_group_member).where(t.user_group_member.c.user_id == user_id))
    await conn.execute(delete(t.oidc_refresh_token).where(t.oidc_refresh_token.c.user_id == user_id))
    await conn.execute(delete(t.user_account).where(t.user_account.c.id == user_id))


async def list_all(conn: AsyncConnection) -> list[User]:
    return [to_user(row) for row in await conn.execute(select(*COLUMNS).order_by(t.user_account.c.id))]


@dataclass(frozen=True, slots=True)
class DirectoryUser:
    """A person as a directory (LDAP, an OA endpoint, CAS, OIDC) describes them at sign-in.
    `sysadmin`: None leaves the local flag as it is; `groups`: the directory's group names or DNs
    (for group memberships, written elsewhere)."""

    username: str
    email: str | None = None
    realname: str = ""
    sysadmin: bool | None = None
    groups: tuple[str, ...] = ()


async def provision(conn: AsyncConnection, backend: str, person: DirectoryUser) -> User | None:
    """The local row of a directory user, created on their first sign-in and refreshed (e-mail,
    real name, admin flag when the directory says) on each, tagged with the auth mode that made
    it. Every directory backend calls this, in one transaction.

    None, logged, when the row cannot be theirs: a local user of that name (one with a password
    here is never taken over by a directory), or an e-mail address another user holds (the
    column is unique; a directory that reuses addresses must not merge two people)."""
    email = person.email or None
    user = await find_user(conn, person.username)
    if user is not None and user.password_hash is not None:
        log.warning("directory_user_is_local", username=person.username, backend=backend)
        return None
    if email is not None:
        holder = await find_user_by_email(conn, email)
        if holder is not None and (user is None or holder.id != user.id):
            log.warning("directory_user_email_taken", username=person.username, backend=backend, email=email)
            return None
    u = t.user_account.c
    if user is None:
        created = await create_user(
            conn,
            person.username,
            None,
            email=email,
            realname=person.realname,
            sysadmin=bool(person.sysadmin),
            auth_backend=backend,
        )
        log.info("directory_user_created", username=person.username, backend=backend, user_id=created.id)
        return created
    values: dict[str, object] = {"email": email, "realname": person.realname}
    if person.sysadmin is not None:
        values["sysadmin"] = person.sysadmin
    now = {"email": user.email, "realname": user.realname, "sysadmin": user.sysadmin}
    if any(now[k] != v for k, v in values.items()):
        values["updated_at"] = utcnow()
    values["auth_backend"] = backend
    await conn.execute(update(t.user_account).where(u.id == user.id).values(**values))
    return await get_user(conn, user.id)
