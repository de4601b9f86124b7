"""Projects and their members: the SQL of `project` and `project_member`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.db import tables as t
from wharf_shared.db.engine import insert_or_get_id, upsert
from wharf_shared.db.types import utcnow
from wharf_shared.rbac import ProjectAccess, Role


@dataclass(frozen=True, slots=True)
class Project:
    id: int
    name: str
    public: bool
    owner_id: int
    created_at: dt.datetime


async def find_project(conn: AsyncConnection, name: str) -> Project | None:
    p = t.project.c
    row = (
        await conn.execute(select(p.id, p.name, p.public, p.owner_id, p.created_at).where(p.name == name))
    ).first()
    return Project(*row) if row else None


async def create_project(conn: AsyncConnection, name: str, owner_id: int, *, public: bool = False) -> Project:
    """A project, with its owner as project admin (idempotent by name)."""
    now = utcnow()
    row = {"name": name, "public": public, "owner_id": owner_id, "created_at": now, "updated_at": now}
    project_id = await insert_or_get_id(conn, t.project, row, unique=("name",))
    await set_member(conn, project_id, owner_id, Role.PROJECT_ADMIN)
    created = await find_project(conn, name)
    assert created is not None
    return created


async def set_member(conn: AsyncConnection, project_id: int, user_id: int, role: Role) -> None:
    now = utcnow()
    await upsert(
        conn,
        t.project_member,
        {
            "project_id": project_id,
            "user_id": user_id,
            "role_id": int(role),
            "created_at": now,
            "updated_at": now,
        },
        keys=("project_id", "user_id"),
        update=("role_id", "updated_at"),
    )


@dataclass(frozen=True, slots=True)
class Caller:
    """The user row a token request needs: who, and the hash that proves a cached login current."""

    id: int
    username: str
    sysadmin: bool
    password_hash: str | None


def _access_statement(with_user: bool, *, one: bool = False, by_username: bool = False) -> Select[Any]:
    """Built once: constructing a statement costs more CPU than running it on the token path.
    `one`: for a single project name (the usual token request), skipping the expansion of IN;
    `by_username`: the user named by `username` (a token's subject), not by `user_id`."""
    p, m, u = t.project.c, t.project_member.c, t.user_account.c
    names: Any = bindparam("names", expanding=True)
    in_names = p.name == bindparam("name") if one else p.name.in_(names)
    if not with_user:
        joined = t.project.outerjoin(
            t.project_member, and_(m.project_id == p.id, m.user_id == bindparam("user_id"))
        )
        return select(p.id, p.name, p.public, m.role_id).select_from(joined).where(in_names)
    # One row per project of interest, or one row with no project: the user comes with each.
    joined = t.user_account.outerjoin(t.project, in_names).outerjoin(
        t.project_member, and_(m.project_id == p.id, m.user_id == u.id)
    )
    return (
        select(u.id, u.username, u.sysadmin, u.password_hash, p.id, p.name, p.public, m.role_id)
        .select_from(joined)
        .where(u.username == bindparam("username") if by_username else u.id == bindparam("user_id"))
    )


_ACCESS = _access_statement(with_user=False)
_CALLER_ACCESS = _access_statement(with_user=True)
_CALLER_ACCESS_ONE = _access_statement(with_user=True, one=True)
_NAMED_CALLER_ACCESS_ONE = _access_statement(with_user=True, one=True, by_username=True)
_NO_NAME = "/"  # no project name holds a slash


async def caller_and_access(
    conn: AsyncConnection, user_id: int, names: Iterable[str]
) -> tuple[Caller | None, dict[str, ProjectAccess]]:
    """The user, and for each existing project among `names` its visibility and the user's role,
    in one query."""
    wanted = sorted(set(names))
    if len(wanted) <= 1:
        params = {"user_id": user_id, "name": wanted[0] if wanted else _NO_NAME}
        rows = (await conn.execute(_CALLER_ACCESS_ONE, params)).all()
    else:
        rows = (await conn.execute(_CALLER_ACCESS, {"user_id": user_id, "names": wanted})).all()
    if not rows:
        return None, {}
    first = rows[0]
    caller = Caller(first[0], first[1], bool(first[2]), first[3])
    access = {
        row[5]: ProjectAccess(row[4], bool(row[6]), Role(row[7]) if row[7] is not None else None)
        for row in rows
        if row[4] is not None
    }
    return caller, access


async def named_caller_access(
    conn: AsyncConnection, username: str, project: str
) -> tuple[Caller | None, ProjectAccess | None]:
    """The user named `username` (a token's subject) and, if the project exists, its visibility
    and the user's role in it: one query on unique keys, as a registry re-checks a push."""
    row = (await conn.execute(_NAMED_CALLER_ACCESS_ONE, {"username": username, "name": project})).first()
    if row is None:
        return None, None
    caller = Caller(row[0], row[1], bool(row[2]), row[3])
    if row[4] is None:
        return caller, None
    return caller, ProjectAccess(row[4], bool(row[6]), Role(row[7]) if row[7] is not None else None)


async def project_access(
    conn: AsyncConnection, names: Iterable[str], user_id: int | None
) -> dict[str, ProjectAccess]:
    """For each existing project among `names`: its visibility and the user's role (one query)."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    params = {"names": wanted, "user_id": user_id if user_id is not None else -1}
    rows = await conn.execute(_ACCESS, params)
    return {
        row.name: ProjectAccess(
            row.id, bool(row.public), Role(row.role_id) if row.role_id is not None else None
        )
        for row in rows
    }
