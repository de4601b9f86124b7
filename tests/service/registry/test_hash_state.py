"""The running digest travels with the upload: an instance that did not see the first chunks
finishes it without re-reading a byte from storage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from tests.service.registry.conftest import registry_settings
from tests.support.oci import V2, digest_of
from wharf_registry.app import create_app
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
    data_file = settings.storage_root / "uploads" / upload_id / "data"
    with data_file.open("r+b") as handle:
        handle.truncate(400)
    resp = await v2.request("PATCH", location, data=b"y" * 10, headers={"Content-Range": "1000-1009"})
    assert resp.status == 404
    assert (await resp.json())["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
    resp = await v2.request("GET", location)
    assert resp.status == 404
