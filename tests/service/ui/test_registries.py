"""`/api/v2.0/registries…` and `/replication/adapters`: CRUD on each database, the password stored
encrypted and never returned, the URL and type rules, the role matrix (admin, user, anonymous)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, update

from tests.service.ui.conftest import ADMIN, ALICE, ANONYMOUS, Ui
from tests.service.ui.test_users import error
from wharf_shared.db import tables as t
from wharf_shared.secrets import SecretBox

API = "/api/v2.0"
NEW: dict[str, Any] = {
    "name": "peer",
    "type": "harbor",
    "url": "https://peer.example.test/",
    "description": "the other site",
    "insecure": True,
    "credential": {"type": "basic", "access_key": "robot$sync", "access_secret": "S3cret-pass"},
}


async def create(ui: Ui, body: dict[str, Any] | None = None) -> int:
    resp = await ui.client.post(f"{API}/registries", json=body or NEW, headers=ADMIN)
    assert resp.status == 201, await resp.text()
    location = resp.headers["Location"]
    registry_id = int(location.rsplit("/", 1)[1])
    assert location == f"{API}/registries/{registry_id}"
    return registry_id


async def stored_secret(ui: Ui, registry_id: int) -> str | None:
    async def go(conn: Any) -> str | None:
        c = t.registry_endpoint.c
        row = (await conn.execute(select(c.access_secret).where(c.id == registry_id))).one()
        return row[0]  # type: ignore[no-any-return]

    result: str | None = await ui.db_call(go)
    return result


async def test_create_get_list_update_delete(ui: Ui) -> None:
    registry_id = await create(ui)
    got = await (await ui.client.get(f"{API}/registries/{registry_id}", headers=ADMIN)).json()
    assert got["id"] == registry_id
    assert got["name"] == "peer"
    assert got["type"] == "harbor"
    assert got["url"] == "https://peer.example.test"  # normalised: no trailing slash
    assert got["description"] == "the other site"
    assert got["insecure"] is True
    assert got["status"] == "unknown"
    assert got["credential"] == {"type": "basic", "access_key": "robot$sync", "access_secret": "*****"}
    assert got["creation_time"].endswith("Z")

    resp = await ui.client.get(f"{API}/registries", headers=ADMIN)
    assert resp.headers["X-Total-Count"] == "1"
    assert [x["name"] for x in await resp.json()] == ["peer"]

    update_body = {"name": "peer-2", "url": "http://peer2.example.test:5000", "insecure": False}
    resp = await ui.client.put(f"{API}/registries/{registry_id}", json=update_body, headers=ADMIN)
    assert resp.status == 200, await resp.text()
    got = await (await ui.client.get(f"{API}/registries/{registry_id}", headers=ADMIN)).json()
    assert (got["name"], got["url"], got["insecure"]) == ("peer-2", "http://peer2.example.test:5000", False)
    assert got["credential"]["access_secret"] == "*****"  # kept: the update sent none

    resp = await ui.client.delete(f"{API}/registries/{registry_id}", headers=ADMIN)
    assert resp.status == 200
    await error(await ui.client.get(f"{API}/registries/{registry_id}", headers=ADMIN), 404, "NOT_FOUND")
    await error(await ui.client.delete(f"{API}/registries/{registry_id}", headers=ADMIN), 404, "NOT_FOUND")


async def test_the_password_is_stored_encrypted_and_never_returned(ui: Ui) -> None:
    registry_id = await create(ui)
    secret = await stored_secret(ui, registry_id)
    assert secret is not None
    assert "S3cret-pass" not in secret
    assert SecretBox(ui.settings.secret_key_bytes()).decrypt(secret) == "S3cret-pass"
    for path in (f"{API}/registries/{registry_id}", f"{API}/registries"):
        text = await (await ui.client.get(path, headers=ADMIN)).text()
        assert "S3cret-pass" not in text
        assert secret not in text

    # Left out, or echoed back as *****: kept. Sent: replaced. Empty: removed.
    for body in (
        {"description": "x"},
        {"access_secret": "*****"},
        {"credential": {"access_secret": "*****"}},
    ):
        resp = await ui.client.put(f"{API}/registries/{registry_id}", json=body, headers=ADMIN)
        assert resp.status == 200, await resp.text()
        assert await stored_secret(ui, registry_id) == secret
    resp = await ui.client.put(
        f"{API}/registries/{registry_id}", json={"access_secret": "N3w-pass"}, headers=ADMIN
    )
    assert resp.status == 200
    new_secret = await stored_secret(ui, registry_id)
    assert new_secret is not None
    assert new_secret != secret
    assert SecretBox(ui.settings.secret_key_bytes()).decrypt(new_secret) == "N3w-pass"
    body = {"access_key": "", "access_secret": ""}
    resp = await ui.client.put(f"{API}/registries/{registry_id}", json=body, headers=ADMIN)
    assert resp.status == 200
    assert await stored_secret(ui, registry_id) is None
    got = await (await ui.client.get(f"{API}/registries/{registry_id}", headers=ADMIN)).json()
    assert got["credential"] == {"type": "basic", "access_key": ""}


async def test_a_registry_without_credential(ui: Ui) -> None:
    body = {"name": "hub", "type": "docker-registry", "url": "https://registry-1.example.test"}
    registry_id = await create(ui, body)
    got = await (await ui.client.get(f"{API}/registries/{registry_id}", headers=ADMIN)).json()
    assert got["credential"] == {"type": "basic", "access_key": ""}
    assert got["insecure"] is False


async def test_a_change_of_endpoint_makes_the_status_unknown(ui: Ui) -> None:
    registry_id = await create(ui)

    async def healthy(conn: Any) -> None:
        c = t.registry_endpoint.c
        await conn.execute(update(t.registry_endpoint).where(c.id == registry_id).values(status="healthy"))

    await ui.db_call(healthy)
    await ui.client.put(f"{API}/registries/{registry_id}", json={"description": "d"}, headers=ADMIN)
    got = await (await ui.client.get(f"{API}/registries/{registry_id}", headers=ADMIN)).json()
    assert got["status"] == "healthy"
    await ui.client.put(
        f"{API}/registries/{registry_id}", json={"url": "https://elsewhere.test"}, headers=ADMIN
    )
    got = await (await ui.client.get(f"{API}/registries/{registry_id}", headers=ADMIN)).json()
    assert got["status"] == "unknown"


async def test_names_are_unique(ui: Ui) -> None:
    await create(ui)
    resp = await ui.client.post(f"{API}/registries", json=NEW, headers=ADMIN)
    assert "peer" in await error(resp, 409, "CONFLICT")
    other = await create(ui, {**NEW, "name": "other"})
    resp = await ui.client.put(f"{API}/registries/{other}", json={"name": "peer"}, headers=ADMIN)
    await error(resp, 409, "CONFLICT")


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"name": ""}, "name: required"),
        ({"name": "x" * 65}, "at most 64"),
        ({"type": "quay"}, "docker-registry and harbor registries only"),
        ({"type": None}, "type: required"),
        ({"url": None}, "url: required"),
        ({"url": "ftp://peer.example.test"}, "http:// or https://"),
        ({"url": "peer.example.test"}, "http:// or https://"),
        ({"url": "https://peer.example.test/v2/"}, "no path"),
        ({"url": "https://peer.example.test/?a=b"}, "no query"),
        ({"url": "https://peer.example.test#x"}, "no query"),
        ({"url": "https://user:pw@peer.example.test"}, "credential"),
        ({"url": "https://peer.example.test:99999"}, "not a valid URL"),
        ({"url": "https://"}, "names no host"),
        ({"url": "https://bad_host!.test"}, "not a valid host"),
        ({"url": "https://peer example.test"}, "without spaces"),
        ({"credential": {"type": "oauth", "access_key": "k"}}, "basic credentials only"),
        ({"credential": {"access_secret": "pw"}}, "needs a username"),
        ({"credential": {"access_secret": "*****", "access_key": "k"}}, "none is stored"),
        ({"insecure": "yes"}, "insecure"),
        ({"description": "d" * 1025}, "description"),
    ],
)
async def test_validation_messages(ui: Ui, change: dict[str, Any], needle: str) -> None:
    body = {**NEW, **change}
    body = {k: v for k, v in body.items() if v is not None}
    resp = await ui.client.post(f"{API}/registries", json=body, headers=ADMIN)
    assert needle in await error(resp, 400, "BAD_REQUEST")


async def test_urls_are_normalised(ui: Ui) -> None:
    cases = {
        "HTTPS://Peer.Example.Test:8443//": "https://peer.example.test:8443",
        "http://[::1]:5000": "http://[::1]:5000",
        " http://10.0.0.7 ": "http://10.0.0.7",
    }
    for n, (raw, normal) in enumerate(cases.items()):
        registry_id = await create(ui, {**NEW, "name": f"r{n}", "url": raw})
        got = await (await ui.client.get(f"{API}/registries/{registry_id}", headers=ADMIN)).json()
        assert got["url"] == normal


async def test_the_type_does_not_change(ui: Ui) -> None:
    registry_id = await create(ui)
    resp = await ui.client.put(f"{API}/registries/{registry_id}", json={"type": "harbor"}, headers=ADMIN)
    assert resp.status == 200
    resp = await ui.client.put(
        f"{API}/registries/{registry_id}", json={"type": "docker-registry"}, headers=ADMIN
    )
    assert "does not change" in await error(resp, 400, "BAD_REQUEST")


async def test_list_filters_and_pages(ui: Ui) -> None:
    for name in ("alpha", "beta", "gamma"):
        await create(ui, {**NEW, "name": name})
    resp = await ui.client.get(f"{API}/registries?name=mm", headers=ADMIN)
    assert [x["name"] for x in await resp.json()] == ["gamma"]
    resp = await ui.client.get(f"{API}/registries?q=name%3D~a&sort=-name&page_size=2", headers=ADMIN)
    assert resp.headers["X-Total-Count"] == "3"
    assert 'rel="next"' in resp.headers["Link"]
    assert [x["name"] for x in await resp.json()] == ["gamma", "beta"]
    resp = await ui.client.get(f"{API}/registries?q=nope%3D1", headers=ADMIN)
    assert "unknown key" in await error(resp, 400, "BAD_REQUEST")


async def test_delete_is_refused_while_a_policy_uses_it(ui: Ui) -> None:
    registry_id = await create(ui)
    policy = {
        "name": "push",
        "dest_registry": {"id": registry_id},
        "filters": [{"type": "name", "value": "**"}],
    }
    resp = await ui.client.post(f"{API}/replication/policies", json=policy, headers=ADMIN)
    assert resp.status == 201, await resp.text()
    policy_path = resp.headers["Location"]
    message = await error(
        await ui.client.delete(f"{API}/registries/{registry_id}", headers=ADMIN), 412, "PRECONDITION"
    )
    assert "used by replication policies" in message
    assert (await ui.client.delete(policy_path, headers=ADMIN)).status == 200
    assert (await ui.client.delete(f"{API}/registries/{registry_id}", headers=ADMIN)).status == 200


async def test_info_and_adapters(ui: Ui) -> None:
    registry_id = await create(ui, {**NEW, "type": "docker-registry"})
    info = await (await ui.client.get(f"{API}/registries/{registry_id}/info", headers=ADMIN)).json()
    assert info["type"] == "docker-registry"
    assert info["supported_triggers"] == ["manual", "scheduled"]
    assert {f["type"] for f in info["supported_resource_filters"]} == {"name", "tag", "resource"}
    local = await (await ui.client.get(f"{API}/registries/0/info", headers=ADMIN)).json()
    assert local["supported_triggers"] == ["manual", "scheduled", "event_based"]
    await error(await ui.client.get(f"{API}/registries/999/info", headers=ADMIN), 404, "NOT_FOUND")
    await error(await ui.client.get(f"{API}/registries/x/info", headers=ADMIN), 400, "BAD_REQUEST")
    adapters = await (await ui.client.get(f"{API}/replication/adapters", headers=ADMIN)).json()
    assert adapters == ["docker-registry", "harbor"]
    assert await (await ui.client.get(f"{API}/replication/adapterinfos", headers=ADMIN)).json() == {}


async def test_malformed_ids_and_bodies(ui: Ui) -> None:
    await error(await ui.client.get(f"{API}/registries/abc", headers=ADMIN), 400, "BAD_REQUEST")
    await error(await ui.client.get(f"{API}/registries/0", headers=ADMIN), 400, "BAD_REQUEST")
    headers = {**ADMIN, "Content-Type": "application/json"}
    resp = await ui.client.post(f"{API}/registries", data=b"{nope", headers=headers)
    assert "not valid JSON" in await error(resp, 400, "BAD_REQUEST")
    resp = await ui.client.post(f"{API}/registries", json={**NEW, "credential": "x"}, headers=ADMIN)
    assert "credential" in await error(resp, 400, "BAD_REQUEST")


ROUTES = [
    ("GET", "/registries"),
    ("POST", "/registries"),
    ("GET", "/registries/1"),
    ("PUT", "/registries/1"),
    ("DELETE", "/registries/1"),
    ("GET", "/registries/1/info"),
    ("GET", "/replication/adapters"),
    ("GET", "/replication/adapterinfos"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_only_system_admins(ui: Ui, method: str, path: str) -> None:
    registry_id = await create(ui)
    path = path.replace("/1", f"/{registry_id}")
    body = NEW if method in ("POST", "PUT") else None
    resp = await ui.client.request(method, API + path, json=body, headers=ALICE)
    await error(resp, 403, "FORBIDDEN")
    resp = await ui.client.request(method, API + path, json=body, headers=ANONYMOUS)
    await error(resp, 401, "UNAUTHORIZED")


async def test_what_a_get_returns_a_put_takes_back_unchanged(ui: Ui) -> None:
    registry_id = await create(ui)
    secret = await stored_secret(ui, registry_id)
    before = await (await ui.client.get(f"{API}/registries/{registry_id}", headers=ADMIN)).json()
    resp = await ui.client.put(f"{API}/registries/{registry_id}", json=before, headers=ADMIN)
    assert resp.status == 200, await resp.text()
    after = await (await ui.client.get(f"{API}/registries/{registry_id}", headers=ADMIN)).json()
    assert {k: v for k, v in after.items() if k != "update_time"} == {
        k: v for k, v in before.items() if k != "update_time"
    }
    assert await stored_secret(ui, registry_id) == secret


async def test_ping_a_live_registry_and_a_dead_one(ui: Ui, tmp_path: Any) -> None:
    """A real peer (Debian's docker-registry) answers: 200, and a stored registry's status becomes
    healthy; nothing listening: Harbor's 400, and the status unhealthy."""
    from tests.support.distribution import distribution
    from tests.support.processes import free_port

    with distribution(tmp_path / "peer") as peer:
        live = {"type": "docker-registry", "url": peer.url}
        resp = await ui.client.post(f"{API}/registries/ping", json=live, headers=ADMIN)
        assert resp.status == 200, await resp.text()
        registry_id = await create(ui, {"name": "live", **live})
        resp = await ui.client.post(f"{API}/registries/ping", json={"id": registry_id}, headers=ADMIN)
        assert resp.status == 200, await resp.text()
        got = await (await ui.client.get(f"{API}/registries/{registry_id}", headers=ADMIN)).json()
        assert got["status"] == "healthy"

    dead_url = f"http://127.0.0.1:{free_port()}"
    resp = await ui.client.post(
        f"{API}/registries/ping", json={"id": registry_id, "url": dead_url}, headers=ADMIN
    )
    body = await error(resp, 400, "BAD_REQUEST")
    assert dead_url in str(body)
    got = await (await ui.client.get(f"{API}/registries/{registry_id}", headers=ADMIN)).json()
    assert got["status"] == "healthy"  # what failed was another URL, not the registry as stored
    assert got["url"] == peer.url  # a ping changes no field
    dead = await create(ui, {"name": "dead", "type": "docker-registry", "url": dead_url})
    resp = await ui.client.post(f"{API}/registries/ping", json={"id": dead}, headers=ADMIN)
    await error(resp, 400, "BAD_REQUEST")
    got = await (await ui.client.get(f"{API}/registries/{dead}", headers=ADMIN)).json()
    assert got["status"] == "unhealthy"


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({}, 400, "id, or a type and a url"),
        ({"type": "quay", "url": "http://x.test"}, 400, "type"),
        ({"type": "harbor", "url": "ftp://x.test"}, 400, "url"),
        ({"id": 999999}, 404, "not found"),
        ({"id": -1}, 400, "not a registry id"),
        (
            {"type": "harbor", "url": "http://x.test", "access_key": "a", "access_secret": "*****"},
            400,
            "*****",
        ),
    ],
)
async def test_ping_refuses_what_it_cannot_ping(
    ui: Ui, body: dict[str, Any], status: int, needle: str
) -> None:
    resp = await ui.client.post(f"{API}/registries/ping", json=body, headers=ADMIN)
    assert resp.status == status, await resp.text()
    assert needle in await resp.text()


async def test_ping_is_for_system_admins(ui: Ui) -> None:
    body = {"type": "harbor", "url": "http://x.test"}
    await error(await ui.client.post(f"{API}/registries/ping", json=body, headers=ALICE), 403, "FORBIDDEN")
    await error(
        await ui.client.post(f"{API}/registries/ping", json=body, headers=ANONYMOUS), 401, "UNAUTHORIZED"
    )
