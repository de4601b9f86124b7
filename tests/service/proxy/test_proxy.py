"""The proxy over real HTTP upstreams on loopback: routing, forwarded headers, streaming,
retries on the next instance, ejection and return of failed instances."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict

from tests.support.processes import free_port
from tests.support.upstream import start_upstream, upstream_app
from wharf_proxy.app import create_app
from wharf_proxy.keys import POOLS
from wharf_shared.config import Settings

MiB = 1024 * 1024


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


def proxy_settings(tmp_path: Path, registry: list[str], token: list[str], **proxy: Any) -> Settings:
    return Settings(
        data_dir=tmp_path,
        external_url="https://registry.example.com",
        proxy={  # type: ignore[arg-type]
            "upstreams": {"registry": registry, "token": token, "ui": []},
            "health_interval_seconds": 0.2,
            **proxy,
        },
    )


@pytest.fixture
async def upstreams() -> Any:
    servers = [await start_upstream("a"), await start_upstream("b")]
    yield servers
    for server in servers:
        await server.close()


def url(server: TestServer) -> str:
    return f"http://{server.host}:{server.port}"


async def proxy_client(aiohttp_client: Any, settings: Settings) -> TestClient:  # type: ignore[type-arg]
    client: TestClient = await aiohttp_client(create_app(settings))  # type: ignore[type-arg]
    return client


async def test_routes_by_path_and_sets_forwarded_headers(
    aiohttp_client: Any, tmp_path: Path, upstreams: list[TestServer]
) -> None:
    registry, token = upstreams
    client = await proxy_client(aiohttp_client, proxy_settings(tmp_path, [url(registry)], [url(token)]))
    resp = await client.get(
        "/v2/library/app/tags/list?n=5",
        headers={"X-Request-Id": "abc123", "X-Forwarded-For": "10.1.1.1", "Connection": "keep-alive"},
    )
    assert resp.status == 200
    body = await resp.json()
    assert body["upstream"] == "a"
    assert body["path"] == "/v2/library/app/tags/list?n=5"
    headers = CIMultiDict(body["headers"])
    assert headers["X-Forwarded-For"] == "10.1.1.1, 127.0.0.1"
    assert headers["X-Forwarded-Proto"] == "http"
    assert headers["X-Forwarded-Host"] == f"{client.server.host}:{client.server.port}"
    assert headers["X-Request-Id"] == "abc123"
    assert resp.headers["X-Request-Id"] == "abc123"
    resp = await client.get("/service/token?service=x")
    assert (await resp.json())["upstream"] == "b"
    # A request id is made when the client sends none, and passed to the upstream.
    resp = await client.get("/v2/")
    made = resp.headers["X-Request-Id"]
    assert made
    assert CIMultiDict((await resp.json())["headers"])["X-Request-Id"] == made


async def test_no_ui_instance_is_a_clear_503(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await proxy_client(aiohttp_client, proxy_settings(tmp_path, [dead_url()], [dead_url()]))
    for path in ("/api/v2.0/projects", "/c/login", "/"):
        resp = await client.get(path)
        assert resp.status == 503
        body = await resp.json()
        assert "not running" in body["errors"][0]["message"]
        assert resp.headers["Retry-After"]
    # The proxy's own endpoints answer regardless.
    assert (await client.get("/health")).status == 200


async def test_location_pointing_at_an_upstream_is_rewritten(
    aiohttp_client: Any, tmp_path: Path, upstreams: list[TestServer]
) -> None:
    client = await proxy_client(aiohttp_client, proxy_settings(tmp_path, [url(upstreams[0])], []))
    resp = await client.post("/v2/redirect")
    # The echo route answers POSTs; the redirect route is GET only.
    assert resp.status == 200
    resp = await client.get("/v2/redirect", allow_redirects=False)
    assert resp.status == 201
    assert resp.headers["Location"] == "https://registry.example.com/v2/x/blobs/sha256:1"


async def test_bodies_stream_both_ways(
    aiohttp_client: Any, tmp_path: Path, upstreams: list[TestServer]
) -> None:
    client = await proxy_client(aiohttp_client, proxy_settings(tmp_path, [url(upstreams[0])], []))
    data = hashlib.sha256(b"seed").digest() * (3 * MiB // 32)

    async def body() -> Any:
        for i in range(0, len(data), MiB):
            yield data[i : i + MiB]

    resp = await client.patch(
        "/v2/x/blobs/uploads/1", data=body(), headers={"Content-Length": str(len(data))}
    )
    echoed = await resp.json()
    assert echoed["size"] == len(data)
    assert echoed["sha256"] == hashlib.sha256(data).hexdigest()
    resp = await client.get("/v2/bytes/50000000")
    assert resp.status == 200
    assert resp.headers["Content-Length"] == "50000000"
    assert len(await resp.read()) == 50_000_000
    resp = await client.head("/v2/bytes/1234")
    assert resp.headers["Content-Length"] == "1234"
    assert await resp.read() == b""


async def test_connect_failures_go_to_the_next_instance(
    aiohttp_client: Any, tmp_path: Path, upstreams: list[TestServer]
) -> None:
    live = url(upstreams[0])
    settings = proxy_settings(tmp_path, [dead_url(), live], [], health_interval_seconds=3600)
    client = await proxy_client(aiohttp_client, settings)
    big = b"z" * (3 * MiB)  # above retry_body_bytes: streamed, yet unread when the connect fails

    async def big_body() -> Any:
        for i in range(0, len(big), MiB):
            yield big[i : i + MiB]

    for _ in range(4):
        assert (await client.get("/v2/")).status == 200
        resp = await client.post("/v2/x/blobs/uploads/", data=b"small body")
        assert (await resp.json())["size"] == len(b"small body")
        resp = await client.patch(
            "/v2/x/blobs/uploads/1", data=big_body(), headers={"Content-Length": str(len(big))}
        )
        assert resp.status == 200
        assert (await resp.json())["size"] == len(big)
    # Passive ejection: after its third failed connect the dead instance is out of rotation.
    dead = client.app[POOLS]["registry"].upstreams[0]
    assert not dead.available(time.monotonic())


async def test_every_instance_down_is_503(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await proxy_client(aiohttp_client, proxy_settings(tmp_path, [dead_url(), dead_url()], []))
    resp = await client.get("/v2/")
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "5"
    body = await resp.json()
    assert body["errors"][0]["code"] == "UNAVAILABLE"


async def test_health_checks_eject_and_restore(aiohttp_client: Any, tmp_path: Path) -> None:
    host, port = "127.0.0.1", free_port()
    settings = proxy_settings(tmp_path, [f"http://{host}:{port}"], [], eject_after_failures=2)
    client = await proxy_client(aiohttp_client, settings)
    pool = client.app[POOLS]["registry"]
    await asyncio.sleep(1.0)  # several failed checks
    assert pool.healthy_count() == 0
    assert (await client.get("/health/ready")).status == 503
    server = TestServer(upstream_app("late"), host=host, port=port)
    await server.start_server()
    try:
        await asyncio.sleep(1.0)
        assert pool.healthy_count() == 1
        assert (await client.get("/health/ready")).status == 200
        assert (await (await client.get("/v2/")).json())["upstream"] == "late"
    finally:
        await server.close()


async def test_upstream_dying_mid_body_cuts_the_client_off(
    aiohttp_client: Any, tmp_path: Path, upstreams: list[TestServer]
) -> None:
    client = await proxy_client(aiohttp_client, proxy_settings(tmp_path, [url(upstreams[0])], []))
    resp = await client.get("/v2/cut")
    assert resp.status == 200
    with pytest.raises(Exception, match=r"(?i)payload|connection|closed|not complete"):
        await resp.read()
