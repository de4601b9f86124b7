"""Read-only mode on `/v2/`: pushes (uploads, mounts, manifest PUTs) and deletes refused with the
OCI `DENIED` 403 and Harbor's words, an upload begun before the switch included; pulls, tag
lists and upload status still answer."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.support.oci import V2, digest_of, error_code
from wharf_shared import runtime
from wharf_shared.config import Settings
from wharf_shared.db.engine import Database
from wharf_shared.keys import RUNTIME
from wharf_shared.runtime import READ_ONLY_MESSAGE


async def set_read_only(settings: Settings, client: TestClient, on: bool) -> None:  # type: ignore[type-arg]
    db = Database(settings.effective_database_url, pool_size=1)
    try:
        async with db.transaction() as conn:
            await runtime.store(conn, read_only=on)
    finally:
        await db.close()
    client.app[RUNTIME].invalidate()  # type: ignore[index]


async def denied(resp: Any) -> None:
    assert resp.status == 403, await resp.text()
    body = await resp.json()
    assert body["errors"][0]["code"] == "DENIED"
    assert body["errors"][0]["message"] == READ_ONLY_MESSAGE
    assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"


async def test_writes_are_denied_and_reads_answer(
    settings: Settings,
    client: TestClient,  # type: ignore[type-arg]
    v2: V2,
) -> None:
    digest, body = await v2.push_image("library/app", "v1")
    layer = await v2.push_blob("library/app", b"a layer pushed before")
    started = await v2.request("POST", "/v2/library/app/blobs/uploads/")
    assert started.status == 202
    upload = started.headers["Location"]

    await set_read_only(settings, client, True)

    data = b"new bytes"
    for method, path, kwargs in (
        ("POST", "/v2/library/app/blobs/uploads/", {}),
        ("POST", "/v2/library/app/blobs/uploads/", {"params": {"digest": digest_of(data)}, "data": data}),
        ("POST", "/v2/library/other/blobs/uploads/", {"params": {"mount": layer, "from": "library/app"}}),
        ("PATCH", upload, {"data": data, "headers": {"Content-Type": "application/octet-stream"}}),
        ("PUT", upload, {"params": {"digest": digest_of(data)}, "data": data}),
        ("DELETE", upload, {}),
        ("DELETE", f"/v2/library/app/manifests/{digest}", {}),
        ("DELETE", "/v2/library/app/manifests/v1", {}),
        ("DELETE", f"/v2/library/app/blobs/{layer}", {}),
    ):
        await denied(await v2.request(method, path, **kwargs))
    resp = await v2.push_manifest("library/app", "v2", body)
    await denied(resp)

    # Pulls and discovery are untouched; nothing was changed.
    resp = await v2.request("GET", "/v2/library/app/manifests/v1")
    assert resp.status == 200
    assert await resp.read() == body
    assert (await v2.request("HEAD", f"/v2/library/app/manifests/{digest}")).status == 200
    assert (await v2.request("GET", f"/v2/library/app/blobs/{layer}")).status == 200
    assert (await (await v2.request("GET", "/v2/library/app/tags/list")).json())["tags"] == ["v1"]
    assert (await v2.request("GET", upload)).status == 204  # an upload's status is a read
    assert (await v2.request("GET", "/v2/library/app/manifests/v2")).status == 404

    await set_read_only(settings, client, False)
    resp = await v2.push_manifest("library/app", "v2", body)
    assert resp.status == 201, await resp.text()
    resp = await v2.request("DELETE", "/v2/library/app/manifests/v2")
    assert resp.status == 202


async def test_an_unknown_route_is_still_its_own_error(
    settings: Settings,
    client: TestClient,  # type: ignore[type-arg]
    v2: V2,
) -> None:
    await set_read_only(settings, client, True)
    resp = await v2.request("POST", "/v2/library/app/nothing")
    assert resp.status in (404, 405)
    assert await error_code(resp) != "DENIED"
