"""`/api/v2.0/projects…` on each database: create, read, list, update, delete and summary, with
Harbor's shapes, codes and visibility rules. The full role-by-operation table is in
test_project_roles.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.service.ui.conftest import ADMIN, ALICE, ANONYMOUS, Ui, basic
from tests.service.ui.projects_support import PASSWORD, add_repository, add_users, error, set_member
from wharf_shared.rbac import Role

API = "/api/v2.0"


async def create(ui: Ui, body: dict[str, Any], headers: dict[str, str] = ALICE) -> int:
    resp = await ui.client.post(f"{API}/projects", json=body, headers=headers)
    assert resp.status == 201, await resp.text()
    return int(resp.headers["Location"].rsplit("/", 1)[1])


async def get(ui: Ui, ref: int | str, headers: dict[str, str] = ADMIN, **extra: str) -> dict[str, Any]:
    resp = await ui.client.get(f"{API}/projects/{ref}", headers={**headers, **extra})
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


# -- create ------------------------------------------------------------------------------------


async def test_a_user_creates_a_project_and_becomes_its_admin(ui: Ui) -> None:
    resp = await ui.client.post(f"{API}/projects", json={"project_name": "team"}, headers=ALICE)
    assert resp.status == 201, await resp.text()
    project_id = int(resp.headers["Location"].rsplit("/", 1)[1])
    assert resp.headers["Location"] == f"{API}/projects/{project_id}"
    assert "json" not in resp.headers.get("Content-Type", "")
    body = await get(ui, project_id, ALICE)
    assert body["project_id"] == project_id
    assert body["name"] == "team"
    assert body["owner_id"] == ui.alice_id
    assert body["owner_name"] == "alice"
    assert body["metadata"] == {"public": "false"}  # private unless asked, values as strings
    assert body["current_user_role_id"] == 1
    assert body["current_user_role_ids"] == [1]
    assert body["repo_count"] == 0
    assert body["deleted"] is False
    assert body["togglable"] is True
    assert body["creation_time"].endswith("Z")
    assert body["update_time"].endswith("Z")
    # The admin reads it too, with no role of their own in it.
    as_admin = await get(ui, project_id)
    assert as_admin["current_user_role_id"] == 0
    assert as_admin["current_user_role_ids"] == []
    members = await (await ui.client.get(f"{API}/projects/{project_id}/members", headers=ALICE)).json()
    assert [(m["entity_name"], m["role_name"]) for m in members] == [("alice", "projectAdmin")]
    (event,) = await ui.events("project.create")
    assert event["data"] == {"operator": "alice", "project": "team", "project_id": project_id}


async def test_location_holds_the_name_when_asked(ui: Ui) -> None:
    headers = {**ALICE, "X-Resource-Name-In-Location": "true"}
    resp = await ui.client.post(f"{API}/projects", json={"project_name": "team"}, headers=headers)
    assert resp.status == 201
    assert resp.headers["Location"] == f"{API}/projects/team"


async def test_a_taken_name_is_409(ui: Ui) -> None:
    await create(ui, {"project_name": "team"})
    resp = await ui.client.post(f"{API}/projects", json={"project_name": "team"}, headers=ADMIN)
    await error(resp, 409, "CONFLICT")
    resp = await ui.client.post(f"{API}/projects", json={"project_name": "library"}, headers=ALICE)
    await error(resp, 409, "CONFLICT")
    assert len(await ui.events("project.create")) == 1


async def test_a_race_for_a_name_has_one_winner(ui: Ui) -> None:
    """Concurrent creations of one name: one 201, the others 409 (the unique constraint decides
    what the check before the insert cannot), never a 500."""
    requests = [
        ui.client.post(f"{API}/projects", json={"project_name": "race"}, headers=ALICE) for _ in range(6)
    ]
    statuses = sorted([resp.status for resp in await asyncio.gather(*requests)])
    assert statuses == [201, 409, 409, 409, 409, 409]
    assert len(await ui.events("project.create")) == 1


@pytest.mark.parametrize(
    "name",
    ["Team", "-team", "team-", "te--am", "a/b", "", "t" * 256, "tëam", "te am"],
    ids=["upper", "leading", "trailing", "double", "slash", "empty", "long", "non-ascii", "space"],
)
async def test_names_follow_harbors_rules(ui: Ui, name: str) -> None:
    resp = await ui.client.post(f"{API}/projects", json={"project_name": name}, headers=ALICE)
    message = await error(resp, 400, "BAD_REQUEST")
    assert "lower-case" in message


@pytest.mark.parametrize("name", ["a", "1", "a.b_c-d", "t" * 255, "0team"])
async def test_good_names(ui: Ui, name: str) -> None:
    await create(ui, {"project_name": name})


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({}, "project_name"),
        ({"project_name": 5}, "project_name"),
        ({"project_name": "team", "public": "true"}, "public"),
        ({"project_name": "team", "metadata": {"public": "yes"}}, "metadata.public"),
        ({"project_name": "team", "metadata": {"public": True}}, "metadata.public"),
        ({"project_name": "team", "metadata": {"enable_content_trust": "true"}}, "enable_content_trust"),
        ({"project_name": "team", "metadata": {"prevent_vul": "true"}}, "prevent_vul"),
        ({"project_name": "team", "metadata": {"auto_scan": "maybe"}}, "auto_scan"),
        ({"project_name": "team", "metadata": {"severity": "dire"}}, "severity"),
        ({"project_name": "team", "metadata": {"retention_id": "7"}}, "retention_id"),
        ({"project_name": "team", "registry_id": 3}, "registry_id"),
        ({"project_name": "te\u0000am"}, "NUL"),
    ],
    ids=[
        "missing",
        "wrong-type",
        "public-string",
        "metadata-public",
        "metadata-bool",
        "content-trust",
        "prevent-vul",
        "auto-scan",
        "severity",
        "retention",
        "proxy-cache",
        "nul",
    ],
)
async def test_bad_bodies_are_400(ui: Ui, body: dict[str, Any], needle: str) -> None:
    resp = await ui.client.post(f"{API}/projects", json=body, headers=ALICE)
    message = await error(resp, 400, "BAD_REQUEST")
    assert needle in message


async def test_visibility_from_metadata_or_the_deprecated_flag(ui: Ui) -> None:
    by_metadata = await create(ui, {"project_name": "a", "metadata": {"public": "true"}})
    by_flag = await create(ui, {"project_name": "b", "public": True})
    metadata_wins = await create(ui, {"project_name": "c", "public": True, "metadata": {"public": "false"}})
    null_flag = await create(ui, {"project_name": "d", "public": None, "metadata": {}})
    assert (await get(ui, by_metadata))["metadata"] == {"public": "true"}
    assert (await get(ui, by_flag))["metadata"] == {"public": "true"}
    assert (await get(ui, metadata_wins))["metadata"] == {"public": "false"}
    assert (await get(ui, null_flag))["metadata"] == {"public": "false"}


async def test_what_terraform_sends_is_accepted(ui: Ui) -> None:
    """Harbor's Terraform provider sends every metadata flag, a quota and an allowlist."""
    body = {
        "project_name": "tf",
        "metadata": {
            "public": "true",
            "auto_scan": "true",
            "enable_content_trust": "false",
            "enable_content_trust_cosign": "false",
            "prevent_vul": "false",
            "severity": "high",
        },
        "storage_limit": -1,
        "cve_allowlist": {"items": []},
    }
    project_id = await create(ui, body)
    assert (await get(ui, "tf", **{"X-Is-Resource-Name": "true"}))["project_id"] == project_id


async def test_anonymous_may_not_create(ui: Ui) -> None:
    resp = await ui.client.post(f"{API}/projects", json={"project_name": "team"})
    await error(resp, 401, "UNAUTHORIZED")


async def test_admin_only_creation(ui: Ui) -> None:
    await ui.set_runtime(project_creation_restriction="adminonly")
    resp = await ui.client.post(f"{API}/projects", json={"project_name": "team"}, headers=ALICE)
    await error(resp, 403, "FORBIDDEN")
    await create(ui, {"project_name": "team"}, ADMIN)


# -- read --------------------------------------------------------------------------------------


async def test_by_name_or_id(ui: Ui) -> None:
    project_id = await create(ui, {"project_name": "team"})
    assert (await get(ui, "team"))["project_id"] == project_id
    assert (await get(ui, project_id))["name"] == "team"
    # A name that reads as a number is an id, unless the client says it is a name.
    numeric = await create(ui, {"project_name": "987654"})
    resp = await ui.client.get(f"{API}/projects/987654", headers=ADMIN)
    await error(resp, 404, "NOT_FOUND")
    assert (await get(ui, "987654", **{"X-Is-Resource-Name": "true"}))["project_id"] == numeric
    # and an id given as a name is no name.
    resp = await ui.client.get(
        f"{API}/projects/{project_id}", headers={**ADMIN, "X-Is-Resource-Name": "true"}
    )
    await error(resp, 404, "NOT_FOUND")


@pytest.mark.parametrize("ref", ["nothing", "0", "99999999", "9" * 30, "a%00b", "x" * 300])
async def test_no_such_project_is_404_only_for_a_system_admin(ui: Ui, ref: str) -> None:
    # Harbor's order: the permission first, so others learn nothing of whether it exists.
    await error(await ui.client.get(f"{API}/projects/{ref}", headers=ADMIN), 404, "NOT_FOUND")
    await error(await ui.client.get(f"{API}/projects/{ref}", headers=ALICE), 403, "FORBIDDEN")
    await error(await ui.client.get(f"{API}/projects/{ref}", headers=ANONYMOUS), 401, "UNAUTHORIZED")


async def test_private_projects_are_for_members(ui: Ui) -> None:
    project_id = await create(ui, {"project_name": "team"})
    ids = await add_users(ui, "bob")
    bob = basic("bob", PASSWORD)
    await error(await ui.client.get(f"{API}/projects/{project_id}", headers=bob), 403, "FORBIDDEN")
    await error(await ui.client.get(f"{API}/projects/{project_id}"), 401, "UNAUTHORIZED")
    await set_member(ui, project_id, ids["bob"], Role.LIMITED_GUEST)
    body = await get(ui, project_id, bob)
    assert body["current_user_role_id"] == 5
    assert body["togglable"] is False


async def test_public_projects_are_for_everyone_while_anonymous_access_is_on(ui: Ui) -> None:
    project_id = await create(ui, {"project_name": "open", "metadata": {"public": "true"}})
    await add_users(ui, "bob")
    assert (await get(ui, project_id, basic("bob", PASSWORD)))["name"] == "open"
    assert (await get(ui, project_id, ANONYMOUS))["name"] == "open"
    await ui.set_runtime(anonymous_access=False)
    await error(await ui.client.get(f"{API}/projects/{project_id}"), 401, "UNAUTHORIZED")
    assert (await get(ui, project_id, basic("bob", PASSWORD)))["name"] == "open"


async def test_head_tells_whether_a_name_is_taken(ui: Ui) -> None:
    await create(ui, {"project_name": "secret"})  # private: its name is taken all the same
    await add_users(ui, "bob")
    bob = basic("bob", PASSWORD)
    resp = await ui.client.head(f"{API}/projects?project_name=secret", headers=bob)
    assert resp.status == 200
    assert await resp.read() == b""
    resp = await ui.client.head(f"{API}/projects?project_name=nothing", headers=bob)
    assert resp.status == 404
    assert (await ui.client.head(f"{API}/projects?project_name=secret")).status == 401
    assert (await ui.client.head(f"{API}/projects", headers=bob)).status == 400
    assert (await ui.client.head(f"{API}/projects?project_name=a%00b", headers=bob)).status == 404


# -- list --------------------------------------------------------------------------------------


async def names(ui: Ui, query: str = "", headers: dict[str, str] = ADMIN) -> list[str]:
    resp = await ui.client.get(f"{API}/projects{query}", headers=headers)
    assert resp.status == 200, await resp.text()
    return [p["name"] for p in await resp.json()]


async def test_each_caller_lists_what_they_may_see(ui: Ui) -> None:
    await create(ui, {"project_name": "alices-private"})
    await create(ui, {"project_name": "alices-public", "metadata": {"public": "true"}})
    await create(ui, {"project_name": "admins-private"}, ADMIN)
    await add_users(ui, "bob")
    bob = basic("bob", PASSWORD)
    everything = ["admins-private", "alices-private", "alices-public", "library"]
    assert await names(ui) == everything
    assert await names(ui, headers=ALICE) == ["alices-private", "alices-public", "library"]
    assert await names(ui, headers=bob) == ["alices-public", "library"]
    assert await names(ui, headers=ANONYMOUS) == ["alices-public", "library"]
    # Harbor's `public` filter narrows within what one may see.
    assert await names(ui, "?public=false", ALICE) == ["alices-private"]
    assert await names(ui, "?public=true", ALICE) == ["alices-public", "library"]
    assert await names(ui, "?public=false", bob) == []
    assert await names(ui, "?public=false", ANONYMOUS) == []
    assert await names(ui, "?public=false") == ["admins-private", "alices-private"]
    # No anonymous view while anonymous access is off.
    await ui.set_runtime(anonymous_access=False)
    await error(await ui.client.get(f"{API}/projects"), 401, "UNAUTHORIZED")
    assert await names(ui, headers=bob) == ["alices-public", "library"]


async def test_list_filters_and_sorts(ui: Ui) -> None:
    for name in ("alpha", "alphabet", "beta"):
        await create(ui, {"project_name": name})
    await create(ui, {"project_name": "gamma"}, ADMIN)
    assert await names(ui, "?name=alph") == ["alpha", "alphabet"]  # Harbor's `name`: contains
    assert await names(ui, "?owner=admin") == ["gamma", "library"]
    assert await names(ui, "?owner=alice&sort=-name") == ["beta", "alphabet", "alpha"]
    assert await names(ui, "?q=name%3Dalpha") == ["alpha"]
    assert await names(ui, "?q=name%3D~et") == ["alphabet", "beta"]
    assert await names(ui, "?q=name%3D%7Bbeta%20gamma%7D") == ["beta", "gamma"]
    assert await names(ui, "?q=public%3Dtrue") == ["library"]
    assert await names(ui, "?q=owner%3Dalice,name%3D~bet") == ["alphabet", "beta"]
    assert await names(ui, "?name=_") == []  # LIKE wildcards are literal


async def test_list_pages_with_total_and_links(ui: Ui) -> None:
    for name in ("p1", "p2", "p3"):
        await create(ui, {"project_name": name})
    resp = await ui.client.get(f"{API}/projects?page=2&page_size=1&owner=alice", headers=ALICE)
    assert resp.status == 200
    assert resp.headers["X-Total-Count"] == "3"
    assert [p["name"] for p in await resp.json()] == ["p2"]
    links = resp.headers["Link"]
    assert '</api/v2.0/projects?page_size=1&owner=alice&page=1>; rel="prev"' in links
    assert '</api/v2.0/projects?page_size=1&owner=alice&page=3>; rel="next"' in links


@pytest.mark.parametrize(
    "query",
    ["?public=maybe", "?q=nope%3D1", "?sort=owner", "?page_size=101", "?q=public%3D~t", "?q=project_id%3Dx"],
)
async def test_bad_list_parameters_are_400(ui: Ui, query: str) -> None:
    await error(await ui.client.get(f"{API}/projects{query}", headers=ADMIN), 400, "BAD_REQUEST")


async def test_repo_count_counts_the_projects_own_repositories(ui: Ui) -> None:
    await create(ui, {"project_name": "team"})
    await create(ui, {"project_name": "team_x"})
    for name in ("team/a", "team/b/c", "team_x/d", "teamx/e", "team-y/f", "team0/g"):
        await add_repository(ui, name)
    counts = {
        p["name"]: p["repo_count"]
        for p in await (await ui.client.get(f"{API}/projects", headers=ALICE)).json()
    }
    assert counts == {"team": 2, "team_x": 1, "library": 0}
    assert (await get(ui, "team", **{"X-Is-Resource-Name": "true"}))["repo_count"] == 2


# -- update ------------------------------------------------------------------------------------


async def test_the_project_admin_changes_visibility(ui: Ui) -> None:
    project_id = await create(ui, {"project_name": "team"})
    before = await get(ui, project_id)
    resp = await ui.client.put(
        f"{API}/projects/{project_id}", json={"metadata": {"public": "true"}}, headers=ALICE
    )
    assert resp.status == 200, await resp.text()
    assert await resp.read() == b""
    assert "json" not in resp.headers.get("Content-Type", "")
    after = await get(ui, project_id)
    assert after["metadata"] == {"public": "true"}
    assert after["update_time"] >= before["update_time"]
    assert "team" in await names(ui, headers=ANONYMOUS)
    # By name, with the deprecated flag; a body without visibility changes nothing.
    resp = await ui.client.put(f"{API}/projects/team", json={"public": False}, headers=ADMIN)
    assert resp.status == 200
    assert (await get(ui, project_id))["metadata"] == {"public": "false"}
    resp = await ui.client.put(f"{API}/projects/team", json={"project_name": "other"}, headers=ADMIN)
    assert resp.status == 200
    assert (await get(ui, project_id))["name"] == "team"
    # Each change of visibility is an event (for the audit log), a body that changes nothing is not.
    events = await ui.events("project.update", count=2)
    assert [(e["data"]["operator"], e["data"]["public"]) for e in events] == [
        ("alice", True),
        ("admin", False),
    ]
    assert {e["data"]["project_id"] for e in events} == {project_id}


async def test_update_refusals(ui: Ui) -> None:
    project_id = await create(ui, {"project_name": "team"})
    ids = await add_users(ui, "bob")
    await set_member(ui, project_id, ids["bob"], Role.MAINTAINER)
    bob = basic("bob", PASSWORD)
    body = {"metadata": {"public": "true"}}
    await error(await ui.client.put(f"{API}/projects/{project_id}", json=body, headers=bob), 403, "FORBIDDEN")
    await error(await ui.client.put(f"{API}/projects/{project_id}", json=body), 401, "UNAUTHORIZED")
    await error(await ui.client.put(f"{API}/projects/nothing", json=body, headers=ADMIN), 404, "NOT_FOUND")
    bad = {"metadata": {"public": "yes"}}
    await error(
        await ui.client.put(f"{API}/projects/{project_id}", json=bad, headers=ALICE), 400, "BAD_REQUEST"
    )
    assert (await get(ui, project_id))["metadata"] == {"public": "false"}


# -- delete, deletable, summary ----------------------------------------------------------------


async def test_delete_is_refused_while_repositories_remain(ui: Ui) -> None:
    project_id = await create(ui, {"project_name": "team"})
    repository_id = await add_repository(ui, "team/app")
    deletable = await (await ui.client.get(f"{API}/projects/{project_id}/_deletable", headers=ALICE)).json()
    assert deletable["deletable"] is False
    assert "holds 1 repository:" in deletable["message"]
    message = await error(
        await ui.client.delete(f"{API}/projects/{project_id}", headers=ALICE), 412, "PRECONDITION"
    )
    assert "holds 1 repository:" in message
    assert (await get(ui, project_id))["name"] == "team"

    async def drop(conn: Any) -> None:
        from wharf_shared.db import tables as t

        await conn.execute(t.repository.delete().where(t.repository.c.id == repository_id))

    await ui.db_call(drop)
    deletable = await (await ui.client.get(f"{API}/projects/{project_id}/_deletable", headers=ALICE)).json()
    assert deletable == {"deletable": True}
    resp = await ui.client.delete(f"{API}/projects/{project_id}", headers=ALICE)
    assert resp.status == 200, await resp.text()
    assert await resp.read() == b""
    await error(await ui.client.get(f"{API}/projects/{project_id}", headers=ADMIN), 404, "NOT_FOUND")
    (event,) = await ui.events("project.delete")
    assert event["data"] == {"operator": "alice", "project": "team", "project_id": project_id}
    # The name is free again, and the old members are not members of the new project.
    new_id = await create(ui, {"project_name": "team"}, ADMIN)
    members = await (await ui.client.get(f"{API}/projects/{new_id}/members", headers=ADMIN)).json()
    assert [m["entity_name"] for m in members] == ["admin"]


async def test_delete_by_name_and_refusals(ui: Ui) -> None:
    await create(ui, {"project_name": "team"})
    await error(await ui.client.delete(f"{API}/projects/team"), 401, "UNAUTHORIZED")
    await add_users(ui, "bob")
    await error(
        await ui.client.delete(f"{API}/projects/team", headers=basic("bob", PASSWORD)), 403, "FORBIDDEN"
    )
    await error(await ui.client.delete(f"{API}/projects/nothing", headers=ADMIN), 404, "NOT_FOUND")
    resp = await ui.client.delete(f"{API}/projects/team", headers=ADMIN)
    assert resp.status == 200
    await error(await ui.client.delete(f"{API}/projects/team", headers=ADMIN), 404, "NOT_FOUND")
    assert len(await ui.events("project.delete")) == 1


async def test_summary(ui: Ui) -> None:
    project_id = await create(ui, {"project_name": "team", "metadata": {"public": "true"}})
    ids = await add_users(ui, "dev1", "dev2", "lim")
    await set_member(ui, project_id, ids["dev1"], Role.DEVELOPER)
    await set_member(ui, project_id, ids["dev2"], Role.DEVELOPER)
    await set_member(ui, project_id, ids["lim"], Role.LIMITED_GUEST)
    await add_repository(ui, "team/a")
    await add_repository(ui, "team/b")
    summary = await (await ui.client.get(f"{API}/projects/{project_id}/summary", headers=ALICE)).json()
    assert summary == {
        "repo_count": 2,
        "chart_count": 0,
        "project_admin_count": 1,
        "maintainer_count": 0,
        "developer_count": 2,
        "guest_count": 0,
        "limited_guest_count": 1,
    }
    # Member counts only for those who may list members (not a limited guest, not a stranger).
    for headers in (basic("lim", PASSWORD), ANONYMOUS):
        resp = await ui.client.get(f"{API}/projects/{project_id}/summary", headers=headers)
        assert await resp.json() == {"repo_count": 2, "chart_count": 0}
