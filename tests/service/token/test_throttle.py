"""Failed logins: locked out per account and per client address after 5 misses, the lockout
growing with further misses, and no answer telling an unknown user from a wrong password."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.service.token.conftest import ADMIN_PASSWORD, Suite, basic, suite_settings
from wharf_shared.auth.throttle import LoginThrottle
from wharf_shared.redis import open_redis
from wharf_shared.setup import ensure_accounts
from wharf_token.app import create_app as create_token

SCOPE = {"service": "wharf-registry", "scope": "repository:library/app:pull"}


@pytest.fixture
def db_kind() -> str:
    return "postgresql"  # the rules live in Redis; one database is enough


async def login(suite: Suite, username: str, password: str) -> tuple[int, Any, str | None]:
    resp = await suite.token.get("/service/token", params=SCOPE, headers=basic(username, password))
    return resp.status, await resp.json(), resp.headers.get("Retry-After")


async def test_five_failures_lock_and_answers_leak_nothing(suite: Suite) -> None:
    await suite.add_user("alice", "alice-password-1")
    # Unknown user and wrong password, interleaved: the same status and body each time.
    for _ in range(2):
        wrong_password = await login(suite, "alice", "wrong")
        unknown_user = await login(suite, "nobody", "wrong")
        assert wrong_password == unknown_user
        assert wrong_password[0] == 401
    # The fifth miss from this address is still answered 401; then the lock is in force.
    assert (await login(suite, "alice", "wrong"))[0] == 401
    # Locked: even the right password is refused, with Retry-After, before any check.
    status, body, retry = await login(suite, "alice", "alice-password-1")
    assert status == 429
    assert body["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert retry is not None
    assert 0 < int(retry) <= 30
    assert await login(suite, "nobody", "wrong") == (status, body, retry)


async def test_address_locks_across_accounts(
    aiohttp_client: Any, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    settings = suite_settings(tmp_path, database_url, redis_url, token={"throttle_failures": 3})
    await ensure_accounts(settings)
    client = await aiohttp_client(create_token(settings))
    for i in range(3):
        resp = await client.get("/service/token", params=SCOPE, headers=basic(f"user{i}", "wrong"))
        assert resp.status == 401
    # A fourth name from the same address: the address is locked, whatever the account.
    resp = await client.get("/service/token", params=SCOPE, headers=basic("admin", ADMIN_PASSWORD))
    assert resp.status == 429
    # Anonymous requests carry no credentials to guess with and are not throttled.
    resp = await client.get("/service/token", params=SCOPE)
    assert resp.status == 200


async def test_lockout_grows_and_success_resets(redis_url: str) -> None:
    redis = open_redis(redis_url)
    try:
        throttle = LoginThrottle(redis, failures=2, lockout_seconds=1)
        for _ in range(2):
            await throttle.failed("bob", "10.0.0.1")
        assert await throttle.locked_for("bob", "10.0.0.2") == 1  # the first lockout
        await throttle.failed("bob", "10.0.0.1")
        assert await throttle.locked_for("bob", "10.0.0.2") == 2  # doubled by the next miss
        assert await throttle.locked_for("carol", "10.0.0.1") == 2  # the address too
        assert await throttle.locked_for("carol", "10.0.0.3") == 0
        await asyncio.sleep(2.2)
        assert await throttle.locked_for("bob", "10.0.0.2") == 0  # the lockout ends
        await throttle.succeeded("bob")
        await throttle.failed("bob", "10.0.0.4")
        assert await throttle.locked_for("bob", "10.0.0.5") == 0  # counting starts again
    finally:
        await redis.aclose()
