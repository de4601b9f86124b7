"""Blob pulls through the front door sent from the storage root (internal redirect + sendfile),
with the suite as processes (proxy → token service + registry, PostgreSQL, one data dir).

The client must get exactly what it got before: the bytes and digest, ranges, HEAD, 401 without
a token, 404 BLOB_UNKNOWN for a blob the repository does not hold, the pull event and the
registry's request metrics; what changes is who sends the body (the proxy's access line says
`sendfile`). Internal headers sent by a client gain it nothing. A proxy without the storage, or
whose storage root does not hold the file, still serves the blob through the registry.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from multidict import CIMultiDictProxy
from redis.asyncio import Redis

from tests.e2e.conftest import Registry
from tests.support import backends
from tests.support.oci import V2, error_code, image_manifest
from tests.support.processes import ServiceProcess, proxy_process
from tests.support.suite import Suite, start_suite
from tests.support.tls import self_signed
from wharf_shared.accel import ACCEL_REDIRECT, ACCEL_REQUEST, BLOB_LENGTH, REDIRECT_PREFIX
from wharf_shared.events import decode

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "local-blobs-admin-password"
REPO = "library/accel"
LAYER = hashlib.sha256(b"layer").digest() * (5 * 32 * 1024) + b"tail" * 31  # 5 MiB and 124 bytes
CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "local": True}).encode()
DIGEST = "sha256:" + hashlib.sha256(LAYER).hexdigest()
BLOB_URL = f"/v2/{REPO}/blobs/{DIGEST}"
INTERNAL = (ACCEL_REDIRECT, ACCEL_REQUEST, BLOB_LENGTH)


async def token(url: str, *scopes: str) -> str:
    query = urlencode([("service", "wharf-registry"), *(("scope", scope) for scope in scopes)])
    basic = base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}/service/token?{query}", headers={"Authorization": f"Basic {basic}"}) as resp,
    ):
        assert resp.status == 200, await resp.text()
        value: str = (await resp.json())["token"]
        return value


async def push(url: str) -> None:
    auth = {"Authorization": f"Bearer {await token(url, f'repository:{REPO}:pull,push')}"}
    async with aiohttp.ClientSession(base_url=url) as session:
        v2 = V2(session, auth)
        await v2.push_blob(REPO, CONFIG)
        await v2.push_blob_chunked(REPO, LAYER, 768 * 1024)  # bytes bodies above 1 MiB warn
        resp = await v2.push_manifest(REPO, "v1", image_manifest(CONFIG, [LAYER]))
        assert resp.status == 201, await resp.text()
        other = {"Authorization": f"Bearer {await token(url, 'repository:library/other:pull,push')}"}
        await V2(session, other).push_blob("library/other", b"something else")


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    tmp = tmp_path_factory.mktemp("local-blobs")
    with (
        backends.fresh_database("postgresql", str(tmp)) as database_url,
        backends.leased_redis_db() as redis_url,
    ):
        suite = start_suite(
            tmp,
            database_url,
            redis_url,
            admin_password=ADMIN_PASSWORD,
            extra_env={"WHARF_PROXY__WORKERS": "1"},
        )
        try:
            asyncio.run(push(suite.url))
            yield suite
        finally:
            suite.stop()


@pytest.fixture
async def pull_auth(suite: Suite) -> dict[str, str]:
    return {"Authorization": f"Bearer {await token(suite.url, f'repository:{REPO}:pull')}"}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as client:
        yield client


def log_lines(process: ServiceProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in process.log_path.read_text().splitlines() if line.startswith("{")]


def access_line(process: ServiceProcess, request_id: str) -> dict[str, Any]:
    """The proxy's access line of a request (it may be written just after the client read the
    last byte: polled for a while)."""
    deadline = time.monotonic() + 10
    while True:
        lines = [
            line
            for line in log_lines(process)
            if line.get("event") == "access" and line.get("request_id") == request_id
        ]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    [line] = lines
    return line


async def get(
    session: aiohttp.ClientSession, base: str, path: str, headers: dict[str, str], method: str = "GET"
) -> tuple[int, CIMultiDictProxy[str], bytes, str]:
    async with session.request(method, base + path, headers=headers) as resp:
        body = await resp.read()
        return resp.status, resp.headers, body, resp.headers["X-Request-Id"]


def no_internal_headers(headers: Any) -> None:
    for name in INTERNAL:
        assert name not in headers, name


async def test_the_blob_comes_from_storage_with_the_registrys_headers(
    suite: Suite, session: aiohttp.ClientSession, pull_auth: dict[str, str]
) -> None:
    registry = Registry(suite.registries[0], "token", "postgresql", suite.data_dir, None)
    before = registry.request_counts()
    status, headers, body, request_id = await get(session, suite.url, BLOB_URL, pull_auth)
    assert status == 200
    assert body == LAYER
    assert "sha256:" + hashlib.sha256(body).hexdigest() == DIGEST
    assert headers["Docker-Content-Digest"] == DIGEST
    assert headers["Content-Length"] == str(len(LAYER))
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["Cache-Control"] == "max-age=31536000"
    assert headers["Docker-Distribution-API-Version"] == "registry/2.0"
    no_internal_headers(headers)
    line = access_line(suite.proxy, request_id)
    assert line.get("sendfile") is True, line  # the registry sent no body: the proxy sent the file
    assert line["status"] == 200
    # The registry still served (and counted) the request: authorization, link check, metrics.
    served = registry.request_counts() - before
    assert [key for key in served if key[0] == "GET" and "blobs" in key[1]] == [
        ("GET", next(key[1] for key in served if "blobs" in key[1]), "200")
    ]


async def test_ranges_from_storage(
    suite: Suite, session: aiohttp.ClientSession, pull_auth: dict[str, str]
) -> None:
    size = len(LAYER)
    for spec, start, end in (
        ("bytes=1000-2000999", 1000, 2000999),
        ("bytes=-4096", size - 4096, size - 1),
        (f"bytes={size - 1}-", size - 1, size - 1),
    ):
        status, headers, body, request_id = await get(
            session, suite.url, BLOB_URL, {**pull_auth, "Range": spec}
        )
        assert status == 206, spec
        assert headers["Content-Range"] == f"bytes {start}-{end}/{size}"
        assert body == LAYER[start : end + 1], spec
        assert access_line(suite.proxy, request_id).get("sendfile") is True
    status, headers, body, _ = await get(
        session, suite.url, BLOB_URL, {**pull_auth, "Range": f"bytes={size}-"}
    )
    assert status == 416
    assert headers["Content-Range"] == f"bytes */{size}"
    assert body == b""


async def test_head_is_relayed_as_before(
    suite: Suite, session: aiohttp.ClientSession, pull_auth: dict[str, str]
) -> None:
    status, headers, body, request_id = await get(session, suite.url, BLOB_URL, pull_auth, method="HEAD")
    assert status == 200
    assert headers["Content-Length"] == str(len(LAYER))
    assert headers["Docker-Content-Digest"] == DIGEST
    assert body == b""
    assert "sendfile" not in access_line(suite.proxy, request_id)


async def test_without_a_token_no_bytes(suite: Suite, session: aiohttp.ClientSession) -> None:
    forged = {ACCEL_REQUEST: "blobs", ACCEL_REDIRECT: REDIRECT_PREFIX + "blobs", BLOB_LENGTH: "1"}
    other = {"Authorization": f"Bearer {await token(suite.url, 'repository:library/other:pull')}"}
    for headers in ({}, forged, other, {**other, **forged}):
        status, answer, body, request_id = await get(session, suite.url, BLOB_URL, headers)
        assert status == 401, (headers.keys(), status)
        assert answer["WWW-Authenticate"].startswith("Bearer ")
        assert LAYER[:64] not in body
        assert len(body) < 1024
        no_internal_headers(answer)
        assert "sendfile" not in access_line(suite.proxy, request_id)


async def test_a_blob_the_repository_does_not_hold_is_unknown(
    suite: Suite, session: aiohttp.ClientSession
) -> None:
    auth = {"Authorization": f"Bearer {await token(suite.url, 'repository:library/other:pull')}"}
    async with session.get(f"{suite.url}/v2/library/other/blobs/{DIGEST}", headers=auth) as resp:
        assert resp.status == 404
        assert await error_code(resp) == "BLOB_UNKNOWN"
        no_internal_headers(resp.headers)


async def test_internal_headers_from_a_client_gain_it_nothing(
    suite: Suite, session: aiohttp.ClientSession, pull_auth: dict[str, str]
) -> None:
    forged = {
        ACCEL_REQUEST: "blobs",
        ACCEL_REDIRECT: REDIRECT_PREFIX + "../token.key",
        BLOB_LENGTH: "10",
    }
    assert (suite.data_dir / "token.key").exists()
    status, headers, body, _ = await get(session, suite.url, BLOB_URL, {**pull_auth, **forged})
    assert (status, body) == (200, LAYER)
    no_internal_headers(headers)
    # Through a proxy that makes no offer, the client's offer must not reach the registry either:
    # the registry would answer it with a redirect and no body.
    with extra_proxy(suite, {"WHARF_PROXY__LOCAL_BLOBS": "false"}) as plain:
        status, headers, body, request_id = await get(session, plain.url, BLOB_URL, {**pull_auth, **forged})
        assert (status, body) == (200, LAYER)
        no_internal_headers(headers)
        assert "sendfile" not in access_line(plain, request_id)


async def test_the_pull_event_is_recorded(
    suite: Suite, session: aiohttp.ClientSession, pull_auth: dict[str, str]
) -> None:
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    status, _, manifest, _ = await get(
        session, suite.url, f"/v2/{REPO}/manifests/v1", {**pull_auth, **accept}
    )
    assert status == 200
    for layer in json.loads(manifest)["layers"]:
        status, _, body, _ = await get(session, suite.url, f"/v2/{REPO}/blobs/{layer['digest']}", pull_auth)
        assert (status, len(body)) == (200, layer["size"])
    redis = Redis.from_url(suite.env["WHARF_REDIS_URL"])
    try:
        pulls: list[dict[str, Any]] = []
        for _ in range(100):
            entries = await redis.xrange("wharf:events")
            pulls = [
                event
                for _id, fields in entries
                for event in decode(fields)
                if event["type"] == "pull" and event["data"].get("repository") == REPO
            ]
            if pulls:
                break
            await asyncio.sleep(0.05)
    finally:
        await redis.aclose()
    assert pulls, "no pull event"
    assert pulls[-1]["data"]["tag"] == "v1"


class extra_proxy:
    """Another proxy process beside the suite's, with `env` over the suite's settings."""

    def __init__(self, suite: Suite, env: dict[str, str], scheme: str = "http") -> None:
        self.process = proxy_process({**suite.env, **env}, suite.log_dir, name="proxy-extra")
        self.process.scheme = scheme

    def __enter__(self) -> ServiceProcess:
        return self.process.start()

    def __exit__(self, *_exc: object) -> None:
        self.process.stop()


async def test_a_proxy_without_the_storage_relays_the_blob(
    suite: Suite, session: aiohttp.ClientSession, pull_auth: dict[str, str]
) -> None:
    with extra_proxy(suite, {"WHARF_PROXY__LOCAL_BLOBS": "false"}) as plain:
        status, headers, body, request_id = await get(session, plain.url, BLOB_URL, pull_auth)
        assert (status, body) == (200, LAYER)
        assert headers["Docker-Content-Digest"] == DIGEST
        assert "sendfile" not in access_line(plain, request_id)
        assert any(line.get("event") == "local_blobs_off" for line in log_lines(plain))


async def test_a_proxy_that_cannot_open_the_file_falls_back(
    suite: Suite, session: aiohttp.ClientSession, pull_auth: dict[str, str], tmp_path: Path
) -> None:
    """Its storage root is a directory without the blob (a mount that lags, say): the client
    still gets the blob, streamed by the registry, and the proxy says why in a warning."""
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    with extra_proxy(suite, {"WHARF_PROXY__STORAGE_ROOT": str(empty)}) as lagging:
        status, _, body, request_id = await get(
            session, lagging.url, BLOB_URL, {**pull_auth, "Range": "bytes=5-9"}
        )
        assert (status, body) == (206, LAYER[5:10])
        assert "sendfile" not in access_line(lagging, request_id)
        warnings = [line for line in log_lines(lagging) if line.get("event") == "local_blob_unavailable"]
        assert [line["request_id"] for line in warnings] == [request_id]
        assert warnings[0]["level"] == "warning"


async def test_over_tls_the_file_is_encrypted(
    suite: Suite, session: aiohttp.ClientSession, pull_auth: dict[str, str], tmp_path: Path
) -> None:
    """Under uvloop too: on a TLS connection the file goes through TLS, not sendfile's plain bytes."""
    cert, key = self_signed(tmp_path)
    env = {"WHARF_PROXY__TLS_CERT_FILE": str(cert), "WHARF_PROXY__TLS_KEY_FILE": str(key)}
    trust = ssl.create_default_context(cafile=str(cert))
    with extra_proxy(suite, env, scheme="https") as secure:
        async with session.get(secure.url + BLOB_URL, headers=pull_auth, ssl=trust) as resp:
            assert resp.status == 200
            assert await resp.read() == LAYER
            assert access_line(secure, resp.headers["X-Request-Id"]).get("sendfile") is True
