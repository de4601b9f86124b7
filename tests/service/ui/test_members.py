"""`/api/v2.0/projects/{p}/members…` on each database: add by id or name, change a role,
remove, list and read, with Harbor's shapes and codes. Who may do each: test_project_roles.py."""

from __future__ import annotations

from typing import Any

import pytest

from tests.service.ui.conftest import ADMIN, ALICE, Ui, basic
from tests.service.ui.projects_support import PASSWORD, add_users, error

API = "/api/v2.0"


async def team(ui: Ui, *, public: bool = False) -> int:
    """`team`, owned (and administered) by alice."""
    return await ui.add_project("team", ui.alice_id, public=public)


async def members(ui: Ui, project: int | str, query: str = "", headers: dict[str, str] = ALICE) -> list[Any]:
    resp = await ui.client.get(f"{API}/projects/{project}/members{query}", headers=headers)
    assert resp.status == 200, await resp.text()
    body: list[Any] = await resp.json()
    return body


async def test_add_by_user_id(ui: Ui) -> None:
    project_id = await team(ui)
    ids = await add_users(ui, "bob")
    body = {"role_id": 2, "member_user": {"user_id": ids["bob"]}}
    resp = await ui.client.post(f"{API}/projects/{project_id}/members", json=body, headers=ALICE)
    assert resp.status == 201, await resp.text()
    # The member's id is the user's id (Wharf keys memberships by project and user).
    assert resp.headers["Location"] == f"{API}/projects/{project_id}/members/{ids['bob']}"
    got = await ui.client.get(f"{API}/projects/{project_id}/members/{ids['bob']}", headers=ALICE)
    assert await got.json() == {
        "id": ids["bob"],
        "project_id": project_id,
        "entity_name": "bob",
        "role_name": "developer",
        "role_id": 2,
        "entity_id": ids["bob"],
        "entity_type": "u",
    }
    (event,) = await ui.events("member.create")
    assert event["data"] == {
        "operator": "alice",
        "project": "team",
        "project_id": project_id,
        "member": "bob",
        "role_id": 2,
    }
    # The new member now reads the private project.
    project = await ui.client.get(f"{API}/projects/{project_id}", headers=basic("bob", PASSWORD))
    assert (await project.json())["current_user_role_id"] == 2


async def test_add_by_username_with_the_project_named(ui: Ui) -> None:
    await team(ui)
    ids = await add_users(ui, "bob")
    body = {"role_id": 4, "member_user": {"username": "bob"}}
    resp = await ui.client.post(f"{API}/projects/team/members", json=body, headers=ADMIN)
    assert resp.status == 201, await resp.text()
    # As Harbor, Location names the project as the client did.
    assert resp.headers["Location"] == f"{API}/projects/team/members/{ids['bob']}"
    found = await members(ui, "team", "?entityname=bo")
    assert [(m["entity_name"], m["role_name"]) for m in found] == [("bob", "maintainer")]


async def test_a_second_membership_is_409(ui: Ui) -> None:
    project_id = await team(ui)
    await add_users(ui, "bob")
    body = {"role_id": 3, "member_user": {"username": "bob"}}
    assert (
        await ui.client.post(f"{API}/projects/{project_id}/members", json=body, headers=ALICE)
    ).status == 201
    resp = await ui.client.post(f"{API}/projects/{project_id}/members", json=body, headers=ALICE)
    await error(resp, 409, "CONFLICT")
    owner = {"role_id": 3, "member_user": {"user_id": ui.alice_id}}
    resp = await ui.client.post(f"{API}/projects/{project_id}/members", json=owner, headers=ALICE)
    await error(resp, 409, "CONFLICT")
    assert len(await ui.events("member.create")) == 1


@pytest.mark.parametrize(
    ("body", "status", "code", "needle"),
    [
        ({"role_id": 2, "member_user": {"user_id": 987654}}, 400, "BAD_REQUEST", "987654"),
        ({"role_id": 2, "member_user": {"user_id": 2**70}}, 400, "BAD_REQUEST", "not found"),
        ({"role_id": 2, "member_user": {"username": "nobody"}}, 404, "NOT_FOUND", "nobody"),
        ({"role_id": 2, "member_user": {"username": "x" * 300}}, 404, "NOT_FOUND", "not found"),
        ({"role_id": 2, "member_user": {}}, 400, "BAD_REQUEST", "user_id or a username"),
        ({"role_id": 2}, 400, "BAD_REQUEST", "user_id or a username"),
        ({"role_id": 2, "member_group": {"group_name": "ops"}}, 400, "BAD_REQUEST", "group_type"),
        ({"role_id": 0, "member_user": {"username": "bob"}}, 400, "BAD_REQUEST", "role_id"),
        ({"role_id": 6, "member_user": {"username": "bob"}}, 400, "BAD_REQUEST", "role_id"),
        ({"member_user": {"username": "bob"}}, 400, "BAD_REQUEST", "role_id"),
        ({"role_id": "2", "member_user": {"username": "bob"}}, 400, "BAD_REQUEST", "role_id"),
        ({"role_id": 2, "member_user": {"user_id": True}}, 400, "BAD_REQUEST", "user_id"),
    ],
    ids=[
        "unknown-id",
        "huge-id",
        "unknown-name",
        "long-name",
        "empty-user",
        "no-user",
        "group",
        "role-0",
        "role-6",
        "no-role",
        "role-string",
        "id-bool",
    ],
)
async def test_add_refusals(ui: Ui, body: dict[str, Any], status: int, code: str, needle: str) -> None:
    project_id = await team(ui)
    await add_users(ui, "bob")
    resp = await ui.client.post(f"{API}/projects/{project_id}/members", json=body, headers=ALICE)
    message = await error(resp, status, code)
    assert needle in message
    assert [m["entity_name"] for m in await members(ui, project_id)] == ["alice"]


async def test_add_to_no_such_project_is_404(ui: Ui) -> None:
    await add_users(ui, "bob")
    body = {"role_id": 2, "member_user": {"username": "bob"}}
    resp = await ui.client.post(f"{API}/projects/nothing/members", json=body, headers=ADMIN)
    await error(resp, 404, "NOT_FOUND")


async def test_change_a_role(ui: Ui) -> None:
    project_id = await team(ui)
    ids = await add_users(ui, "bob")
    body = {"role_id": 3, "member_user": {"username": "bob"}}
    await ui.client.post(f"{API}/projects/{project_id}/members", json=body, headers=ALICE)
    path = f"{API}/projects/{project_id}/members/{ids['bob']}"
    resp = await ui.client.put(path, json={"role_id": 1}, headers=ALICE)
    assert resp.status == 200, await resp.text()
    assert await resp.read() == b""
    assert (await (await ui.client.get(path, headers=ALICE)).json())["role_name"] == "projectAdmin"
    (event,) = await ui.events("member.update")
    assert event["data"] == {
        "operator": "alice",
        "project": "team",
        "project_id": project_id,
        "member": "bob",
        "role_id": 1,
    }
    # bob, now a project admin, manages members himself.
    resp = await ui.client.put(path, json={"role_id": 2}, headers=basic("bob", PASSWORD))
    assert resp.status == 200


@pytest.mark.parametrize(
    ("body", "member", "status", "code"),
    [
        ({"role_id": 9}, "bob", 400, "BAD_REQUEST"),
        ({}, "bob", 400, "BAD_REQUEST"),
        ({"role_id": 2}, "carl", 404, "NOT_FOUND"),  # a user, but no member
        ({"role_id": 2}, "nobody", 404, "NOT_FOUND"),
    ],
)
async def test_change_refusals(ui: Ui, body: dict[str, Any], member: str, status: int, code: str) -> None:
    project_id = await team(ui)
    ids = await add_users(ui, "bob", "carl")
    ids["nobody"] = 987654
    await ui.client.post(
        f"{API}/projects/{project_id}/members",
        json={"role_id": 3, "member_user": {"username": "bob"}},
        headers=ALICE,
    )
    resp = await ui.client.put(f"{API}/projects/{project_id}/members/{ids[member]}", json=body, headers=ALICE)
    await error(resp, status, code)


@pytest.mark.parametrize("mid", ["0", "-1", "x", "9" * 30])
async def test_malformed_member_ids_are_400(ui: Ui, mid: str) -> None:
    project_id = await team(ui)
    for method in ("get", "put", "delete"):
        resp = await ui.client.request(
            method, f"{API}/projects/{project_id}/members/{mid}", json={"role_id": 2}, headers=ALICE
        )
        await error(resp, 400, "BAD_REQUEST")


async def test_remove(ui: Ui) -> None:
    project_id = await team(ui)
    ids = await add_users(ui, "bob")
    await ui.client.post(
        f"{API}/projects/{project_id}/members",
        json={"role_id": 2, "member_user": {"username": "bob"}},
        headers=ALICE,
    )
    path = f"{API}/projects/{project_id}/members/{ids['bob']}"
    resp = await ui.client.delete(path, headers=ALICE)
    assert resp.status == 200, await resp.text()
    assert await resp.read() == b""
    await error(await ui.client.get(path, headers=ALICE), 404, "NOT_FOUND")
    await error(
        await ui.client.get(f"{API}/projects/{project_id}", headers=basic("bob", PASSWORD)), 403, "FORBIDDEN"
    )
    (event,) = await ui.events("member.delete")
    assert event["data"] == {
        "operator": "alice",
        "project": "team",
        "project_id": project_id,
        "member": "bob",
    }
    # Removing a member that is none is a 200, as in Harbor, and records nothing.
    assert (await ui.client.delete(path, headers=ALICE)).status == 200
    assert len(await ui.events("member.delete")) == 1


async def test_the_last_project_admin_may_leave(ui: Ui) -> None:
    """Harbor lets it happen; a system admin still manages the project."""
    project_id = await team(ui)
    resp = await ui.client.delete(f"{API}/projects/{project_id}/members/{ui.alice_id}", headers=ALICE)
    assert resp.status == 200
    assert await members(ui, project_id, headers=ADMIN) == []
    await error(await ui.client.get(f"{API}/projects/{project_id}", headers=ALICE), 403, "FORBIDDEN")


async def test_list_filters_and_pages(ui: Ui) -> None:
    project_id = await team(ui)
    await add_users(ui, "bob", "bobby", "carl", "b_b")
    for name, role in (("bob", 2), ("bobby", 3), ("carl", 4), ("b_b", 5)):
        resp = await ui.client.post(
            f"{API}/projects/{project_id}/members",
            json={"role_id": role, "member_user": {"username": name}},
            headers=ALICE,
        )
        assert resp.status == 201
    everyone = await members(ui, project_id)
    assert [m["entity_name"] for m in everyone] == ["alice", "b_b", "bob", "bobby", "carl"]
    assert [m["entity_name"] for m in await members(ui, project_id, "?entityname=bob")] == ["bob", "bobby"]
    assert [m["entity_name"] for m in await members(ui, project_id, "?entityname=_")] == ["b_b"]
    resp = await ui.client.get(f"{API}/projects/{project_id}/members?page=2&page_size=2", headers=ALICE)
    assert resp.headers["X-Total-Count"] == "5"
    assert [m["entity_name"] for m in await resp.json()] == ["bob", "bobby"]
    assert 'rel="next"' in resp.headers["Link"]
    assert 'rel="prev"' in resp.headers["Link"]
    bad = await ui.client.get(f"{API}/projects/{project_id}/members?page_size=0", headers=ALICE)
    await error(bad, 400, "BAD_REQUEST")
    bad = await ui.client.get(f"{API}/projects/{project_id}/members?entityname=a%00", headers=ALICE)
    await error(bad, 400, "BAD_REQUEST")


async def test_a_deleted_user_is_no_longer_a_member(ui: Ui) -> None:
    project_id = await team(ui)
    ids = await add_users(ui, "bob")
    await ui.client.post(
        f"{API}/projects/{project_id}/members",
        json={"role_id": 2, "member_user": {"username": "bob"}},
        headers=ALICE,
    )
    assert (await ui.client.delete(f"{API}/users/{ids['bob']}", headers=ADMIN)).status == 200
    assert [m["entity_name"] for m in await members(ui, project_id)] == ["alice"]
