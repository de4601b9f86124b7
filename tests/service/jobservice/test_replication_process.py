"""Replication end to end through `wharf-jobservice worker` processes: a Wharf (the whole suite)
copies a pushed image to a Debian docker-registry (distribution); a worker killed (SIGKILL) in
the middle of a large blob leaves the task to a second worker once its lease lapsed (which finds
the first one's upload to resume); a
destination that is down makes the tasks retry with backoff until it is back; a push and a
delete at the Wharf reach the destination through event-based executions; a pull-based policy
copies distribution's repositories into this Wharf (the project made on the way). Each execution
ends Success with the bytes identical at the destination, never Success before, never stuck."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from tests.images import make_image
from tests.support.distribution import distribution
from tests.support.processes import ServiceProcess, jobservice_worker_process
from tests.support.replication import OCI_MANIFEST, Peer, Site, sha256, wharf_site
from tests.support.replication_rows import add_policy, add_registry
from wharf_shared.config import Settings
from wharf_shared.db import jobs
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.jobs import REPLICATION_PLAN, send

pytestmark = pytest.mark.slow
QUEUE = "wharf-replication-test"


def worker(site: Site, logs: Path, name: str, **settings: str) -> ServiceProcess:
    env = {
        **site.suite.env,
        "WHARF_JOBSERVICE__QUEUE": QUEUE,
        "WHARF_JOBSERVICE__CONCURRENCY": "2",
        "WHARF_JOBSERVICE__SCHEDULER_LOCK_SECONDS": "2",
        "WHARF_JOBSERVICE__RECONCILE_INTERVAL_SECONDS": "1",
        **{f"WHARF_JOBSERVICE__{k.upper()}": v for k, v in settings.items()},
    }
    return jobservice_worker_process(env, logs, name=name)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with wharf_site(tmp_path / "wharf") as found:
        yield found


@pytest.fixture
def destination(tmp_path: Path) -> Iterator[ServiceProcess]:
    with distribution(tmp_path / "distribution") as process:
        yield process


@pytest.fixture
async def db(site: Site) -> AsyncIterator[Database]:
    database = Database(site.suite.env["WHARF_DATABASE_URL"], pool_size=2)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def start_execution(db: Database, site: Site, policy_id: int) -> int:
    async with db.transaction() as conn:
        execution_id = await jobs.create_execution(conn, jobs.REPLICATION, policy_id, "manual")
    settings = Settings(redis_url=site.suite.env["WHARF_REDIS_URL"], jobservice={"queue": QUEUE})  # type: ignore[arg-type]
    await asyncio.to_thread(send, settings, REPLICATION_PLAN, [execution_id])
    return execution_id


async def execution_state(db: Database, execution_id: int) -> tuple[str, list[Any]]:
    async with db.read() as conn:
        found = await jobs.get_execution(conn, execution_id)
        tasks = (await conn.execute(sa.select(t.task).where(t.task.c.execution_id == execution_id))).all()
    assert found is not None
    return found.status, list(tasks)


async def wait_until(what: str, check: Callable[[], Any], within: float, *logs: ServiceProcess) -> None:
    deadline = time.monotonic() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name}\n{p.tail(40)}" for p in logs)
            raise AssertionError(f"{what}: not within {within}s\n{tails}")
        await asyncio.sleep(0.2)


async def test_manual_execution_copies_to_distribution(
    site: Site, destination: ServiceProcess, db: Database, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    source = Peer(session, site.url, wharf=True)
    image = make_image("engine-copy")
    pushed = await source.image("library/app", image, "v1")
    target = await add_registry(db, "distribution", destination.url)
    policy_id = await add_policy(
        db,
        "to-distribution",
        dest_registry_id=target,
        dest_namespace="mirror",
        filters=[{"type": "name", "value": "library/**"}],
    )
    with ExitStack() as stack:
        process = worker(site, tmp_path / "logs", "worker").start(timeout=60)
        stack.callback(process.stop)
        execution_id = await start_execution(db, site, policy_id)

        async def final() -> bool:
            status, _ = await execution_state(db, execution_id)
            return status in jobs.FINAL

        await wait_until("the execution ended", final, 60, process)
    status, tasks = await execution_state(db, execution_id)
    assert status == jobs.SUCCESS, [(r.status, r.status_message) for r in tasks]
    assert [(r.src_resource, r.dst_resource) for r in tasks] == [("library/app:v1", "mirror/app:v1")]
    copied = await Peer(session, destination.url, wharf=False).read_manifest("mirror/app", "v1")
    assert copied is not None
    assert sha256(copied) == pushed


async def push_big_image(source: Peer, repository: str, size: int) -> tuple[str, str]:
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    ).encode()
    config_digest = await source.blob(repository, config)
    layer = await source.big_blob(repository, size)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": size}
            ],
        }
    ).encode()
    return await source.manifest(repository, "big", manifest), layer


async def test_killed_worker_mid_blob_is_taken_over(
    site: Site, destination: ServiceProcess, db: Database, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    size = 48 * 1024 * 1024
    pushed, layer = await push_big_image(Peer(session, site.url, wharf=True), "library/big", size)
    target = await add_registry(db, "distribution", destination.url)
    # 6 MiB/s: the copy takes about 8 s, so the kill lands in the middle of the blob.
    policy_id = await add_policy(db, "slow", dest_registry_id=target, speed_kb=6 * 1024)
    logs = tmp_path / "logs"
    first = worker(site, logs, "first", task_lease_seconds="3").start(timeout=60)
    second: ServiceProcess | None = None
    try:
        execution_id = await start_execution(db, site, policy_id)

        async def mid_copy() -> bool:
            _, tasks = await execution_state(db, execution_id)
            return (
                bool(tasks) and tasks[0].status == jobs.RUNNING and tasks[0].bytes_copied > 12 * 1024 * 1024
            )

        await wait_until("the copy is under way", mid_copy, 60, first)
        assert first.process is not None
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
        status, tasks = await execution_state(db, execution_id)
        assert status == jobs.RUNNING
        assert tasks[0].bytes_copied < size
        second = worker(site, logs, "second", task_lease_seconds="3").start(timeout=60)

        async def final() -> bool:
            found, _ = await execution_state(db, execution_id)
            return found in jobs.FINAL

        await wait_until("the second worker finished it", final, 120, second)
    finally:
        first.kill()
        if second is not None:
            second.stop()
    status, tasks = await execution_state(db, execution_id)
    assert status == jobs.SUCCESS, [(r.status, r.status_message) for r in tasks]
    assert tasks[0].attempts == 2
    assert second is not None
    assert str(tasks[0].worker).endswith(f"-{second.pid}")  # the second worker finished it
    async with db.read() as conn:
        log = await jobs.task_log_text(conn, tasks[0].id)
    # The second attempt finds the first one's upload (its URL saved in Redis); distribution
    # drops an upload whose PATCH was cut off, so here it starts that blob afresh.
    assert "attempt 2: copied" in log, log
    assert "resuming the upload" in log or "uploading afresh" in log, log
    target_peer = Peer(session, destination.url, wharf=False)
    copied = await target_peer.read_manifest("library/big", "big")
    assert copied is not None
    assert sha256(copied) == pushed
    async with session.head(f"{destination.url}/v2/library/big/blobs/{layer}") as response:
        assert response.status == 200
        assert int(response.headers["Content-Length"]) == size


async def test_destination_down_then_back(
    site: Site, destination: ServiceProcess, db: Database, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    source = Peer(session, site.url, wharf=True)
    pushed = [await source.image("library/app", make_image(f"down-{i}"), f"v{i}") for i in range(2)]
    target = await add_registry(db, "distribution", destination.url)
    policy_id = await add_policy(db, "retrying", dest_registry_id=target)
    destination.stop()
    process = worker(
        site,
        tmp_path / "logs",
        "worker",
        retry_backoff_seconds="0.3",
        retry_backoff_max_seconds="1",
        retry_max_attempts="50",
    ).start(timeout=60)
    try:
        execution_id = await start_execution(db, site, policy_id)

        async def retrying() -> bool:
            status, tasks = await execution_state(db, execution_id)
            assert status == jobs.RUNNING
            return len(tasks) == 2 and all(r.attempts >= 2 for r in tasks)

        await wait_until("the tasks retry", retrying, 60, process)
        destination.start(timeout=30)

        async def final() -> bool:
            status, _ = await execution_state(db, execution_id)
            return status in jobs.FINAL

        await wait_until("the execution ended", final, 60, process)
    finally:
        process.stop()
    status, tasks = await execution_state(db, execution_id)
    assert status == jobs.SUCCESS, [(r.status, r.status_message) for r in tasks]
    assert all(r.status == jobs.SUCCESS for r in tasks)
    target_peer = Peer(session, destination.url, wharf=False)
    for i, digest in enumerate(pushed):
        copied = await target_peer.read_manifest("library/app", f"v{i}")
        assert copied is not None
        assert sha256(copied) == digest


async def test_push_and_delete_events_replicate(
    site: Site, destination: ServiceProcess, db: Database, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    target = await add_registry(db, "distribution", destination.url)
    policy_id = await add_policy(
        db,
        "on-push",
        dest_registry_id=target,
        trigger_type="event_based",
        replicate_deletion=True,
        filters=[{"type": "name", "value": "library/app"}],
    )
    process = worker(site, tmp_path / "logs", "worker").start(timeout=60)
    source = Peer(session, site.url, wharf=True)
    target_peer = Peer(session, destination.url, wharf=False)

    async def executions() -> list[tuple[str, str]]:
        async with db.read() as conn:
            rows = await conn.execute(
                sa.select(t.execution.c.trigger, t.execution.c.status)
                .where(t.execution.c.vendor_id == policy_id)
                .order_by(t.execution.c.id)
            )
            return [(r.trigger, r.status) for r in rows]

    try:
        pushed = await source.image("library/app", make_image("on-push"), "v1")
        await source.image("library/other", make_image("elsewhere"), "v1")  # not the policy's

        async def copied() -> bool:
            return await target_peer.read_manifest("library/app", "v1") is not None

        await wait_until("the push was replicated", copied, 60, process)
        await wait_until("its execution ended", lambda: _all_final(executions), 30, process)
        assert await executions() == [("event_based", jobs.SUCCESS)]
        body = await target_peer.read_manifest("library/app", "v1")
        assert body is not None
        assert sha256(body) == pushed
        headers = await source.headers("library/app")
        async with session.delete(
            f"{site.url}/v2/library/app/manifests/{pushed}", headers=headers
        ) as response:
            assert response.status == 202, await response.text()

        async def deleted() -> bool:
            return await target_peer.read_manifest("library/app", pushed) is None

        await wait_until("the delete was replicated", deleted, 60, process)
        await wait_until("its execution ended", lambda: _all_final(executions), 30, process)
        assert await executions() == [("event_based", jobs.SUCCESS)] * 2
        assert await target_peer.read_manifest("library/other", "v1") is None
    finally:
        process.stop()


async def _all_final(query: Callable[[], Any]) -> bool:
    found = await query()
    return bool(found) and all(status in jobs.FINAL for _, status in found)


async def test_pull_from_distribution_into_this_wharf(
    site: Site, destination: ServiceProcess, db: Database, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    upstream = Peer(session, destination.url, wharf=False)
    pushed = {
        name: await upstream.image(name, make_image(f"pull-{name}"), "1.0") for name in ("base/os", "base/db")
    }
    await upstream.image("other/x", make_image("not-pulled"), "1.0")
    source = await add_registry(db, "upstream", destination.url)
    policy_id = await add_policy(
        db,
        "pull",
        src_registry_id=source,
        dest_registry_id=None,
        dest_namespace="pulled",
        filters=[{"type": "name", "value": "base/**"}],
    )
    process = worker(site, tmp_path / "logs", "worker").start(timeout=60)
    try:
        execution_id = await start_execution(db, site, policy_id)

        async def final() -> bool:
            status, _ = await execution_state(db, execution_id)
            return status in jobs.FINAL

        await wait_until("the execution ended", final, 60, process)
    finally:
        process.stop()
    status, tasks = await execution_state(db, execution_id)
    assert status == jobs.SUCCESS, [(r.status, r.status_message) for r in tasks]
    assert sorted(r.dst_resource for r in tasks) == ["pulled/db:1.0", "pulled/os:1.0"]
    here = Peer(session, site.url, wharf=True)
    for name, digest in pushed.items():
        body = await here.read_manifest(f"pulled/{name.split('/')[1]}", "1.0")
        assert body is not None
        assert sha256(body) == digest
