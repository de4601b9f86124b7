"""Projects and their members: the SQL of `project` and `project_member`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
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


async def create_project(
    db: Database, conn: AsyncConnection, name: str, owner_id: int, *, public: bool = False
) -> Project:
    """A project, with its owner as project admin (idempotent by name)."""
    now = utcnow()
    row = {"name": name, "public": public, "owner_id": owner_id, "created_at": now, "updated_at": now}
    project_id = await db.insert_or_get_id(conn, t.project, row, unique=("name",))
    await set_member(db, conn, project_id, owner_id, Role.PROJECT_ADMIN)
    created = await find_project(conn, name)
    assert created is not None
    return created


async def set_member(db: Database, conn: AsyncConnection, project_id: int, user_id: int, role: Role) -> None:
    now = utcnow()
    await conn.execute(
        db.upsert(
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
    )


async def project_access(
    conn: AsyncConnection, names: Iterable[str], user_id: int | None
) -> dict[str, ProjectAccess]:
    """For each existing project among `names`: its visibility and the user's role (one query)."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    p, m = t.project.c, t.project_member.c
    joined = t.project.outerjoin(
        t.project_member,
        and_(m.project_id == p.id, m.user_id == (user_id if user_id is not None else -1)),
    )
    rows = await conn.execute(
        select(p.id, p.name, p.public, m.role_id).select_from(joined).where(p.name.in_(wanted))
    )
    return {
        row.name: ProjectAccess(
            row.id, bool(row.public), Role(row.role_id) if row.role_id is not None else None
        )
        for row in rows
    }
