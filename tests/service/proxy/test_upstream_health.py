"""`GET /health/upstreams`: the proxy's view of each pool's instances (in rotation or not, failed
requests and checks in a row, time out of rotation), for whom `/metrics` is allowed only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from tests.service.proxy.test_proxy import dead_url, proxy_client, proxy_settings, url
from tests.support import wire
from tests.support.upstream import start_upstream
from wharf_proxy.keys import POOLS


@pytest.fixture
async def live() -> AsyncIterator[TestServer]:
    server = await start_upstream("live")
    yield server
    await server.close()


async def test_reports_every_pool_and_the_verdict_on_each_instance(
    aiohttp_client: Any, tmp_path: Path, live: TestServer
) -> None:
    dead = dead_url()
    settings = proxy_settings(tmp_path, [url(live), dead], [url(live)], eject_after_failures=2)
    client = await proxy_client(aiohttp_client, settings)
    pool = client.app[POOLS]["registry"]
    await wire.wait_until(lambda: pool.healthy_count() == 1, "failed checks to eject the dead instance")

    resp = await client.get("/health/upstreams")
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    pools = (await resp.json())["pools"]
    assert set(pools) == {"registry", "token", "ui"}
    assert pools["ui"]["upstreams"] == []  # no instance configured: listed, empty
    assert pools["registry"]["eject_after"] == 2
    up, down = pools["registry"]["upstreams"]
    assert up == {
        "url": url(live),
        "in_rotation": True,
        "state": "in_rotation",
        "request_failures": 0,
        "check_failures": 0,
        "out_seconds": None,
    }
    assert down["url"] == dead
    assert down["in_rotation"] is False
    assert down["state"] == "ejected"
    assert down["check_failures"] >= 2
    assert down["out_seconds"] >= 0
    assert [u["in_rotation"] for u in pools["token"]["upstreams"]] == [True]


@pytest.mark.parametrize(
    ("allow", "headers", "status"),
    [
        (None, {}, 200),  # loopback, the default
        (None, {"X-Forwarded-For": "127.0.0.1"}, 404),  # relayed through another proxy
        (None, {"X-Forwarded-For": "203.0.113.9", "Authorization": "Bearer metrics-secret"}, 200),
        (["10.0.0.0/8"], {}, 404),
        (["10.0.0.0/8"], {"Authorization": "Bearer metrics-secret"}, 200),
    ],
)
async def test_only_for_whom_metrics_are_allowed(
    aiohttp_client: Any, tmp_path: Path, allow: list[str] | None, headers: dict[str, str], status: int
) -> None:
    settings = proxy_settings(tmp_path, [dead_url()], [])
    access: dict[str, Any] = {"token": "metrics-secret"}
    if allow is not None:
        access["allow"] = allow
    settings = settings.model_copy(update={"metrics": type(settings.metrics)(**access)})
    client = await proxy_client(aiohttp_client, settings)
    resp = await client.get("/health/upstreams", headers=headers)
    assert resp.status == status
    if status == 404:  # as if the route did not exist
        assert (await resp.json())["errors"][0]["code"] == "NOT_FOUND"
    else:
        assert "registry" in (await resp.json())["pools"]
