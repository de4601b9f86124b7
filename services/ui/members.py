"""Project members as Harbor's API sees them, users and groups: who may list, add, re-role and
remove them, and the SQL of `project_member` and `project_group_member` they need. Plain async
functions over a connection; domain errors, no HTTP.

The member id. Harbor numbers memberships from one sequence over users and groups; Wharf keys
them by (project, user) and (project, group) and has no such number. The id a client sees and
sends back in `/members/{mid}` is therefore derived: a user member's id is the user's id (what
it always was), a group member's is `GROUP_MEMBER_BASE` + the group's id (10^15 + id: no user id
gets there, and it stays below 2^53, exact in JavaScript). Both are unique within the project
and stable for as long as the membership lasts (removed and added again, a member keeps its
id, where Harbor would hand out a new one).

Harbor's answers, kept here: an unknown `user_id` is a 400 and an unknown `username` a 404 (as
Harbor's database authentication answers them), an unknown group id a 404, a second membership
of the same user or group a 409, a role outside 1..5 a 400. A group named by DN (LDAP) or by
name and type that Wharf does not know yet is created, as Harbor onboards it. Removing a member
that is not one is a 200, as in Harbor (a retried DELETE succeeds). Nothing keeps a project
from losing its last project admin: Harbor does not either, and a system admin can always
manage the project.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, literal, select, union_all, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.db import accounts, groups
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.db.types import utcnow
from wharf_shared.errors.domain import Conflict, InvalidInput, NotFound
from wharf_shared.rbac import ROLE_NAMES, Identity, Role
from wharf_ui.changes import record
from wharf_ui.projects import ROLE_IDS, Project, resolve_project
from wharf_ui.query import INT_MAX, Page

m = t.project_member.c
pg = t.project_group_member.c
u = t.user_account.c
g = t.user_group.c

GROUP_MEMBER_BASE = 10**15  # a group member's id: this + the group's id (see the module's docstring)
USER = "u"
GROUP = "g"


@dataclass(frozen=True, slots=True)
class Member:
    id: int  # the member's id in the API (see the module's docstring)
    project_id: int
    entity_id: int  # the user's id, or the group's
    entity_type: str  # "u" or "g", as Harbor says
    entity_name: str
    role: Role


@dataclass(frozen=True, slots=True)
class GroupRef:
    """Harbor's `member_group`: a group by id, by LDAP DN, or by name and type."""

    id: int | None = None
    group_name: str | None = None
    group_type: int | None = None
    ldap_group_dn: str | None = None


def member_id_of(entity_type: str, entity_id: int) -> int:
    return entity_id + GROUP_MEMBER_BASE if entity_type == GROUP else entity_id


def check_role(role_id: int | None) -> Role:
    if role_id is None or role_id not in ROLE_IDS:
        choices = ", ".join(f"{int(role)} ({name})" for role, name in sorted(ROLE_NAMES.items()))
        raise InvalidInput(f"role_id must be one of {choices}")
    return Role(role_id)


def _users(project_id: int) -> Any:
    return (
        select(
            literal(USER).label("entity_type"),
            m.user_id.label("entity_id"),
            u.username.label("name"),
            m.role_id,
        )
        .select_from(t.project_member.join(t.user_account, u.id == m.user_id))
        .where(m.project_id == project_id)
    )


def _groups(project_id: int) -> Any:
    return (
        select(
            literal(GROUP).label("entity_type"),
            pg.group_id.label("entity_id"),
            g.group_name.label("name"),
            pg.role_id,
        )
        .select_from(t.project_group_member.join(t.user_group, g.id == pg.group_id))
        .where(pg.project_id == project_id)
    )


def _member(project_id: int, row: Any) -> Member:
    entity_type, entity_id, name, role_id = row[0], int(row[1]), row[2], row[3]
    return Member(
        member_id_of(entity_type, entity_id), project_id, entity_id, entity_type, name, Role(role_id)
    )


async def list_members(
    conn: AsyncConnection, project_id: int, entityname: str, page: Page
) -> tuple[list[Member], int]:
    """The project's members, users and groups, by name; `entityname`: only those whose name
    contains it."""
    users, groups_ = _users(project_id), _groups(project_id)
    if entityname:
        users = users.where(u.username.contains(entityname, autoescape=True))
        groups_ = groups_.where(g.group_name.contains(entityname, autoescape=True))
    both = union_all(users, groups_).subquery()
    total = (await conn.execute(select(func.count()).select_from(both))).scalar()
    rows = await conn.execute(
        select(both.c.entity_type, both.c.entity_id, both.c.name, both.c.role_id)
        .order_by(both.c.name, both.c.entity_type.desc(), both.c.entity_id)  # a user before a namesake group
        .offset(page.offset)
        .limit(page.size)
    )
    return [_member(project_id, row) for row in rows], int(total or 0)


async def find_member(conn: AsyncConnection, project_id: int, member_id: int) -> Member | None:
    if member_id > GROUP_MEMBER_BASE:
        query = _groups(project_id).where(pg.group_id == member_id - GROUP_MEMBER_BASE)
    else:
        query = _users(project_id).where(m.user_id == member_id)
    row = (await conn.execute(query)).first()
    return _member(project_id, row) if row else None


async def get_member(conn: AsyncConnection, project: Project, member_id: int) -> Member:
    member = await find_member(conn, project.id, member_id)
    if member is None:
        raise NotFound(f"member {member_id} of project {project.name} not found")
    return member


async def _user(conn: AsyncConnection, user_id: int | None, username: str | None) -> tuple[int, str]:
    """The user to add: by id when one is given (Harbor's order), else by name."""
    if user_id is not None and user_id > 0:
        user = await accounts.get_user(conn, user_id) if user_id < GROUP_MEMBER_BASE else None
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


async def _group(conn: AsyncConnection, ref: GroupRef) -> tuple[int, str]:
    """The group to add: by id (it must exist), else by DN or by name and type (found, or
    created as Harbor onboards a group)."""
    if ref.id is not None and ref.id > 0:
        found = await groups.find_group(conn, ref.id) if ref.id <= INT_MAX else None
        if found is None:
            raise NotFound(f"user group {ref.id} not found")
        return found.id, found.group_name
    if ref.ldap_group_dn and ref.group_type is None:
        ref = GroupRef(
            group_name=ref.group_name, group_type=groups.GroupType.LDAP, ldap_group_dn=ref.ldap_group_dn
        )
    if not ref.ldap_group_dn and not ref.group_name:
        raise InvalidInput("member_group: give an id, an ldap_group_dn, or a group_name and group_type")
    spec = groups.check_group(ref.group_type, ref.group_name, ref.ldap_group_dn)
    existing = await groups.find_by_key(conn, spec.group_type, spec.key)
    if existing is not None:
        return existing.id, existing.group_name
    return await groups.ensure_group(conn, spec), spec.group_name


async def add(
    db: Database,
    identity: Identity,
    raw: str,
    *,
    is_name: bool,
    anonymous_access: bool,
    role_id: int | None,
    user_id: int | None = None,
    username: str | None = None,
    group: GroupRef | None = None,
) -> int:
    """Make a user, or a group (`group`), a member of the project with a role; the member's id."""

    async def go(conn: AsyncConnection) -> int:
        project = await resolve_project(
            conn,
            raw,
            is_name=is_name,
            identity=identity,
            anonymous_access=anonymous_access,
            permission=("member", "create"),
        )
        role = check_role(role_id)
        if group is not None:
            entity_type, (entity_id, name) = GROUP, await _group(conn, group)
        else:
            entity_type, (entity_id, name) = USER, await _user(conn, user_id, username)
        member_id = member_id_of(entity_type, entity_id)
        if await find_member(conn, project.id, member_id) is not None:
            kind = "group " if entity_type == GROUP else ""
            raise Conflict(f"{kind}{name} is already a member of project {project.name}")
        now = utcnow()
        table = t.project_group_member if entity_type == GROUP else t.project_member
        key = "group_id" if entity_type == GROUP else "user_id"
        await conn.execute(
            table.insert().values(
                project_id=project.id, role_id=int(role), created_at=now, updated_at=now, **{key: entity_id}
            )
        )
        await _record(conn, "member.create", identity, project, entity_type, name, role_id=int(role))
        return member_id

    try:
        return await db.run(go)
    except IntegrityError:
        # A concurrent addition of the same member (the key), or the user or group deleted meanwhile.
        raise Conflict("already a member of the project, or no longer there") from None


async def _record(
    conn: AsyncConnection,
    event_type: str,
    identity: Identity,
    project: Project,
    entity_type: str,
    name: str,
    **fields: Any,
) -> None:
    # A group's events say so (`entity_type`); a user's stay as they were.
    extra = {"entity_type": GROUP} if entity_type == GROUP else {}
    await record(
        conn,
        event_type,
        identity,
        project=project.name,
        project_id=project.id,
        member=name,
        **extra,
        **fields,
    )


def _where(project_id: int, member: Member) -> Any:
    if member.entity_type == GROUP:
        return t.project_group_member, (pg.project_id == project_id, pg.group_id == member.entity_id)
    return t.project_member, (m.project_id == project_id, m.user_id == member.entity_id)


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
        table, where = _where(project.id, member)
        await conn.execute(update(table).where(*where).values(role_id=int(role), updated_at=utcnow()))
        await _record(
            conn,
            "member.update",
            identity,
            project,
            member.entity_type,
            member.entity_name,
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
        table, where = _where(project.id, member)
        await conn.execute(delete(table).where(*where))
        await _record(conn, "member.delete", identity, project, member.entity_type, member.entity_name)

    await db.run(go)
