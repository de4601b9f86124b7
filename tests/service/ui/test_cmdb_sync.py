"""`POST /api/v2.0/system/cmdb/sync` against a real CMDB stand-in (`tests.support.cmdb`) and the
test's database: a dry run shows the plan and changes nothing; a run creates projects and members
and writes their events (which the job service's writer turns into audit rows); a second run
changes nothing; an owner dropped from the CMDB stays a member unless `cmdb_remove_members` is on,
and then only memberships the sync made go; bad entries are skipped and reported; a CMDB down, slow,
refusing or answering garbage fails cleanly (503) and changes nothing."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.service.ui.conftest import ADMIN, ALICE, ANONYMOUS, Ui
from tests.support.cmdb import TOKEN, Cmdb
from tests.support.tls import self_signed
from wharf_jobservice.writer import AuditWriter
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.db.types import utcnow
from wharf_shared.secrets import SecretBox

URL = "/api/v2.0/system/cmdb/sync"
OPERATOR = "wharf$cmdb-sync"


@pytest.fixture
def db_kind() -> str:
    return "postgresql"  # one test below runs on each backend


@pytest.fixture
async def cmdb() -> AsyncIterator[Cmdb]:
    server = Cmdb()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def configure(ui: Ui, cmdb: Cmdb, **more: Any) -> None:
    box = SecretBox(ui.settings.secret_key_bytes())
    await ui.set_runtime(
        cmdb_url=cmdb.url,
        cmdb_auth_header=box.encrypt(TOKEN),
        cmdb_projects_field="data.projects",
        cmdb_name_field="name",
        cmdb_owner_field="owners",
        cmdb_team_field="teams",
        **more,
    )


def projects(*entries: Any) -> dict[str, Any]:
    return {"data": {"projects": list(entries)}}


async def sync(ui: Ui, *, dry_run: bool = False, status: int = 200) -> dict[str, Any]:
    resp = await ui.client.post(URL, params={"dry_run": "true" if dry_run else "false"}, headers=ADMIN)
    body: dict[str, Any] = await resp.json()
    assert resp.status == status, body
    return body


async def members(ui: Ui, project: str) -> set[tuple[str, str, int]]:
    """(kind, name, role) of every member of `project`."""

    async def go(conn: Any) -> set[tuple[str, str, int]]:
        p, m, u = t.project.c, t.project_member.c, t.user_account.c
        g, pg = t.user_group.c, t.project_group_member.c
        users = sa.select(u.username, m.role_id).join(t.user_account, u.id == m.user_id)
        users = users.join(t.project, p.id == m.project_id).where(p.name == project)
        groups = sa.select(g.group_name, pg.role_id).join(t.user_group, g.id == pg.group_id)
        groups = groups.join(t.project, p.id == pg.project_id).where(p.name == project)
        found = {("u", name, role) for name, role in await conn.execute(users)}
        return found | {("g", name, role) for name, role in await conn.execute(groups)}

    result: set[tuple[str, str, int]] = await ui.db_call(go)
    return result


async def project_names(ui: Ui) -> list[str]:
    async def go(conn: Any) -> list[str]:
        return [row[0] for row in await conn.execute(sa.select(t.project.c.name).order_by(t.project.c.name))]

    result: list[str] = await ui.db_call(go)
    return result


def actions(report: dict[str, Any]) -> list[tuple[Any, ...]]:
    return sorted(
        (c["action"], c["project"], c.get("member") or c.get("owner"), c.get("entity_type"), c.get("role_id"))
        for c in report["changes"]
    )


DOCUMENT = projects(
    {"name": "payments", "owners": ["alice", "bob"], "teams": ["pay-devs"]},
    {"name": "search", "owners": "carol"},  # no such user: admin owns it, carol is reported
    {"name": "Bad Name", "owners": ["alice"]},
    {"name": "no-owner-field"},
    "not an object",
    {"name": "payments", "owners": ["bob"]},  # listed twice: the first counts
    {"name": "wrong-type", "owners": [1, 2]},
)
PLAN = [
    ("member.create", "payments", "bob", "u", 1),
    ("member.create", "payments", "pay-devs", "g", 2),
    ("project.create", "payments", "alice", None, None),
    ("project.create", "search", "admin", None, None),
]


@pytest.mark.parametrize("db_kind", ["postgresql", "mariadb", "sqlite"])
async def test_dry_run_then_run_then_nothing_more(ui: Ui, cmdb: Cmdb) -> None:
    await ui.add_user("bob", "Bob-secret-12")
    await configure(ui, cmdb)
    cmdb.document = DOCUMENT

    planned = await sync(ui, dry_run=True)
    assert planned["dry_run"] is True
    assert planned["entries"] == 7
    assert actions(planned) == PLAN
    reasons = {(s["index"], s["project"]): s["reason"] for s in planned["skipped"]}
    assert set(reasons) == {
        (1, "search"),
        (2, "Bad Name"),
        (3, "no-owner-field"),
        (4, None),
        (5, "payments"),
        (6, "wrong-type"),
    }
    assert "carol" in reasons[(1, "search")]
    assert "lower-case" in reasons[(2, "Bad Name")]
    assert "owners: missing" in reasons[(3, "no-owner-field")]
    assert "listed more than once" in reasons[(5, "payments")]
    assert planned["failed"] == []
    assert await project_names(ui) == ["library"]  # the dry run changed nothing

    applied = await sync(ui)
    assert applied["dry_run"] is False
    assert actions(applied) == PLAN  # what the dry run said
    assert await project_names(ui) == ["library", "payments", "search"]
    assert await members(ui, "payments") == {("u", "alice", 1), ("u", "bob", 1), ("g", "pay-devs", 2)}
    assert await members(ui, "search") == {("u", "admin", 1)}

    again = await sync(ui)
    assert again["changes"] == []
    assert [s["project"] for s in again["skipped"]].count("search") == 1  # carol, still unknown


async def test_new_owners_and_stronger_roles(ui: Ui, cmdb: Cmdb) -> None:
    """An existing project gains the CMDB's members; a weaker role is raised, a stronger one kept."""
    dave = await ui.add_user("dave", "Dave-secret-12")
    project_id = await ui.add_project("billing", ui.admin_id)

    async def seed(conn: Any) -> None:
        now = utcnow()
        await conn.execute(
            sa.insert(t.project_member).values(
                project_id=project_id, user_id=dave, role_id=3, created_at=now, updated_at=now
            )
        )
        await conn.execute(
            sa.insert(t.project_member).values(
                project_id=project_id, user_id=ui.alice_id, role_id=1, created_at=now, updated_at=now
            )
        )

    await ui.db_call(seed)
    await configure(ui, cmdb, cmdb_owner_role=4, cmdb_team_role=3, cmdb_public=True)
    cmdb.document = projects({"name": "billing", "owners": ["dave", "alice"], "teams": "ops"})
    report = await sync(ui)
    assert actions(report) == [
        ("member.create", "billing", "ops", "g", 3),
        ("member.update", "billing", "dave", "u", 4),  # guest → maintainer
    ]  # alice, project admin by hand, is not lowered
    assert next(c for c in report["changes"] if c["action"] == "member.update")["previous_role_id"] == 3
    assert await members(ui, "billing") == {
        ("u", "admin", 1),
        ("u", "alice", 1),
        ("u", "dave", 4),
        ("g", "ops", 3),
    }


async def test_removal_only_with_the_rule_and_only_what_it_granted(ui: Ui, cmdb: Cmdb) -> None:
    await ui.add_user("bob", "Bob-secret-12")
    await ui.add_user("dave", "Dave-secret-12")
    await configure(ui, cmdb)
    cmdb.document = projects({"name": "payments", "owners": ["alice", "bob", "dave"], "teams": ["pay-devs"]})
    await sync(ui)
    await ui.add_user("erin", "Erin-secret-12")  # made a member by hand, below
    resp = await ui.client.post(
        "/api/v2.0/projects/payments/members",
        json={"role_id": 2, "member_user": {"username": "erin"}},
        headers=ADMIN,
    )
    assert resp.status == 201, await resp.text()

    cmdb.document = projects({"name": "payments", "owners": ["alice"], "teams": []})
    kept = await sync(ui)
    assert kept["changes"] == []  # no rule: nothing removed
    assert await members(ui, "payments") == {
        ("u", "alice", 1),
        ("u", "bob", 1),
        ("u", "dave", 1),
        ("u", "erin", 2),
        ("g", "pay-devs", 2),
    }

    await ui.set_runtime(cmdb_remove_members=True)
    planned = await sync(ui, dry_run=True)
    removed = await sync(ui)
    assert (
        actions(planned)
        == actions(removed)
        == [
            ("member.delete", "payments", "bob", "u", None),
            ("member.delete", "payments", "dave", "u", None),
            ("member.delete", "payments", "pay-devs", "g", None),
        ]
    )
    # erin was added by hand: never the sync's to remove; alice is still named.
    assert await members(ui, "payments") == {("u", "alice", 1), ("u", "erin", 2)}
    assert (await sync(ui))["changes"] == []


async def test_the_rule_lowers_a_role_it_granted(ui: Ui, cmdb: Cmdb) -> None:
    await configure(ui, cmdb)
    cmdb.document = projects({"name": "payments", "owners": ["admin"], "teams": ["pay-devs"]})
    await sync(ui)
    await ui.set_runtime(cmdb_team_role=3)
    assert (await sync(ui))["changes"] == []  # guest is weaker than developer: kept without the rule
    await ui.set_runtime(cmdb_remove_members=True)
    lowered = await sync(ui)
    assert actions(lowered) == [("member.update", "payments", "pay-devs", "g", 3)]
    assert ("g", "pay-devs", 3) in await members(ui, "payments")


async def test_changes_reach_the_audit_log_as_the_sync(ui: Ui, cmdb: Cmdb) -> None:
    await ui.add_user("bob", "Bob-secret-12")
    await configure(ui, cmdb, cmdb_remove_members=True)
    cmdb.document = projects({"name": "payments", "owners": ["alice", "bob"], "teams": ["pay-devs"]})
    await sync(ui)
    cmdb.document = projects({"name": "payments", "owners": ["alice"]})
    await sync(ui)
    created = await ui.events("project.create")
    added = await ui.events("member.create", count=2)
    deleted = await ui.events("member.delete", count=2)
    events = created + added + deleted
    assert {e["data"]["operator"] for e in events} == {OPERATOR}
    db = Database(ui.settings.effective_database_url, pool_size=1)
    try:
        await AuditWriter(db).apply(events)
        async with db.read() as conn:
            a = t.audit_log.c
            query = sa.select(a.username, a.resource_type, a.operation, a.resource).order_by(a.id)
            rows = {tuple(row) for row in await conn.execute(query)}
    finally:
        await db.close()
    assert rows == {
        (OPERATOR, "project", "create", "payments"),
        (OPERATOR, "member", "create", "payments/bob"),
        (OPERATOR, "member", "create", "payments/pay-devs"),
        (OPERATOR, "member", "delete", "payments/bob"),
        (OPERATOR, "member", "delete", "payments/pay-devs"),
    }


@pytest.mark.parametrize(
    ("trouble", "message"),
    [
        ("down", "unreachable"),
        ("slow", "did not answer within 1 s"),
        ("garbage", "not JSON"),
        ("broken", "HTTP 500"),
        ("token", "HTTP 401"),
        ("no-list", "no list of projects at data.projects"),
    ],
)
async def test_a_cmdb_in_trouble_fails_cleanly_and_changes_nothing(
    ui: Ui, cmdb: Cmdb, trouble: str, message: str
) -> None:
    await configure(ui, cmdb, cmdb_timeout=1)
    cmdb.document = projects({"name": "payments", "owners": ["alice"]})
    if trouble == "down":
        await cmdb.stop()
    elif trouble == "slow":
        cmdb.delay = 3
    elif trouble == "garbage":
        cmdb.garbage = True
    elif trouble == "broken":
        cmdb.status = 500
    elif trouble == "token":
        cmdb.authorization = "Bearer another"
    else:
        cmdb.document = {"data": {"projects": {"payments": "alice"}}}
    for dry_run in (True, False):
        body = await sync(ui, dry_run=dry_run, status=503)
        assert body["errors"][0]["code"] == "UNAVAILABLE"
        assert message in body["errors"][0]["message"]
    assert await project_names(ui) == ["library"]


async def test_only_system_admins_and_only_when_configured(ui: Ui, cmdb: Cmdb) -> None:
    assert (await sync(ui, status=412))["errors"][0]["code"] == "PRECONDITION"  # no cmdb_url
    await configure(ui, cmdb)
    assert (await ui.client.post(URL, headers=ALICE)).status == 403
    assert (await ui.client.post(URL, headers=ANONYMOUS)).status == 401
    bad = await ui.client.post(URL, params={"dry_run": "maybe"}, headers=ADMIN)
    assert bad.status == 400
    assert cmdb.requests == 0


async def test_two_runs_at_once_change_each_project_once(ui: Ui, cmdb: Cmdb) -> None:
    await ui.add_user("bob", "Bob-secret-12")
    await configure(ui, cmdb)
    names = [f"team-{i}" for i in range(8)]
    cmdb.document = projects(
        *({"name": name, "owners": ["alice", "bob"], "teams": ["ops"]} for name in names)
    )
    first, second = await asyncio.gather(sync(ui), sync(ui))
    created = [c["project"] for r in (first, second) for c in r["changes"] if c["action"] == "project.create"]
    failed = [f["project"] for r in (first, second) for f in r["failed"]]
    assert sorted(created) == names  # each project created by one run; the other found it or failed
    assert set(failed) <= set(names)
    for name in names:
        assert await members(ui, name) == {("u", "alice", 1), ("u", "bob", 1), ("g", "ops", 2)}
    assert (await sync(ui))["changes"] == []
    assert len(await ui.events("project.create", count=8)) == 8


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("cmdb_owner_role", 6),
        ("cmdb_team_role", 0),
        ("cmdb_team_group_type", 5),
        ("cmdb_timeout", 0),
        ("cmdb_timeout", 301),
        ("cmdb_projects_field", "data..projects"),
    ],
)
async def test_settings_are_checked(ui: Ui, key: str, value: Any) -> None:
    resp = await ui.client.put("/api/v2.0/configurations", json={key: value}, headers=ADMIN)
    assert resp.status == 400
    assert key in (await resp.json())["errors"][0]["message"]


async def test_settings_are_shown_with_their_defaults(ui: Ui) -> None:
    shown = await (await ui.client.get("/api/v2.0/configurations", headers=ADMIN)).json()
    assert {k: shown[k]["value"] for k in shown if k.startswith("cmdb_") and k != "cmdb_url"} == {
        "cmdb_projects_field": "",
        "cmdb_name_field": "name",
        "cmdb_owner_field": "owner",
        "cmdb_team_field": "",
        "cmdb_schedule": "",
        "cmdb_timeout": 30,
        "cmdb_verify_cert": True,
        "cmdb_owner_role": 1,
        "cmdb_team_role": 2,
        "cmdb_team_group_type": 2,
        "cmdb_remove_members": False,
        "cmdb_public": False,
    }
    assert "cmdb_auth_header" not in shown


async def test_teams_as_ldap_groups_by_dn(ui: Ui, cmdb: Cmdb) -> None:
    await configure(ui, cmdb, cmdb_team_group_type=1)
    cmdb.document = projects(
        {"name": "payments", "owners": [], "teams": ["cn=Pay Devs,ou=groups,dc=corp,dc=test"]}
    )
    report = await sync(ui)
    assert actions(report) == [
        ("member.create", "payments", "Pay Devs", "g", 2),
        ("project.create", "payments", "admin", None, None),  # no owner named: admin's
    ]

    async def group(conn: Any) -> tuple[Any, ...]:
        g = t.user_group.c
        row = (await conn.execute(sa.select(g.group_type, g.group_key, g.ldap_group_dn))).one()
        return tuple(row)

    assert await ui.db_call(group) == (
        1,
        "cn=pay devs,ou=groups,dc=corp,dc=test",
        "cn=Pay Devs,ou=groups,dc=corp,dc=test",
    )
    # The same group however the CMDB spells its DN.
    cmdb.document = projects(
        {"name": "payments", "owners": [], "teams": ["CN=Pay Devs, OU=Groups,DC=corp,DC=test"]}
    )
    assert (await sync(ui))["changes"] == []


async def test_tls_is_verified_unless_turned_off(ui: Ui, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    server = Cmdb(document=projects({"name": "payments", "owners": ["alice"]}))
    await server.start(tls)
    try:
        assert server.url.startswith("https://")
        await configure(ui, server)
        body = await sync(ui, dry_run=True, status=503)
        assert "unreachable" in body["errors"][0]["message"]
        await ui.set_runtime(cmdb_verify_cert=False)
        assert actions(await sync(ui, dry_run=True)) == [("project.create", "payments", "alice", None, None)]
    finally:
        await server.stop()
