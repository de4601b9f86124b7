"""The registry on the S3 driver (moto's real server), in-process, on PostgreSQL.

Pushes monolithic, chunked (continued on a second instance) and mounted blobs and a manifest,
pulls them whole and by range through the streaming path, deletes them, purges an abandoned
upload, and in redirect mode sends blob downloads to presigned URLs. The S3 part size and copy
limit are at their smallest (5 MiB, 6 MiB), so blobs of 12-13 MiB take the multipart paths.
No request of the push or pull path may list the bucket.
"""

from __future__ import annotations

import io
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from tests.service.registry.conftest import registry_settings
from tests.support import s3, wire
from tests.support.oci import V2, digest_of, error_code, image_manifest
from tests.support.storage_suite import pattern
from wharf_registry import uploads as uploads_module
from wharf_registry.app import create_app
from wharf_registry.keys import STORAGE, UPLOADS
from wharf_registry.uploads import _key as upload_key
from wharf_shared.config import Settings
from wharf_shared.storage.factory import check_storage
from wharf_shared.storage.s3 import BucketMissingError, S3Driver

MiB = 1024 * 1024
R = "library/s3app"
log = logging.getLogger(__name__)

SMALL_PARTS = {"part_size": 5 * MiB, "copy_limit": 6 * MiB}


@pytest.fixture
def db_kind() -> str:
    return "postgresql"  # production's database; the storage driver does not depend on it


def s3_settings(
    tmp_path: Path, database_url: str, redis_url: str, endpoint: str, bucket: str, **s3_overrides: Any
) -> Settings:
    storage = s3.storage_settings(endpoint, bucket, **SMALL_PARTS, **s3_overrides)
    return registry_settings(tmp_path, database_url, redis_url, storage=storage)


@pytest.fixture
def settings(
    tmp_path: Path, database_url: str, redis_url: str, moto_endpoint: str, s3_bucket: str
) -> Settings:
    return s3_settings(tmp_path, database_url, redis_url, moto_endpoint, s3_bucket)


class Requests:
    """Every S3 request of the apps' drivers, by operation."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def watch(self, client: TestClient[Any, Any]) -> S3Driver:
        driver = client.app[STORAGE].driver
        assert isinstance(driver, S3Driver)
        driver.client.meta.events.register("before-call.s3", self._seen)
        return driver

    def _seen(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.counts[model.name] += 1

    @property
    def listings(self) -> int:
        return self.counts["ListObjectsV2"] + self.counts["ListObjects"]


async def new_client(aiohttp_client: Any, settings: Settings) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = await aiohttp_client(wire.ProductionServer(create_app(settings)))
    return client


def keys_in(endpoint: str, bucket: str) -> list[str]:
    pages = s3.client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


async def push_monolithic(v2: V2, name: str, data: bytes) -> str:
    digest = digest_of(data)
    resp = await v2.request(
        "POST",
        f"/v2/{name}/blobs/uploads/",
        params={"digest": digest},
        data=io.BytesIO(data),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert resp.status == 201, (resp.status, await resp.text())
    return digest


async def get_blob(v2: V2, name: str, digest: str, **headers: str) -> tuple[int, bytes, Any]:
    resp = await v2.request("GET", f"/v2/{name}/blobs/{digest}", headers=headers)
    return resp.status, await resp.read(), resp.headers


async def test_push_pull_delete_on_s3(
    aiohttp_client: Any,
    settings: Settings,
    moto_endpoint: str,
    s3_bucket: str,
    redis_url: str,
    record_property: Callable[[str, object], None],
) -> None:
    first = await new_client(aiohttp_client, settings)
    second = await new_client(aiohttp_client, settings)
    a, b = V2(first), V2(second)
    requests = Requests()
    requests.watch(first)
    requests.watch(second)

    config = b'{"architecture":"amd64","os":"linux"}'
    big = pattern(12 * MiB + 321, seed=1)  # over the small-body limit: an upload file, then a move
    chunked = pattern(13 * MiB + 77, seed=2)
    started = time.monotonic()

    # Monolithic: a config (one PUT of the blob) and a large layer (segments, assembled on move).
    assert await push_monolithic(a, R, config) == digest_of(config)
    assert await push_monolithic(a, R, big) == digest_of(big)

    # Chunked, 3 MiB PATCHes alternating between two instances: each one a part of its own,
    # continued with the running hash the other saved.
    resp = await a.request("POST", f"/v2/{R}/blobs/uploads/")
    assert resp.status == 202, await resp.text()
    location = resp.headers["Location"]
    step = 3 * MiB
    for i, start in enumerate(range(0, len(chunked), step)):
        piece = chunked[start : start + step]
        resp = await (a, b)[i % 2].request(
            "PATCH",
            location,
            data=io.BytesIO(piece),
            headers={
                "Content-Range": f"{start}-{start + len(piece) - 1}",
                "Content-Type": "application/octet-stream",
            },
        )
        assert resp.status == 202, await resp.text()
        assert resp.headers["Range"] == f"0-{start + len(piece) - 1}"
    resp = await a.request("PUT", location, params={"digest": digest_of(chunked)})
    assert resp.status == 201, await resp.text()
    pushed_seconds = time.monotonic() - started

    # Mounted into another repository: no bytes move.
    resp = await b.request(
        "POST", "/v2/team/mounted/blobs/uploads/", params={"mount": digest_of(big), "from": R}
    )
    assert resp.status == 201, await resp.text()

    # A manifest: stored whole, served by tag and by digest.
    manifest = image_manifest(config, [big, chunked])
    resp = await a.push_manifest(R, "v1", manifest)
    assert resp.status == 201, await resp.text()
    for reference in ("v1", digest_of(manifest)):
        resp = await b.request("GET", f"/v2/{R}/manifests/{reference}")
        assert resp.status == 200
        assert await resp.read() == manifest

    # Pulls through the streaming path: whole, by range (across segment boundaries), by suffix.
    started = time.monotonic()
    for client, name, data in ((a, R, big), (b, R, chunked), (b, "team/mounted", big), (a, R, config)):
        status, body, headers = await get_blob(client, name, digest_of(data))
        assert (status, len(body)) == (200, len(data))
        assert body == data
        assert headers["Docker-Content-Digest"] == digest_of(data)
    pulled_seconds = time.monotonic() - started
    status, body, headers = await get_blob(
        a, R, digest_of(chunked), Range=f"bytes={5 * MiB - 10}-{10 * MiB + 9}"
    )
    assert status == 206
    assert headers["Content-Range"] == f"bytes {5 * MiB - 10}-{10 * MiB + 9}/{len(chunked)}"
    assert body == chunked[5 * MiB - 10 : 10 * MiB + 10]
    status, body, _ = await get_blob(b, R, digest_of(big), Range="bytes=-1000")
    assert (status, body) == (206, big[-1000:])
    resp = await a.request("HEAD", f"/v2/{R}/blobs/{digest_of(big)}")
    assert (resp.status, resp.headers["Content-Length"]) == (200, str(len(big)))

    # The bucket holds the four blobs as plain objects, and nothing of the uploads.
    blob_keys = {
        f"blobs/sha256/{d[7:9]}/{d[7:]}/data" for d in map(digest_of, (config, big, chunked, manifest))
    }
    assert set(keys_in(moto_endpoint, s3_bucket)) == blob_keys
    redis = Redis.from_url(redis_url)
    try:
        assert [k async for k in redis.scan_iter(match=upload_key("*"))] == []
    finally:
        await redis.aclose()

    # Deletes are references only: the bytes stay for garbage collection.
    resp = await a.request("DELETE", f"/v2/{R}/manifests/{digest_of(manifest)}")
    assert resp.status == 202, await resp.text()
    resp = await a.request("DELETE", f"/v2/{R}/blobs/{digest_of(big)}")
    assert resp.status == 202, await resp.text()
    status, body, _ = await get_blob(a, R, digest_of(big))
    assert status == 404
    status, body, _ = await get_blob(b, "team/mounted", digest_of(big))
    assert body == big

    # Assembled on the server: the monolithic blob's three segments, and the chunked one's last
    # part; its 3 MiB parts, under S3's 5 MiB part minimum, went through in two 6 MiB parts.
    assert (requests.counts["UploadPartCopy"], requests.counts["UploadPart"]) == (4, 2), requests.counts
    assert requests.listings == 0, requests.counts
    figures = {
        "push_mib_per_s": round((len(big) + len(chunked)) / MiB / pushed_seconds),
        "pull_mib_per_s": round((2 * len(big) + len(chunked)) / MiB / pulled_seconds),
        "s3_requests": dict(requests.counts),
    }
    record_property("s3_figures", figures)
    log.info("registry on s3 (moto): %s", figures)
    assert wire.server_errors(first.app) == {}
    assert wire.server_errors(second.app) == {}


async def test_redirect_mode_sends_pulls_to_presigned_urls(
    aiohttp_client: Any, tmp_path: Path, database_url: str, redis_url: str, moto_endpoint: str, s3_bucket: str
) -> None:
    settings = s3_settings(
        tmp_path, database_url, redis_url, moto_endpoint, s3_bucket, redirect=True, redirect_ttl_seconds=120
    )
    client = await new_client(aiohttp_client, settings)
    v2 = V2(client)
    requests = Requests()
    requests.watch(client)
    data = pattern(9 * MiB, seed=4)
    digest = await push_monolithic(v2, R, data)
    small = await push_monolithic(v2, R, b"tiny config")

    for blob, expected in ((digest, data), (small, b"tiny config")):
        resp = await v2.request("GET", f"/v2/{R}/blobs/{blob}", allow_redirects=False)
        assert resp.status == 307, await resp.text()
        assert resp.headers["Docker-Content-Digest"] == blob
        location = resp.headers["Location"]
        assert location.startswith(f"{moto_endpoint}/{s3_bucket}/blobs/sha256/")
        assert "X-Amz-Expires=120" in location
        async with aiohttp.ClientSession() as session, session.get(location) as fetched:
            assert fetched.status == 200
            assert await fetched.read() == expected
    # HEAD answers itself; unknown blobs are not redirected.
    resp = await v2.request("HEAD", f"/v2/{R}/blobs/{digest}", allow_redirects=False)
    assert (resp.status, resp.headers["Content-Length"]) == (200, str(len(data)))
    resp = await v2.request("GET", f"/v2/{R}/blobs/{digest_of(b'nothing')}", allow_redirects=False)
    assert (resp.status, await error_code(resp)) == (404, "BLOB_UNKNOWN")
    assert requests.listings == 0, requests.counts


async def test_abandoned_upload_is_purged_from_s3(
    client: TestClient[Any, Any],
    settings: Settings,
    moto_endpoint: str,
    s3_bucket: str,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The one registry path that lists: the purge finds upload "directories" with no session."""
    v2 = V2(client)
    uploads = client.app[UPLOADS]
    locations = []
    for _ in range(2):
        resp = await v2.request("POST", f"/v2/{R}/blobs/uploads/")
        location = resp.headers["Location"]
        resp = await v2.request("PATCH", location, data=io.BytesIO(pattern(6 * MiB)))
        assert resp.status == 202, await resp.text()
        locations.append(location)
    abandoned, live = (loc.rsplit("/", 1)[-1] for loc in locations)
    redis = Redis.from_url(redis_url)
    try:
        await redis.delete(upload_key(abandoned))
        # Within the grace period nothing goes (the directory's time is its newest object's).
        assert await uploads.purge(60) == 0
        monkeypatch.setattr(uploads_module, "_ORPHAN_GRACE_SECONDS", 0)
        await redis.delete("wharf:uploads:purge")
        assert await uploads.purge(60) == 1
    finally:
        await redis.aclose()
    keys = keys_in(moto_endpoint, s3_bucket)
    assert not [k for k in keys if k.startswith(f"uploads/{abandoned}/")]
    assert [k for k in keys if k.startswith(f"uploads/{live}/")]
    resp = await v2.request("PUT", locations[1], params={"digest": digest_of(pattern(6 * MiB))})
    assert resp.status == 201, await resp.text()


async def test_readiness_names_a_missing_bucket(
    client: TestClient, moto_endpoint: str, s3_bucket: str
) -> None:  # type: ignore[type-arg]
    """The bucket deleted under a running registry: readiness fails, saying which bucket is
    gone (what the proxy's checks log when they eject the instance); back once it is there."""
    assert (await client.get("/health/ready")).status == 200
    s3.empty_bucket(moto_endpoint, s3_bucket)
    s3.client(moto_endpoint).delete_bucket(Bucket=s3_bucket)
    try:
        resp = await client.get("/health/ready")
        assert resp.status == 503
        body = await resp.json()
        assert body == {
            "status": "unavailable",
            "checks": {"database": "ok", "redis": "ok", "storage": f"NoSuchBucket {s3_bucket}"},
        }
    finally:
        s3.create_bucket(moto_endpoint, s3_bucket)
    assert (await client.get("/health/ready")).status == 200


async def test_a_missing_bucket_is_named_or_made(moto_endpoint: str) -> None:
    """What the registry checks at start (`check_storage`): a missing bucket is refused with its
    name, unless `create_bucket` asks for it to be made."""
    bucket = f"wharf-new-{uuid.uuid4().hex[:8]}"
    settings = Settings(storage=s3.storage_settings(moto_endpoint, bucket))  # type: ignore[arg-type]
    with pytest.raises(BucketMissingError) as refused:
        await check_storage(settings)
    assert str(refused.value) == (
        f"the S3 bucket '{bucket}' does not exist: create it, or set WHARF_STORAGE__S3__CREATE_BUCKET=true"
    )
    settings = Settings(storage=s3.storage_settings(moto_endpoint, bucket, create_bucket=True))  # type: ignore[arg-type]
    await check_storage(settings)
    driver = S3Driver.from_settings(settings.storage.s3)
    try:
        assert not await driver.ensure_bucket(create=True)  # there now: nothing to make
        await driver.put_content("x", b"stored")
        assert await driver.get_content("x") == b"stored"
    finally:
        driver.close()
        s3.empty_bucket(moto_endpoint, bucket)
        s3.client(moto_endpoint).delete_bucket(Bucket=bucket)
