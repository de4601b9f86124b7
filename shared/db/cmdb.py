"""The SQL of the CMDB sync (`wharf_shared.cmdb`): a project's members as it compares them, and
the memberships it granted (`cmdb_grant`). Members are keyed `("u", user id)` or `("g", group id)`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Table, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.db import tables as t
from wharf_shared.db.engine import insert_ignore
from wharf_shared.db.types import utcnow
from wharf_shared.rbac import Role

USER, GROUP = "u", "g"
MemberKey = tuple[str, int]

m, pg, cg = t.project_member.c, t.project_group_member.c, t.cmdb_grant.c


@dataclass(frozen=True, slots=True)
class Member:
    name: str  # the username, or the group's name
    role: Role


def _table(kind: str) -> tuple[Table, Column[Any], Column[Any]]:
    """The membership table of a kind of member, its member column and its project column."""
    if kind == GROUP:
        return t.project_group_member, pg.group_id, pg.project_id
    return t.project_member, m.user_id, m.project_id


async def members(conn: AsyncConnection, project_id: int) -> dict[MemberKey, Member]:
    found: dict[MemberKey, Member] = {}
    u, g = t.user_account.c, t.user_group.c
    users = select(m.user_id, u.username, m.role_id).join_from(
        t.project_member, t.user_account, u.id == m.user_id
    )
    for user_id, username, role_id in await conn.execute(users.where(m.project_id == project_id)):
        found[(USER, int(user_id))] = Member(username, Role(role_id))
    groups = select(pg.group_id, g.group_name, pg.role_id).join_from(
        t.project_group_member, t.user_group, g.id == pg.group_id
    )
    for group_id, name, role_id in await conn.execute(groups.where(pg.project_id == project_id)):
        found[(GROUP, int(group_id))] = Member(name, Role(role_id))
    return found


async def create_project(conn: AsyncConnection, name: str, owner_id: int, *, public: bool) -> int:
    """A new project (IntegrityError when the name is taken), its owner its project admin; its id."""
    now = utcnow()
    result = await conn.execute(
        t.project.insert().values(name=name, public=public, owner_id=owner_id, created_at=now, updated_at=now)
    )
    key = result.inserted_primary_key
    assert key is not None
    project_id = int(key[0])
    await add_member(conn, project_id, (USER, owner_id), Role.PROJECT_ADMIN)
    return project_id


async def add_member(conn: AsyncConnection, project_id: int, key: MemberKey, role: Role) -> None:
    table, id_column, _ = _table(key[0])
    now = utcnow()
    await conn.execute(
        table.insert().values(
            project_id=project_id,
            role_id=int(role),
            created_at=now,
            updated_at=now,
            **{id_column.name: key[1]},
        )
    )


async def set_role(conn: AsyncConnection, project_id: int, key: MemberKey, role: Role) -> None:
    table, id_column, project_column = _table(key[0])
    await conn.execute(
        update(table)
        .where(project_column == project_id, id_column == key[1])
        .values(role_id=int(role), updated_at=utcnow())
    )


async def remove_member(conn: AsyncConnection, project_id: int, key: MemberKey) -> None:
    table, id_column, project_column = _table(key[0])
    await conn.execute(delete(table).where(project_column == project_id, id_column == key[1]))


async def grants(conn: AsyncConnection, project_id: int) -> set[MemberKey]:
    rows = await conn.execute(select(cg.member_type, cg.member_id).where(cg.project_id == project_id))
    return {(kind, int(member_id)) for kind, member_id in rows}


async def grant(conn: AsyncConnection, project_id: int, key: MemberKey) -> None:
    row = {"project_id": project_id, "member_type": key[0], "member_id": key[1], "created_at": utcnow()}
    await insert_ignore(conn, t.cmdb_grant, row)


async def forget(conn: AsyncConnection, project_id: int, key: MemberKey) -> None:
    await conn.execute(
        delete(t.cmdb_grant).where(
            cg.project_id == project_id, cg.member_type == key[0], cg.member_id == key[1]
        )
    )
