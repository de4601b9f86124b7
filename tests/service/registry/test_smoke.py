"""Push and pull one image through the API on every database backend."""

from __future__ import annotations

from tests.support.oci import V2, error_code


async def test_push_pull_roundtrip(v2: V2) -> None:
    digest, body = await v2.push_image("library/app", "v1")
    resp = await v2.request("GET", "/v2/library/app/manifests/v1")
    assert resp.status == 200
    assert await resp.read() == body
    assert resp.headers["Docker-Content-Digest"] == digest
    resp = await v2.request("GET", "/v2/library/app/tags/list")
    assert (await resp.json())["tags"] == ["v1"]
    resp = await v2.request("GET", "/v2/library/other/manifests/v1")
    assert resp.status == 404
    assert await error_code(resp) == "MANIFEST_UNKNOWN"
