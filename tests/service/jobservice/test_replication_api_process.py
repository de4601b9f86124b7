"""Replication driven through the Harbor API (`/api/v2.0` of the ui, as the portal and Harbor's
clients drive it) and carried out by a `wharf-jobservice worker`: a registry and a policy made
over the API, an execution started there ends `Succeed` with its task and log readable, and the
image identical at the destination; an execution stopped over the API while its copy runs ends
`Stopped` and stays so (the worker gives the task up at its next lease renewal)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.images import make_image
from tests.support.distribution import distribution
from tests.support.processes import ServiceProcess, jobservice_worker_process
from tests.support.replication import ADMIN_PASSWORD, OCI_MANIFEST, Peer, Site, sha256, wharf_site
from wharf_shared.remote_auth import basic_header

pytestmark = pytest.mark.slow
QUEUE = "wharf-api-test"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with wharf_site(tmp_path / "wharf") as found:
        yield found


@pytest.fixture
def destination(tmp_path: Path) -> Iterator[ServiceProcess]:
    with distribution(tmp_path / "distribution") as process:
        yield process


@pytest.fixture
async def api(site: Site) -> AsyncIterator[aiohttp.ClientSession]:
    auth = {"Authorization": basic_header("admin", ADMIN_PASSWORD)}
    async with aiohttp.ClientSession(base_url=site.url, headers=auth) as session:
        yield session


@pytest.fixture
def worker(site: Site, tmp_path: Path) -> Iterator[ServiceProcess]:
    env = {
        **site.suite.env,
        "WHARF_JOBSERVICE__QUEUE": QUEUE,
        "WHARF_JOBSERVICE__TASK_LEASE_SECONDS": "1.5",
        "WHARF_JOBSERVICE__RECONCILE_INTERVAL_SECONDS": "1",
    }
    process = jobservice_worker_process(env, tmp_path / "logs", name="worker").start(timeout=60)
    try:
        yield process
    finally:
        process.stop()


async def created(api: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> int:
    async with api.post(f"/api/v2.0{path}", json=body) as response:
        assert response.status == 201, await response.text()
        return int(response.headers["Location"].rstrip("/").rsplit("/", 1)[1])


async def get_json(api: aiohttp.ClientSession, path: str) -> Any:
    async with api.get(f"/api/v2.0{path}") as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def replicate_to(
    api: aiohttp.ClientSession, destination: ServiceProcess, name: str, **policy: Any
) -> int:
    registry_id = await created(
        api, "/registries", {"name": f"{name}-target", "type": "docker-registry", "url": destination.url}
    )
    return await created(
        api,
        "/replication/policies",
        {
            "name": name,
            "dest_registry": {"id": registry_id},
            "trigger": {"type": "manual"},
            "filters": [{"type": "name", "value": "library/**"}],
            "override": True,
            "enabled": True,
            **policy,
        },
    )


async def wait_status(
    api: aiohttp.ClientSession, execution_id: int, wanted: set[str], within: float, worker: ServiceProcess
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        found: dict[str, Any] = await get_json(api, f"/replication/executions/{execution_id}")
        if found["status"] in wanted:
            return found
        assert time.monotonic() < deadline, f"{found}\n{worker.tail(40)}"
        await asyncio.sleep(0.2)


async def test_execution_through_the_api(
    site: Site, destination: ServiceProcess, api: aiohttp.ClientSession, worker: ServiceProcess
) -> None:
    pushed = await Peer(api, site.url, wharf=True).image("library/app", make_image("via-api"), "v1")
    policy_id = await replicate_to(api, destination, "via-api")
    execution_id = await created(api, "/replication/executions", {"policy_id": policy_id})
    done = await wait_status(api, execution_id, {"Succeed", "Failed", "Stopped"}, 60, worker)
    assert done["status"] == "Succeed", done
    assert (done["total"], done["succeed"]) == (1, 1)
    tasks = await get_json(api, f"/replication/executions/{execution_id}/tasks")
    assert [(t["status"], t["src_resource"], t["dst_resource"]) for t in tasks] == [
        ("Succeed", "library/app:v1", "library/app:v1")
    ]
    async with api.get(
        f"/api/v2.0/replication/executions/{execution_id}/tasks/{tasks[0]['id']}/log"
    ) as response:
        assert response.status == 200
        log = await response.text()
    assert "attempt 1: copy library/app:v1 -> library/app:v1" in log
    async with aiohttp.ClientSession() as plain:
        copied = await Peer(plain, destination.url, wharf=False).read_manifest("library/app", "v1")
    assert copied is not None
    assert sha256(copied) == pushed


async def test_stop_through_the_api(
    site: Site, destination: ServiceProcess, api: aiohttp.ClientSession, worker: ServiceProcess
) -> None:
    source = Peer(api, site.url, wharf=True)
    size = 32 * 1024 * 1024
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    ).encode()
    config_digest = await source.blob("library/slow", config)
    layer = await source.big_blob("library/slow", size)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": len(config),
        },
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": size}],
    }
    await source.manifest("library/slow", "v1", json.dumps(manifest).encode())
    policy_id = await replicate_to(api, destination, "slow", speed=2048)  # 2 MiB/s: 16 s
    execution_id = await created(api, "/replication/executions", {"policy_id": policy_id})
    deadline = time.monotonic() + 30
    while True:
        tasks = await get_json(api, f"/replication/executions/{execution_id}/tasks")
        if tasks and tasks[0]["status"] == "InProgress":
            break
        assert time.monotonic() < deadline, worker.tail(40)
        await asyncio.sleep(0.2)
    await asyncio.sleep(1)
    async with api.put(f"/api/v2.0/replication/executions/{execution_id}", json={}) as response:
        assert response.status == 200, await response.text()
    stopped = await wait_status(api, execution_id, {"Stopped", "Succeed", "Failed"}, 10, worker)
    assert stopped["status"] == "Stopped"
    # The worker notices at its next renewal and gives up; the execution stays Stopped.
    deadline = time.monotonic() + 15
    while "task_lease_lost" not in worker.tail(200):
        assert time.monotonic() < deadline, worker.tail(40)
        await asyncio.sleep(0.2)
    await asyncio.sleep(2)
    again = await get_json(api, f"/replication/executions/{execution_id}")
    assert again["status"] == "Stopped"
    tasks = await get_json(api, f"/replication/executions/{execution_id}/tasks")
    assert [t["status"] for t in tasks] == ["Stopped"]
