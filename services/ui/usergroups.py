"""Harbor's `/usergroups`: the groups a directory names (LDAP by DN; HTTP, OIDC and CAS by
name), listed, searched and kept by system admins. Each write is one transaction over
`wharf_shared.db.groups`, with its `user_group.*` event (the audit log); domain errors, no HTTP.

Harbor's answers, kept here: a group whose DN (LDAP) or name (any other type) is taken is a 409;
a type outside 1..4, an LDAP group without a DN, another without a name, a 400; an unknown id a
404; only the name of a group changes (PUT); deleting a group that is not there is a 200.
Unlike Harbor, an LDAP group's DN is not looked up in the directory when it is created here
(the LDAP backend fills groups from the directory at logins and syncs).
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.db import groups
from wharf_shared.db.engine import Database
from wharf_shared.db.groups import UserGroup
from wharf_shared.errors.domain import Conflict
from wharf_shared.rbac import Identity
from wharf_ui.changes import record


async def _record(conn: AsyncConnection, event_type: str, identity: Identity, group: UserGroup) -> None:
    await record(
        conn,
        event_type,
        identity,
        group=group.group_name,
        group_id=group.id,
        group_type=int(group.group_type),
    )


async def create(
    db: Database,
    identity: Identity,
    group_name: str | None,
    group_type: int | None,
    ldap_group_dn: str | None,
) -> UserGroup:
    spec = groups.check_group(group_type, group_name, ldap_group_dn)

    async def go(conn: AsyncConnection) -> UserGroup:
        group = await groups.create_group(conn, spec)
        await _record(conn, "user_group.create", identity, group)
        return group

    try:
        return await db.run(go)
    except IntegrityError:
        raise Conflict("a group with this DN or name was created meanwhile") from None


async def rename(db: Database, identity: Identity, group_id: int, group_name: str | None) -> UserGroup:
    async def go(conn: AsyncConnection) -> UserGroup:
        group = await groups.get_group(conn, group_id)
        if not group_name:
            return group  # nothing to change (Harbor's PUT takes the name only)
        renamed = await groups.rename_group(conn, group_id, group_name)
        if renamed != group:
            await _record(conn, "user_group.update", identity, renamed)
        return renamed

    try:
        return await db.run(go)
    except IntegrityError:
        raise Conflict("another group took this name meanwhile") from None


async def remove(db: Database, identity: Identity, group_id: int) -> None:
    async def go(conn: AsyncConnection) -> None:
        group = await groups.delete_group(conn, group_id)
        if group is not None:
            await _record(conn, "user_group.delete", identity, group)

    await db.run(go)
