"""The job service's account (`wharf$jobservice`, its password derived from the secret key): the
token service grants it every registry action on any repository and the catalog, the registry
takes its pushes (no user row to recheck), a wrong password is refused and throttled like any
other, and `/api/` does not know it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.service.token.conftest import Suite, basic, start_suite
from tests.support.oci import V2
from wharf_shared.secrets import JOBSERVICE_USERNAME, jobservice_password
from wharf_ui.app import create_app as create_ui

SERVICE = "wharf-registry"


@pytest.fixture
def db_kind() -> str:
    return "sqlite"  # the rule is in the token service and rbac, not in SQL


def password(suite: Suite) -> str:
    return jobservice_password(suite.settings.secret_key_bytes())


def access_of(token: str) -> dict[tuple[str, str], set[str]]:
    claims = jwt.decode(token, options={"verify_signature": False})
    return {(a["type"], a["name"]): set(a["actions"]) for a in claims["access"]}


async def test_every_action_on_any_repository_and_the_catalog(suite: Suite) -> None:
    token = await suite.token_for(
        "repository:any/thing:pull,push,delete",
        "repository:library/app:*",
        "registry:catalog:*",
        credentials=(JOBSERVICE_USERNAME, password(suite)),
    )
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == JOBSERVICE_USERNAME
    assert access_of(token) == {
        ("repository", "any/thing"): {"pull", "push", "delete"},
        ("repository", "library/app"): {"*"},
        ("registry", "catalog"): {"*"},
    }


async def test_the_oauth2_password_grant_too(suite: Suite) -> None:
    form = {
        "grant_type": "password",
        "username": JOBSERVICE_USERNAME,
        "password": password(suite),
        "service": SERVICE,
        "scope": "repository:any/thing:pull,push",
        "access_type": "offline",
    }
    resp = await suite.token.post("/service/token", data=form)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert access_of(body["access_token"]) == {("repository", "any/thing"): {"pull", "push"}}
    assert "refresh_token" not in body  # no user row to bind one to


async def test_the_registry_takes_its_pushes_into_a_project_that_does_not_exist(suite: Suite) -> None:
    token = await suite.token_for(
        "repository:nowhere/app:pull,push", credentials=(JOBSERVICE_USERNAME, password(suite))
    )
    v2 = V2(suite.registry, {"Authorization": f"Bearer {token}"})
    digest, body = await v2.push_image("nowhere/app", "v1")
    resp = await v2.request("GET", f"/v2/nowhere/app/manifests/{digest}")
    assert resp.status == 200
    assert await resp.read() == body


async def test_a_wrong_password_is_refused_and_throttled(suite: Suite) -> None:
    params = {"service": SERVICE, "scope": "repository:any/thing:pull"}
    address = {"X-Forwarded-For": "203.0.113.50"}
    for _ in range(suite.settings.token.throttle_failures):
        resp = await suite.token.get(
            "/service/token", params=params, headers={**basic(JOBSERVICE_USERNAME, "wrong"), **address}
        )
        assert resp.status == 401, await resp.text()
    # The account is locked for that address now, even with the right password.
    resp = await suite.token.get(
        "/service/token",
        params=params,
        headers={**basic(JOBSERVICE_USERNAME, password(suite)), **address},
    )
    assert resp.status == 429, await resp.text()


async def test_api_does_not_know_the_account(
    aiohttp_client: Any, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    suite = await start_suite(aiohttp_client, tmp_path, database_url, redis_url)
    ui = await aiohttp_client(create_ui(suite.settings))
    resp = await ui.get("/api/v2.0/users/current", headers=basic(JOBSERVICE_USERNAME, password(suite)))
    assert resp.status == 401, await resp.text()
