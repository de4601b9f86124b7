"""Transfers that survive the death of their upstream: two registry processes (shared storage,
PostgreSQL, Redis) behind the proxy, each through a relay that can reset a connection midway
(tests/support/cutter.py), as an instance dying mid-request does. A blob pull cut off goes on
from another instance with a Range request; an upload body cut off goes on from the upload's
committed offset out of the proxy's spool; the client sees one answer. Where no instance can go
on, the client is cut off (pull) or gets 503 (push), as before. The spool is gone at the end of
every request; and a blob the proxy sends from storage does not need its registry at all."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from tests.support import backends, s3, wire
from tests.support.cutter import DOWN, UP, CutPlan, CutRelay
from tests.support.oci import OCI_MANIFEST, image_manifest
from tests.support.processes import ServiceProcess, free_port, registry_process
from wharf_proxy.app import create_app
from wharf_shared.config import Settings
from wharf_shared.keys import METRICS

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
BLOB = random.Random(7).randbytes(16 * MiB + 12345)
BLOB_DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()


@dataclass
class Registries:
    processes: list[ServiceProcess]
    data_dir: Path
    storage: str


def start_registries(
    tmp: Path, database_url: str, redis_url: str, storage_env: dict[str, str]
) -> list[ServiceProcess]:
    env = {
        "WHARF_DATA_DIR": str(tmp / "data"),
        "WHARF_DATABASE_URL": database_url,
        "WHARF_REDIS_URL": redis_url,
        "WHARF_REGISTRY__AUTH": "none",
        "WHARF_EXTERNAL_URL": f"http://127.0.0.1:{free_port()}",
        "WHARF_DATABASE_POOL_SIZE": "5",
        **storage_env,
    }
    processes = [registry_process(env, tmp / "logs", name=f"registry-{i}") for i in range(2)]
    try:
        for process in processes:
            process.start()
    except BaseException:
        for process in processes:
            process.stop()
        raise
    return processes


@pytest.fixture(scope="module", params=["filesystem", "s3"])
def registries(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registries]:
    """Two registry processes on one storage; the blob `BLOB` is in `library/big`."""
    storage = str(request.param)
    tmp = tmp_path_factory.mktemp(f"continuation-{storage}")
    storage_env: dict[str, str] = {}
    if storage == "s3":
        endpoint = request.getfixturevalue("moto_endpoint")
        storage_env = s3.storage_env(endpoint, s3.create_bucket(endpoint), redirect="false")
    with (
        backends.fresh_database("postgresql", str(tmp)) as database_url,
        backends.leased_redis_db() as redis_url,
    ):
        processes = start_registries(tmp, database_url, redis_url, storage_env)
        try:
            asyncio.run(push_directly(processes[0].url, "library/big", BLOB))
            yield Registries(processes, tmp / "data", storage)
        finally:
            for process in processes:
                process.stop()


async def push_directly(url: str, name: str, data: bytes) -> None:
    async with aiohttp.ClientSession(base_url=url) as session:
        resp = await session.post(f"/v2/{name}/blobs/uploads/")
        assert resp.status == 202, await resp.text()
        location = resp.headers["Location"]
        resp = await session.put(
            location,
            params={"digest": "sha256:" + hashlib.sha256(data).hexdigest()},
            data=pieces(data),
            headers={"Content-Length": str(len(data))},
        )
        assert resp.status == 201, await resp.text()


async def pieces(
    data: bytes, size: int = 256 * 1024, gate: asyncio.Event | None = None
) -> AsyncIterator[bytes]:
    """`data` as a streamed body (aiohttp warns about large bytes bodies); with `gate`, the second
    half waits for it."""
    for start in range(0, len(data), size):
        if gate is not None and start >= len(data) // 2:
            await gate.wait()
        yield data[start : start + size]


@pytest.fixture
def plan() -> CutPlan:
    return CutPlan()


@pytest.fixture
async def relays(registries: Registries, plan: CutPlan) -> AsyncIterator[list[CutRelay]]:
    started = [
        await CutRelay(f"relay-{i}", p.host, p.port, plan).start() for i, p in enumerate(registries.processes)
    ]
    yield started
    for relay in started:
        await relay.close()


def proxy_settings(tmp_path: Path, upstreams: list[str], **proxy: Any) -> Settings:
    return Settings(
        data_dir=tmp_path,
        external_url="https://registry.example.com",
        proxy={  # type: ignore[arg-type]
            "upstreams": {"registry": upstreams, "token": [], "ui": []},
            "health_interval_seconds": 3600,  # no health check in the relays' byte counts
            "eject_after_failures": 99,
            "local_blobs": False,
            "retry_body_bytes": 64 * 1024,
            "spool_dir": str(tmp_path / "spool"),
            **proxy,
        },
    )


async def proxy_client(aiohttp_client: Any, settings: Settings) -> TestClient:  # type: ignore[type-arg]
    assert settings.proxy.spool_dir is not None
    settings.proxy.spool_dir.mkdir(exist_ok=True)
    client: TestClient = await aiohttp_client(wire.ProductionServer(create_app(settings)))  # type: ignore[type-arg]
    return client


@pytest.fixture
async def proxy(aiohttp_client: Any, tmp_path: Path, relays: list[CutRelay]) -> TestClient:  # type: ignore[type-arg]
    return await proxy_client(aiohttp_client, proxy_settings(tmp_path, [r.url for r in relays]))


def metric(client: TestClient, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    value = client.app[METRICS].registry.get_sample_value(name, labels)
    return float(value or 0.0)


def continued(client: TestClient, direction: str, result: str) -> float:  # type: ignore[type-arg]
    return metric(
        client, "wharf_proxy_continued_transfers_total", pool="registry", direction=direction, result=result
    )


def spool_files(spool_dir: Path) -> list[str]:
    """This process's open files in the spool dir (spool files are unlinked: only their
    descriptors keep them)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(spool_dir)):
            found.append(target)
    return found


def assert_spool_freed(client: TestClient, spool_dir: Path) -> None:  # type: ignore[type-arg]
    assert spool_files(spool_dir) == []
    assert list(spool_dir.iterdir()) == []
    assert metric(client, "wharf_proxy_spool_bytes") == 0


# -- pulls ---------------------------------------------------------------------------------------


async def test_a_blob_pull_cut_midway_goes_on_from_the_other_instance(
    proxy: TestClient,  # type: ignore[type-arg]
    plan: CutPlan,
    registries: Registries,
) -> None:
    plan.arm(DOWN, 5 * MiB)
    resp = await proxy.get(f"/v2/library/big/blobs/{BLOB_DIGEST}")
    assert resp.status == 200
    body = await resp.read()
    assert len(plan.cuts) == 1
    assert resp.headers["Content-Length"] == str(len(BLOB))
    assert resp.headers["Docker-Content-Digest"] == BLOB_DIGEST
    assert hashlib.sha256(body).hexdigest() == BLOB_DIGEST.split(":")[1]
    assert continued(proxy, "pull", "continued") == 1
    assert continued(proxy, "pull", "failed") == 0


async def test_a_ranged_pull_cut_midway_goes_on_too(
    proxy: TestClient,  # type: ignore[type-arg]
    plan: CutPlan,
    registries: Registries,
) -> None:
    first, last = 1000, len(BLOB) - 1001
    plan.arm(DOWN, 3 * MiB)
    resp = await proxy.get(f"/v2/library/big/blobs/{BLOB_DIGEST}", headers={"Range": f"bytes={first}-{last}"})
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes {first}-{last}/{len(BLOB)}"
    assert await resp.read() == BLOB[first : last + 1]
    assert plan.cuts
    assert continued(proxy, "pull", "continued") == 1


async def test_a_pull_no_instance_can_go_on_with_is_cut_off_short(
    proxy: TestClient,  # type: ignore[type-arg]
    plan: CutPlan,
    registries: Registries,
) -> None:
    """The first answer is cut after a MiB, and every continuation before its first byte: the
    client gets a short read, never a complete-looking body."""
    plan.arm(DOWN, MiB, *([0] * 10))
    resp = await proxy.get(f"/v2/library/big/blobs/{BLOB_DIGEST}")
    assert resp.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()
    assert continued(proxy, "pull", "failed") == 1


async def test_a_manifest_cut_midway_is_not_continued(
    proxy: TestClient,  # type: ignore[type-arg]
    plan: CutPlan,
    registries: Registries,
) -> None:
    """Only blob bodies are continued: anything else cut off is a short read, as before."""
    config = b'{"architecture": "amd64", "os": "linux"}'
    manifest = image_manifest(config, [BLOB], annotations={"padding": "p" * (2 * MiB)})
    async with aiohttp.ClientSession(base_url=registries.processes[0].url) as direct:
        await push_directly(registries.processes[0].url, "library/big", config)
        resp = await direct.put(
            "/v2/library/big/manifests/padded",
            data=pieces(manifest),
            headers={"Content-Type": OCI_MANIFEST, "Content-Length": str(len(manifest))},
        )
        assert resp.status == 201, await resp.text()
    plan.arm(DOWN, MiB)
    resp = await proxy.get("/v2/library/big/manifests/padded")
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()
    assert continued(proxy, "pull", "continued") == continued(proxy, "pull", "failed") == 0


# -- pushes --------------------------------------------------------------------------------------


async def start_upload(client: TestClient, name: str) -> str:  # type: ignore[type-arg]
    resp = await client.post(f"/v2/{name}/blobs/uploads/")
    assert resp.status == 202, await resp.text()
    location: str = resp.headers["Location"]
    return location


async def finish_and_check(client: TestClient, location: str, data: bytes) -> None:  # type: ignore[type-arg]
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    resp = await client.put(location, params={"digest": digest})
    assert resp.status == 201, await resp.text()
    name = location.split("/blobs/uploads/")[0].removeprefix("/v2/")
    resp = await client.get(f"/v2/{name}/blobs/{digest}")
    assert resp.status == 200
    assert hashlib.sha256(await resp.read()).hexdigest() == digest.split(":")[1]


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_an_upload_cut_midway_goes_on_from_its_committed_offset(
    proxy: TestClient,  # type: ignore[type-arg]
    plan: CutPlan,
    tmp_path: Path,
    framing: str,
) -> None:
    data = random.Random(framing).randbytes(12 * MiB + 7)
    name = f"library/pushed-{framing}"
    location = await start_upload(proxy, name)
    headers = {"Content-Length": str(len(data))} if framing == "content-length" else {}
    plan.arm(UP, 6 * MiB)
    resp = await proxy.patch(location, data=pieces(data), headers=headers)
    assert resp.status == 202, await resp.text()
    assert plan.cuts == [plan.cuts[0]]
    assert resp.headers["Range"] == f"0-{len(data) - 1}"
    assert resp.headers["Location"] == location
    assert continued(proxy, "push", "continued") == 1
    await finish_and_check(proxy, location, data)
    assert_spool_freed(proxy, tmp_path / "spool")


async def test_a_later_chunk_cut_midway_goes_on_after_the_earlier_ones(
    proxy: TestClient,  # type: ignore[type-arg]
    plan: CutPlan,
    tmp_path: Path,
) -> None:
    """The second PATCH has no Content-Range: the proxy asked where the upload stood before it
    sent the body, so it knows which of its bytes the registry kept."""
    data = random.Random("two chunks").randbytes(14 * MiB)
    location = await start_upload(proxy, "library/chunks")
    resp = await proxy.patch(location, data=pieces(data[: 3 * MiB]), headers={"Content-Length": str(3 * MiB)})
    assert resp.status == 202, await resp.text()
    location = resp.headers["Location"]
    plan.arm(UP, 5 * MiB)
    rest = data[3 * MiB :]
    resp = await proxy.patch(location, data=pieces(rest), headers={"Content-Length": str(len(rest))})
    assert resp.status == 202, await resp.text()
    assert plan.cuts
    assert resp.headers["Range"] == f"0-{len(data) - 1}"
    await finish_and_check(proxy, location, data)


async def test_a_closing_put_with_a_body_cut_midway_goes_on(
    proxy: TestClient,  # type: ignore[type-arg]
    plan: CutPlan,
) -> None:
    data = random.Random("put").randbytes(10 * MiB + 3)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    location = await start_upload(proxy, "library/put")
    plan.arm(UP, 4 * MiB)
    resp = await proxy.put(
        location, params={"digest": digest}, data=pieces(data), headers={"Content-Length": str(len(data))}
    )
    assert resp.status == 201, await resp.text()
    assert plan.cuts
    assert resp.headers["Docker-Content-Digest"] == digest
    assert continued(proxy, "push", "continued") == 1
    resp = await proxy.get(f"/v2/library/put/blobs/{digest}")
    assert await resp.read() == data


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_body_larger_than_the_spool_is_503_when_cut(
    aiohttp_client: Any,
    tmp_path: Path,
    relays: list[CutRelay],
    plan: CutPlan,
    framing: str,
) -> None:
    proxy = await proxy_client(
        aiohttp_client, proxy_settings(tmp_path, [r.url for r in relays], spool_bytes=5 * MiB)
    )
    data = random.Random("too big").randbytes(12 * MiB)
    location = await start_upload(proxy, "library/too-big")
    headers = {"Content-Length": str(len(data))} if framing == "content-length" else {}
    plan.arm(UP, 7 * MiB)
    resp = await proxy.patch(location, data=pieces(data), headers=headers)
    assert resp.status == 503, await resp.text()
    assert plan.cuts
    assert continued(proxy, "push", "failed") == 1
    assert continued(proxy, "push", "continued") == 0
    if framing == "chunked":  # a known length past the bound is never spooled at all
        assert metric(proxy, "wharf_proxy_spool_overflows_total", limit="request") == 1
    assert_spool_freed(proxy, tmp_path / "spool")


async def test_the_spool_is_freed_when_the_client_goes_away(
    proxy: TestClient,  # type: ignore[type-arg]
    tmp_path: Path,
) -> None:
    spool_dir = tmp_path / "spool"
    data = random.Random("abandoned").randbytes(16 * MiB)
    location = await start_upload(proxy, "library/abandoned")
    gate = asyncio.Event()
    sending = asyncio.ensure_future(
        proxy.patch(location, data=pieces(data, gate=gate), headers={"Content-Length": str(len(data))})
    )
    await wire.wait_until(lambda: bool(spool_files(spool_dir)), "the spool to hold the first half")
    assert metric(proxy, "wharf_proxy_spool_bytes") > 0
    sending.cancel()  # the client hangs up mid-body
    with pytest.raises(asyncio.CancelledError):
        await sending
    await wire.wait_until(lambda: not spool_files(spool_dir), "the spool to be closed")
    assert_spool_freed(proxy, spool_dir)


# -- blobs the proxy sends from storage ----------------------------------------------------------

BIG = random.Random(8).randbytes(48 * MiB)  # more than loopback's socket buffers hold
BIG_DIGEST = "sha256:" + hashlib.sha256(BIG).hexdigest()


@pytest.fixture
def doomed(tmp_path: Path) -> Iterator[Registries]:
    """Two registry processes on the filesystem, to be killed; `BIG` is in `library/big`."""
    with (
        backends.fresh_database("postgresql", str(tmp_path)) as database_url,
        backends.leased_redis_db() as redis_url,
    ):
        processes = start_registries(tmp_path / "doomed", database_url, redis_url, {})
        try:
            asyncio.run(push_directly(processes[0].url, "library/big", BIG))
            yield Registries(processes, tmp_path / "doomed" / "data", "filesystem")
        finally:
            for process in processes:
                process.stop()


async def test_a_blob_sent_from_storage_outlives_every_registry_instance(
    aiohttp_client: Any, tmp_path: Path, doomed: Registries
) -> None:
    """The registry only said where the file is: once the proxy sends it, killing every registry
    instance does not touch the transfer."""
    settings = proxy_settings(
        tmp_path,
        [p.url for p in doomed.processes],
        local_blobs=True,
        storage_root=str(doomed.data_dir / "storage"),
    )
    proxy = await proxy_client(aiohttp_client, settings)
    resp = await proxy.get(f"/v2/library/big/blobs/{BIG_DIGEST}")
    assert resp.status == 200
    head = await resp.content.readexactly(MiB)
    for process in doomed.processes:
        process.kill()  # SIGKILL, and waited for
    rest = await resp.read()
    assert hashlib.sha256(head + rest).hexdigest() == BIG_DIGEST.split(":")[1]
    assert continued(proxy, "pull", "continued") == continued(proxy, "pull", "failed") == 0
