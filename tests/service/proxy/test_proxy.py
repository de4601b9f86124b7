"""The proxy over real HTTP upstreams on loopback: routing, forwarded headers, streaming,
retries on the next instance, ejection and return of failed instances, paths nobody serves,
malformed targets, and upstreams that fall silent. The proxy is served as `serve_forever`
serves it (`tests.support.wire.ProductionServer`)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict

from tests.support import wire
from tests.support.processes import free_port
from tests.support.upstream import HUNG, READINESS, SEEN, start_upstream, upstream_app
from wharf_proxy.app import create_app
from wharf_proxy.keys import POOLS
from wharf_proxy.pools import not_ready
from wharf_shared.config import Settings
from wharf_shared.keys import METRICS

MiB = 1024 * 1024


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


def proxy_settings(
    tmp_path: Path, registry: list[str], token: list[str], ui: list[str] | None = None, **proxy: Any
) -> Settings:
    return Settings(
        data_dir=tmp_path,
        external_url="https://registry.example.com",
        proxy={  # type: ignore[arg-type]
            "upstreams": {"registry": registry, "token": token, "ui": ui or []},
            "health_interval_seconds": 0.2,
            **proxy,
        },
    )


@pytest.fixture
async def upstreams() -> AsyncIterator[list[TestServer]]:
    servers = [await start_upstream("a"), await start_upstream("b")]
    yield servers
    for server in servers:
        await server.close()


def url(server: TestServer) -> str:
    return f"http://{server.host}:{server.port}"


async def proxy_client(aiohttp_client: Any, settings: Settings) -> TestClient:  # type: ignore[type-arg]
    client: TestClient = await aiohttp_client(wire.ProductionServer(create_app(settings)))  # type: ignore[type-arg]
    return client


def failures(client: TestClient, upstream: str, kind: str | None = None) -> float:  # type: ignore[type-arg]
    """Failed attempts at `upstream` (of the registry pool), of one kind or all, as the proxy's
    metrics count them."""
    total = 0.0
    for family in client.app[METRICS].registry.collect():
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name == "wharf_proxy_upstream_failures_total"
                and (labels["pool"], labels["upstream"]) == ("registry", upstream)
                and kind in (None, labels["kind"])
            ):
                total += sample.value
    return total


def counted(client: TestClient, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    """The proxy's `wharf_proxy_<name>_total` for these labels (0 before the first)."""
    value = client.app[METRICS].registry.get_sample_value(f"wharf_proxy_{name}_total", labels)
    return float(value or 0.0)


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


async def test_the_upstream_gets_the_clients_own_headers_and_none_of_the_proxys(
    aiohttp_client: Any, tmp_path: Path, upstreams: list[TestServer]
) -> None:
    """No User-Agent, Accept-Encoding or Content-Type of the proxy's own HTTP client is added."""
    registry, token = upstreams
    client = await proxy_client(aiohttp_client, proxy_settings(tmp_path, [url(registry)], [url(token)]))
    bare = ("User-Agent", "Accept-Encoding", "Content-Type")
    resp = await client.get("/v2/", skip_auto_headers=bare)
    sent = CIMultiDict((await resp.json())["headers"])
    assert not any(name in sent for name in bare), sent
    own = {"User-Agent": "docker/27.0", "Accept-Encoding": "identity", "Content-Type": "text/plain"}
    resp = await client.post("/v2/x/blobs/uploads/", data=b"abc", headers=own)
    sent = CIMultiDict((await resp.json())["headers"])
    assert {name: sent.get(name) for name in own} == own


async def test_relayed_responses_say_wharf(
    aiohttp_client: Any, tmp_path: Path, upstreams: list[TestServer]
) -> None:
    """The upstream's `Server` header (aiohttp's name and version here) never passes through."""
    client = await proxy_client(aiohttp_client, proxy_settings(tmp_path, [url(upstreams[0])], []))
    resp = await client.get("/v2/")
    assert resp.status == 200
    assert resp.headers["X-Upstream"] == "a"
    assert resp.headers.getall("Server") == ["Wharf"]
    for path in ("/health", "/nowhere"):
        assert (await client.get(path)).headers.getall("Server") == ["Wharf"]


async def test_paths_nobody_serves_are_404(aiohttp_client: Any, tmp_path: Path) -> None:
    """No ui instance is configured: its paths are nobody's, so 404 with a JSON error body."""
    client = await proxy_client(aiohttp_client, proxy_settings(tmp_path, [dead_url()], [dead_url()]))
    for method, path in (("GET", "/api/v2.0/projects"), ("GET", "/c/login"), ("GET", "/"), ("POST", "/x")):
        resp = await client.request(method, path)
        assert resp.status == 404, path
        body = await resp.json()
        assert body["errors"][0]["code"] == "NOT_FOUND"
        assert body["errors"][0]["detail"]["request_id"] == resp.headers["X-Request-Id"]
    # The proxy's own endpoints answer regardless.
    assert (await client.get("/health")).status == 200
    assert counted(client, "responses", pool="none", status="404") == 4
    assert counted(client, "responses", pool="none", status="200") == 1


async def test_configured_pool_without_a_healthy_instance_is_503(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await proxy_client(
        aiohttp_client, proxy_settings(tmp_path, [dead_url()], [dead_url()], ui=[dead_url()])
    )
    for path in ("/api/v2.0/projects", "/v2/", "/service/token"):
        resp = await client.get(path)
        assert resp.status == 503, path
        assert resp.headers["Retry-After"] == "5"
        assert (await resp.json())["errors"][0]["code"] == "UNAVAILABLE"
    for pool in ("ui", "registry", "token"):
        assert counted(client, "responses", pool=pool, status="503") == 1


# Targets refused before routing (services/proxy/paths.py); none reaches an upstream.
MALFORMED = [
    ("GET", "//v2/library/app/tags/list"),
    ("GET", "/\\evil"),
    ("GET", "/v2/../metrics"),
    ("GET", "/v2/%2e%2e/metrics"),
    ("GET", "/v2/./x"),
    ("GET", "/v2/a%5cb/tags/list"),
    ("GET", "/v2/a%2f%2fb/tags/list"),
    ("GET", "/v2/a%00b/tags/list"),
    ("GET", "/v2/a%0d%0ab/tags/list"),
    ("GET", "/v2/%zz"),
    ("GET", "/v2/%ff/tags/list"),
    ("OPTIONS", "*"),
]


@pytest.mark.parametrize(("method", "target"), MALFORMED)
async def test_malformed_targets_are_refused_before_routing(
    aiohttp_client: Any, tmp_path: Path, upstreams: list[TestServer], method: str, target: str
) -> None:
    client = await proxy_client(
        aiohttp_client,
        proxy_settings(tmp_path, [url(upstreams[0])], [url(upstreams[0])], ui=[url(upstreams[0])]),
    )
    resp = await wire.exchange(client.server.host, client.server.port, wire.request_head(method, target))
    assert resp.status == 400, resp.body
    assert resp.headers["Content-Type"].startswith("application/json")
    error = wire.json_body(resp)["errors"][0]
    assert error["code"] == "BAD_REQUEST"
    assert "X-Upstream" not in resp.headers
    assert upstreams[0].app[SEEN] == []  # nothing was forwarded
    assert counted(client, "responses", pool="none", status="400") == 1


async def test_absolute_form_is_forwarded_as_its_path(
    aiohttp_client: Any, tmp_path: Path, upstreams: list[TestServer]
) -> None:
    client = await proxy_client(aiohttp_client, proxy_settings(tmp_path, [url(upstreams[0])], []))
    head = wire.request_head("GET", "http://elsewhere.example/v2/x/tags/list?n=1")
    resp = await wire.exchange(client.server.host, client.server.port, head)
    assert resp.status == 200
    assert wire.json_body(resp)["path"] == "/v2/x/tags/list?n=1"


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


async def test_bodies_are_reframed(aiohttp_client: Any, tmp_path: Path, upstreams: list[TestServer]) -> None:
    """What reaches the upstream is one request with a canonical length (or chunked), whatever
    spelling the client used: the upstream never has a framing of the client's to disagree with."""
    client = await proxy_client(aiohttp_client, proxy_settings(tmp_path, [url(upstreams[0])], []))
    host, port = client.server.host, client.server.port
    head = wire.request_head("PATCH", "/v2/x/blobs/uploads/1", {"Content-Length": "0005"})
    echoed = wire.json_body(await wire.exchange(host, port, head, b"hello"))
    assert (echoed["size"], CIMultiDict(echoed["headers"])["Content-Length"]) == (5, "5")
    head = wire.request_head(
        "PATCH", "/v2/x/blobs/uploads/1", {"Transfer-Encoding": "chunked", "Expect": "100-continue"}
    )
    resp = await wire.exchange(host, port, head, b"5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n")
    echoed = wire.json_body(resp)
    headers = CIMultiDict(echoed["headers"])
    assert echoed["size"] == 5
    assert "Content-Length" not in headers
    assert headers["Transfer-Encoding"] == "chunked"
    assert "Expect" not in headers


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
    assert not dead.in_rotation
    assert failures(client, dead.url, "connect") == 3
    assert counted(client, "upstream_ejections", pool="registry", upstream=dead.url) == 1
    # Each failed connect moved its request to the live instance; the client saw only answers.
    assert counted(client, "retries", pool="registry") == 3
    assert counted(client, "responses", pool="registry", status="200") == 12


async def test_every_instance_down_is_503(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await proxy_client(aiohttp_client, proxy_settings(tmp_path, [dead_url(), dead_url()], []))
    resp = await client.get("/v2/")
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "5"
    assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    body = await resp.json()
    assert body["errors"][0]["code"] == "UNAVAILABLE"
    assert counted(client, "retries", pool="registry") == 1  # to the second, then no more
    assert counted(client, "responses", pool="registry", status="503") == 1


async def test_health_checks_eject_and_restore(aiohttp_client: Any, tmp_path: Path) -> None:
    host, port = "127.0.0.1", free_port()
    settings = proxy_settings(
        tmp_path, [f"http://{host}:{port}"], [], eject_after_failures=2, eject_seconds=0.5
    )
    client = await proxy_client(aiohttp_client, settings)
    pool = client.app[POOLS]["registry"]
    await wire.wait_until(lambda: pool.healthy_count() == 0, "failed checks to eject the instance")
    assert (await client.get("/health/ready")).status == 503
    upstream = f"http://{host}:{port}"
    # Checks go on failing while it is out: it was ejected once.
    await wire.wait_until(lambda: failures(client, upstream, "health") >= 6, "more failed checks")
    assert counted(client, "upstream_ejections", pool="registry", upstream=upstream) == 1
    server = TestServer(upstream_app("late"), host=host, port=port)
    await server.start_server()
    try:
        await wire.wait_until(lambda: pool.healthy_count() == 1, "a passing check to restore it")
        assert (await client.get("/health/ready")).status == 200
        assert (await (await client.get("/v2/")).json())["upstream"] == "late"
        assert counted(client, "upstream_restorations", pool="registry", upstream=upstream) == 1
        assert counted(client, "upstream_ejections", pool="registry", upstream=upstream) == 1
    finally:
        await server.close()


async def test_an_unready_instance_is_ejected_and_comes_back(
    aiohttp_client: Any, tmp_path: Path, upstreams: list[TestServer]
) -> None:
    """The checks ask for readiness: an instance that is alive but whose Redis (say) is gone
    leaves the rotation, with its cause, though it answers requests; it comes back once ready."""
    unready, other = upstreams
    settings = proxy_settings(tmp_path, [url(unready), url(other)], [], eject_seconds=0.3)
    client = await proxy_client(aiohttp_client, settings)
    pool = client.app[POOLS]["registry"]
    unready.app[READINESS]["redis"] = "ConnectionError: Error 111 connecting to 10.0.0.9:6379"
    await wire.wait_until(lambda: pool.healthy_count() == 1, "failed checks to eject the instance")
    assert not pool.upstreams[0].in_rotation
    assert counted(client, "upstream_ejections", pool="registry", upstream=url(unready)) == 1
    for _ in range(6):
        assert (await (await client.get("/v2/")).json())["upstream"] == "b"
    async with aiohttp.ClientSession() as session:
        reason = await not_ready(session, url(unready), aiohttp.ClientTimeout(total=5))
    assert reason == "not ready (503): redis: ConnectionError: Error 111 connecting to 10.0.0.9:6379"
    unready.app[READINESS]["redis"] = "ok"
    await wire.wait_until(lambda: pool.healthy_count() == 2, "a passing check to restore it")
    assert counted(client, "upstream_restorations", pool="registry", upstream=url(unready)) == 1
    seen = {(await (await client.get("/v2/")).json())["upstream"] for _ in range(4)}
    assert seen == {"a", "b"}


async def test_a_client_that_leaves_is_no_upstream_failure(
    aiohttp_client: Any, tmp_path: Path, upstreams: list[TestServer]
) -> None:
    client = await proxy_client(aiohttp_client, proxy_settings(tmp_path, [url(upstreams[0])], []))
    async with aiohttp.ClientSession() as session:
        resp = await session.get(f"http://{client.server.host}:{client.server.port}/v2/bytes/1000000000")
        await resp.content.readexactly(MiB)
        resp.close()  # hangs up with most of the gigabyte unread
    await wire.wait_until(
        lambda: counted(client, "responses", pool="registry", status="499") == 1, "the answer to end"
    )
    assert failures(client, url(upstreams[0])) == 0
    assert counted(client, "responses", pool="registry", status="502") == 0


async def test_upstream_dying_mid_body_cuts_the_client_off(
    aiohttp_client: Any, tmp_path: Path, upstreams: list[TestServer]
) -> None:
    client = await proxy_client(aiohttp_client, proxy_settings(tmp_path, [url(upstreams[0])], []))
    resp = await client.get("/v2/cut")
    assert resp.status == 200
    with pytest.raises(Exception, match=r"(?i)payload|connection|closed|not complete"):
        await resp.read()
    assert failures(client, url(upstreams[0]), "truncated") == 1
    assert counted(client, "responses", pool="registry", status="502") == 1


# -- upstreams that fall silent ----------------------------------------------------------------

READ_TIMEOUT = 0.5


async def timeout_client(
    aiohttp_client: Any, tmp_path: Path, upstreams: list[str], **proxy: Any
) -> TestClient:  # type: ignore[type-arg]
    settings = proxy_settings(
        tmp_path, upstreams, [], read_timeout_seconds=READ_TIMEOUT, health_interval_seconds=3600, **proxy
    )
    return await proxy_client(aiohttp_client, settings)


async def test_upstream_that_hangs_is_504_and_a_failure(
    aiohttp_client: Any, tmp_path: Path, upstreams: list[TestServer]
) -> None:
    hung = url(upstreams[0])
    client = await timeout_client(aiohttp_client, tmp_path, [hung], eject_after_failures=1)
    resp = await client.post("/v2/hang", data=b"a request")
    assert resp.status == 504
    assert resp.headers["Retry-After"] == "5"
    assert (await resp.json())["errors"][0]["code"] == "GATEWAY_TIMEOUT"
    assert failures(client, hung, "timeout") == 1
    assert counted(client, "responses", pool="registry", status="504") == 1
    assert not client.app[POOLS]["registry"].upstreams[0].in_rotation


async def test_idempotent_request_moves_on_from_a_hung_instance(
    aiohttp_client: Any, tmp_path: Path, upstreams: list[TestServer]
) -> None:
    """`/v2/hang` hangs on `a`; `b` answers it (its echo)."""
    hung = url(upstreams[0])
    server = await start_upstream("b", misbehaving=False)
    try:
        client = await timeout_client(aiohttp_client, tmp_path, [hung, url(server)])
        resp = await client.get("/v2/hang")
        assert resp.status == 200
        assert (await resp.json())["upstream"] == "b"
        assert failures(client, hung) == 1
    finally:
        await server.close()


async def test_an_upload_start_moves_on_from_an_instance_that_died(
    aiohttp_client: Any, tmp_path: Path, upstreams: list[TestServer]
) -> None:
    """An instance drops the connection after taking the request: an upload's start (a POST, safe
    to send again) goes on to the next instance; another POST, which may have done its work, is
    not sent twice."""
    dying = url(upstreams[0])
    server = await start_upstream("b", misbehaving=False)
    try:
        client = await timeout_client(aiohttp_client, tmp_path, [dying, url(server)], eject_after_failures=99)
        for target in ["/v2/reset/app/blobs/uploads/", "/v2/reset/app/blobs/uploads?digest=sha256:1"] * 2:
            resp = await client.post(target, data=b"")
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["upstream"] == "b"
        # The rotation started at the dying one at least once.
        assert failures(client, dying, "reset") == failures(client, dying) >= 1
    finally:
        await server.close()
    both_dying = [url(upstreams[0]), url(upstreams[1])]
    client = await timeout_client(aiohttp_client, tmp_path, both_dying, eject_after_failures=99)
    resp = await client.post("/v2/reset/app/manifests/v1", data=b"{}")
    assert resp.status == 503
    assert sum(failures(client, u) for u in both_dying) == 1


async def test_upstream_silent_mid_body_cuts_the_client_off(
    aiohttp_client: Any, tmp_path: Path, upstreams: list[TestServer]
) -> None:
    silent = url(upstreams[0])
    client = await timeout_client(aiohttp_client, tmp_path, [silent])
    resp = await client.get("/v2/hang-mid-body")
    assert resp.status == 200
    with pytest.raises(Exception, match=r"(?i)payload|connection|closed|not complete"):
        await resp.read()
    assert failures(client, silent, "timeout") == 1


async def test_upstream_that_stops_taking_the_body_is_504(
    aiohttp_client: Any, tmp_path: Path, upstreams: list[TestServer]
) -> None:
    """An upstream that reads none of a large body stalls the proxy's writes: the body's stall
    clock (not aiohttp's `sock_read`, which starts only once the body is sent) ends it."""
    stuck = url(upstreams[0])
    client = await timeout_client(aiohttp_client, tmp_path, [stuck])
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        while sent < 1024 * MiB:
            sent += MiB
            yield b"b" * MiB

    resp = await client.put("/v2/ignore-body", data=body(), headers={"Content-Length": str(1024 * MiB)})
    assert resp.status == 504
    assert upstreams[0].app[HUNG].is_set()
    assert sent < 1024 * MiB  # answered long before the body could have been sent
    assert failures(client, stuck) == 1
    resp.close()  # stop sending the rest


async def test_slow_but_steady_download_outlasts_the_read_timeout(
    aiohttp_client: Any, tmp_path: Path, upstreams: list[TestServer]
) -> None:
    client = await timeout_client(aiohttp_client, tmp_path, [url(upstreams[0])])
    start = time.monotonic()
    resp = await client.get("/v2/drip/8/150")  # 8 pieces 150 ms apart: 1.2 s in all
    assert resp.status == 200
    assert len(await resp.read()) == 8 * 64 * 1024
    assert time.monotonic() - start > 2 * READ_TIMEOUT


async def test_slow_client_download_outlasts_the_read_timeout(
    aiohttp_client: Any, tmp_path: Path, upstreams: list[TestServer]
) -> None:
    """A client that reads a large blob slowly holds the upstream back; that is no silence of
    the upstream's."""
    client = await timeout_client(aiohttp_client, tmp_path, [url(upstreams[0])])
    start = time.monotonic()
    resp = await client.get("/v2/bytes/67108864")
    received = 0
    async for chunk in resp.content.iter_chunked(MiB):
        received += len(chunk)
        if time.monotonic() - start < 3 * READ_TIMEOUT:
            await asyncio.sleep(0.05)  # the slow client: the pace is what is tested
    assert received == 64 * MiB
    assert time.monotonic() - start > 3 * READ_TIMEOUT


async def test_upload_longer_than_the_read_timeout_succeeds(
    aiohttp_client: Any, tmp_path: Path, upstreams: list[TestServer]
) -> None:
    """The response of a long upload comes only after all of its body: the read timeout starts
    when the body is sent, so an upload taking longer than it is fine."""
    client = await timeout_client(aiohttp_client, tmp_path, [url(upstreams[0])])
    pieces = 12

    async def trickle() -> AsyncIterator[bytes]:
        for _ in range(pieces):
            yield b"t" * 4 * MiB  # over retry_body_bytes: streamed
            await asyncio.sleep(0.1)  # the slow uploader: the pace is what is tested

    start = time.monotonic()
    resp = await client.patch(
        "/v2/x/blobs/uploads/1", data=trickle(), headers={"Content-Length": str(pieces * 4 * MiB)}
    )
    assert resp.status == 200
    assert (await resp.json())["size"] == pieces * 4 * MiB
    assert time.monotonic() - start > 2 * READ_TIMEOUT


# -- /metrics: only for whom WHARF_METRICS__* allows -------------------------------------------


@pytest.mark.parametrize(
    ("allow", "headers", "status"),
    [
        (None, {}, 200),  # loopback, the default
        (None, {"X-Forwarded-For": "127.0.0.1"}, 404),  # relayed: its peer is a proxy's
        (None, {"Forwarded": "for=127.0.0.1"}, 404),
        (None, {"X-Forwarded-For": "203.0.113.9", "Authorization": "Bearer metrics-secret"}, 200),
        (None, {"Authorization": "Bearer wrong"}, 200),  # a wrong token is no token: loopback decides
        (["10.0.0.0/8"], {}, 404),
        (["10.0.0.0/8"], {"Authorization": "Bearer wrong"}, 404),
        (["10.0.0.0/8"], {"Authorization": "Bearer metrics-secret"}, 200),
        ([], {}, 404),
    ],
)
async def test_metrics_only_for_allowed_callers(
    aiohttp_client: Any, tmp_path: Path, allow: list[str] | None, headers: dict[str, str], status: int
) -> None:
    settings = proxy_settings(tmp_path, [dead_url()], [])
    access: dict[str, Any] = {"token": "metrics-secret"}
    if allow is not None:
        access["allow"] = allow
    settings = settings.model_copy(update={"metrics": type(settings.metrics)(**access)})
    client = await proxy_client(aiohttp_client, settings)
    resp = await client.get("/metrics", headers=headers)
    assert resp.status == status
    if status == 404:  # as if the route did not exist
        assert (await resp.json())["errors"][0]["code"] == "NOT_FOUND"
    else:
        assert "# TYPE wharf_proxy_upstream_requests_total counter" in await resp.text()
