"""The registry's side of internal redirects (wharf_shared.accel): asked by a trusted front door,
a blob GET on filesystem storage is answered with the headers, the blob's size and the redirect,
no body; asked by anyone else, or for a HEAD, or on S3, it is answered as ever. Blob GETs with
no offer go out with sendfile (wharf_shared.sendfile), ranges included."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from tests.service.registry.conftest import registry_settings
from tests.support import s3
from tests.support.oci import V2, error_code
from wharf_registry.app import create_app
from wharf_shared.accel import ACCEL_REDIRECT, ACCEL_REQUEST, BLOB_LENGTH, REDIRECT_PREFIX
from wharf_shared.digests import Digest
from wharf_shared.storage.paths import blob_path

DATA = hashlib.sha256(b"redirect").digest() * 28_000  # 875 KiB (aiohttp warns of larger bodies as bytes)
OFFER = {ACCEL_REQUEST: "blobs"}


@pytest.fixture
def db_kind() -> str:
    return "sqlite"  # the metadata lookup is the same on every backend; this is about HTTP


async def registry(aiohttp_client: Any, settings: Any) -> V2:
    return V2(await aiohttp_client(create_app(settings)))


async def test_a_trusted_offer_gets_the_redirect_and_no_body(v2: V2, settings: Any) -> None:
    digest = await v2.push_blob("library/app", DATA)
    resp = await v2.request("GET", f"/v2/library/app/blobs/{digest}", headers=OFFER)
    assert resp.status == 200
    assert await resp.read() == b""
    assert resp.headers["Content-Length"] == "0"  # the framing: no bytes follow
    path = blob_path(Digest.parse(digest))
    assert resp.headers[ACCEL_REDIRECT] == REDIRECT_PREFIX + path
    assert (settings.storage_root / path).read_bytes() == DATA
    assert resp.headers[BLOB_LENGTH] == str(len(DATA))
    assert resp.headers["Docker-Content-Digest"] == digest
    assert resp.headers["Content-Type"] == "application/octet-stream"
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert resp.headers["Cache-Control"] == "max-age=31536000"
    assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"


async def test_without_the_offer_the_blob_is_sent_whole_or_by_range(v2: V2) -> None:
    digest = await v2.push_blob("library/app", DATA)
    url = f"/v2/library/app/blobs/{digest}"
    for headers in ({}, {ACCEL_REQUEST: "yes please"}):
        resp = await v2.request("GET", url, headers=headers)
        assert resp.status == 200
        assert await resp.read() == DATA
        assert ACCEL_REDIRECT not in resp.headers
    resp = await v2.request("GET", url, headers={"Range": "bytes=-1000"})
    assert resp.status == 206
    assert await resp.read() == DATA[-1000:]
    resp = await v2.request("GET", url, headers={"Range": f"bytes={len(DATA)}-"})
    assert resp.status == 416
    assert resp.headers["Content-Range"] == f"bytes */{len(DATA)}"


async def test_a_compressed_sibling_is_never_sent(v2: V2, settings: Any) -> None:
    digest = await v2.push_blob("library/app", DATA)
    data = settings.storage_root / blob_path(Digest.parse(digest))
    data.with_name("data.gz").write_bytes(b"not the blob")
    resp = await v2.request("GET", f"/v2/library/app/blobs/{digest}", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in resp.headers
    assert await resp.read() == DATA


async def test_head_and_unlinked_blobs_are_unchanged_by_the_offer(v2: V2) -> None:
    digest = await v2.push_blob("library/app", DATA)
    await v2.push_blob("library/other", b"something else")
    resp = await v2.request("HEAD", f"/v2/library/app/blobs/{digest}", headers=OFFER)
    assert resp.status == 200
    assert resp.headers["Content-Length"] == str(len(DATA))
    assert ACCEL_REDIRECT not in resp.headers
    resp = await v2.request("GET", f"/v2/library/other/blobs/{digest}", headers=OFFER)
    assert resp.status == 404
    assert await error_code(resp) == "BLOB_UNKNOWN"
    assert ACCEL_REDIRECT not in resp.headers


async def test_an_untrusted_peer_gets_the_blob_not_the_redirect(
    aiohttp_client: Any, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    settings = registry_settings(tmp_path, database_url, redis_url)
    settings = settings.model_copy(update={"trusted_proxies": ["10.20.0.0/16"]})
    v2 = await registry(aiohttp_client, settings)
    digest = await v2.push_blob("library/app", DATA)
    resp = await v2.request("GET", f"/v2/library/app/blobs/{digest}", headers=OFFER)
    assert resp.status == 200
    assert ACCEL_REDIRECT not in resp.headers
    assert BLOB_LENGTH not in resp.headers
    assert await resp.read() == DATA


@pytest.mark.parametrize("redirect", [False, True], ids=["s3-stream", "s3-presigned"])
async def test_s3_keeps_its_own_way(
    aiohttp_client: Any,
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    moto_endpoint: str,
    s3_bucket: str,
    redirect: bool,
) -> None:
    storage = s3.storage_settings(moto_endpoint, s3_bucket, redirect=redirect)
    v2 = await registry(aiohttp_client, registry_settings(tmp_path, database_url, redis_url, storage=storage))
    digest = await v2.push_blob("library/app", DATA)
    resp = await v2.request("GET", f"/v2/library/app/blobs/{digest}", headers=OFFER, allow_redirects=False)
    assert ACCEL_REDIRECT not in resp.headers
    if redirect:
        assert resp.status == 307
        assert resp.headers["Location"].startswith(moto_endpoint)
    else:
        assert resp.status == 200
        assert await resp.read() == DATA
