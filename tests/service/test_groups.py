"""User groups on every backend (`wharf_shared.db.groups`): a user's role in a project is the
strongest of their direct role and their groups' (Harbor's precedence, not the ids' order), read
by the one access query the token service and the API use; logins and syncs replace
memberships; deleting a user, a group or a project takes its memberships along."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.db import accounts, groups, projects
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.db.groups import GroupType
from wharf_shared.errors.domain import Conflict, InvalidInput, NotFound
from wharf_shared.rbac import Role, best_role

DEVS_DN = "cn=devs,ou=groups,dc=example,dc=com"
OPS_DN = "cn=ops,ou=groups,dc=example,dc=com"


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=2)
    try:
        yield database
    finally:
        await database.close()


async def _setup(conn: AsyncConnection) -> tuple[int, int, int]:
    """admin (owner), alice; `team` (private) and `shop` (private). Returns (alice, team, shop)."""
    admin = await accounts.create_user(conn, "admin", None, sysadmin=True)
    alice = await accounts.create_user(conn, "alice", None)
    team = await projects.create_project(conn, "team", admin.id)
    shop = await projects.create_project(conn, "shop", admin.id)
    return alice.id, team.id, shop.id


async def _add_group_member(conn: AsyncConnection, project_id: int, group_id: int, role: Role) -> None:
    now = dt.datetime.now(dt.UTC)
    await conn.execute(
        sa.insert(t.project_group_member).values(
            project_id=project_id, group_id=group_id, role_id=int(role), created_at=now, updated_at=now
        )
    )


async def _roles(conn: AsyncConnection, user_id: int) -> dict[str, Role | None]:
    """The user's role in team and shop as every access query reads it; all must agree."""
    _, by_id = await projects.caller_and_access(conn, user_id, ["team", "shop"])
    _, by_name = await projects.caller_and_access(conn, "alice", ["team", "shop"])
    _, one = await projects.caller_and_access(conn, user_id, ["team"])
    plain = await projects.project_access(conn, ["team", "shop"], user_id)
    by_project_id = await projects.access_by_id(conn, by_id["team"].project_id, user_id)
    assert by_project_id is not None
    roles = {name: access.role for name, access in by_id.items()}
    assert roles == {name: access.role for name, access in by_name.items()}
    assert roles == {name: access.role for name, access in plain.items()}
    assert roles["team"] == one["team"].role == by_project_id.role
    return roles


def test_precedence_is_harbors() -> None:
    assert best_role(Role.MAINTAINER, Role.DEVELOPER) is Role.MAINTAINER
    assert best_role(Role.DEVELOPER, Role.GUEST) is Role.DEVELOPER
    assert best_role(Role.LIMITED_GUEST, Role.GUEST) is Role.GUEST
    assert best_role(Role.MAINTAINER, Role.PROJECT_ADMIN) is Role.PROJECT_ADMIN
    assert best_role(None, Role.LIMITED_GUEST) is Role.LIMITED_GUEST
    assert best_role(None, None) is None


async def test_roles_through_groups_are_the_best_of_all(db: Database) -> None:
    async with db.transaction() as conn:
        alice, team, shop = await _setup(conn)
        assert await _roles(conn, alice) == {"team": None, "shop": None}
        devs, ops = await groups.replace_memberships(conn, alice, GroupType.LDAP, [DEVS_DN, OPS_DN])
        # Groups without a project membership give nothing.
        assert await _roles(conn, alice) == {"team": None, "shop": None}
        await _add_group_member(conn, team, devs, Role.DEVELOPER)
        await _add_group_member(conn, team, ops, Role.GUEST)
        assert await _roles(conn, alice) == {"team": Role.DEVELOPER, "shop": None}
        # A direct guest role is weaker than the group's developer: developer counts.
        await projects.set_member(conn, team, alice, Role.GUEST)
        await projects.set_member(conn, shop, alice, Role.LIMITED_GUEST)
        assert await _roles(conn, alice) == {"team": Role.DEVELOPER, "shop": Role.LIMITED_GUEST}
        # maintainer (4) beats developer (2) although its id is larger; guest (3) beats limitedGuest (5).
        await _add_group_member(
            conn, team, (await groups.replace_memberships(conn, alice, 3, ["ops"]))[0], Role.MAINTAINER
        )
        await _add_group_member(conn, shop, ops, Role.GUEST)
        assert await _roles(conn, alice) == {"team": Role.MAINTAINER, "shop": Role.GUEST}
        await projects.set_member(conn, team, alice, Role.PROJECT_ADMIN)
        assert (await _roles(conn, alice))["team"] is Role.PROJECT_ADMIN


async def test_replace_memberships_creates_groups_once_and_keeps_other_types(db: Database) -> None:
    async with db.transaction() as conn:
        alice, _, _ = await _setup(conn)
        first = await groups.replace_memberships(
            conn, alice, GroupType.LDAP, [DEVS_DN, OPS_DN, "", "x" * 600]
        )
        assert len(first) == 2  # the empty and the over-long keys name no group
        oidc = await groups.replace_memberships(conn, alice, GroupType.OIDC, ["devs"])
        again = await groups.replace_memberships(conn, alice, GroupType.LDAP, [OPS_DN])
        assert again == [first[1]]  # the same group, found by its DN
        names = [(x.group_name, x.group_type, x.ldap_group_dn) for x in await groups.groups_of(conn, alice)]
        # An LDAP group's name is its DN's first value; the OIDC group of the same name is another.
        assert names == [("devs", GroupType.OIDC, None), ("ops", GroupType.LDAP, OPS_DN)]
        assert await groups.replace_memberships(conn, alice, GroupType.LDAP, []) == []
        assert [x.id for x in await groups.groups_of(conn, alice)] == oidc
        found, total = await groups.search_groups(conn, offset=0, limit=10)
        assert total == 3
        assert sorted(x.group_name for x in found) == ["devs", "devs", "ops"]
        with pytest.raises(InvalidInput, match="group_type"):
            await groups.replace_memberships(conn, alice, 9, ["x"])


async def test_an_ldap_group_is_its_dn_whatever_the_case(db: Database) -> None:
    async with db.transaction() as conn:
        alice, _, _ = await _setup(conn)
        typed = await groups.create_group(
            conn, groups.check_group(1, None, "CN=Devs, OU=Groups,DC=Example,DC=Com")
        )
        assert (typed.group_name, typed.ldap_group_dn) == ("Devs", "CN=Devs, OU=Groups,DC=Example,DC=Com")
        # What a login's memberOf says names the same group.
        assert await groups.replace_memberships(conn, alice, GroupType.LDAP, [DEVS_DN]) == [typed.id]
        with pytest.raises(Conflict):
            await groups.create_group(conn, groups.check_group(1, None, DEVS_DN))
        found, _ = await groups.search_groups(
            conn, offset=0, limit=5, ldap_group_dn="cn=DEVS,ou=groups,dc=example,dc=com"
        )
        assert [x.id for x in found] == [typed.id]
        # An escaped comma stays within its value.
        assert groups.dn_key("CN=Smith\\, J ,OU=X") == "cn=smith\\, j,ou=x"


async def test_a_sync_that_drops_a_user_drops_the_access(db: Database) -> None:
    async with db.transaction() as conn:
        alice, team, _ = await _setup(conn)
        bob = (await accounts.create_user(conn, "bob", None)).id
        (devs,) = await groups.replace_memberships(conn, alice, GroupType.LDAP, [DEVS_DN])
        await _add_group_member(conn, team, devs, Role.DEVELOPER)
        await groups.replace_group_members(conn, devs, [alice, bob])
        assert await groups.members_of(conn, devs) == sorted([alice, bob])
        assert (await _roles(conn, alice))["team"] is Role.DEVELOPER
        await groups.replace_group_members(conn, devs, [bob])
        assert await groups.members_of(conn, devs) == [bob]
        assert (await _roles(conn, alice))["team"] is None
        with pytest.raises(NotFound):
            await groups.replace_group_members(conn, devs + 1000, [bob])


async def test_group_rules(db: Database) -> None:
    async with db.transaction() as conn:
        ldap = await groups.create_group(conn, groups.check_group(1, None, DEVS_DN))
        assert (ldap.group_name, ldap.ldap_group_dn) == ("devs", DEVS_DN)
        with pytest.raises(Conflict):
            await groups.create_group(conn, groups.check_group(1, "other", DEVS_DN))
        http = await groups.create_group(conn, groups.check_group(2, "devs", None))
        with pytest.raises(Conflict):
            await groups.create_group(conn, groups.check_group(2, "devs", None))
        # Names compare byte-wise on every database.
        await groups.create_group(conn, groups.check_group(2, "Devs", None))
        with pytest.raises(Conflict):
            await groups.rename_group(conn, http.id, "Devs")
        renamed = await groups.rename_group(conn, ldap.id, "developers")
        assert (renamed.group_name, renamed.ldap_group_dn) == ("developers", DEVS_DN)
        assert await groups.find_by_key(conn, GroupType.LDAP, DEVS_DN) == renamed
        for bad in ((1, "x", None), (2, None, None), (2, "x", DEVS_DN), (0, "x", None), (None, "x", None)):
            with pytest.raises(InvalidInput):
                groups.check_group(*bad)


async def test_deletes_take_memberships_along(db: Database) -> None:
    async with db.transaction() as conn:
        alice, team, shop = await _setup(conn)
        devs, ops = await groups.replace_memberships(conn, alice, GroupType.LDAP, [DEVS_DN, OPS_DN])
        await _add_group_member(conn, team, devs, Role.DEVELOPER)
        await _add_group_member(conn, shop, devs, Role.DEVELOPER)
        await _add_group_member(conn, team, ops, Role.GUEST)

    async def count(table: sa.Table) -> int:
        async with db.read() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())

    # The foreign keys cascade (the statements below name no membership).
    async with db.transaction() as conn:
        await conn.execute(sa.delete(t.project).where(t.project.c.id == shop))
    assert await count(t.project_group_member) == 2
    async with db.transaction() as conn:
        await conn.execute(sa.delete(t.user_group).where(t.user_group.c.id == ops))
    assert await count(t.project_group_member) == 1
    assert await count(t.user_group_member) == 1
    async with db.transaction() as conn:
        await conn.execute(sa.delete(t.user_account).where(t.user_account.c.id == alice))
    assert await count(t.user_group_member) == 0
    async with db.transaction() as conn:
        assert await groups.delete_group(conn, devs) is not None
        assert await groups.delete_group(conn, devs) is None
    assert (await count(t.project_group_member), await count(t.user_group)) == (0, 0)
