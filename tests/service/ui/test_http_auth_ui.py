"""`http_auth` on the ui's surfaces: Basic credentials on `/api/` and the portal's sign-in go
through the same backend choice as the token service; the OA's users are provisioned, the
local admin signs in while the OA is down, and the portal's login event names its backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.service.ui.conftest import ADMIN, ADMIN_PASSWORD, Ui, basic
from tests.service.ui.test_configurations import drop_alice
from tests.service.ui.test_portal_admin import sign_in, text
from tests.support.oa import Oa, OaUser

URL = "/api/v2.0/configurations"


@pytest.fixture
def db_kind() -> str:
    return "postgresql"


@pytest.fixture
async def oa() -> AsyncIterator[Oa]:
    stand_in = Oa(users={"olga": OaUser("Olga-oa-1", {"mail": "olga@corp.test", "name": "Olga"})})
    await stand_in.start()
    yield stand_in
    await stand_in.stop()


@pytest.fixture
async def http_ui(ui: Ui, oa: Oa) -> Ui:
    """The ui switched to http_auth through the API (allowed: admin is then the only user)."""
    await drop_alice(ui)
    change = {
        "auth_mode": "http_auth",
        "http_authproxy_endpoint": oa.url,
        "http_authproxy_timeout": 1,
        "http_authproxy_email_field": "mail",
        "http_authproxy_realname_field": "name",
    }
    resp = await ui.client.put(URL, json=change, headers=ADMIN)
    assert resp.status == 200, await resp.text()
    return ui


async def test_basic_credentials_on_the_api_provision_the_user(http_ui: Ui) -> None:
    resp = await http_ui.client.get("/api/v2.0/users/current", headers=basic("olga", "Olga-oa-1"))
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert (body["username"], body["email"], body["realname"]) == ("olga", "olga@corp.test", "Olga")
    wrong = await http_ui.client.get("/api/v2.0/users/current", headers=basic("olga", "nope"))
    assert wrong.status == 401


async def test_the_portal_sign_in_names_its_backend(http_ui: Ui, oa: Oa) -> None:
    resp = await http_ui.client.post("/c/login", data={"principal": "olga", "password": "Olga-oa-1"})
    assert resp.status == 200, await resp.text()
    await oa.stop()  # the OA goes down: ops still sign in
    resp = await http_ui.client.post("/c/login", data={"principal": "admin", "password": ADMIN_PASSWORD})
    assert resp.status == 200, await resp.text()
    resp = await http_ui.client.get("/api/v2.0/users/current", headers=basic("nobody", "Nobody-1"))
    assert resp.status == 401
    logins = await http_ui.events("login", count=2)
    assert [(e["data"]["operator"], e["data"]["backend"]) for e in logins] == [
        ("olga", "http_auth"),
        ("admin", "db_auth"),
    ]


async def test_a_directory_users_password_is_the_directorys(http_ui: Ui) -> None:
    """Neither the user nor an admin sets a password here for a directory user: it would take the
    account from the directory (a local password is never taken over). The account page says
    where the password is changed instead of offering a form that cannot work."""
    olga = basic("olga", "Olga-oa-1")
    me = await http_ui.client.get("/api/v2.0/users/current", headers=olga)
    assert me.status == 200, await me.text()
    url = f"/api/v2.0/users/{(await me.json())['user_id']}/password"
    own = await http_ui.client.put(
        url, json={"old_password": "Olga-oa-1", "new_password": "Olga-new-2"}, headers=olga
    )
    assert own.status == 403
    assert "change the password there" in (await own.json())["errors"][0]["message"]
    by_admin = await http_ui.client.put(url, json={"new_password": "Olga-new-2"}, headers=ADMIN)
    assert by_admin.status == 403
    assert (await http_ui.client.get("/api/v2.0/users/current", headers=olga)).status == 200

    await sign_in(http_ui, "olga", "Olga-oa-1")
    page = await text(http_ui, "/harbor/account")
    assert 'id="directory-password"' in page
    assert "/password" not in page
