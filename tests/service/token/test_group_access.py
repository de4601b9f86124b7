"""Access through a directory group at the token service, on each database: a group member's
token carries the group's role in the project (the stronger of it and a direct role), and once
a login or a sync drops the user from the group the next token does not, credential cache or
not (the cache proves the password, never the access)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.service.token.conftest import Suite
from wharf_shared import rbac
from wharf_shared.db import groups
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.db.groups import GroupType

DN = "cn=builders,ou=groups,dc=example,dc=com"
PASSWORD = "Bob-secret-1"


def actions(token: str) -> list[str]:
    claims = jwt.decode(token, options={"verify_signature": False})
    return sorted(action for entry in claims["access"] for action in entry["actions"])


async def _run(suite: Suite, fn: Callable[[AsyncConnection], Awaitable[Any]]) -> Any:
    db = Database(suite.settings.effective_database_url, pool_size=1)
    try:
        async with db.transaction() as conn:
            return await fn(conn)
    finally:
        await db.close()


async def test_a_group_role_lasts_as_long_as_the_membership(suite: Suite) -> None:
    bob = await suite.add_user("bob", PASSWORD)
    await suite.add_project("team", public=False, members={bob: rbac.Role.GUEST})
    scope = "repository:team/app:pull,push,delete"

    async def join(conn: AsyncConnection) -> None:
        (group_id,) = await groups.replace_memberships(conn, bob, GroupType.LDAP, [DN])
        project_id = (
            await conn.execute(sa.select(t.project.c.id).where(t.project.c.name == "team"))
        ).scalar_one()
        now = dt.datetime.now(dt.UTC)
        await conn.execute(
            sa.insert(t.project_group_member).values(
                project_id=project_id,
                group_id=group_id,
                role_id=int(rbac.Role.MAINTAINER),
                created_at=now,
                updated_at=now,
            )
        )

    assert actions(await suite.token_for(scope, credentials=("bob", PASSWORD))) == ["pull"]
    await _run(suite, join)
    # maintainer through the group beats the direct guest role: every action.
    assert actions(await suite.token_for(scope, credentials=("bob", PASSWORD))) == ["delete", "pull", "push"]
    # The next login's directory answer no longer names the group.
    await _run(suite, lambda conn: groups.replace_memberships(conn, bob, GroupType.LDAP, []))
    assert actions(await suite.token_for(scope, credentials=("bob", PASSWORD))) == ["pull"]
