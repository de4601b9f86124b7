"""When Redis goes away: pulls still work from SQL and storage; pushes get 503 with Retry-After."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from tests.service.registry.conftest import registry_settings
from tests.support.oci import V2, error_code
from tests.support.processes import free_port
from wharf_registry.app import create_app


async def test_redis_outage(aiohttp_client: Any, tmp_path: Path, database_url: str, redis_url: str) -> None:
    healthy: TestClient = await aiohttp_client(
        create_app(registry_settings(tmp_path, database_url, redis_url))
    )
    _digest, body = await V2(healthy).push_image("library/app", "v1")

    # The same database and storage, but Redis on a port where nothing listens.
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    broken: TestClient = await aiohttp_client(
        create_app(registry_settings(tmp_path, database_url, dead_redis))
    )
    v2 = V2(broken)
    resp = await v2.request("GET", "/v2/library/app/manifests/v1")
    assert resp.status == 200
    assert await resp.read() == body
    resp = await v2.request("POST", "/v2/library/app/blobs/uploads/")
    assert resp.status == 503
    assert await error_code(resp) == "UNAVAILABLE"
    assert resp.headers["Retry-After"] == "5"
    resp = await broken.get("/health/ready")
    assert resp.status == 503
    checks = (await resp.json())["checks"]
    assert checks["redis"].startswith("ConnectionError: Error 111 connecting to 127.0.0.1:")  # the cause
    assert (checks["database"], checks["storage"]) == ("ok", "ok")
    resp = await healthy.get("/health/ready")
    assert resp.status == 200
