"""Users as Harbor's API sees them: the rules (who may create, change, delete whom) and the SQL
of `user_account` they need (SQLAlchemy Core). Plain async functions over a connection; they
raise domain errors and know nothing of HTTP."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.accounts import check_password, check_profile, check_username
from wharf_shared.db import accounts
from wharf_shared.db import tables as t
from wharf_shared.db.accounts import User
from wharf_shared.db.engine import Database
from wharf_shared.db.types import utcnow
from wharf_shared.errors.domain import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
)
from wharf_shared.passwords import hash_password, verify_password
from wharf_shared.rbac import Identity
from wharf_ui.changes import record
from wharf_ui.listing import Filter, ListSpec
from wharf_ui.query import Page, SortKey, as_bool, as_int, as_time

u = t.user_account.c

USERS = ListSpec(
    filters={
        "username": Filter(u.username),
        "email": Filter(u.email),
        "realname": Filter(u.realname),
        "user_id": Filter(u.id, as_int, frozenset({"exact", "range", "any"})),
        "sysadmin_flag": Filter(u.sysadmin, as_bool, frozenset({"exact"})),
        "creation_time": Filter(u.created_at, as_time, frozenset({"exact", "range"})),
        "update_time": Filter(u.updated_at, as_time, frozenset({"exact", "range"})),
    },
    sorts={
        "user_id": u.id,
        "username": u.username,
        "email": u.email,
        "creation_time": u.created_at,
        "update_time": u.updated_at,
    },
    default_sort=(SortKey("user_id", False),),
    tiebreak=u.id,
)

# -- reads ---------------------------------------------------------------------------------------


async def get(conn: AsyncConnection, user_id: int) -> User:
    user = await accounts.get_user(conn, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


async def count(conn: AsyncConnection, conditions: list[Any] | None = None) -> int:
    """How many users meet the conditions (all of them without any)."""
    query = select(func.count()).select_from(t.user_account).where(*(conditions or []))
    return int((await conn.execute(query)).scalar() or 0)


async def list_users(
    conn: AsyncConnection, conditions: list[Any], order: list[Any], page: Page
) -> tuple[list[User], int]:
    total = await count(conn, conditions)
    rows = await conn.execute(
        select(*accounts.COLUMNS).where(*conditions).order_by(*order).offset(page.offset).limit(page.size)
    )
    return [accounts.to_user(row) for row in rows], total


async def search(conn: AsyncConnection, username: str, page: Page) -> tuple[list[tuple[int, str]], int]:
    """Users whose name contains `username` (any signed-in user may look: to add members)."""
    cond = u.username.contains(username, autoescape=True)
    total = (await conn.execute(select(func.count()).select_from(t.user_account).where(cond))).scalar()
    rows = await conn.execute(
        select(u.id, u.username).where(cond).order_by(u.username, u.id).offset(page.offset).limit(page.size)
    )
    return [(row.id, row.username) for row in rows], int(total or 0)


# -- writes (each one transaction through `Database.run`) ----------------------------------------


@dataclass(frozen=True, slots=True)
class NewUser:
    username: str
    password: str
    email: str | None = None
    realname: str = ""
    comment: str = ""
    sysadmin: bool = False


async def _taken(conn: AsyncConnection, username: str | None, email: str | None, but: int | None) -> None:
    """409 when another user has this username or email (checked first for a clear message; the
    unique constraints still decide a race)."""
    if username is not None:
        other = await conn.execute(select(u.id).where(u.username == username))
        if other.first() is not None:
            raise Conflict(f"username {username[:100]!r} is already taken")
    if email:
        cond = u.email == email
        if but is not None:
            cond = cond & (u.id != but)
        if (await conn.execute(select(u.id).where(cond))).first() is not None:
            raise Conflict(f"email {email[:100]!r} is already taken")


async def create(db: Database, new: NewUser, by: Identity | None = None) -> User:
    """`by`: who creates the user (None: the user signs themselves up)."""
    check_username(new.username)
    check_profile(new.email, new.realname, new.comment)
    check_password(new.password)
    password_hash = await asyncio.to_thread(hash_password, new.password)

    async def go(conn: AsyncConnection) -> User:
        await _taken(conn, new.username, new.email or None, None)
        now = utcnow()
        result = await conn.execute(
            t.user_account.insert().values(
                username=new.username,
                email=new.email or None,
                realname=new.realname,
                comment=new.comment,
                password_hash=password_hash,
                sysadmin=new.sysadmin,
                created_at=now,
                updated_at=now,
            )
        )
        user_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
        assert user_id is not None
        user = await get(conn, int(user_id))
        operator = by if by is not None and not by.anonymous else Identity(user.id, user.username)
        await record(conn, "user.create", operator, username=user.username, user_id=user.id)
        return user

    try:
        return await db.run(go)
    except IntegrityError:
        raise Conflict("the username or email is already taken") from None


def may_see(identity: Identity, user_id: int) -> None:
    """A user's profile is for the user and system admins."""
    if not identity.sysadmin and identity.user_id != user_id:
        raise Forbidden("only system admins may see or change other users")


async def update_profile(
    db: Database, user_id: int, *, email: str | None, realname: str | None, comment: str | None
) -> None:
    check_profile(email, realname, comment)
    values: dict[str, Any] = {}
    if email is not None:
        values["email"] = email or None
    if realname is not None:
        values["realname"] = realname
    if comment is not None:
        values["comment"] = comment

    async def go(conn: AsyncConnection) -> None:
        await get(conn, user_id)
        await _taken(conn, None, values.get("email"), user_id)
        if values:
            await conn.execute(
                update(t.user_account).where(u.id == user_id).values(**values, updated_at=utcnow())
            )

    try:
        await db.run(go)
    except IntegrityError:
        raise Conflict("the email is already taken") from None


async def change_password(
    db: Database, identity: Identity, user_id: int, old_password: str | None, new_password: str
) -> None:
    """A user changes their own password with the old one; a system admin sets anyone else's."""
    may_see(identity, user_id)
    async with db.read() as conn:
        user = await get(conn, user_id)
    if user.password_hash is None:
        # A directory's or a single sign-on user: a password set here would take the account
        # from the directory (a local password is never taken over), so it is refused.
        raise Forbidden(f"{user.username} signs in through the company directory: change the password there")
    if identity.user_id == user_id:
        proven = bool(old_password) and await asyncio.to_thread(
            verify_password, user.password_hash, old_password or ""
        )
        if not proven:
            raise Forbidden("the old password is incorrect")
    check_password(new_password)
    if await asyncio.to_thread(verify_password, user.password_hash, new_password):
        raise InvalidInput("the new password must differ from the old one")
    new_hash = await asyncio.to_thread(hash_password, new_password)

    async def go(conn: AsyncConnection) -> None:
        if not await accounts.set_password(conn, user_id, new_hash):
            raise NotFound(f"user {user_id} not found")
        # What changed, never the password: `password` tells the audit log's reader which.
        await record(
            conn, "user.update", identity, username=user.username, user_id=user_id, changed="password"
        )

    await db.run(go)


async def set_sysadmin(db: Database, identity: Identity, user_id: int, flag: bool) -> None:
    if identity.user_id == user_id:
        raise Forbidden("system admins may not change their own sysadmin flag")

    async def go(conn: AsyncConnection) -> None:
        user = await get(conn, user_id)
        await conn.execute(
            update(t.user_account).where(u.id == user_id).values(sysadmin=flag, updated_at=utcnow())
        )
        if user.sysadmin != flag:
            changed = "sysadmin" if flag else "sysadmin removed"
            await record(
                conn, "user.update", identity, username=user.username, user_id=user_id, changed=changed
            )

    await db.run(go)


async def remove(db: Database, identity: Identity, user_id: int) -> None:
    if identity.user_id == user_id:
        raise Forbidden("system admins may not delete themselves")

    async def go(conn: AsyncConnection) -> None:
        user = await get(conn, user_id)
        await accounts.delete_user(conn, user_id)
        await record(conn, "user.delete", identity, username=user.username, user_id=user_id)

    await db.run(go)
