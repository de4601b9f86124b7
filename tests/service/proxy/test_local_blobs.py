"""The proxy's side of internal redirects, over loopback against a stand-in registry that answers
blob GETs with whatever redirect the test sets (a real one, or a forged one): what the proxy
offers and to whom, what it accepts, what it sends from storage, and that it falls back to the
registry's own stream whenever the redirect will not do. The registry's side is in
tests/service/registry/test_blob_redirect.py; the whole path in tests/e2e/test_local_blobs.py."""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict

from tests.support import wire
from tests.support.processes import free_port
from tests.support.tls import self_signed
from wharf_proxy.app import create_app
from wharf_proxy.keys import LOCAL_BLOBS
from wharf_shared.accel import ACCEL_REDIRECT, ACCEL_REQUEST, BLOB_LENGTH, REDIRECT_PREFIX, redirect_uri
from wharf_shared.config import Settings
from wharf_shared.digests import Digest
from wharf_shared.storage.paths import blob_path

DATA = hashlib.sha256(b"local").digest() * 40_000  # 1.25 MiB, in the storage root
STREAMED = b"streamed by the registry itself " * 1000  # what the stand-in sends without a redirect
DIGEST = Digest("sha256", hashlib.sha256(DATA).hexdigest())
OTHER = Digest("sha256", hashlib.sha256(b"other").hexdigest())
BLOB_URL = f"/v2/library/app/blobs/{DIGEST}"

SEEN = web.AppKey("seen", list[tuple[str, str, CIMultiDict[str]]])  # method, path, headers
REDIRECT = web.AppKey("redirect", dict[str, str])  # the headers of the redirect answer; {}: none


def registry_stand_in() -> web.Application:
    """Blob GETs: the redirect the test set when the proxy offers (and any redirect set), else the
    bytes streamed; it also sends a stray redirect header along with every streamed body."""

    async def blob(request: web.Request) -> web.Response:
        request.app[SEEN].append((request.method, request.path, CIMultiDict(request.headers)))
        headers = {
            "Docker-Content-Digest": request.match_info["digest"],
            "Content-Type": "application/octet-stream",
            "Cache-Control": "max-age=31536000",
            "Docker-Distribution-API-Version": "registry/2.0",
        }
        redirect = request.app[REDIRECT]
        if request.headers.get(ACCEL_REQUEST) == "blobs" and redirect:
            return web.Response(headers={**headers, **redirect})
        stray = {ACCEL_REDIRECT: redirect_uri(blob_path(OTHER)), BLOB_LENGTH: "5"}
        return web.Response(body=STREAMED, headers={**headers, **stray})

    async def other(request: web.Request) -> web.Response:
        request.app[SEEN].append((request.method, request.path, CIMultiDict(request.headers)))
        return web.Response(body=STREAMED, headers={ACCEL_REDIRECT: redirect_uri(blob_path(DIGEST))})

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app[SEEN] = []
    app[REDIRECT] = valid_redirect()  # a mutable dict: the app is frozen once it serves
    app.router.add_get("/health/ready", health)
    app.router.add_get("/v2/{name:.+}/blobs/{digest}", blob, allow_head=True)
    app.router.add_route("*", "/{tail:.*}", other)
    return app


def valid_redirect() -> dict[str, str]:
    return {ACCEL_REDIRECT: redirect_uri(blob_path(DIGEST)), BLOB_LENGTH: str(len(DATA))}


@pytest.fixture
async def registry() -> AsyncIterator[TestServer]:
    server = TestServer(registry_stand_in(), host="127.0.0.1", port=free_port())
    await server.start_server()
    yield server
    await server.close()


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    root = tmp_path / "storage"  # the default root under data_dir
    for digest, data in ((DIGEST, DATA), (OTHER, b"o" * len(DATA))):  # another blob, same size
        path = root / blob_path(digest)
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
    return root


async def proxy(
    aiohttp_client: Any, tmp_path: Path, registry: TestServer, tls: ssl.SSLContext | None = None, **proxy: Any
) -> TestClient:  # type: ignore[type-arg]
    settings = Settings(
        data_dir=tmp_path,
        proxy={  # type: ignore[arg-type]
            "upstreams": {"registry": [f"http://127.0.0.1:{registry.port}"], "token": [], "ui": []},
            "health_interval_seconds": 0.2,
            **proxy,
        },
    )
    server = wire.ProductionServer(create_app(settings))
    await server.start_server(ssl=tls)
    client: TestClient = await aiohttp_client(server)  # type: ignore[type-arg]
    return client


def offers(registry: TestServer) -> list[list[str]]:
    """The offer headers each request the stand-in saw carried."""
    return [headers.getall(ACCEL_REQUEST, []) for _m, _p, headers in registry.app[SEEN]]


def internal_headers_seen(registry: TestServer) -> list[str]:
    return [
        name
        for _m, _p, headers in registry.app[SEEN]
        for name in headers
        if name.lower() in (ACCEL_REDIRECT.lower(), BLOB_LENGTH.lower())
    ]


def assert_no_internal_headers(resp: Any) -> None:
    for name in (ACCEL_REDIRECT, BLOB_LENGTH, ACCEL_REQUEST):
        assert name not in resp.headers, name


async def test_a_redirected_blob_is_sent_from_storage(
    aiohttp_client: Any, tmp_path: Path, registry: TestServer, storage: Path
) -> None:
    client = await proxy(aiohttp_client, tmp_path, registry)
    assert client.app[LOCAL_BLOBS] is not None
    resp = await client.get(BLOB_URL, headers={"X-Request-Id": "local-1"})
    assert resp.status == 200
    body = await resp.read()
    assert body == DATA
    assert resp.headers["Content-Length"] == str(len(DATA))
    assert resp.headers["Docker-Content-Digest"] == str(DIGEST)
    assert resp.headers["Content-Type"] == "application/octet-stream"
    assert resp.headers["Cache-Control"] == "max-age=31536000"
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert resp.headers["X-Request-Id"] == "local-1"
    assert resp.headers.getall("Server") == ["Wharf"]
    assert_no_internal_headers(resp)
    assert offers(registry) == [["blobs"]]  # one request, with the offer


async def test_ranges_and_conditional_requests_are_answered_from_storage(
    aiohttp_client: Any, tmp_path: Path, registry: TestServer, storage: Path
) -> None:
    client = await proxy(aiohttp_client, tmp_path, registry)
    size = len(DATA)
    for spec, start, end in (
        ("bytes=100-1123", 100, 1123),
        ("bytes=-500", size - 500, size - 1),
        (f"bytes={size - 10}-", size - 10, size - 1),
        (f"bytes=0-{size + 100}", 0, size - 1),
    ):
        resp = await client.get(BLOB_URL, headers={"Range": spec})
        assert resp.status == 206, spec
        assert resp.headers["Content-Range"] == f"bytes {start}-{end}/{size}", spec
        assert await resp.read() == DATA[start : end + 1], spec
        assert_no_internal_headers(resp)
    resp = await client.get(BLOB_URL, headers={"Range": f"bytes={size}-"})
    assert resp.status == 416
    assert resp.headers["Content-Range"] == f"bytes */{size}"
    assert await resp.read() == b""
    etag = (await client.get(BLOB_URL)).headers["ETag"]
    resp = await client.get(BLOB_URL, headers={"If-None-Match": etag})
    assert resp.status == 304
    assert await resp.read() == b""
    assert all(offer == ["blobs"] for offer in offers(registry))  # none fell back


FORGED = [
    pytest.param({ACCEL_REDIRECT: REDIRECT_PREFIX + "../../etc/passwd", BLOB_LENGTH: "10"}, id="dot-dot"),
    pytest.param({ACCEL_REDIRECT: "/etc/passwd", BLOB_LENGTH: "10"}, id="absolute"),
    pytest.param(
        {ACCEL_REDIRECT: REDIRECT_PREFIX + "/etc/passwd", BLOB_LENGTH: "10"}, id="absolute in prefix"
    ),
    pytest.param(
        {ACCEL_REDIRECT: redirect_uri(blob_path(OTHER)), BLOB_LENGTH: str(len(DATA))}, id="another blob"
    ),
    pytest.param(
        {ACCEL_REDIRECT: redirect_uri(blob_path(DIGEST)), BLOB_LENGTH: str(len(DATA) + 1)}, id="wrong size"
    ),
    pytest.param({ACCEL_REDIRECT: redirect_uri(blob_path(DIGEST))}, id="no size"),
    pytest.param(
        {ACCEL_REDIRECT: redirect_uri(blob_path(DIGEST)), BLOB_LENGTH: "1e6"}, id="size not a number"
    ),
]


@pytest.mark.parametrize("redirect", FORGED)
async def test_a_forged_redirect_is_refused_and_the_registry_streams_the_blob(
    aiohttp_client: Any, tmp_path: Path, registry: TestServer, storage: Path, redirect: dict[str, str]
) -> None:
    (tmp_path / "secret").write_bytes(b"s" * 10)
    registry.app[REDIRECT].clear()
    registry.app[REDIRECT].update(redirect)
    client = await proxy(aiohttp_client, tmp_path, registry)
    resp = await client.get(BLOB_URL)
    assert resp.status == 200
    assert await resp.read() == STREAMED
    assert_no_internal_headers(resp)
    assert offers(registry) == [["blobs"], []]  # refused, then asked again without the offer


async def test_a_symlink_out_of_the_root_is_refused(
    aiohttp_client: Any, tmp_path: Path, registry: TestServer, storage: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"s" * len(DATA))
    data = storage / blob_path(DIGEST)
    data.unlink()
    data.symlink_to(secret)
    client = await proxy(aiohttp_client, tmp_path, registry)
    resp = await client.get(BLOB_URL)
    assert await resp.read() == STREAMED
    assert offers(registry) == [["blobs"], []]


async def test_a_file_missing_here_falls_back_to_the_registry(
    aiohttp_client: Any, tmp_path: Path, registry: TestServer, storage: Path
) -> None:
    """A proxy whose mount lags behind (or lost it) still answers: the registry streams it."""
    (storage / blob_path(DIGEST)).unlink()
    client = await proxy(aiohttp_client, tmp_path, registry)
    resp = await client.get(BLOB_URL, headers={"Range": "bytes=0-9"})
    assert resp.status == 200  # the stand-in ignores ranges: what matters is who sent it
    assert await resp.read() == STREAMED
    assert offers(registry) == [["blobs"], []]


async def test_clients_can_neither_offer_nor_redirect(
    aiohttp_client: Any, tmp_path: Path, registry: TestServer, storage: Path
) -> None:
    """The internal headers a client sends never reach the registry; the proxy's own offer is
    made on blob GETs only, and a redirect the proxy did not ask for is neither followed nor shown."""
    client = await proxy(aiohttp_client, tmp_path, registry)
    forged = {
        ACCEL_REQUEST: "blobs",
        ACCEL_REDIRECT: REDIRECT_PREFIX + "../secret",
        BLOB_LENGTH: "10",
        "Connection": "keep-alive",
    }
    resp = await client.get(BLOB_URL, headers={**forged, ACCEL_REQUEST: "something-else"})
    assert await resp.read() == DATA  # the proxy's own offer, the registry's own redirect
    for method, path in (
        ("HEAD", BLOB_URL),
        ("GET", f"/v2/library/app/manifests/{DIGEST}"),
        ("GET", "/v2/library/app/blobs/uploads/abc"),
        ("DELETE", BLOB_URL),
    ):
        resp = await client.request(method, path, headers=forged)
        assert resp.status == 200, (method, path)
        assert await resp.read() == (b"" if method == "HEAD" else STREAMED), (method, path)
        assert_no_internal_headers(resp)
    assert offers(registry) == [["blobs"], [], [], [], []]
    assert internal_headers_seen(registry) == []


@pytest.mark.parametrize(
    "setting",
    [
        pytest.param({"local_blobs": False}, id="switched off"),
        pytest.param({"storage_root": "/nonexistent/wharf-storage"}, id="root absent"),
    ],
)
async def test_without_a_storage_root_nothing_is_offered(
    aiohttp_client: Any, tmp_path: Path, registry: TestServer, storage: Path, setting: dict[str, Any]
) -> None:
    client = await proxy(aiohttp_client, tmp_path, registry, **setting)
    assert client.app[LOCAL_BLOBS] is None
    resp = await client.get(BLOB_URL, headers={ACCEL_REQUEST: "blobs"})
    assert await resp.read() == STREAMED
    assert_no_internal_headers(resp)
    assert offers(registry) == [[]]


async def test_over_tls_the_file_is_encrypted_like_any_body(
    aiohttp_client: Any, tmp_path: Path, registry: TestServer, storage: Path
) -> None:
    """sendfile would put the file's plain bytes on a TLS connection: there FileResponse copies."""
    cert, key = self_signed(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    client = await proxy(aiohttp_client, tmp_path, registry, tls)
    trust = ssl.create_default_context(cafile=str(cert))
    assert str(client.make_url("/")).startswith("https://")
    resp = await client.get(BLOB_URL, ssl=trust)
    assert resp.status == 200
    assert await resp.read() == DATA
    resp = await client.get(BLOB_URL, ssl=trust, headers={"Range": "bytes=-100"})
    assert (resp.status, await resp.read()) == (206, DATA[-100:])
    assert offers(registry) == [["blobs"], ["blobs"]]
