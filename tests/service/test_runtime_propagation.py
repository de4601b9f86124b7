"""A configuration change through one ui reaches the other services' processes within a second:
the token service, the registry and a second ui, each an app of its own with its own Redis
connections, their periodic re-read set to an hour so that only the announcement can explain
what they see. Then the subscriber itself: it survives Redis going away and coming back, and
drops the cache on its return (announcements sent meanwhile are lost with pub/sub)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from tests.service.registry.conftest import registry_settings
from tests.service.token.conftest import ADMIN_PASSWORD, basic, start_suite
from tests.support.oci import digest_of
from tests.support.redis_server import RedisServer
from wharf_registry.app import create_app as create_registry
from wharf_shared import runtime
from wharf_shared.db.engine import Database
from wharf_shared.keys import RUNTIME_WATCH
from wharf_shared.runtime import READ_ONLY_MESSAGE, RuntimeConfig, RuntimeSettings
from wharf_shared.runtime_watch import RuntimeWatch, announce
from wharf_ui.app import create_app as create_ui

ADMIN = basic("admin", ADMIN_PASSWORD)
WITHIN = 1.0  # seconds


async def within(seconds: float, check: Any) -> float:
    """Poll `check()` until it is true; the time it took (fails past `seconds`)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not await check():
        if loop.time() - start > seconds:
            raise AssertionError(f"not seen within {seconds} s")
        await asyncio.sleep(0.01)
    return loop.time() - start


async def subscribed(*clients: TestClient) -> None:  # type: ignore[type-arg]
    for client in clients:
        await asyncio.wait_for(client.app[RUNTIME_WATCH].subscribed.wait(), 10)  # type: ignore[index]


async def test_a_change_reaches_token_registry_and_other_ui_within_a_second(
    aiohttp_client: Any, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    suite = await start_suite(
        aiohttp_client,
        tmp_path,
        database_url,
        redis_url,
        runtime_reread_seconds=3600,
        runtime_channel=f"wharf:runtime:{uuid.uuid4().hex}",
    )
    ui_a = await aiohttp_client(create_ui(suite.settings))
    ui_b = await aiohttp_client(create_ui(suite.settings))
    await subscribed(suite.token, suite.registry, ui_a, ui_b)
    scope = "repository:library/app:pull,push"

    async def token(credentials: dict[str, str] = ADMIN) -> dict[str, Any]:
        params = {"service": suite.settings.token.service, "scope": scope}
        resp = await suite.token.get("/service/token", params=params, headers=credentials)
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body

    async def start_upload() -> Any:
        bearer = {"Authorization": f"Bearer {(await token())['token']}"}
        return await suite.registry.post("/v2/library/app/blobs/uploads/", headers=bearer)

    # Every process has read (and cached, for an hour) the settings as they were.
    assert (await token())["expires_in"] == 1800
    assert (await start_upload()).status == 202
    layer = b"pushed before the switch"
    bearer = {"Authorization": f"Bearer {(await token())['token']}"}
    resp = await suite.registry.post(
        "/v2/library/app/blobs/uploads/", params={"digest": digest_of(layer)}, data=layer, headers=bearer
    )
    assert resp.status == 201, await resp.text()
    info = await (await ui_b.get("/api/v2.0/systeminfo", headers=ADMIN)).json()
    assert info["read_only"] is False

    resp = await ui_a.put(
        "/api/v2.0/configurations", json={"token_expiration": 5, "read_only": True}, headers=ADMIN
    )
    assert resp.status == 200, await resp.text()

    async def short_tokens() -> bool:
        issued = await token()
        claims = jwt.decode(issued["token"], options={"verify_signature": False})
        return bool(issued["expires_in"] == 300 and claims["exp"] - claims["iat"] == 300)

    async def pushes_denied() -> bool:
        resp = await start_upload()
        if resp.status != 403:
            return False
        error = (await resp.json())["errors"][0]
        assert (error["code"], error["message"]) == ("DENIED", READ_ONLY_MESSAGE)
        return True

    async def other_ui_knows() -> bool:
        resp = await ui_b.post("/api/v2.0/users", json={"username": "x"}, headers=ADMIN)
        return resp.status == 403 and (await resp.json())["errors"][0]["code"] == "DENIED"

    await within(WITHIN, short_tokens)
    await within(WITHIN, pushes_denied)
    await within(WITHIN, other_ui_knows)
    # A client without credentials still gets its challenge first, then the refusal.
    resp = await suite.registry.post("/v2/library/app/blobs/uploads/")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer ")
    # Pulls still work in read-only mode.
    bearer = {"Authorization": f"Bearer {(await token())['token']}"}
    resp = await suite.registry.get(f"/v2/library/app/blobs/{digest_of(layer)}", headers=bearer)
    assert resp.status == 200
    assert await resp.read() == layer

    # And back: writes resume everywhere within a second.
    resp = await ui_b.put("/api/v2.0/configurations", json={"read_only": False}, headers=ADMIN)
    assert resp.status == 200

    async def pushes_again() -> bool:
        return bool((await start_upload()).status == 202)

    await within(WITHIN, pushes_again)


@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)
async def test_the_subscriber_returns_after_redis_comes_back(tmp_path: Path, database_url: str) -> None:
    server = RedisServer(tmp_path / "redis").start()
    db = Database(database_url, pool_size=2)
    redis = Redis.from_url(server.url, socket_connect_timeout=1)
    config = RuntimeConfig(db, RuntimeSettings(), cache_seconds=3600)
    channel = "wharf:runtime:test"
    watch = RuntimeWatch(redis, config, channel, backoff_max=0.2)
    try:
        await watch.start()
        await asyncio.wait_for(watch.subscribed.wait(), 10)
        assert (await config.get()).read_only is False  # cached for an hour from here

        async def store(**values: Any) -> None:
            async with db.transaction() as conn:
                await runtime.store(conn, **values)

        # An announcement drops the cache.
        await store(read_only=True)
        assert (await config.get()).read_only is False
        assert await announce(redis, channel)

        async def seen(value: bool) -> Any:
            async def check() -> bool:
                return (await config.get()).read_only is value

            return check

        await within(WITHIN, await seen(True))

        # Redis goes away: an announcement cannot be made (the change still is stored) ...
        server.stop()

        async def disconnected() -> bool:
            return not watch.subscribed.is_set()

        await within(10, disconnected)
        await store(read_only=False)
        assert not await announce(redis, channel)
        assert (await config.get()).read_only is True  # still the cached value
        # ... and when it is back, the subscriber re-subscribes and drops what it had.
        server.start()
        await asyncio.wait_for(watch.subscribed.wait(), 10)
        await within(WITHIN, await seen(False))
        # Announcements work again.
        await store(read_only=True)
        assert await announce(redis, channel)
        await within(WITHIN, await seen(True))
    finally:
        await watch.close()
        await redis.aclose()
        await db.close()
        server.stop()


@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)
async def test_apps_stop_promptly_whenever_they_are_stopped(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    """The subscriber ends when its app stops, whatever its read is doing at that moment (a
    cancellation redis-py took for a read's timeout once left app teardown hanging)."""
    for i in range(30):
        settings = registry_settings(tmp_path / str(i), database_url, redis_url)
        client = TestClient(TestServer(create_registry(settings)))
        await client.start_server()
        assert (await client.get("/v2/")).status == 200
        await asyncio.sleep(0.003 * i)
        # A swallowed cancellation left the subscriber reading forever: the stop never ended.
        await asyncio.wait_for(client.close(), 30)
