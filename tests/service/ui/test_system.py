"""`/api/v2.0/ping`, `/health`, `/systeminfo`, `/swagger.json` and the edge's answers to paths and
methods that do not exist, for each role, on each database."""

from __future__ import annotations

import pytest

from tests.service.ui.conftest import ADMIN, ALICE, ANONYMOUS, Ui, basic


async def test_ping_answers_pong_to_anyone(ui: Ui) -> None:
    resp = await ui.client.get("/api/v2.0/ping")
    assert resp.status == 200
    assert await resp.text() == "Pong"


async def test_health_lists_components(ui: Ui) -> None:
    resp = await ui.client.get("/api/v2.0/health")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "healthy"
    assert {c["name"]: c["status"] for c in body["components"]} == {
        "core": "healthy",
        "database": "healthy",
        "redis": "healthy",
    }


async def test_systeminfo_anonymous_sees_the_public_part(ui: Ui) -> None:
    resp = await ui.client.get("/api/v2.0/systeminfo")
    assert resp.status == 200
    body = await resp.json()
    assert body["auth_mode"] == "db_auth"
    assert body["self_registration"] is False
    assert body["harbor_version"].startswith("v")
    assert body["current_time"].endswith("Z")
    assert "external_url" not in body
    assert "project_creation_restriction" not in body


@pytest.mark.parametrize("who", [ADMIN, ALICE], ids=["admin", "user"])
async def test_systeminfo_signed_in_sees_addresses_and_runtime_settings(ui: Ui, who: dict[str, str]) -> None:
    await ui.set_runtime(self_registration=True, project_creation_restriction="adminonly")
    resp = await ui.client.get("/api/v2.0/systeminfo", headers=who)
    body = await resp.json()
    assert body["external_url"] == "https://wharf.example.test"
    assert body["registry_url"] == "wharf.example.test"
    assert body["self_registration"] is True
    assert body["project_creation_restriction"] == "adminonly"
    assert body["read_only"] is False


async def test_wrong_password_is_401_even_where_anonymous_may_read(ui: Ui) -> None:
    resp = await ui.client.get("/api/v2.0/systeminfo", headers=basic("alice", "wrong"))
    assert resp.status == 401
    assert (await resp.json())["errors"][0]["code"] == "UNAUTHORIZED"


async def test_malformed_basic_credentials_are_401(ui: Ui) -> None:
    resp = await ui.client.get("/api/v2.0/users/current", headers={"Authorization": "Basic !!!"})
    assert resp.status == 401
    assert (await resp.json())["errors"][0]["code"] == "UNAUTHORIZED"


async def test_failed_logins_are_throttled_as_at_the_token_service(ui: Ui) -> None:
    limit = ui.settings.token.throttle_failures
    for _ in range(limit):
        resp = await ui.client.get("/api/v2.0/users/current", headers=basic("alice", "wrong"))
        assert resp.status == 401
    # Locked for this address now, even with the right password.
    resp = await ui.client.get("/api/v2.0/users/current", headers=ALICE)
    assert resp.status == 429
    assert int(resp.headers["Retry-After"]) >= 1
    assert (await resp.json())["errors"][0]["code"] == "TOO_MANY_REQUEST"


async def test_unknown_api_path_is_a_json_404(ui: Ui) -> None:
    resp = await ui.client.get("/api/v2.0/no-such-thing", headers=ADMIN)
    assert resp.status == 404
    assert resp.content_type == "application/json"
    assert (await resp.json())["errors"][0]["code"] == "NOT_FOUND"


async def test_wrong_method_is_405_with_allow(ui: Ui) -> None:
    resp = await ui.client.post("/api/v2.0/ping")
    assert resp.status == 405
    assert resp.headers["Allow"] == "GET"
    assert (await resp.json())["errors"][0]["code"] == "METHOD_NOT_ALLOWED"


async def test_swagger_document_names_the_implemented_paths(ui: Ui) -> None:
    resp = await ui.client.get("/api/v2.0/swagger.json", headers=ANONYMOUS)
    doc = await resp.json()
    assert doc["basePath"] == "/api/v2.0"
    assert {"/ping", "/users", "/users/{user_id}", "/users/current/permissions"} <= set(doc["paths"])


async def test_health_and_metrics_like_every_service(ui: Ui) -> None:
    assert (await ui.client.get("/health")).status == 200
    ready = await ui.client.get("/health/ready")
    assert ready.status == 200
    assert (await ready.json())["checks"] == {"database": "ok", "redis": "ok"}
    metrics = await ui.client.get("/metrics")
    assert metrics.status == 200
    assert "wharf_ui" in await metrics.text()
