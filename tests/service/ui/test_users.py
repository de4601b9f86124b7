"""`/api/v2.0/users…` for each role (system admin, a normal user, anonymous), each refusal with
Harbor's code and status, on each database."""

from __future__ import annotations

from typing import Any

import pytest

from tests.service.ui.conftest import ADMIN, ADMIN_PASSWORD, ALICE, ALICE_PASSWORD, ANONYMOUS, Ui, basic

NEW = {"username": "bob", "password": "Bob-secret-1", "email": "bob@example.test", "realname": "Bob"}


async def error(resp: Any, status: int, code: str) -> str:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert body["errors"][0]["code"] == code
    message: str = body["errors"][0]["message"]
    assert message
    return message


# -- create ------------------------------------------------------------------------------------


async def test_admin_creates_a_user_located_by_id(ui: Ui) -> None:
    resp = await ui.client.post("/api/v2.0/users", json=NEW, headers=ADMIN)
    assert resp.status == 201, await resp.text()
    new_id = int(resp.headers["Location"].rsplit("/", 1)[1])
    assert resp.headers["Location"] == f"/api/v2.0/users/{new_id}"
    got = await (await ui.client.get(f"/api/v2.0/users/{new_id}", headers=ADMIN)).json()
    assert got["username"] == "bob"
    assert got["email"] == "bob@example.test"
    assert got["sysadmin_flag"] is False
    assert got["creation_time"].endswith("Z")
    # The new user signs in with the password given.
    me = await ui.client.get("/api/v2.0/users/current", headers=basic("bob", "Bob-secret-1"))
    assert (await me.json())["user_id"] == new_id
    # The creation reaches the event stream (for the audit log), with the admin as operator.
    (event,) = await ui.events("user.create")
    assert event["data"] == {"operator": "admin", "username": "bob", "user_id": new_id}


async def test_location_holds_the_name_when_asked(ui: Ui) -> None:
    headers = {**ADMIN, "X-Resource-Name-In-Location": "true"}
    resp = await ui.client.post("/api/v2.0/users", json=NEW, headers=headers)
    assert resp.status == 201
    assert resp.headers["Location"] == "/api/v2.0/users/bob"


async def test_normal_user_may_not_create_users(ui: Ui) -> None:
    resp = await ui.client.post("/api/v2.0/users", json=NEW, headers=ALICE)
    await error(resp, 403, "FORBIDDEN")


async def test_anonymous_creates_only_with_self_registration(ui: Ui) -> None:
    resp = await ui.client.post("/api/v2.0/users", json=NEW, headers=ANONYMOUS)
    await error(resp, 401, "UNAUTHORIZED")
    await ui.set_runtime(self_registration=True)
    resp = await ui.client.post("/api/v2.0/users", json=NEW, headers=ANONYMOUS)
    assert resp.status == 201, await resp.text()


async def test_no_local_users_outside_database_auth(ui: Ui) -> None:
    await ui.set_runtime(auth_mode="ldap_auth")
    resp = await ui.client.post("/api/v2.0/users", json=NEW, headers=ADMIN)
    await error(resp, 403, "FORBIDDEN")


@pytest.mark.parametrize("field", ["username", "email"])
async def test_a_taken_username_or_email_is_409(ui: Ui, field: str) -> None:
    body = {**NEW, field: {"username": "alice", "email": "alice@example.test"}[field]}
    resp = await ui.client.post("/api/v2.0/users", json=body, headers=ADMIN)
    message = await error(resp, 409, "CONFLICT")
    assert field in message


@pytest.mark.parametrize(
    "password",
    ["Short1", "alllowercase1", "ALLUPPERCASE1", "NoDigitsHere", "Aa1" + "x" * 126],
    ids=["short", "no-upper", "no-lower", "no-digit", "too-long"],
)
async def test_password_policy_is_harbors(ui: Ui, password: str) -> None:
    resp = await ui.client.post("/api/v2.0/users", json={**NEW, "password": password}, headers=ADMIN)
    message = await error(resp, 400, "BAD_REQUEST")
    assert "8 to 128 characters" in message


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"username": 5, "password": "Bob-secret-1"}', "username"),
        (b'{"password": "Bob-secret-1"}', "username"),
        (b'{"username": "bo b", "password": "Bob-secret-1"}', "username"),
        (b'{"username": "bob", "password": "Bob-secret-1", "email": "nope"}', "email"),
        (b'{"username": "b\\u0000b", "password": "Bob-secret-1"}', "NUL"),
        (b'{"username": "b\\ud800", "password": "Bob-secret-1"}', "surrogate"),
    ],
    ids=["malformed", "array", "wrong-type", "missing", "space", "email", "nul", "surrogate"],
)
async def test_bad_bodies_are_400_with_a_message(ui: Ui, raw: bytes, needle: str) -> None:
    headers = {**ADMIN, "Content-Type": "application/json"}
    resp = await ui.client.post("/api/v2.0/users", data=raw, headers=headers)
    message = await error(resp, 400, "BAD_REQUEST")
    assert needle in message


# -- read --------------------------------------------------------------------------------------


async def test_a_user_reads_themselves_but_not_others(ui: Ui) -> None:
    own = await ui.client.get(f"/api/v2.0/users/{ui.alice_id}", headers=ALICE)
    assert (await own.json())["username"] == "alice"
    other = await ui.client.get(f"/api/v2.0/users/{ui.admin_id}", headers=ALICE)
    await error(other, 403, "FORBIDDEN")
    anonymous = await ui.client.get(f"/api/v2.0/users/{ui.alice_id}")
    await error(anonymous, 401, "UNAUTHORIZED")


async def test_unknown_and_malformed_ids(ui: Ui) -> None:
    await error(await ui.client.get("/api/v2.0/users/999999", headers=ADMIN), 404, "NOT_FOUND")
    await error(await ui.client.get("/api/v2.0/users/abc", headers=ADMIN), 400, "BAD_REQUEST")
    await error(await ui.client.get(f"/api/v2.0/users/{2**64}", headers=ADMIN), 400, "BAD_REQUEST")


async def test_current_user(ui: Ui) -> None:
    body = await (await ui.client.get("/api/v2.0/users/current", headers=ADMIN)).json()
    assert body["username"] == "admin"
    assert body["sysadmin_flag"] is True
    assert "password" not in str(body)
    await error(await ui.client.get("/api/v2.0/users/current"), 401, "UNAUTHORIZED")


# -- list and search ---------------------------------------------------------------------------


async def test_list_is_for_admins(ui: Ui) -> None:
    await error(await ui.client.get("/api/v2.0/users", headers=ALICE), 403, "FORBIDDEN")
    await error(await ui.client.get("/api/v2.0/users"), 401, "UNAUTHORIZED")


async def test_list_pages_with_total_and_links(ui: Ui) -> None:
    for i in range(5):
        await ui.add_user(f"user{i}", "Password-1")
    # admin, alice, user0..user4: 7 users.
    resp = await ui.client.get(
        "/api/v2.0/users", params={"page_size": "3", "sort": "username", "q": "username=~u"}, headers=ADMIN
    )
    assert resp.status == 200
    assert resp.headers["X-Total-Count"] == "5"
    assert [u["username"] for u in await resp.json()] == ["user0", "user1", "user2"]
    assert (
        resp.headers["Link"]
        == '</api/v2.0/users?page_size=3&sort=username&q=username%3D~u&page=2>; rel="next"'
    )
    last = await ui.client.get(
        "/api/v2.0/users",
        params={"page": "2", "page_size": "3", "sort": "username", "q": "username=~u"},
        headers=ADMIN,
    )
    assert [u["username"] for u in await last.json()] == ["user3", "user4"]
    assert (
        last.headers["Link"]
        == '</api/v2.0/users?page_size=3&sort=username&q=username%3D~u&page=1>; rel="prev"'
    )


async def test_list_filters_and_sorts(ui: Ui) -> None:
    await ui.add_user("carol", "Password-1", email="carol@example.test")
    resp = await ui.client.get(
        "/api/v2.0/users", params={"q": "username={alice carol}", "sort": "-username"}, headers=ADMIN
    )
    assert [u["username"] for u in await resp.json()] == ["carol", "alice"]
    exact = await ui.client.get("/api/v2.0/users", params={"q": "email=alice@example.test"}, headers=ADMIN)
    assert [u["username"] for u in await exact.json()] == ["alice"]
    admins = await ui.client.get("/api/v2.0/users", params={"q": "sysadmin_flag=true"}, headers=ADMIN)
    assert [u["username"] for u in await admins.json()] == ["admin"]
    ranged = await ui.client.get("/api/v2.0/users", params={"q": f"user_id=[{ui.alice_id}~]"}, headers=ADMIN)
    assert "admin" not in [u["username"] for u in await ranged.json()]
    # A fuzzy match takes the value literally: % is no wildcard.
    literal = await ui.client.get("/api/v2.0/users", params={"q": "username=~%"}, headers=ADMIN)
    assert await literal.json() == []


@pytest.mark.parametrize(
    "params",
    [
        {"page": "0"},
        {"page": "x"},
        {"page_size": "101"},
        {"page_size": "0"},
        {"sort": "password"},
        {"q": "password=x"},
        {"q": "user_id=abc"},
        {"q": "sysadmin_flag=maybe"},
        {"q": "username=[a~b"},
        {"q": "noequals"},
        {"q": "creation_time=[yesterday~]"},
        {"q": "sysadmin_flag=~tr"},
    ],
    ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items()),
)
async def test_bad_list_parameters_are_400(ui: Ui, params: dict[str, str]) -> None:
    resp = await ui.client.get("/api/v2.0/users", params=params, headers=ADMIN)
    await error(resp, 400, "BAD_REQUEST")


async def test_search_is_for_any_signed_in_user(ui: Ui) -> None:
    resp = await ui.client.get("/api/v2.0/users/search", params={"username": "adm"}, headers=ALICE)
    assert resp.status == 200
    assert await resp.json() == [{"user_id": ui.admin_id, "username": "admin"}]
    assert resp.headers["X-Total-Count"] == "1"
    await error(await ui.client.get("/api/v2.0/users/search", params={"username": "a"}), 401, "UNAUTHORIZED")
    await error(await ui.client.get("/api/v2.0/users/search", headers=ALICE), 400, "BAD_REQUEST")


# -- change ------------------------------------------------------------------------------------


async def test_a_user_updates_their_profile(ui: Ui) -> None:
    body = {"email": "a2@example.test", "realname": "Alice A.", "comment": "hi"}
    resp = await ui.client.put(f"/api/v2.0/users/{ui.alice_id}", json=body, headers=ALICE)
    assert resp.status == 200
    assert await resp.read() == b""
    assert resp.content_type != "application/json"
    got = await (await ui.client.get("/api/v2.0/users/current", headers=ALICE)).json()
    assert (got["email"], got["realname"], got["comment"]) == ("a2@example.test", "Alice A.", "hi")


async def test_profile_refusals(ui: Ui) -> None:
    bob = await ui.add_user("bob", "Password-1", email="bob@example.test")
    other = await ui.client.put(f"/api/v2.0/users/{bob}", json={"realname": "x"}, headers=ALICE)
    await error(other, 403, "FORBIDDEN")
    taken = await ui.client.put(
        f"/api/v2.0/users/{ui.alice_id}", json={"email": "bob@example.test"}, headers=ALICE
    )
    await error(taken, 409, "CONFLICT")
    missing = await ui.client.put("/api/v2.0/users/999999", json={"realname": "x"}, headers=ADMIN)
    await error(missing, 404, "NOT_FOUND")
    anonymous = await ui.client.put(f"/api/v2.0/users/{bob}", json={"realname": "x"})
    await error(anonymous, 401, "UNAUTHORIZED")
    # An admin changes anyone's profile.
    ok = await ui.client.put(f"/api/v2.0/users/{bob}", json={"realname": "Robert"}, headers=ADMIN)
    assert ok.status == 200


async def test_own_password_change_needs_the_old_password(ui: Ui) -> None:
    url = f"/api/v2.0/users/{ui.alice_id}/password"
    wrong = await ui.client.put(
        url, json={"old_password": "nope", "new_password": "Newer-pass-2"}, headers=ALICE
    )
    await error(wrong, 403, "FORBIDDEN")
    weak = await ui.client.put(
        url, json={"old_password": ALICE_PASSWORD, "new_password": "weak"}, headers=ALICE
    )
    await error(weak, 400, "BAD_REQUEST")
    same = await ui.client.put(
        url, json={"old_password": ALICE_PASSWORD, "new_password": ALICE_PASSWORD}, headers=ALICE
    )
    await error(same, 400, "BAD_REQUEST")
    ok = await ui.client.put(
        url, json={"old_password": ALICE_PASSWORD, "new_password": "Newer-pass-2"}, headers=ALICE
    )
    assert ok.status == 200
    # The old password no longer signs in (the credential cache is bound to the old hash).
    await error(await ui.client.get("/api/v2.0/users/current", headers=ALICE), 401, "UNAUTHORIZED")
    assert (
        await ui.client.get("/api/v2.0/users/current", headers=basic("alice", "Newer-pass-2"))
    ).status == 200


async def test_admin_sets_another_users_password_without_the_old_one(ui: Ui) -> None:
    url = f"/api/v2.0/users/{ui.alice_id}/password"
    resp = await ui.client.put(url, json={"new_password": "Reset-pass-3"}, headers=ADMIN)
    assert resp.status == 200
    assert (
        await ui.client.get("/api/v2.0/users/current", headers=basic("alice", "Reset-pass-3"))
    ).status == 200
    # ...but their own only with it.
    own = await ui.client.put(
        f"/api/v2.0/users/{ui.admin_id}/password", json={"new_password": "Reset-pass-3"}, headers=ADMIN
    )
    await error(own, 403, "FORBIDDEN")
    ok = await ui.client.put(
        f"/api/v2.0/users/{ui.admin_id}/password",
        json={"old_password": ADMIN_PASSWORD, "new_password": "Admin-secret-2"},
        headers=ADMIN,
    )
    assert ok.status == 200


async def test_a_user_may_not_set_anothers_password(ui: Ui) -> None:
    resp = await ui.client.put(
        f"/api/v2.0/users/{ui.admin_id}/password", json={"new_password": "Takeover-1"}, headers=ALICE
    )
    await error(resp, 403, "FORBIDDEN")


async def test_sysadmin_flag(ui: Ui) -> None:
    url = f"/api/v2.0/users/{ui.alice_id}/sysadmin"
    await error(await ui.client.put(url, json={"sysadmin_flag": True}, headers=ALICE), 403, "FORBIDDEN")
    await error(await ui.client.put(url, json={"sysadmin_flag": True}), 401, "UNAUTHORIZED")
    await error(await ui.client.put(url, json={"sysadmin_flag": "yes"}, headers=ADMIN), 400, "BAD_REQUEST")
    resp = await ui.client.put(url, json={"sysadmin_flag": True}, headers=ADMIN)
    assert resp.status == 200
    assert await (await ui.client.get("/api/v2.0/users", headers=ALICE)).json()  # alice lists now
    own = await ui.client.put(
        f"/api/v2.0/users/{ui.admin_id}/sysadmin", json={"sysadmin_flag": False}, headers=ADMIN
    )
    await error(own, 403, "FORBIDDEN")
    missing = await ui.client.put(
        "/api/v2.0/users/999999/sysadmin", json={"sysadmin_flag": True}, headers=ADMIN
    )
    await error(missing, 404, "NOT_FOUND")


async def test_delete(ui: Ui) -> None:
    bob = await ui.add_user("bob", "Password-1")
    await error(await ui.client.delete(f"/api/v2.0/users/{bob}", headers=ALICE), 403, "FORBIDDEN")
    await error(await ui.client.delete(f"/api/v2.0/users/{bob}"), 401, "UNAUTHORIZED")
    await error(await ui.client.delete(f"/api/v2.0/users/{ui.admin_id}", headers=ADMIN), 403, "FORBIDDEN")
    resp = await ui.client.delete(f"/api/v2.0/users/{bob}", headers=ADMIN)
    assert resp.status == 200
    assert await resp.read() == b""
    await error(await ui.client.get(f"/api/v2.0/users/{bob}", headers=ADMIN), 404, "NOT_FOUND")
    await error(await ui.client.delete(f"/api/v2.0/users/{bob}", headers=ADMIN), 404, "NOT_FOUND")
    (event,) = await ui.events("user.delete")
    assert event["data"] == {"operator": "admin", "username": "bob", "user_id": bob}


async def test_a_self_registered_user_is_their_own_operator(ui: Ui) -> None:
    await ui.set_runtime(self_registration=True)
    resp = await ui.client.post("/api/v2.0/users", json=NEW)
    assert resp.status == 201, await resp.text()
    (event,) = await ui.events("user.create")
    assert event["data"]["operator"] == "bob"


async def test_a_refused_creation_writes_no_event(ui: Ui) -> None:
    await error(await ui.client.post("/api/v2.0/users", json=NEW, headers=ALICE), 403, "FORBIDDEN")
    taken = {**NEW, "username": "alice"}
    await error(await ui.client.post("/api/v2.0/users", json=taken, headers=ADMIN), 409, "CONFLICT")
    await ui.client.post(
        "/api/v2.0/users", json={**NEW, "username": "carol", "email": "c@x.test"}, headers=ADMIN
    )
    events = await ui.events("user.create")
    assert [e["data"]["username"] for e in events] == ["carol"]


async def test_a_user_who_owns_projects_is_not_deleted(ui: Ui) -> None:
    await ui.add_project("alices", ui.alice_id)
    resp = await ui.client.delete(f"/api/v2.0/users/{ui.alice_id}", headers=ADMIN)
    message = await error(resp, 412, "PRECONDITION")
    assert "alices" in message


# -- permissions -------------------------------------------------------------------------------


async def test_permissions_in_a_project(ui: Ui) -> None:
    private = await ui.add_project("private", ui.admin_id)
    public = await ui.add_project("open", ui.admin_id, public=True)
    resp = await ui.client.get(
        "/api/v2.0/users/current/permissions", params={"scope": f"/project/{public}"}, headers=ALICE
    )
    granted = {(p["resource"], p["action"]) for p in await resp.json()}
    assert (f"/project/{public}/repository", "pull") in granted
    assert (f"/project/{public}/repository", "push") not in granted
    relative = await ui.client.get(
        "/api/v2.0/users/current/permissions",
        params={"scope": f"/project/{public}", "relative": "true"},
        headers=ALICE,
    )
    assert {"resource": "repository", "action": "pull"} in await relative.json()
    none = await ui.client.get(
        "/api/v2.0/users/current/permissions", params={"scope": f"/project/{private}"}, headers=ALICE
    )
    assert await none.json() == []
    admin = await ui.client.get(
        "/api/v2.0/users/current/permissions",
        params={"scope": f"/project/{private}", "relative": "true"},
        headers=ADMIN,
    )
    assert {"resource": "repository", "action": "delete"} in await admin.json()


async def test_system_permissions(ui: Ui) -> None:
    admin = await (await ui.client.get("/api/v2.0/users/current/permissions", headers=ADMIN)).json()
    assert {"resource": "/system/user", "action": "create"} in admin
    alice = await (await ui.client.get("/api/v2.0/users/current/permissions", headers=ALICE)).json()
    assert alice == [{"resource": "/system/project", "action": "create"}]
    await ui.set_runtime(project_creation_restriction="adminonly")
    alice = await (await ui.client.get("/api/v2.0/users/current/permissions", headers=ALICE)).json()
    assert alice == []
    await error(await ui.client.get("/api/v2.0/users/current/permissions"), 401, "UNAUTHORIZED")
    bad = await ui.client.get("/api/v2.0/users/current/permissions", params={"scope": "/nope"}, headers=ALICE)
    await error(bad, 400, "BAD_REQUEST")


@pytest.mark.parametrize(
    "query",
    [
        "username=%ED%A0%80",
        "username=%FF%FE",
        "username=a%00b",
    ],
    ids=["surrogate", "not-utf8", "nul"],
)
async def test_search_with_undecodable_names_is_never_a_5xx(ui: Ui, query: str) -> None:
    resp = await ui.client.get(f"/api/v2.0/users/search?{query}", headers=ALICE)
    assert resp.status in (200, 400), await resp.text()
    listed = await ui.client.get(f"/api/v2.0/users?q={query.replace('=', '%3D~')}", headers=ADMIN)
    assert listed.status in (200, 400), await listed.text()


async def test_password_and_sysadmin_changes_are_audited_without_the_password(ui: Ui) -> None:
    resp = await ui.client.put(
        f"/api/v2.0/users/{ui.alice_id}/password", json={"new_password": "Reset-by-admin-2"}, headers=ADMIN
    )
    assert resp.status == 200, await resp.text()
    for flag in (True, True, False):  # the second changes nothing: no event
        resp = await ui.client.put(
            f"/api/v2.0/users/{ui.alice_id}/sysadmin", json={"sysadmin_flag": flag}, headers=ADMIN
        )
        assert resp.status == 200, await resp.text()
    events = await ui.events("user.update", count=3)
    assert [e["data"]["changed"] for e in events] == ["password", "sysadmin", "sysadmin removed"]
    for event in events:
        assert event["data"]["username"] == "alice"
        assert event["data"]["operator"] == "admin"
        assert "Reset-by-admin-2" not in str(event)
