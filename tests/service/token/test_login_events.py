"""A login (credentials checked without a scope: `docker login`) goes to the event stream for the
audit log; the token requests of pushes and pulls, and failed logins, do not."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from tests.service.token.conftest import ADMIN_PASSWORD, Suite, basic
from wharf_shared.events import decode


async def stream_events(suite: Suite) -> list[dict[str, Any]]:
    redis = Redis.from_url(suite.settings.redis_url)
    try:
        entries = await redis.xrange(suite.settings.events_stream)
    finally:
        await redis.aclose()
    return [event for _id, fields in entries for event in decode(fields)]


async def test_logins_are_events(suite: Suite) -> None:
    await suite.add_user("alice", "alice-password")
    get = await suite.token.get(
        "/service/token",
        params={"service": "wharf-registry", "account": "admin"},
        headers=basic("admin", ADMIN_PASSWORD),
    )
    assert get.status == 200
    form = {"grant_type": "password", "service": "wharf-registry", "username": "alice"}
    post = await suite.token.post("/service/token", data={**form, "password": "alice-password"})
    assert post.status == 200
    # Not logins: a scoped token request, a wrong password.
    await suite.token_for("repository:library/app:pull", credentials=("admin", ADMIN_PASSWORD))
    wrong = await suite.token.get(
        "/service/token", params={"service": "wharf-registry"}, headers=basic("alice", "wrong")
    )
    assert wrong.status == 401
    deadline = asyncio.get_running_loop().time() + 10
    while len(logins := [e for e in await stream_events(suite) if e["type"] == "login"]) < 2:
        assert asyncio.get_running_loop().time() < deadline, logins
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # the publisher's next flushes: nothing more comes
    logins = [e for e in await stream_events(suite) if e["type"] == "login"]
    assert [e["data"]["operator"] for e in logins] == ["admin", "alice"]
    assert all(e["data"]["address"] for e in logins)
