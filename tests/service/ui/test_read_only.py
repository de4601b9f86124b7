"""Read-only mode on `/api/`: every change refused with Harbor's 403 DENIED, for every caller,
on routes that exist today and on any added later; reads, turning the mode off, and signing
in still work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.service.ui.conftest import ADMIN, ADMIN_PASSWORD, ALICE, ANONYMOUS, Ui, basic, ui_settings
from wharf_shared.keys import RUNTIME
from wharf_shared.runtime import READ_ONLY_MESSAGE
from wharf_shared.setup import ensure_accounts
from wharf_ui.app import create_app

CONFIG = "/api/v2.0/configurations"


async def denied(resp: Any) -> None:
    assert resp.status == 403, await resp.text()
    assert await resp.json() == {"errors": [{"code": "DENIED", "message": READ_ONLY_MESSAGE}]}


async def read_only(ui: Ui, on: bool = True) -> None:
    resp = await ui.client.put(CONFIG, json={"read_only": on}, headers=ADMIN)
    assert resp.status == 200, await resp.text()


NEW_USER = {"username": "bob", "password": "Bob-secret-1", "email": "bob@example.test"}


@pytest.mark.parametrize("who", ["admin", "alice", "anonymous"])
async def test_every_change_is_denied_reads_are_not(ui: Ui, who: str) -> None:
    headers = {"admin": ADMIN, "alice": ALICE, "anonymous": ANONYMOUS}[who]
    await ui.set_runtime(self_registration=True)  # anonymous could sign up, but for the mode
    await read_only(ui)
    user = f"/api/v2.0/users/{ui.alice_id}"
    for method, path, body in (
        ("POST", "/api/v2.0/users", NEW_USER),
        ("PUT", user, {"realname": "Alice A."}),
        ("PUT", f"{user}/password", {"old_password": "x", "new_password": "Alice-secret-2"}),
        ("PUT", f"{user}/sysadmin", {"sysadmin_flag": True}),
        ("DELETE", user, None),
    ):
        await denied(await ui.client.request(method, path, json=body, headers=headers))
    # Nothing changed.
    got = await (await ui.client.get(user, headers=ADMIN)).json()
    assert (got["realname"], got["sysadmin_flag"]) == ("", False)
    assert (await ui.client.get("/api/v2.0/users", headers=ADMIN)).headers["X-Total-Count"] == "2"
    # Reads answer as ever; systeminfo says why writes fail.
    info = await (await ui.client.get("/api/v2.0/systeminfo", headers=ADMIN)).json()
    assert info["read_only"] is True
    assert (await ui.client.get("/api/v2.0/users/current", headers=ALICE)).status == 200


async def test_the_mode_is_turned_off_through_the_api_and_writes_work_again(ui: Ui) -> None:
    await read_only(ui)
    await denied(await ui.client.post("/api/v2.0/users", json=NEW_USER, headers=ADMIN))
    # Only a system admin may turn it off: others still meet their own refusal.
    resp = await ui.client.put(CONFIG, json={"read_only": False}, headers=ALICE)
    assert resp.status == 403
    assert (await resp.json())["errors"][0]["code"] == "FORBIDDEN"
    await read_only(ui, False)
    assert (await ui.client.post("/api/v2.0/users", json=NEW_USER, headers=ADMIN)).status == 201


async def test_bad_credentials_are_401_and_unknown_paths_404_before_the_mode(ui: Ui) -> None:
    await read_only(ui)
    resp = await ui.client.post("/api/v2.0/users", json=NEW_USER, headers=basic("admin", "wrong"))
    assert resp.status == 401
    assert (await resp.json())["errors"][0]["code"] == "UNAUTHORIZED"
    resp = await ui.client.post("/api/v2.0/no-such-thing", json={}, headers=ADMIN)
    assert resp.status == 404
    resp = await ui.client.post("/api/v2.0/ping", headers=ADMIN)
    assert resp.status == 405


async def test_routes_added_later_are_covered_without_doing_anything(
    aiohttp_client: Any, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    """An endpoint another part adds is refused in read-only mode by the same middleware."""
    settings = ui_settings(tmp_path, database_url, redis_url)
    await ensure_accounts(settings)
    app = create_app(settings)
    calls = []

    async def new_endpoint(_request: web.Request) -> web.Response:
        calls.append(1)
        return web.Response(status=201)

    app.router.add_post("/api/v2.0/added-later", new_endpoint)
    client = await aiohttp_client(app)
    assert (await client.post("/api/v2.0/added-later", headers=ADMIN)).status == 201
    resp = await client.put(CONFIG, json={"read_only": True}, headers=ADMIN)
    assert resp.status == 200
    assert (await client.app[RUNTIME].get()).read_only is True
    await denied(await client.post("/api/v2.0/added-later", headers=ADMIN))
    assert len(calls) == 1
    # The portal's sign-in stays open, as in Harbor.
    form = {"principal": "admin", "password": ADMIN_PASSWORD}
    assert (await client.post("/c/login", data=form)).status == 200
