"""Harbor's `/usergroups`: the groups a directory names (LDAP by DN; HTTP, OIDC and CAS by
name), listed, searched and kept by system admins. Each write is one transaction over
`wharf_shared.db.groups`; domain errors, no HTTP.

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


async def create(
    db: Database, group_name: str | None, group_type: int | None, ldap_group_dn: str | None
) -> UserGroup:
    spec = groups.check_group(group_type, group_name, ldap_group_dn)

    async def go(conn: AsyncConnection) -> UserGroup:
        return await groups.create_group(conn, spec)

    try:
        return await db.run(go)
    except IntegrityError:
        raise Conflict("a group with this DN or name was created meanwhile") from None


async def rename(db: Database, group_id: int, group_name: str | None) -> UserGroup:
    async def go(conn: AsyncConnection) -> UserGroup:
        group = await groups.get_group(conn, group_id)
        if not group_name:
            return group  # nothing to change (Harbor's PUT takes the name only)
        return await groups.rename_group(conn, group_id, group_name)

    try:
        return await db.run(go)
    except IntegrityError:
        raise Conflict("another group took this name meanwhile") from None


async def remove(db: Database, group_id: int) -> None:
    async def go(conn: AsyncConnection) -> None:
        await groups.delete_group(conn, group_id)

    await db.run(go)
