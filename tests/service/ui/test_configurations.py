"""`/api/v2.0/configurations`: Harbor's shapes (ConfigurationsResponse, Configurations), every
refusal with Harbor's code and status, for each role, on each database; a change is stored,
seen by this instance at once and announced to the others over Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import delete

from tests.service.ui.conftest import ADMIN, ALICE, ANONYMOUS, Ui, basic
from wharf_shared import rbac
from wharf_shared.db import projects
from wharf_shared.db import tables as t
from wharf_shared.keys import RUNTIME
from wharf_ui.configurations import KEYS
from wharf_ui.handlers.configurations import Configurations

URL = "/api/v2.0/configurations"
BASIC_KEYS = (
    "auth_mode",
    "project_creation_restriction",
    "self_registration",
    "token_expiration",
    "read_only",
    "anonymous_access",
)
PASSWORD = "Member-secret-1"
ROLES = {
    "projectAdmin": rbac.Role.PROJECT_ADMIN,
    "maintainer": rbac.Role.MAINTAINER,
    "developer": rbac.Role.DEVELOPER,
    "guest": rbac.Role.GUEST,
    "limitedGuest": rbac.Role.LIMITED_GUEST,
}


async def error(resp: Any, status: int, code: str) -> str:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert body["errors"][0]["code"] == code
    message: str = body["errors"][0]["message"]
    assert message
    return message


async def member_of_a_project(ui: Ui, role: str) -> dict[str, str]:
    """The credentials of a user holding `role` in a project (alice for a non-member)."""
    if role == "non-member":
        return ALICE
    user_id = await ui.add_user(role.lower(), PASSWORD)
    project_id = await ui.add_project("team", ui.admin_id)

    async def go(conn: Any) -> None:
        await projects.set_member(conn, project_id, user_id, ROLES[role])

    await ui.db_call(go)
    return basic(role.lower(), PASSWORD)


async def drop_alice(ui: Ui) -> None:
    async def go(conn: Any) -> None:
        await conn.execute(delete(t.user_account).where(t.user_account.c.username == "alice"))

    await ui.db_call(go)


# -- read ------------------------------------------------------------------------------------------


async def test_admin_reads_every_key_as_value_and_editable(ui: Ui) -> None:
    resp = await ui.client.get(URL, headers=ADMIN)
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "application/json"
    body = await resp.json()
    # Every key but the secrets (test_configurations_identity checks the identity modes' keys).
    assert set(body) == {name for name, key in KEYS.items() if not key.secret}
    assert {k: v for k, v in body.items() if k in BASIC_KEYS} == {
        # alice exists: the auth mode can no longer change (Harbor's rule)
        "auth_mode": {"value": "db_auth", "editable": False},
        "project_creation_restriction": {"value": "everyone", "editable": True},
        "self_registration": {"value": False, "editable": True},
        "token_expiration": {"value": 30, "editable": True},  # minutes, Harbor's unit
        "read_only": {"value": False, "editable": True},
        "anonymous_access": {"value": True, "editable": True},
    }


async def test_auth_mode_is_editable_while_admin_is_the_only_user(ui: Ui) -> None:
    await drop_alice(ui)
    body = await (await ui.client.get(URL, headers=ADMIN)).json()
    assert body["auth_mode"] == {"value": "db_auth", "editable": True}


async def test_a_lifetime_of_seconds_shows_in_whole_minutes_rounded_up(ui: Ui) -> None:
    await ui.set_runtime(token_lifetime_seconds=90)
    body = await (await ui.client.get(URL, headers=ADMIN)).json()
    assert body["token_expiration"]["value"] == 2


# -- change ----------------------------------------------------------------------------------------


async def test_admin_changes_settings_seen_at_once(ui: Ui) -> None:
    change = {
        "project_creation_restriction": "adminonly",
        "self_registration": True,
        "token_expiration": 5,
        "read_only": False,
        "anonymous_access": False,
        "auth_mode": "db_auth",  # unchanged: allowed even with users
    }
    resp = await ui.client.put(URL, json=change, headers=ADMIN)
    assert resp.status == 200, await resp.text()
    assert await resp.read() == b""
    assert "json" not in resp.headers.get("Content-Type", "")
    body = await (await ui.client.get(URL, headers=ADMIN)).json()
    assert {k: v["value"] for k, v in body.items() if k in change} == change
    # This instance applies it without waiting for its cache to age.
    seen = await ui.client.app[RUNTIME].get()  # type: ignore[index]
    assert seen.token_lifetime_seconds == 300
    assert seen.project_creation_restriction == "adminonly"
    assert seen.anonymous_access is False
    info = await (await ui.client.get("/api/v2.0/systeminfo", headers=ADMIN)).json()
    assert info["self_registration"] is True
    assert info["project_creation_restriction"] == "adminonly"


async def test_null_and_absent_keys_are_left_as_they_are(ui: Ui) -> None:
    resp = await ui.client.put(URL, json={"self_registration": True, "read_only": None}, headers=ADMIN)
    assert resp.status == 200, await resp.text()
    resp = await ui.client.put(URL, json={}, headers=ADMIN)
    assert resp.status == 200, await resp.text()
    body = await (await ui.client.get(URL, headers=ADMIN)).json()
    assert body["self_registration"]["value"] is True
    assert body["read_only"]["value"] is False
    assert body["token_expiration"]["value"] == 30


async def test_a_change_is_audited_with_the_keys_it_changed(ui: Ui) -> None:
    unchanged = {"read_only": False, "project_creation_restriction": "everyone"}
    resp = await ui.client.put(URL, json=unchanged, headers=ADMIN)
    assert resp.status == 200, await resp.text()
    body = {**unchanged, "self_registration": True, "token_expiration": 45}
    resp = await ui.client.put(URL, json=body, headers=ADMIN)
    assert resp.status == 200, await resp.text()
    # One event: the first PUT changed nothing; the second names what it changed.
    (event,) = await ui.events("configuration.update")
    assert event["data"]["operator"] == "admin"
    assert event["data"]["keys"] == ["self_registration", "token_expiration"]


async def test_a_change_is_announced_to_every_process(ui: Ui) -> None:
    redis = Redis.from_url(ui.settings.redis_url)
    pubsub = redis.pubsub()
    try:
        await pubsub.subscribe(ui.settings.runtime_channel)
        assert (await pubsub.get_message(timeout=5))["type"] == "subscribe"  # type: ignore[index]
        resp = await ui.client.put(URL, json={"read_only": True}, headers=ADMIN)
        assert resp.status == 200
        message = await pubsub.get_message(timeout=5)
        assert message is not None
        assert message["type"] == "message"
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await redis.aclose()


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"email_host": "smtp.example.test"}, "email_host"),  # Harbor's, not Wharf's
        ({"no_such_key": 1}, "no_such_key"),
        ({"self_registration": "true"}, "self_registration"),
        ({"read_only": 1}, "read_only"),
        ({"anonymous_access": "no"}, "anonymous_access"),
        ({"token_expiration": "30"}, "token_expiration"),
        ({"token_expiration": 1.5}, "token_expiration"),
        ({"token_expiration": True}, "token_expiration"),
        ({"token_expiration": 0}, "token_expiration"),
        ({"token_expiration": 2**40}, "token_expiration"),
        ({"project_creation_restriction": "nobody"}, "project_creation_restriction"),
        ({"project_creation_restriction": 1}, "project_creation_restriction"),
        ({"auth_mode": "uaa_auth"}, "auth_mode"),  # Harbor's, not implemented here
        ({"auth_mode": "magic"}, "auth_mode"),
        ({"auth_mode": "db\x00auth"}, "auth_mode"),
    ],
)
async def test_bad_keys_and_values_are_400_naming_the_key(ui: Ui, body: dict[str, Any], named: str) -> None:
    resp = await ui.client.put(URL, json={"self_registration": True, **body}, headers=ADMIN)
    message = await error(resp, 400, "BAD_REQUEST")
    assert named in message
    # Nothing of a refused body is stored, not even its valid keys.
    got = await (await ui.client.get(URL, headers=ADMIN)).json()
    assert got["self_registration"]["value"] is False


@pytest.mark.parametrize("raw", [b"[]", b"not json", b'"read_only"', b""])
async def test_a_body_that_is_not_an_object_is_400(ui: Ui, raw: bytes) -> None:
    resp = await ui.client.put(URL, data=raw, headers={**ADMIN, "Content-Type": "application/json"})
    await error(resp, 400, "BAD_REQUEST")


async def test_auth_mode_cannot_change_once_users_exist(ui: Ui) -> None:
    # Changed while admin was the only user (here: by hand); alice came later.
    await ui.set_runtime(auth_mode="ldap_auth")
    resp = await ui.client.put(URL, json={"auth_mode": "db_auth"}, headers=ADMIN)
    message = await error(resp, 400, "BAD_REQUEST")
    assert "auth_mode" in message
    await drop_alice(ui)
    resp = await ui.client.put(URL, json={"auth_mode": "db_auth"}, headers=ADMIN)
    assert resp.status == 200, await resp.text()
    body = await (await ui.client.get(URL, headers=ADMIN)).json()
    assert body["auth_mode"]["value"] == "db_auth"


# -- who may ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [*ROLES, "non-member"])
async def test_only_system_admins_read_or_change(ui: Ui, role: str) -> None:
    headers = await member_of_a_project(ui, role)
    await error(await ui.client.get(URL, headers=headers), 403, "FORBIDDEN")
    await error(await ui.client.put(URL, json={"read_only": True}, headers=headers), 403, "FORBIDDEN")
    assert (await ui.client.app[RUNTIME].get()).read_only is False  # type: ignore[index]


async def test_anonymous_and_wrong_credentials_are_401(ui: Ui) -> None:
    for headers in (ANONYMOUS, basic("admin", "wrong-password")):
        await error(await ui.client.get(URL, headers=headers), 401, "UNAUTHORIZED")
        await error(await ui.client.put(URL, json={"read_only": True}, headers=headers), 401, "UNAUTHORIZED")


async def test_the_body_model_and_the_domain_know_the_same_keys() -> None:
    assert set(Configurations.model_fields) == set(KEYS)


async def test_concurrent_reads_after_a_change_all_see_it(ui: Ui) -> None:
    """Many requests racing right after a change read the new value (one SQL read for all)."""
    resp = await ui.client.put(URL, json={"project_creation_restriction": "adminonly"}, headers=ADMIN)
    assert resp.status == 200
    infos = await asyncio.gather(*(ui.client.get("/api/v2.0/systeminfo", headers=ADMIN) for _ in range(10)))
    for info in infos:
        assert (await info.json())["project_creation_restriction"] == "adminonly"
