"""The token flow end to end in-process: credentials → token → registry."""

from __future__ import annotations

import jwt

from tests.service.token.conftest import ADMIN_PASSWORD, Suite, basic
from tests.support.oci import V2


async def test_admin_pushes_and_anonymous_pulls_library(suite: Suite) -> None:
    token = await suite.token_for("repository:library/app:pull,push", credentials=("admin", ADMIN_PASSWORD))
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["access"] == [{"type": "repository", "name": "library/app", "actions": ["pull", "push"]}]
    assert claims["sub"] == "admin"
    push = V2(suite.registry, {"Authorization": f"Bearer {token}"})
    _digest, body = await push.push_image("library/app", "v1")
    anonymous = await suite.token_for("repository:library/app:pull,push")
    claims = jwt.decode(anonymous, options={"verify_signature": False})
    assert claims["access"][0]["actions"] == ["pull"]
    resp = await V2(suite.registry, {"Authorization": f"Bearer {anonymous}"}).request(
        "GET", "/v2/library/app/manifests/v1"
    )
    assert resp.status == 200
    assert await resp.read() == body


async def test_wrong_password_and_unknown_user_read_alike(suite: Suite) -> None:
    answers = []
    for username, password in (("admin", "wrong"), ("nobody", "wrong")):
        resp = await suite.token.get(
            "/service/token",
            params={"service": "wharf-registry", "scope": "repository:library/app:pull"},
            headers=basic(username, password),
        )
        answers.append((resp.status, (await resp.json())["errors"][0]["message"]))
    assert answers[0] == answers[1]
    assert answers[0][0] == 401


async def test_oauth2_password_and_refresh(suite: Suite) -> None:
    resp = await suite.token.post(
        "/service/token",
        data={
            "grant_type": "password",
            "username": "admin",
            "password": ADMIN_PASSWORD,
            "service": "wharf-registry",
            "scope": "repository:library/app:pull",
            "client_id": "test",
            "access_type": "offline",
        },
    )
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["access_token"]
    assert body["refresh_token"]
    assert body["expires_in"] == 1800
    resp = await suite.token.post(
        "/service/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "service": "wharf-registry",
            "scope": "repository:library/app:pull,push",
            "client_id": "test",
        },
    )
    assert resp.status == 200, await resp.text()
    claims = jwt.decode((await resp.json())["access_token"], options={"verify_signature": False})
    assert claims["access"][0]["actions"] == ["pull", "push"]


async def test_docker_login_asks_without_a_scope(suite: Suite) -> None:
    """`docker login`: credentials and no scope; the answer is a token granting nothing."""
    resp = await suite.token.get(
        "/service/token",
        params={"service": "wharf-registry", "account": "admin"},
        headers=basic("admin", ADMIN_PASSWORD),
    )
    assert resp.status == 200, await resp.text()
    claims = jwt.decode((await resp.json())["token"], options={"verify_signature": False})
    assert claims["access"] == []
    assert claims["sub"] == "admin"
    resp = await suite.token.get(
        "/service/token", params={"service": "wharf-registry"}, headers=basic("admin", "wrong")
    )
    assert resp.status == 401
