"""A service that stops closes every Redis client it opened, even when one of its closers fails
first. A client left open keeps its connections connected until the garbage collector finds them,
and redis-py then warns about each (`ResourceWarning: unclosed Connection`) in whichever test
happens to be running: under `filterwarnings = error`, an unrelated test fails."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from tests.service.registry.conftest import registry_settings
from tests.service.token.conftest import suite_settings
from tests.service.ui.conftest import ui_settings
from wharf_registry.app import create_app as create_registry
from wharf_registry.liveness import Heartbeat
from wharf_shared import keys as shared_keys
from wharf_shared.config import Settings
from wharf_shared.events import EventPublisher, EventRelay
from wharf_shared.runtime_watch import RuntimeWatch
from wharf_shared.setup import ensure_accounts
from wharf_token.app import create_app as create_token
from wharf_ui.app import create_app as create_ui

Service = tuple[Callable[[Path, str, str], Settings], Callable[[Settings], web.Application]]
SERVICES: dict[str, Service] = {
    "registry": (registry_settings, create_registry),
    "token": (suite_settings, create_token),
    "ui": (ui_settings, create_ui),
}
# What each service closes before its Redis clients (not every service has each).
CLOSERS = {
    "event-relay": (EventRelay, "close"),
    "event-publisher": (EventPublisher, "close"),
    "heartbeat": (Heartbeat, "close"),
    "runtime-watch": (RuntimeWatch, "close"),
}
CASES = [
    ("registry", "event-relay"),
    ("registry", "event-publisher"),
    ("registry", "heartbeat"),
    ("registry", "runtime-watch"),
    ("token", "event-publisher"),
    ("token", "runtime-watch"),
    ("ui", "event-relay"),
    ("ui", "event-publisher"),
    ("ui", "runtime-watch"),
]


class CloserFailed(Exception):
    pass


def connected(redis: Redis) -> int:
    """How many of the client's pooled connections are still connected."""
    pool = redis.connection_pool
    return sum(c.is_connected for c in [*pool._available_connections, *pool._in_use_connections])  # type: ignore[attr-defined]


@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("service", "closer"), CASES, ids=[f"{s}-{c}" for s, c in CASES])
async def test_a_failing_closer_leaves_no_redis_connection_open(
    service: str,
    closer: str,
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_settings, create = SERVICES[service]
    settings = make_settings(tmp_path, database_url, redis_url)
    await ensure_accounts(settings)
    owner, name = CLOSERS[closer]
    original = getattr(owner, name)

    async def failing(self: Any, *args: Any, **kwargs: Any) -> None:
        await original(self, *args, **kwargs)
        raise CloserFailed(f"{owner.__name__}.{name}")

    monkeypatch.setattr(owner, name, failing)
    app = create(settings)
    client: TestClient = TestClient(TestServer(app))  # type: ignore[type-arg]
    await client.start_server()
    try:
        assert (await client.get("/health/ready")).status == 200
        watch = app[shared_keys.RUNTIME_WATCH]
        clients = [app[shared_keys.REDIS], watch._redis]
        await clients[0].ping()
        assert connected(clients[0]) > 0
        # The subscriber's connection is made in the background: wait for it.
        await watch.subscribed.wait()
        assert connected(clients[1]) > 0
    finally:
        with pytest.raises(CloserFailed):
            await client.close()
    assert [connected(redis) for redis in clients] == [0, 0]
