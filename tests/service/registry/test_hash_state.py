"""The running digest travels with the upload: an instance that did not see the first chunks
finishes it without re-reading a byte from storage, and one that finds the saved state unusable
hashes the stored bytes again rather than trust it."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from tests.service.registry.conftest import registry_settings
from tests.support.oci import V2, digest_of
from wharf_registry.app import create_app
from wharf_registry.uploads import _key as upload_key
from wharf_shared import hashing
from wharf_shared.keys import METRICS


def storage_reads(client: TestClient) -> float:
    metrics = client.app[METRICS]
    count = metrics.registry.get_sample_value(
        "wharf_registry_storage_operation_duration_seconds_count",
        {"driver": "filesystem", "operation": "reader"},
    )
    return count or 0.0


async def test_chunks_alternating_between_instances(
    aiohttp_client: Any, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    settings = registry_settings(tmp_path, database_url, redis_url)
    one: TestClient = await aiohttp_client(create_app(settings))
    two: TestClient = await aiohttp_client(create_app(settings))
    data = bytes(range(256)) * 40_000  # ~10 MB in 1 MB chunks
    chunk = 1_000_000
    resp = await one.post("/v2/library/app/blobs/uploads/")
    location = resp.headers["Location"]
    for i, start in enumerate(range(0, len(data), chunk)):
        piece = data[start : start + chunk]
        client = (one, two)[i % 2]
        resp = await client.patch(
            location, data=piece, headers={"Content-Range": f"{start}-{start + len(piece) - 1}"}
        )
        assert resp.status == 202, await resp.text()
        location = resp.headers["Location"]
    resp = await two.put(location, params={"digest": digest_of(data)})
    assert resp.status == 201, await resp.text()
    assert storage_reads(one) == 0
    assert storage_reads(two) == 0
    resp = await V2(one).request("GET", f"/v2/library/app/blobs/{digest_of(data)}")
    assert await resp.read() == data


async def test_upload_whose_stored_bytes_were_lost(v2: V2, settings: Any) -> None:
    """A machine crash can lose chunks the disk had not caught up with: the upload is then gone
    (BLOB_UPLOAD_UNKNOWN), never continued on a gap."""
    resp = await v2.request("POST", "/v2/library/app/blobs/uploads/")
    location = resp.headers["Location"]
    resp = await v2.request("PATCH", location, data=b"x" * 1000, headers={"Content-Range": "0-999"})
    assert resp.status == 202
    upload_id = location.rsplit("/", 1)[-1]
    (stored,) = (settings.storage_root / "uploads" / upload_id).iterdir()
    with stored.open("r+b") as handle:
        handle.truncate(400)
    resp = await v2.request("PATCH", location, data=b"y" * 10, headers={"Content-Range": "1000-1009"})
    assert resp.status == 404
    assert (await resp.json())["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
    resp = await v2.request("GET", location)
    assert resp.status == 404
    assert not (settings.storage_root / "uploads" / upload_id).exists()


# -- saved states that cannot be used: the upload still completes, from the stored bytes --------


def _corrupt_num(saved: bytes) -> bytes:
    """`num` (where SHA256_Update writes into the context's data block) far past the block."""
    return saved[:-8] + struct.pack("=I", 0xFFFF_0000) + saved[-4:]


def _foreign_version(saved: bytes) -> bytes:
    """The same state, as another OpenSSL would have tagged it (one letter of its version text)."""
    return saved[:7] + bytes([saved[7] ^ 0x20]) + saved[8:]


STATES: dict[str, Callable[[bytes, bytes], bytes]] = {
    "corrupt": lambda saved, data: _corrupt_num(saved),
    "truncated": lambda saved, data: saved[:-1],
    "foreign-version": lambda saved, data: _foreign_version(saved),
    "wrong-offset": lambda saved, data: hashing_state(data[:-1]),
}


def hashing_state(data: bytes) -> bytes:
    hasher = hashing.new("sha256")
    hasher.update(data)
    saved = hasher.state()
    assert saved is not None
    return saved


@pytest.mark.parametrize("when", ["patch", "put"])
@pytest.mark.parametrize("case", list(STATES))
async def test_an_unusable_saved_state_is_not_trusted(
    aiohttp_client: Any, tmp_path: Path, database_url: str, redis_url: str, case: str, when: str
) -> None:
    """Instance two finds a saved state it cannot use (corrupt, cut short, another OpenSSL's, or
    saved at another offset): it hashes the stored bytes again and the blob gets its digest."""
    settings = registry_settings(tmp_path, database_url, redis_url)
    one: TestClient = await aiohttp_client(create_app(settings))
    two: TestClient = await aiohttp_client(create_app(settings))
    first, second = bytes(range(256)) * 4000, bytes(range(255, -1, -1)) * 3000
    resp = await one.post("/v2/library/app/blobs/uploads/")
    location = resp.headers["Location"]
    resp = await one.patch(location, data=first, headers={"Content-Range": f"0-{len(first) - 1}"})
    assert resp.status == 202, await resp.text()
    key = upload_key(location.rsplit("/", 1)[-1])
    redis = Redis.from_url(redis_url)
    try:
        saved = await redis.hget(key, "hash")
        assert saved is not None
        await redis.hset(key, "hash", STATES[case](saved, first))
    finally:
        await redis.aclose()

    whole = first + second
    if when == "patch":
        resp = await two.patch(
            location, data=second, headers={"Content-Range": f"{len(first)}-{len(whole) - 1}"}
        )
        assert resp.status == 202, await resp.text()
        resp = await two.put(location, params={"digest": digest_of(whole)})
    else:
        resp = await two.put(
            location,
            params={"digest": digest_of(whole)},
            data=second,
            headers={"Content-Range": f"{len(first)}-{len(whole) - 1}"},
        )
    assert resp.status == 201, await resp.text()
    assert storage_reads(two) > 0, "the stored bytes were not hashed again"
    resp = await V2(one).request("GET", f"/v2/library/app/blobs/{digest_of(whole)}")
    assert await resp.read() == whole
