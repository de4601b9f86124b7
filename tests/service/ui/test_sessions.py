"""Portal sessions: `POST /c/login`, `GET /c/logout`, the `sid` cookie on two ui instances that
share Redis (no affinity), sliding expiry against an injected clock, CSRF for cookie-authenticated
writes, the shared login throttle, and sessions that end with their user's password or account."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.service.ui.conftest import ADMIN, ADMIN_PASSWORD, ALICE, ALICE_PASSWORD, Ui, basic, ui_settings
from tests.service.ui.test_users import error
from wharf_shared.config import Settings
from wharf_shared.db import accounts
from wharf_shared.setup import ensure_accounts
from wharf_ui.app import create_app

LIFETIME = 600
CSRF = "X-Harbor-CSRF-Token"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Portal:
    ui: Ui  # instance A (with the fixture's helpers)
    other: TestClient  # type: ignore[type-arg]  # instance B, same database and Redis
    clock: Clock

    @property
    def one(self) -> TestClient:  # type: ignore[type-arg]
        return self.ui.client


async def start(aiohttp_client: Any, settings: Settings, clock: Clock) -> tuple[Any, Any]:
    await ensure_accounts(settings)
    one = await aiohttp_client(create_app(settings, clock=clock))
    other = await aiohttp_client(create_app(settings, clock=clock))
    return one, other


def portal_settings(tmp_path: Path, database_url: str, redis_url: str, **extra: Any) -> Settings:
    token = {"throttle_failures": 3, "throttle_address_failures": 50, "throttle_lockout_seconds": 60}
    return ui_settings(
        tmp_path, database_url, redis_url, ui={"session_seconds": LIFETIME}, token=token, **extra
    )


@pytest.fixture
async def portal(aiohttp_client: Any, tmp_path: Path, database_url: str, redis_url: str) -> Portal:
    clock = Clock()
    settings = portal_settings(tmp_path, database_url, redis_url)
    one, other = await start(aiohttp_client, settings, clock)
    ui = Ui(settings, one, 0, 0)
    ui.alice_id = await ui.add_user("alice", ALICE_PASSWORD, email="alice@example.test")

    async def admin_id(conn: Any) -> int:
        admin = await accounts.find_user(conn, "admin")
        assert admin is not None
        return admin.id

    ui.admin_id = await ui.db_call(admin_id)
    return Portal(ui, other, clock)


@dataclass
class Signed:
    sid: str
    csrf: str

    def cookie(self, *, csrf: bool = False) -> dict[str, str]:
        value = f"sid={self.sid}" + (f"; __csrf={self.csrf}" if csrf else "")
        return {"Cookie": value}


async def sign_in(client: Any, username: str = "alice", password: str = ALICE_PASSWORD) -> Signed:
    resp = await client.post("/c/login", data={"principal": username, "password": password})
    assert resp.status == 200, await resp.text()
    client.session.cookie_jar.clear()  # each test says which cookie it sends
    return Signed(resp.cookies["sid"].value, resp.headers[CSRF])


async def whoami(client: Any, headers: dict[str, str]) -> Any:
    return await client.get("/api/v2.0/users/current", headers=headers)


# -- login, and any instance serves the session --------------------------------------------------


async def test_login_sets_a_safe_cookie_and_the_csrf_token(portal: Portal) -> None:
    resp = await portal.one.post("/c/login", data={"principal": "alice", "password": ALICE_PASSWORD})
    assert resp.status == 200, await resp.text()
    assert "json" not in resp.content_type
    sid = resp.cookies["sid"]
    assert len(sid.value) >= 32
    assert sid["httponly"] is True
    assert sid["samesite"] == "Lax"
    assert sid["secure"] is True  # the external URL is https
    assert sid["path"] == "/"
    token = resp.headers[CSRF]
    assert resp.cookies["__csrf"].value == token
    assert not resp.cookies["__csrf"]["httponly"]  # the portal's script reads it


async def test_no_secure_flag_behind_a_plain_http_url(
    aiohttp_client: Any, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    settings = portal_settings(tmp_path, database_url, redis_url, external_url="http://wharf.example.test")
    one, _ = await start(aiohttp_client, settings, Clock())
    resp = await one.post("/c/login", data={"principal": "admin", "password": ADMIN_PASSWORD})
    assert resp.status == 200
    assert not resp.cookies["sid"]["secure"]
    assert resp.cookies["sid"]["httponly"] is True


async def test_a_session_begun_on_one_instance_serves_on_the_other(portal: Portal) -> None:
    signed = await sign_in(portal.one)
    for client in (portal.other, portal.one):
        resp = await whoami(client, signed.cookie())
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["username"] == "alice"
        assert resp.headers[CSRF] == signed.csrf
        assert resp.cookies["__csrf"].value == signed.csrf


async def test_login_is_audited(portal: Portal) -> None:
    await sign_in(portal.one)
    (event,) = await portal.ui.events("login")
    assert event["data"]["operator"] == "alice"
    assert event["data"]["address"] == "127.0.0.1"


@pytest.mark.parametrize(
    "form",
    [{}, {"principal": "alice"}, {"password": ALICE_PASSWORD}, {"principal": "", "password": "x"}],
)
async def test_missing_fields_are_400(portal: Portal, form: dict[str, str]) -> None:
    resp = await portal.one.post("/c/login", data=form)
    message = await error(resp, 400, "BAD_REQUEST")
    assert "principal" in message


async def test_a_json_body_is_not_the_form(portal: Portal) -> None:
    resp = await portal.one.post("/c/login", json={"principal": "alice", "password": ALICE_PASSWORD})
    await error(resp, 400, "BAD_REQUEST")


async def test_an_unknown_session_is_401_and_the_cookie_removed(portal: Portal) -> None:
    resp = await whoami(portal.one, {"Cookie": "sid=made-up"})
    message = await error(resp, 401, "UNAUTHORIZED")
    assert "session" in message
    assert resp.cookies["sid"].value == ""


# -- wrong credentials and the shared throttle ----------------------------------------------------


async def test_wrong_password_is_401_without_a_session(portal: Portal) -> None:
    for principal in ("alice", "nobody"):
        resp = await portal.one.post("/c/login", data={"principal": principal, "password": "wrong-one-1"})
        await error(resp, 401, "UNAUTHORIZED")
        assert "sid" not in resp.cookies
        assert CSRF not in resp.headers


async def test_failed_logins_lock_the_account_on_every_surface(portal: Portal) -> None:
    for _ in range(3):
        resp = await portal.one.post("/c/login", data={"principal": "alice", "password": "wrong-one-1"})
        await error(resp, 401, "UNAUTHORIZED")
    # Locked now, even with the right password, on the other instance and through Basic.
    resp = await portal.other.post("/c/login", data={"principal": "alice", "password": ALICE_PASSWORD})
    await error(resp, 429, "TOO_MANY_REQUEST")
    assert int(resp.headers["Retry-After"]) > 0
    resp = await whoami(portal.one, ALICE)
    await error(resp, 429, "TOO_MANY_REQUEST")
    portal.clock.now += 61
    await sign_in(portal.other)


# -- logout and expiry ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/c/logout", "/c/log_out"])
async def test_logout_ends_the_session_everywhere(portal: Portal, path: str) -> None:
    signed = await sign_in(portal.one)
    resp = await portal.other.get(path, headers=signed.cookie())
    assert resp.status == 200
    assert resp.cookies["sid"].value == ""
    assert resp.cookies["__csrf"].value == ""
    for client in (portal.one, portal.other):
        await error(await whoami(client, signed.cookie()), 401, "UNAUTHORIZED")


async def test_logout_without_a_session_is_fine(portal: Portal) -> None:
    assert (await portal.one.get("/c/logout")).status == 200


async def test_sessions_slide_and_then_expire(portal: Portal) -> None:
    signed = await sign_in(portal.one)
    for _ in range(3):  # each use moves the end ahead: three idle spells of almost the lifetime
        portal.clock.now += LIFETIME - 5
        assert (await whoami(portal.other, signed.cookie())).status == 200
    portal.clock.now += LIFETIME + 1
    resp = await whoami(portal.one, signed.cookie())
    assert "ended" in await error(resp, 401, "UNAUTHORIZED")


# -- CSRF for cookie-authenticated writes --------------------------------------------------------


async def profile(client: Any, user_id: int, headers: dict[str, str]) -> Any:
    return await client.put(f"/api/v2.0/users/{user_id}", json={"realname": "Alice A."}, headers=headers)


async def test_a_write_by_session_needs_the_csrf_token(portal: Portal) -> None:
    signed = await sign_in(portal.one)
    alice = portal.ui.alice_id
    # No token (the cookie alone: what another site could make the browser send).
    resp = await profile(portal.other, alice, signed.cookie(csrf=True))
    assert CSRF in await error(resp, 403, "FORBIDDEN")
    # A token of another session.
    other = await sign_in(portal.one)
    resp = await profile(portal.other, alice, {**signed.cookie(), CSRF: other.csrf})
    await error(resp, 403, "FORBIDDEN")
    # The session's own.
    resp = await profile(portal.other, alice, {**signed.cookie(), CSRF: signed.csrf})
    assert resp.status == 200, await resp.text()
    got = await (await whoami(portal.one, ALICE)).json()
    assert got["realname"] == "Alice A."


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/users"), ("PUT", "/users/{alice}/password"), ("DELETE", "/users/{alice}")],
)
async def test_every_write_method_is_checked(portal: Portal, method: str, path: str) -> None:
    signed = await sign_in(portal.one, "admin", ADMIN_PASSWORD)
    url = "/api/v2.0" + path.format(alice=portal.ui.alice_id)
    body = {"username": "carol", "password": "Carol-secret-1", "new_password": "Alice-secret-2"}
    resp = await portal.one.request(method, url, json=body, headers=signed.cookie(csrf=True))
    await error(resp, 403, "FORBIDDEN")
    assert (await whoami(portal.one, ALICE)).status == 200  # nothing was done


async def test_basic_credentials_need_no_csrf_token(portal: Portal) -> None:
    signed = await sign_in(portal.one)
    # Basic decides when both come: no token asked for.
    resp = await profile(portal.one, portal.ui.alice_id, {**ALICE, **signed.cookie()})
    assert resp.status == 200, await resp.text()
    assert CSRF not in resp.headers


async def test_a_session_admin_deletes_with_the_token(portal: Portal) -> None:
    bob = await portal.ui.add_user("bob", "Bob-secret-1")
    signed = await sign_in(portal.one, "admin", ADMIN_PASSWORD)
    resp = await portal.other.delete(f"/api/v2.0/users/{bob}", headers={**signed.cookie(), CSRF: signed.csrf})
    assert resp.status == 200, await resp.text()
    (event,) = await portal.ui.events("user.delete")
    assert event["data"]["operator"] == "admin"


# -- a session never outlives its user -----------------------------------------------------------


async def test_deleting_the_user_ends_their_sessions(portal: Portal) -> None:
    signed = await sign_in(portal.one)
    resp = await portal.one.delete(f"/api/v2.0/users/{portal.ui.alice_id}", headers=ADMIN)
    assert resp.status == 200
    await error(await whoami(portal.other, signed.cookie()), 401, "UNAUTHORIZED")
    # A new user of the same name is someone else.
    await portal.ui.add_user("alice", ALICE_PASSWORD)
    await error(await whoami(portal.other, signed.cookie()), 401, "UNAUTHORIZED")


async def test_a_new_password_ends_the_sessions(portal: Portal) -> None:
    signed = await sign_in(portal.one)
    body = {"old_password": ALICE_PASSWORD, "new_password": "Alice-secret-2"}
    resp = await portal.one.put(f"/api/v2.0/users/{portal.ui.alice_id}/password", json=body, headers=ALICE)
    assert resp.status == 200, await resp.text()
    await error(await whoami(portal.other, signed.cookie()), 401, "UNAUTHORIZED")
    await sign_in(portal.other, "alice", "Alice-secret-2")


async def test_the_session_sees_the_users_rights_as_they_are_now(portal: Portal) -> None:
    signed = await sign_in(portal.one)
    await error(await portal.other.get("/api/v2.0/users", headers=signed.cookie()), 403, "FORBIDDEN")
    resp = await portal.one.put(
        f"/api/v2.0/users/{portal.ui.alice_id}/sysadmin", json={"sysadmin_flag": True}, headers=ADMIN
    )
    assert resp.status == 200
    assert (await portal.other.get("/api/v2.0/users", headers=signed.cookie())).status == 200


async def test_basic_and_anonymous_answers_carry_no_token(portal: Portal) -> None:
    for headers in (basic("alice", ALICE_PASSWORD), {}):
        resp = await portal.one.get("/api/v2.0/systeminfo", headers=headers)
        assert resp.status == 200
        assert CSRF not in resp.headers
