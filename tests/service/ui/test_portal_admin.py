"""The portal's administration and account pages rendered by the ui (no browser): who may see
them, the sign-up page that exists only while self-registration is on, and the audit log's URL
filters (rows chosen in SQL; bad ones are the portal's 400 page)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.service.ui.conftest import ADMIN_PASSWORD, ALICE_PASSWORD, Ui
from wharf_shared.db import tables as t
from wharf_shared.db.types import utcnow

ADMIN_PAGES = ("/harbor/users", "/harbor/configs", "/harbor/logs")


async def sign_in(ui: Ui, username: str, password: str) -> None:
    """Later `text` calls carry this user's session cookie (the test client's jar keeps none
    for an IP address)."""
    resp = await ui.client.post("/c/login", data={"principal": username, "password": password})
    assert resp.status == 200, await resp.text()
    ui.client.session.cookie_jar.clear()
    ui.client.session.headers["Cookie"] = f"sid={resp.cookies['sid'].value}"


async def text(ui: Ui, path: str, status: int = 200) -> str:
    resp = await ui.client.get(path, allow_redirects=False)
    body = await resp.text()
    assert resp.status == status, (path, resp.status, body[:500])
    return body


@pytest.mark.parametrize("path", ADMIN_PAGES)
async def test_admin_pages_are_403_for_a_user_and_lead_others_to_sign_in(ui: Ui, path: str) -> None:
    resp = await ui.client.get(path, allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"].startswith("/harbor/sign-in?next=")
    await sign_in(ui, "alice", ALICE_PASSWORD)
    body = await text(ui, path, 403)
    assert "<h1>Not allowed</h1>" in body
    assert 'href="/harbor/users"' not in body  # no admin links in the nav


async def test_admin_sees_users_configuration_and_log(ui: Ui) -> None:
    await sign_in(ui, "admin", ADMIN_PASSWORD)
    users = await text(ui, "/harbor/users?username=ali")
    assert "alice@example.test" in users
    assert "Make alice a system admin" in users
    # The admin's own row offers neither a flag change nor a delete (the API refuses both).
    assert "Delete user admin" not in users
    assert "Make admin a system admin" not in users
    configs = await text(ui, "/harbor/configs")
    assert 'name="project_creation_restriction" value="everyone" checked' in configs
    assert 'name="token_expiration"' in configs
    assert "<code>db_auth</code>" in configs
    await text(ui, "/harbor/logs")


async def test_the_audit_log_filters_come_from_the_url(ui: Ui) -> None:
    await sign_in(ui, "admin", ADMIN_PASSWORD)

    # The audit rows are written by the job service's consumer; here, straight into the table.
    async def add(conn: Any) -> None:
        now = utcnow()
        await conn.execute(
            t.audit_log.insert(),
            [
                {
                    "event_id": "e1",
                    "resource_type": "user",
                    "resource": "zed",
                    "operation": "create",
                    "username": "admin",
                    "op_time": now,
                },
                {
                    "event_id": "e2",
                    "resource_type": "configuration",
                    "resource": "read_only",
                    "operation": "update",
                    "username": "admin",
                    "op_time": now,
                },
            ],
        )

    await ui.db_call(add)
    created = await text(ui, "/harbor/logs?operation=create")
    assert ">zed<" in created
    assert "read_only" not in created
    updated = await text(ui, "/harbor/logs?resource_type=configuration&resource=read")
    assert "read_only" in updated
    assert ">zed<" not in updated
    none = await text(ui, "/harbor/logs?to=2001-01-01")
    assert "No entry matches these filters." in none
    assert "a date like" in await text(ui, "/harbor/logs?from=yesterday", 400)


async def test_account_page_shows_the_users_own_profile(ui: Ui) -> None:
    await sign_in(ui, "alice", ALICE_PASSWORD)
    body = await text(ui, "/harbor/account")
    assert 'value="alice@example.test"' in body
    assert f'data-api="/api/v2.0/users/{ui.alice_id}/password"' in body
    assert "data-local" in body


async def test_sign_up_exists_only_while_self_registration_is_on(ui: Ui) -> None:
    await ui.set_runtime(self_registration=False)
    assert "Self-registration is off" in await text(ui, "/harbor/sign-up", 404)
    assert 'href="/harbor/sign-up"' not in await text(ui, "/harbor/sign-in")
    await ui.set_runtime(self_registration=True)
    assert 'data-api="/api/v2.0/users"' in await text(ui, "/harbor/sign-up")
    assert 'href="/harbor/sign-up"' in await text(ui, "/harbor/sign-in")
    # The cookie of a session that ended goes: the sign-up is an anonymous call.
    resp = await ui.client.get("/harbor/sign-up", headers={"Cookie": "sid=ended"})
    assert resp.status == 200
    assert "sid=;" in resp.headers["Set-Cookie"]
    # Someone signed in has an account already.
    await sign_in(ui, "alice", ALICE_PASSWORD)
    resp = await ui.client.get("/harbor/sign-up", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/harbor/projects"
