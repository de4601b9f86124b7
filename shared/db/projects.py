"""Projects and their members: the SQL of `project` and `project_member`, and the caller's role
in a project: the stronger of their direct role and their groups' (`wharf_shared.db.groups`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.db import tables as t
from wharf_shared.db.engine import insert_or_get_id, upsert
from wharf_shared.db.groups import effective_role, group_rank
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
    cli_secret: str | None = None  # SecretBox ciphertext (CAS and OIDC users), what it checks


def _access_statement(with_user: str | None, *, one: bool = False) -> Select[Any]:
    """Built once: constructing a statement costs more CPU than running it on the token path.
    `with_user`: also read the user, found by `id` or by `username`; `one`: for a single project
    name (the usual token request), skipping the expansion of IN."""
    p, m, u = t.project.c, t.project_member.c, t.user_account.c
    names: Any = bindparam("names", expanding=True)
    in_names = p.name == bindparam("name") if one else p.name.in_(names)
    if with_user is None:
        joined = t.project.outerjoin(
            t.project_member, and_(m.project_id == p.id, m.user_id == bindparam("user_id"))
        )
        through_groups = group_rank(p.id, bindparam("user_id"))
        return (
            select(p.id, p.name, p.public, m.role_id, through_groups.label("group_rank"))
            .select_from(joined)
            .where(in_names)
        )
    # One row per project of interest, or one row with no project: the user comes with each.
    joined = t.user_account.outerjoin(t.project, in_names).outerjoin(
        t.project_member, and_(m.project_id == p.id, m.user_id == u.id)
    )
    key = u.id == bindparam("user") if with_user == "id" else u.username == bindparam("user")
    return (
        select(
            u.id,
            u.username,
            u.sysadmin,
            u.password_hash,
            u.cli_secret,
            p.id,
            p.name,
            p.public,
            m.role_id,
            group_rank(p.id, u.id),
        )
        .select_from(joined)
        .where(key)
    )


_ACCESS = _access_statement(None)
_CALLER_ACCESS = {
    (by, one): _access_statement(by, one=one) for by in ("id", "username") for one in (False, True)
}
_NO_NAME = "/"  # no project name holds a slash


async def caller_and_access(
    conn: AsyncConnection, user: int | str, names: Iterable[str]
) -> tuple[Caller | None, dict[str, ProjectAccess]]:
    """The user (by id, or by name when `user` is a string), and for each existing project among
    `names` its visibility and the user's role, in one query."""
    by = "username" if isinstance(user, str) else "id"
    wanted = sorted(set(names))
    if len(wanted) <= 1:
        params = {"user": user, "name": wanted[0] if wanted else _NO_NAME}
        rows = (await conn.execute(_CALLER_ACCESS[by, True], params)).all()
    else:
        rows = (await conn.execute(_CALLER_ACCESS[by, False], {"user": user, "names": wanted})).all()
    if not rows:
        return None, {}
    first = rows[0]
    caller = Caller(first[0], first[1], bool(first[2]), first[3], first[4])
    access = {
        row[6]: ProjectAccess(row[5], bool(row[7]), effective_role(row[8], row[9]))
        for row in rows
        if row[5] is not None
    }
    return caller, access


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
        row.name: ProjectAccess(row.id, bool(row.public), effective_role(row.role_id, row.group_rank))
        for row in rows
    }


async def access_by_id(conn: AsyncConnection, project_id: int, user_id: int | None) -> ProjectAccess | None:
    """One project's visibility and the user's role in it, or None when there is no such project."""
    p, m = t.project.c, t.project_member.c
    caller = user_id if user_id is not None else -1
    joined = t.project.outerjoin(t.project_member, and_(m.project_id == p.id, m.user_id == caller))
    query = select(p.id, p.public, m.role_id, group_rank(p.id, caller)).select_from(joined)
    row = (await conn.execute(query.where(p.id == project_id))).first()
    if row is None:
        return None
    return ProjectAccess(row[0], bool(row[1]), effective_role(row[2], row[3]))


async def list_all(conn: AsyncConnection) -> list[tuple[Project, str]]:
    """Every project with its owner's name, by name."""
    p, u = t.project.c, t.user_account.c
    query = (
        select(p.id, p.name, p.public, p.owner_id, p.created_at, u.username)
        .select_from(t.project.join(t.user_account, u.id == p.owner_id))
        .order_by(p.name)
    )
    return [(Project(*row[:5]), row[5]) for row in await conn.execute(query)]
