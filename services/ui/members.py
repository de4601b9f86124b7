"""Project members as Harbor's API sees them: who may list, add, re-role and remove them, and
the SQL of `project_member` they need. Plain async functions over a connection; domain errors,
no HTTP.

The member id. Harbor numbers memberships (`project_member.id`); Wharf's table is keyed by
(project, user) and has no such number, so the id a client sees and sends back in
`/members/{mid}` is the member's user id: unique within the project, and stable for as long as
the membership lasts (a user removed and added again keeps it, where Harbor would hand out a
new one). Only users are members (`entity_type` "u"); Wharf has no user groups.

Harbor's answers, kept here: an unknown `user_id` is a 400 and an unknown `username` a 404 (as
Harbor's database authentication answers them), a second membership of the same user a 409, a
role outside 1..5 a 400. Removing a member that is not one is a 200, as in Harbor (a retried
DELETE succeeds). Nothing keeps a project from losing its last project admin: Harbor does not
either, and a system admin can always manage the project.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.db import accounts
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.db.types import utcnow
from wharf_shared.errors.domain import Conflict, InvalidInput, NotFound
from wharf_shared.rbac import ROLE_NAMES, Identity, Role
from wharf_ui.changes import record
from wharf_ui.projects import ROLE_IDS, Project, resolve_project
from wharf_ui.query import INT_MAX, Page

m = t.project_member.c
u = t.user_account.c


@dataclass(frozen=True, slots=True)
class Member:
    project_id: int
    user_id: int  # also the member's id in the API (see the module's docstring)
    username: str
    role: Role


def check_role(role_id: int | None) -> Role:
    if role_id is None or role_id not in ROLE_IDS:
        choices = ", ".join(f"{int(role)} ({name})" for role, name in sorted(ROLE_NAMES.items()))
        raise InvalidInput(f"role_id must be one of {choices}")
    return Role(role_id)


_COLUMNS = (m.project_id, m.user_id, u.username, m.role_id)
_JOINED = t.project_member.join(t.user_account, u.id == m.user_id)


def _member(row: Any) -> Member:
    return Member(row[0], row[1], row[2], Role(row[3]))


async def list_members(
    conn: AsyncConnection, project_id: int, entityname: str, page: Page
) -> tuple[list[Member], int]:
    """The project's members by name; `entityname`: only those whose name contains it."""
    conditions = [m.project_id == project_id]
    if entityname:
        conditions.append(u.username.contains(entityname, autoescape=True))
    total = (await conn.execute(select(func.count()).select_from(_JOINED).where(*conditions))).scalar()
    rows = await conn.execute(
        select(*_COLUMNS)
        .select_from(_JOINED)
        .where(*conditions)
        .order_by(u.username, m.user_id)
        .offset(page.offset)
        .limit(page.size)
    )
    return [_member(row) for row in rows], int(total or 0)


async def find_member(conn: AsyncConnection, project_id: int, member_id: int) -> Member | None:
    row = (
        await conn.execute(
            select(*_COLUMNS).select_from(_JOINED).where(m.project_id == project_id, m.user_id == member_id)
        )
    ).first()
    return _member(row) if row else None


async def get_member(conn: AsyncConnection, project: Project, member_id: int) -> Member:
    member = await find_member(conn, project.id, member_id)
    if member is None:
        raise NotFound(f"member {member_id} of project {project.name} not found")
    return member


async def _user(conn: AsyncConnection, user_id: int | None, username: str | None) -> tuple[int, str]:
    """The user to add: by id when one is given (Harbor's order), else by name."""
    if user_id is not None and user_id > 0:
        user = await accounts.get_user(conn, user_id) if user_id <= INT_MAX else None
        if user is None:
            raise InvalidInput(f"user {user_id} not found")
        return user.id, user.username
    if username:
        found = (
            await accounts.find_user(conn, username)
            if len(username) <= accounts.USERNAME_MAX_LENGTH
            else None
        )
        if found is None:
            raise NotFound(f"user {username[:100]!r} not found")
        return found.id, found.username
    raise InvalidInput("member_user: give a user_id or a username")


async def add(
    db: Database,
    identity: Identity,
    raw: str,
    *,
    is_name: bool,
    anonymous_access: bool,
    role_id: int | None,
    user_id: int | None,
    username: str | None,
) -> int:
    """Make a user a member of the project with a role; the new member's id."""

    async def go(conn: AsyncConnection) -> int:
        project = await resolve_project(
            conn,
            raw,
            is_name=is_name,
            identity=identity,
            anonymous_access=anonymous_access,
            permission=("member", "create"),
        )
        member_id, member_name = await _user(conn, user_id, username)
        role = check_role(role_id)
        if await find_member(conn, project.id, member_id) is not None:
            raise Conflict(f"{member_name} is already a member of project {project.name}")
        now = utcnow()
        await conn.execute(
            t.project_member.insert().values(
                project_id=project.id, user_id=member_id, role_id=int(role), created_at=now, updated_at=now
            )
        )
        await record(
            conn,
            "member.create",
            identity,
            project=project.name,
            project_id=project.id,
            member=member_name,
            role_id=int(role),
        )
        return member_id

    try:
        return await db.run(go)
    except IntegrityError:
        # A concurrent addition of the same user (the key), or the user deleted meanwhile.
        raise Conflict("the user is already a member of the project, or no longer exists") from None


async def change_role(
    db: Database,
    identity: Identity,
    raw: str,
    member_id: int,
    *,
    is_name: bool,
    anonymous_access: bool,
    role_id: int | None,
) -> None:
    async def go(conn: AsyncConnection) -> None:
        project = await resolve_project(
            conn,
            raw,
            is_name=is_name,
            identity=identity,
            anonymous_access=anonymous_access,
            permission=("member", "update"),
        )
        role = check_role(role_id)
        member = await get_member(conn, project, member_id)
        if member.role == role:
            return
        await conn.execute(
            update(t.project_member)
            .where(m.project_id == project.id, m.user_id == member_id)
            .values(role_id=int(role), updated_at=utcnow())
        )
        await record(
            conn,
            "member.update",
            identity,
            project=project.name,
            project_id=project.id,
            member=member.username,
            role_id=int(role),
        )

    await db.run(go)


async def remove(
    db: Database, identity: Identity, raw: str, member_id: int, *, is_name: bool, anonymous_access: bool
) -> None:
    async def go(conn: AsyncConnection) -> None:
        project = await resolve_project(
            conn,
            raw,
            is_name=is_name,
            identity=identity,
            anonymous_access=anonymous_access,
            permission=("member", "delete"),
        )
        member = await find_member(conn, project.id, member_id)
        if member is None:
            return  # Harbor answers 200: the member is gone either way
        await conn.execute(delete(t.project_member).where(m.project_id == project.id, m.user_id == member_id))
        await record(
            conn,
            "member.delete",
            identity,
            project=project.name,
            project_id=project.id,
            member=member.username,
        )

    await db.run(go)
