"""User groups (Harbor's `user_group`): the groups a directory names, who belongs to them, and
the roles they give in projects. The SQL of `user_group`, `user_group_member` and
`project_group_member`; plain async functions over a connection, domain errors, no HTTP.

A group is found by its key: the DN of an LDAP group (compared as directories do, `dn_key`), the
name of any other (HTTP, OIDC, CAS), unique per type. What a backend calls after a login is
`replace_memberships` (the user's groups of its type, created by key as needed); what a
scheduled sync calls per group is `replace_group_members`. Both replace in the caller's
transaction, so a token request sees the old memberships or the new ones, never a half.

A user's role in a project is the strongest (`rbac.PRECEDENCE`) of their direct role and the
roles of their groups there: `group_rank` is the correlated subquery the access queries add as
one column, so the token path stays one query (`wharf_shared.db.projects`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from sqlalchemy import ColumnElement, ScalarSelect, case, delete, exists, func, literal_column, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.db import tables as t
from wharf_shared.db.engine import insert_or_get_id, upsert
from wharf_shared.db.types import utcnow
from wharf_shared.errors.domain import Conflict, InvalidInput, NotFound
from wharf_shared.rbac import RANK, ROLE_OF_RANK, Role, best_role

NAME_MAX = 255
KEY_MAX = 512  # a DN; longer names no group
_CHUNK = 500  # rows (or ids) per statement: far below every driver's parameter limit

g, ug, pg = t.user_group.c, t.user_group_member.c, t.project_group_member.c


class GroupType(IntEnum):
    """Harbor's group types (1-3), and Wharf's CAS (4)."""

    LDAP = 1
    HTTP = 2
    OIDC = 3
    CAS = 4


@dataclass(frozen=True, slots=True)
class UserGroup:
    id: int
    group_name: str
    group_type: GroupType
    ldap_group_dn: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


_COLUMNS = (g.id, g.group_name, g.group_type, g.ldap_group_dn, g.created_at, g.updated_at)


def _group(row: Any) -> UserGroup:
    return UserGroup(row[0], row[1], GroupType(row[2]), row[3], row[4], row[5])


# -- checks ----------------------------------------------------------------------------------------


def check_type(group_type: int | None) -> GroupType:
    if group_type is None or group_type not in GroupType._value2member_map_:
        choices = ", ".join(f"{int(kind)} ({kind.name})" for kind in GroupType)
        raise InvalidInput(f"group_type must be one of {choices}")
    return GroupType(group_type)


def _check_text(field: str, value: str, limit: int) -> str:
    value = value.strip()
    if not value:
        raise InvalidInput(f"{field} is empty")
    if len(value) > limit:
        raise InvalidInput(f"{field} is longer than {limit} characters")
    if "\x00" in value:
        raise InvalidInput(f"{field} holds a NUL character")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InvalidInput(f"{field} is not valid text") from None
    return value


def dn_key(dn: str) -> str:
    """An LDAP group's key: its DN as directories compare DNs, without case and without the
    spaces around `=` and `,` (`CN=Devs, OU=Groups` and `cn=devs,ou=groups` are one group), so
    a group an admin typed and the one a login's memberOf names meet. Escaped commas stay
    within their value; nothing else of DN syntax (hex escapes, multi-valued RDNs) is rewritten."""
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for char in dn:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            current.append(char)
            escaped = True
        elif char == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    rdns = []
    for part in parts:
        attribute, equals, value = part.partition("=")
        rdns.append(f"{attribute.strip().lower()}{equals}{value.strip().lower()}")
    return ",".join(rdns)


def name_of_dn(dn: str) -> str:
    """The value of a DN's first RDN (`cn=devs,ou=groups,…` → `devs`): an LDAP group's default name."""
    first = dn.split(",", 1)[0]
    return first.split("=", 1)[1].strip() if "=" in first else first.strip()


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """A checked group: its type, name and key (the DN of an LDAP group, else the name)."""

    group_type: GroupType
    group_name: str
    key: str
    ldap_group_dn: str | None


def check_group(group_type: int | None, group_name: str | None, ldap_group_dn: str | None) -> GroupSpec:
    """Harbor's rules: an LDAP group needs its DN (its name defaults to the DN's first value);
    any other group needs a name, and has no DN."""
    kind = check_type(group_type)
    if kind is GroupType.LDAP:
        if not ldap_group_dn:
            raise InvalidInput("ldap_group_dn is required for an LDAP group (group_type 1)")
        dn = _check_text("ldap_group_dn", ldap_group_dn, KEY_MAX)
        name = _check_text("group_name", group_name or name_of_dn(dn) or dn, NAME_MAX)
        return GroupSpec(kind, name, dn_key(dn), dn)
    if ldap_group_dn:
        raise InvalidInput(f"ldap_group_dn is for LDAP groups only, not group_type {int(kind)}")
    if not group_name:
        raise InvalidInput(f"group_name is required for a group of type {int(kind)} ({kind.name})")
    name = _check_text("group_name", group_name, NAME_MAX)
    return GroupSpec(kind, name, name, None)


# -- groups ----------------------------------------------------------------------------------------


async def find_group(conn: AsyncConnection, group_id: int) -> UserGroup | None:
    row = (await conn.execute(select(*_COLUMNS).where(g.id == group_id))).first()
    return _group(row) if row else None


async def get_group(conn: AsyncConnection, group_id: int) -> UserGroup:
    group = await find_group(conn, group_id)
    if group is None:
        raise NotFound(f"user group {group_id} not found")
    return group


async def find_by_key(conn: AsyncConnection, group_type: GroupType, key: str) -> UserGroup | None:
    """The group of this type and key (an LDAP group's key: `dn_key` of its DN)."""
    if not key or len(key) > KEY_MAX:
        return None
    row = (
        await conn.execute(select(*_COLUMNS).where(g.group_type == int(group_type), g.group_key == key))
    ).first()
    return _group(row) if row else None


def _duplicate(spec: GroupSpec) -> Conflict:
    if spec.group_type is GroupType.LDAP:
        return Conflict(f"an LDAP group with DN {str(spec.ldap_group_dn)[:200]!r} already exists")
    return Conflict(f"a {spec.group_type.name} group named {spec.key[:200]!r} already exists")


async def create_group(conn: AsyncConnection, spec: GroupSpec) -> UserGroup:
    """A new group; Conflict when its key (DN or name) is taken in its type."""
    if await find_by_key(conn, spec.group_type, spec.key) is not None:
        raise _duplicate(spec)
    now = utcnow()
    # A concurrent creation of the same key fails the transaction with an IntegrityError (the
    # caller's to report: no savepoints, which SQLite's writer does not offer).
    result = await conn.execute(
        t.user_group.insert().values(
            group_name=spec.group_name,
            group_type=int(spec.group_type),
            group_key=spec.key,
            ldap_group_dn=spec.ldap_group_dn,
            created_at=now,
            updated_at=now,
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    return await get_group(conn, int(key[0]))


async def ensure_group(conn: AsyncConnection, spec: GroupSpec) -> int:
    """The id of the group with `spec`'s key, created now when there is none (concurrent callers
    meet on the unique key)."""
    now = utcnow()
    row = {
        "group_name": spec.group_name,
        "group_type": int(spec.group_type),
        "group_key": spec.key,
        "ldap_group_dn": spec.ldap_group_dn,
        "created_at": now,
        "updated_at": now,
    }
    return await insert_or_get_id(conn, t.user_group, row, unique=("group_type", "group_key"))


async def rename_group(conn: AsyncConnection, group_id: int, group_name: str) -> UserGroup:
    """Harbor lets only the name change. An LDAP group keeps its key (the DN); any other group
    is found by its name, so its key follows (Conflict when another group of its type has it)."""
    group = await get_group(conn, group_id)
    name = _check_text("group_name", group_name, NAME_MAX)
    if name == group.group_name:
        return group
    values: dict[str, Any] = {"group_name": name, "updated_at": utcnow()}
    if group.group_type is not GroupType.LDAP:
        spec = GroupSpec(group.group_type, name, name, None)
        if await find_by_key(conn, group.group_type, name) is not None:
            raise _duplicate(spec)
        values["group_key"] = name
    await conn.execute(update(t.user_group).where(g.id == group_id).values(**values))
    return await get_group(conn, group_id)


async def delete_group(conn: AsyncConnection, group_id: int) -> UserGroup | None:
    """Delete a group with its memberships (the foreign keys cascade); the group, if there was one."""
    group = await find_group(conn, group_id)
    if group is None:
        return None
    # Explicit deletes, as for users: the cascades are the schema's promise, these the code's.
    await conn.execute(delete(t.project_group_member).where(pg.group_id == group_id))
    await conn.execute(delete(t.user_group_member).where(ug.group_id == group_id))
    await conn.execute(delete(t.user_group).where(g.id == group_id))
    return group


async def search_groups(
    conn: AsyncConnection,
    *,
    offset: int,
    limit: int,
    name_contains: str = "",
    group_name: str = "",
    ldap_group_dn: str = "",
    group_type: GroupType | None = None,
) -> tuple[list[UserGroup], int]:
    """Groups by name (then id), a page and the total. `name_contains`: a substring of the
    name; `group_name`, `ldap_group_dn`: exact (Harbor's list filters)."""
    conditions: list[ColumnElement[bool]] = []
    if name_contains:
        conditions.append(g.group_name.contains(name_contains, autoescape=True))
    if group_name:
        conditions.append(g.group_name == group_name)
    if ldap_group_dn:
        conditions += [g.group_type == int(GroupType.LDAP), g.group_key == dn_key(ldap_group_dn)]
    if group_type is not None:
        conditions.append(g.group_type == int(group_type))
    total = (await conn.execute(select(func.count()).select_from(t.user_group).where(*conditions))).scalar()
    rows = await conn.execute(
        select(*_COLUMNS).where(*conditions).order_by(g.group_name, g.id).offset(offset).limit(limit)
    )
    return [_group(row) for row in rows], int(total or 0)


# -- who belongs -----------------------------------------------------------------------------------


async def groups_of(conn: AsyncConnection, user_id: int) -> list[UserGroup]:
    rows = await conn.execute(
        select(*_COLUMNS)
        .select_from(t.user_group.join(t.user_group_member, ug.group_id == g.id))
        .where(ug.user_id == user_id)
        .order_by(g.group_name, g.id)
    )
    return [_group(row) for row in rows]


async def members_of(conn: AsyncConnection, group_id: int) -> list[int]:
    rows = await conn.execute(select(ug.user_id).where(ug.group_id == group_id).order_by(ug.user_id))
    return [int(row[0]) for row in rows]


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


async def _confirm(conn: AsyncConnection, pairs: list[tuple[int, int]], now: dt.datetime) -> None:
    """Insert (user, group) rows, or stamp those already there with `now`."""
    for chunk in _chunks(sorted(set(pairs))):
        rows = [{"user_id": user_id, "group_id": group_id, "synced_at": now} for user_id, group_id in chunk]
        await upsert(conn, t.user_group_member, rows, keys=("user_id", "group_id"), update=("synced_at",))


async def replace_memberships(
    conn: AsyncConnection,
    user_id: int,
    group_type: int,
    group_keys: Iterable[str],
    *,
    now: dt.datetime | None = None,
) -> list[int]:
    """Make the user's groups of `group_type` exactly those `group_keys` name (DNs for LDAP,
    names otherwise), creating the groups not known yet; their ids. Groups of other types are
    left alone (another backend's). Keys that cannot name a group (empty, too long) are skipped:
    a directory's odd value must not fail the login."""
    kind = check_type(group_type)
    wanted: list[int] = []
    for key in sorted(set(group_keys)):
        try:
            spec = check_group(kind, None, key) if kind is GroupType.LDAP else check_group(kind, key, None)
        except InvalidInput:
            continue
        wanted.append(await ensure_group(conn, spec))
    of_type = select(g.id).where(g.group_type == int(kind))
    stale = delete(t.user_group_member).where(ug.user_id == user_id, ug.group_id.in_(of_type))
    if wanted:
        stale = stale.where(ug.group_id.not_in(wanted))
    await conn.execute(stale)
    await _confirm(conn, [(user_id, group_id) for group_id in wanted], now or utcnow())
    return wanted


async def replace_group_members(
    conn: AsyncConnection, group_id: int, user_ids: Iterable[int], *, now: dt.datetime | None = None
) -> None:
    """Make the group's users exactly `user_ids` (existing users: a sync resolves its directory's
    entries to users first). NotFound when there is no such group."""
    await get_group(conn, group_id)
    wanted = set(user_ids)
    removed = sorted(set(await members_of(conn, group_id)) - wanted)
    for chunk in _chunks(removed):
        await conn.execute(
            delete(t.user_group_member).where(ug.group_id == group_id, ug.user_id.in_(list(chunk)))
        )
    await _confirm(conn, [(user_id, group_id) for user_id in wanted], now or utcnow())


# -- roles through groups ------------------------------------------------------------------------


def rank_of(role_id: Any) -> Any:
    """SQL: a role id's rank (`rbac.RANK`: higher is stronger), so MAX picks Harbor's best role."""
    # Literals rather than parameters: the same SQL text every time, and no ten binds per query.
    whens: dict[Any, Any] = {
        literal_column(str(int(role))): literal_column(str(rank)) for role, rank in RANK.items()
    }
    return case(whens, value=role_id)


def group_rank(project_id: Any, user_id: Any) -> ScalarSelect[Any]:
    """SQL, correlated on `project_id` (and `user_id` when a column): the best rank among the
    roles the user's groups hold in the project, NULL when none does. A probe of
    project_group_member's key, then user_group_member's, per project row."""
    return (
        select(func.max(rank_of(pg.role_id)))
        .select_from(t.project_group_member.join(t.user_group_member, ug.group_id == pg.group_id))
        .where(pg.project_id == project_id, ug.user_id == user_id)
        .scalar_subquery()
    )


def in_a_member_group(project_id: Any, user_id: Any) -> ColumnElement[bool]:
    """SQL: whether one of the user's groups is a member of the project."""
    return exists().where(pg.project_id == project_id, ug.group_id == pg.group_id, ug.user_id == user_id)


def effective_role(role_id: int | None, group_rank_value: int | None) -> Role | None:
    """The role that counts: the stronger of the direct one and the groups' best."""
    direct = Role(role_id) if role_id is not None else None
    through_groups = ROLE_OF_RANK.get(int(group_rank_value)) if group_rank_value is not None else None
    return best_role(direct, through_groups)
