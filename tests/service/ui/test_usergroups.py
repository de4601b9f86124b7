"""`/api/v2.0/usergroups…` and groups as project members, on each database: Harbor's shapes and
codes, the member ids of groups (10^15 + the group's id) beside users', and access through a
group ending when the directory drops the user."""

from __future__ import annotations

from typing import Any

import pytest

from tests.service.ui.conftest import ADMIN, ALICE, ANONYMOUS, Ui, basic
from tests.service.ui.projects_support import PASSWORD, add_users, error
from wharf_shared.db import groups
from wharf_shared.db.groups import GroupType

API = "/api/v2.0"
DEVS_DN = "cn=devs,ou=groups,dc=example,dc=com"
BASE = 10**15


async def create_group(ui: Ui, body: dict[str, Any]) -> int:
    resp = await ui.client.post(f"{API}/usergroups", json=body, headers=ADMIN)
    assert resp.status == 201, await resp.text()
    group_id = int(resp.headers["Location"].rsplit("/", 1)[1])
    assert resp.headers["Location"] == f"{API}/usergroups/{group_id}"
    return group_id


async def test_crud(ui: Ui) -> None:
    ldap = await create_group(ui, {"group_type": 1, "ldap_group_dn": DEVS_DN})
    http = await create_group(ui, {"group_type": 2, "group_name": "oa-admins"})
    got = await ui.client.get(f"{API}/usergroups/{ldap}", headers=ADMIN)
    assert await got.json() == {"id": ldap, "group_name": "devs", "group_type": 1, "ldap_group_dn": DEVS_DN}
    listed = await ui.client.get(f"{API}/usergroups?page=1&page_size=1", headers=ADMIN)
    assert listed.headers["X-Total-Count"] == "2"
    assert 'rel="next"' in listed.headers["Link"]
    assert [g["group_name"] for g in await listed.json()] == ["devs"]
    by_dn = await ui.client.get(f"{API}/usergroups", params={"ldap_group_dn": DEVS_DN}, headers=ADMIN)
    assert [g["id"] for g in await by_dn.json()] == [ldap]
    by_name = await ui.client.get(f"{API}/usergroups?group_name=oa-", headers=ADMIN)
    assert await by_name.json() == [
        {"id": http, "group_name": "oa-admins", "group_type": 2, "ldap_group_dn": ""}
    ]

    resp = await ui.client.put(f"{API}/usergroups/{ldap}", json={"group_name": "developers"}, headers=ADMIN)
    assert resp.status == 200, await resp.text()
    got = await ui.client.get(f"{API}/usergroups/{ldap}", headers=ADMIN)
    assert (await got.json())["group_name"] == "developers"

    # Anyone signed in searches (to add a group as a member); the items carry no DN.
    found = await ui.client.get(f"{API}/usergroups/search?groupname=dev", headers=ALICE)
    assert found.status == 200
    assert found.headers["X-Total-Count"] == "1"
    assert await found.json() == [{"id": ldap, "group_name": "developers", "group_type": 1}]

    for _ in range(2):  # deleting what is gone is a 200, as in Harbor
        assert (await ui.client.delete(f"{API}/usergroups/{ldap}", headers=ADMIN)).status == 200
    await error(await ui.client.get(f"{API}/usergroups/{ldap}", headers=ADMIN), 404, "NOT_FOUND")
    # Each change once in the audit trail (a second delete changed nothing).
    events = [
        (e["type"], e["data"]["group"])
        for t, n in (("create", 2), ("update", 1), ("delete", 1))
        for e in await ui.events(f"user_group.{t}", count=n)
    ]
    assert sorted(events) == [
        ("user_group.create", "devs"),
        ("user_group.create", "oa-admins"),
        ("user_group.delete", "developers"),
        ("user_group.update", "developers"),
    ]


@pytest.mark.parametrize(
    ("body", "status", "code", "needle"),
    [
        ({"group_type": 5, "group_name": "x"}, 400, "BAD_REQUEST", "group_type"),
        ({"group_name": "x"}, 400, "BAD_REQUEST", "group_type"),
        ({"group_type": "ldap", "group_name": "x"}, 400, "BAD_REQUEST", "group_type"),
        ({"group_type": 1, "group_name": "x"}, 400, "BAD_REQUEST", "ldap_group_dn"),
        ({"group_type": 3}, 400, "BAD_REQUEST", "group_name"),
        ({"group_type": 3, "group_name": "x", "ldap_group_dn": DEVS_DN}, 400, "BAD_REQUEST", "LDAP"),
        ({"group_type": 1, "ldap_group_dn": "cn=" + "x" * 600}, 400, "BAD_REQUEST", "ldap_group_dn"),
        ({"group_type": 2, "group_name": "a\x00b"}, 400, "BAD_REQUEST", "group_name"),
    ],
    ids=["type-5", "no-type", "type-string", "ldap-no-dn", "no-name", "dn-not-ldap", "long-dn", "nul"],
)
async def test_create_refusals(ui: Ui, body: dict[str, Any], status: int, code: str, needle: str) -> None:
    resp = await ui.client.post(f"{API}/usergroups", json=body, headers=ADMIN)
    assert needle in await error(resp, status, code)


async def test_conflicts_and_unknown_groups(ui: Ui) -> None:
    await create_group(ui, {"group_type": 1, "ldap_group_dn": DEVS_DN})
    again = await ui.client.post(
        f"{API}/usergroups", json={"group_type": 1, "ldap_group_dn": DEVS_DN}, headers=ADMIN
    )
    await error(again, 409, "CONFLICT")
    oidc = await create_group(ui, {"group_type": 3, "group_name": "devs"})  # another type: no clash
    await create_group(ui, {"group_type": 3, "group_name": "ops"})
    await error(
        await ui.client.post(f"{API}/usergroups", json={"group_type": 3, "group_name": "ops"}, headers=ADMIN),
        409,
        "CONFLICT",
    )
    rename = await ui.client.put(f"{API}/usergroups/{oidc}", json={"group_name": "ops"}, headers=ADMIN)
    await error(rename, 409, "CONFLICT")
    for method in ("GET", "PUT"):
        resp = await ui.client.request(
            method, f"{API}/usergroups/999999", json={"group_name": "x"}, headers=ADMIN
        )
        await error(resp, 404, "NOT_FOUND")
    await error(await ui.client.get(f"{API}/usergroups/abc", headers=ADMIN), 400, "BAD_REQUEST")
    await error(await ui.client.get(f"{API}/usergroups/search", headers=ALICE), 400, "BAD_REQUEST")


async def test_only_admins_keep_groups(ui: Ui) -> None:
    group_id = await create_group(ui, {"group_type": 2, "group_name": "oa"})
    body = {"group_type": 2, "group_name": "x"}
    for headers, status, code in ((ALICE, 403, "FORBIDDEN"), (ANONYMOUS, 401, "UNAUTHORIZED")):
        await error(await ui.client.get(f"{API}/usergroups", headers=headers), status, code)
        await error(await ui.client.post(f"{API}/usergroups", json=body, headers=headers), status, code)
        await error(await ui.client.get(f"{API}/usergroups/{group_id}", headers=headers), status, code)
        await error(await ui.client.delete(f"{API}/usergroups/{group_id}", headers=headers), status, code)
    await error(await ui.client.get(f"{API}/usergroups/search?groupname=o"), 401, "UNAUTHORIZED")


async def test_group_members_beside_users(ui: Ui) -> None:
    project_id = await ui.add_project("team", ui.alice_id)
    ids = await add_users(ui, "bob")
    await ui.client.post(
        f"{API}/projects/{project_id}/members",
        json={"role_id": 3, "member_user": {"user_id": ids["bob"]}},
        headers=ALICE,
    )
    ops = await create_group(ui, {"group_type": 3, "group_name": "ops"})
    members_url = f"{API}/projects/{project_id}/members"
    by_id = await ui.client.post(members_url, json={"role_id": 4, "member_group": {"id": ops}}, headers=ALICE)
    assert by_id.status == 201, await by_id.text()
    assert by_id.headers["Location"] == f"{members_url}/{BASE + ops}"
    # By DN: a group Wharf did not know yet is created (Harbor onboards it).
    by_dn = await ui.client.post(
        members_url,
        json={"role_id": 2, "member_group": {"ldap_group_dn": DEVS_DN, "group_type": 1}},
        headers=ALICE,
    )
    assert by_dn.status == 201, await by_dn.text()
    devs = int(by_dn.headers["Location"].rsplit("/", 1)[1]) - BASE
    by_name = await ui.client.post(
        members_url, json={"role_id": 5, "member_group": {"group_name": "oa", "group_type": 2}}, headers=ALICE
    )
    assert by_name.status == 201, await by_name.text()

    listed = await ui.client.get(members_url, headers=ALICE)
    body = await listed.json()
    assert listed.headers["X-Total-Count"] == "5"
    assert [(m["entity_type"], m["entity_name"], m["role_name"]) for m in body] == [
        ("u", "alice", "projectAdmin"),
        ("u", "bob", "guest"),
        ("g", "devs", "developer"),
        ("g", "oa", "limitedGuest"),
        ("g", "ops", "maintainer"),
    ]
    assert body[2] == {
        "id": BASE + devs,
        "project_id": project_id,
        "entity_name": "devs",
        "role_name": "developer",
        "role_id": 2,
        "entity_id": devs,
        "entity_type": "g",
    }
    assert body[1]["id"] == ids["bob"]  # a user member's id is still the user's
    page = await ui.client.get(f"{members_url}?entityname=o&page=2&page_size=2", headers=ALICE)
    assert [m["entity_name"] for m in await page.json()] == ["ops"]  # bob, oa | ops

    again = await ui.client.post(members_url, json={"role_id": 2, "member_group": {"id": ops}}, headers=ALICE)
    await error(again, 409, "CONFLICT")
    unknown = await ui.client.post(
        members_url, json={"role_id": 2, "member_group": {"id": 999999}}, headers=ALICE
    )
    await error(unknown, 404, "NOT_FOUND")
    bad_type = await ui.client.post(
        members_url, json={"role_id": 2, "member_group": {"group_name": "x", "group_type": 7}}, headers=ALICE
    )
    await error(bad_type, 400, "BAD_REQUEST")
    both = {"role_id": 2, "member_user": {"username": "bob"}, "member_group": {"id": ops}}
    await error(await ui.client.post(members_url, json=both, headers=ALICE), 400, "BAD_REQUEST")

    member = f"{members_url}/{BASE + ops}"
    assert (await ui.client.put(member, json={"role_id": 2}, headers=ALICE)).status == 200
    assert (await (await ui.client.get(member, headers=ALICE)).json())["role_name"] == "developer"
    assert (await ui.client.delete(member, headers=ALICE)).status == 200
    await error(await ui.client.get(member, headers=ALICE), 404, "NOT_FOUND")

    events = {
        e["type"]: e["data"] for e in [*await ui.events("member.update"), *await ui.events("member.delete")]
    }
    assert events["member.update"] == {
        "operator": "alice",
        "project": "team",
        "project_id": project_id,
        "member": "ops",
        "entity_type": "g",
        "role_id": 2,
    }
    assert events["member.delete"]["member"] == "ops"
    assert events["member.delete"]["entity_type"] == "g"
    created = await ui.events("member.create", count=4)
    assert sorted(e["data"]["member"] for e in created if e["data"].get("entity_type") == "g") == [
        "devs",
        "oa",
        "ops",
    ]

    summary = await (await ui.client.get(f"{API}/projects/{project_id}/summary", headers=ALICE)).json()
    assert (summary["developer_count"], summary["limited_guest_count"], summary["guest_count"]) == (1, 1, 1)


async def test_access_through_a_group_ends_with_the_membership(ui: Ui) -> None:
    project_id = await ui.add_project("team", ui.alice_id)
    ids = await add_users(ui, "bob")
    bob = basic("bob", PASSWORD)
    devs = await create_group(ui, {"group_type": 1, "ldap_group_dn": DEVS_DN})
    resp = await ui.client.post(
        f"{API}/projects/{project_id}/members",
        json={"role_id": 4, "member_group": {"id": devs}},
        headers=ALICE,
    )
    assert resp.status == 201
    await error(await ui.client.get(f"{API}/projects/{project_id}", headers=bob), 403, "FORBIDDEN")

    # What the LDAP backend does at bob's login.
    await ui.db_call(lambda conn: groups.replace_memberships(conn, ids["bob"], GroupType.LDAP, [DEVS_DN]))
    project = await ui.client.get(f"{API}/projects/{project_id}", headers=bob)
    assert (await project.json())["current_user_role_id"] == 4
    mine = await ui.client.get(f"{API}/projects", headers=bob)
    assert [(p["name"], p["current_user_role_id"]) for p in await mine.json()] == [
        ("library", 0),
        ("team", 4),
    ]
    stats = await (await ui.client.get(f"{API}/statistics", headers=bob)).json()
    assert stats["private_project_count"] == 1
    perms = await ui.client.get(
        f"{API}/users/current/permissions?scope=/project/{project_id}&relative=true", headers=bob
    )
    assert {"resource": "repository", "action": "delete"} in await perms.json()

    # What a sync does once the directory dropped bob.
    await ui.db_call(lambda conn: groups.replace_group_members(conn, devs, []))
    await error(await ui.client.get(f"{API}/projects/{project_id}", headers=bob), 403, "FORBIDDEN")
    assert [p["name"] for p in await (await ui.client.get(f"{API}/projects", headers=bob)).json()] == [
        "library"
    ]
