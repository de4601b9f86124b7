"""One CMDB entry against the database: what would change, and (when applying) the change, in the
caller's transaction, each applied change written to the outbox as the ui's own changes are
(`project.create`, `member.create`, `member.update`, `member.delete`; operator `OPERATOR`), so the
audit log shows it. Planning and applying are one walk, so a dry run shows what a run would do.

The rules:
- a project the CMDB lists and the database lacks is created (public per `cmdb_public`), owned by
  its first owner that is a user here (its project admin, as any creator), else by `admin`;
- each owner (a user here; an unknown username is reported, and added by a later run once the user
  exists, e.g. after their first login) is a member with `cmdb_owner_role`, each team (a user group of
  `cmdb_team_group_type`, created when missing) with `cmdb_team_role`; a member with a weaker role
  is raised to it, one with a stronger role is left alone;
- nothing is removed or lowered, except under `cmdb_remove_members`, and then only memberships
  the sync itself made (`cmdb_grant`): one the CMDB no longer names is removed, one above the
  CMDB's role is lowered to it. Members added by hand are never the sync's to touch, nor are
  projects the CMDB does not list (a CMDB that answers an empty list removes nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.cmdb.source import Entry, Skipped
from wharf_shared.db import accounts, groups
from wharf_shared.db import cmdb as rows
from wharf_shared.db import tables as t
from wharf_shared.db.projects import find_project
from wharf_shared.errors.domain import InvalidInput, PreconditionFailed
from wharf_shared.events import new_event, write_events
from wharf_shared.rbac import RANK, Role
from wharf_shared.runtime import CmdbSettings

# Who the audit log names for the sync's changes: `$` is in no username Wharf accepts.
OPERATOR = "wharf$cmdb-sync"
ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Change:
    """One change, as the plan shows it (Harbor's event words for the action)."""

    action: str  # project.create, member.create, member.update, member.delete
    project: str
    member: str | None = None
    entity_type: str | None = None  # "u" (a user) or "g" (a group)
    role_id: int | None = None
    previous_role_id: int | None = None  # a member.update's
    public: bool | None = None  # a project.create's
    owner: str | None = None  # a project.create's

    def as_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__ if getattr(self, name) is not None}


@dataclass
class Outcome:
    changes: list[Change] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Wanted:
    key: rows.MemberKey | None  # None: a group that does not exist yet
    name: str
    kind: str
    role: Role
    spec: groups.GroupSpec | None = None


async def _admin(conn: AsyncConnection) -> accounts.User:
    user = await accounts.find_user(conn, ADMIN)
    if user is None:  # renamed or gone: the oldest system admin
        u = t.user_account.c
        first = (
            await conn.execute(select(u.username).where(u.sysadmin.is_(True)).order_by(u.id).limit(1))
        ).scalar()
        user = await accounts.find_user(conn, first) if first else None
    if user is None:
        raise PreconditionFailed(
            "no owner for a new project: neither a named owner nor a system admin exists"
        )
    return user


async def _wanted(
    conn: AsyncConnection, entry: Entry, config: CmdbSettings, outcome: Outcome
) -> tuple[list[_Wanted], list[accounts.User]]:
    wanted: list[_Wanted] = []
    owners: list[accounts.User] = []
    for name in entry.owners:
        user = await accounts.find_user(conn, name)
        if user is None:
            outcome.skipped.append(Skipped(entry.index, entry.project, f"owner {name!r}: no such user (yet)"))
            continue
        owners.append(user)
        wanted.append(_Wanted((rows.USER, user.id), user.username, rows.USER, Role(config.cmdb_owner_role)))
    kind = groups.GroupType(config.cmdb_team_group_type)
    for name in entry.teams:
        try:
            spec = groups.check_group(
                kind,
                None if kind is groups.GroupType.LDAP else name,
                name if kind is groups.GroupType.LDAP else None,
            )
        except InvalidInput as exc:
            outcome.skipped.append(Skipped(entry.index, entry.project, f"team {name[:80]!r}: {exc}"))
            continue
        group = await groups.find_by_key(conn, spec.group_type, spec.key)
        key = (rows.GROUP, group.id) if group is not None else None
        shown = group.group_name if group is not None else spec.group_name
        wanted.append(_Wanted(key, shown, rows.GROUP, Role(config.cmdb_team_role), spec))
    return wanted, owners


async def _event(conn: AsyncConnection, event_type: str, **fields: Any) -> None:
    await write_events(conn, [new_event(event_type, operator=OPERATOR, **fields)])


async def sync_entry(conn: AsyncConnection, entry: Entry, config: CmdbSettings, *, apply: bool) -> Outcome:
    """Plan `entry` against the database and, when `apply`, make the changes (in `conn`'s transaction)."""
    outcome = Outcome()
    wanted, owners = await _wanted(conn, entry, config, outcome)
    project = await find_project(conn, entry.project)
    current: dict[rows.MemberKey, rows.Member] = {}
    granted: set[rows.MemberKey] = set()
    project_id = 0
    if project is None:
        creator = owners[0] if owners else await _admin(conn)
        outcome.changes.append(
            Change("project.create", entry.project, public=config.cmdb_public, owner=creator.username)
        )
        # The creator is the new project's admin (as any creator): counted as a member from here on.
        current[(rows.USER, creator.id)] = rows.Member(creator.username, Role.PROJECT_ADMIN)
        if owners:  # a named owner's membership is the sync's; admin's fallback is not
            granted.add((rows.USER, creator.id))
        if apply:
            # A plain INSERT: a run racing this one that created the project first fails this
            # transaction on the name's key (reported), rather than both announcing a creation.
            project_id = await rows.create_project(conn, entry.project, creator.id, public=config.cmdb_public)
            await _event(conn, "project.create", project=entry.project, project_id=project_id)
            if owners:
                await rows.grant(conn, project_id, (rows.USER, creator.id))
    else:
        project_id = project.id
        current = await rows.members(conn, project_id)
        granted = await rows.grants(conn, project_id)

    async def change(
        action: str, want: _Wanted | None, key: rows.MemberKey, name: str, kind: str, **more: Any
    ) -> None:
        outcome.changes.append(Change(action, entry.project, name, kind, **more))
        if not apply:
            return
        if action == "member.create":
            assert want is not None
            await rows.add_member(conn, project_id, key, want.role)
            await rows.grant(conn, project_id, key)
        elif action == "member.update":
            await rows.set_role(conn, project_id, key, Role(more["role_id"]))
        else:
            await rows.remove_member(conn, project_id, key)
            await rows.forget(conn, project_id, key)
        extra = {"entity_type": rows.GROUP} if kind == rows.GROUP else {}
        role = {"role_id": more["role_id"]} if "role_id" in more else {}
        await _event(conn, action, project=entry.project, project_id=project_id, member=name, **extra, **role)

    named: set[rows.MemberKey] = set()
    for index, want in enumerate(wanted):
        key = want.key
        if key is None:  # a team whose group is new: made now (a dry run only says so)
            assert want.spec is not None
            key = (rows.GROUP, await groups.ensure_group(conn, want.spec) if apply else -1 - index)
        if key in named:
            continue
        named.add(key)
        held = current.get(key)
        if held is None:
            await change("member.create", want, key, want.name, want.kind, role_id=int(want.role))
        elif RANK[held.role] < RANK[want.role] or (
            config.cmdb_remove_members and key in granted and held.role != want.role
        ):
            await change(
                "member.update",
                want,
                key,
                held.name,
                want.kind,
                role_id=int(want.role),
                previous_role_id=int(held.role),
            )
    if config.cmdb_remove_members:
        for key in sorted(granted - named):
            held = current.get(key)
            if held is not None:
                await change("member.delete", None, key, held.name, key[0], previous_role_id=int(held.role))
            elif apply:
                await rows.forget(conn, project_id, key)  # the member left by other means
    return outcome
