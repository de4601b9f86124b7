"""`wharf-jobservice worker` as a standalone process with only env settings: ready (database,
Redis, both consumers, its loop), a manual execution with nothing to copy planned through Celery
and ended Success, a scheduled policy fired by the one leader of two workers, its metrics, and a
clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from redis.asyncio import Redis

from tests.support.processes import ServiceProcess, jobservice_worker_process
from tests.support.replication_rows import add_policy, add_registry
from wharf_shared.config import Settings
from wharf_shared.db import jobs
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.jobs import REPLICATION_PLAN, send

pytestmark = pytest.mark.slow


def worker_env(database_url: str, redis_url: str, data_dir: Path, **more: str) -> dict[str, str]:
    return {
        "WHARF_DATA_DIR": str(data_dir),
        "WHARF_DATABASE_URL": database_url,
        "WHARF_REDIS_URL": redis_url,
        "WHARF_SECRET_KEY": "worker-test-secret",
        "WHARF_DATABASE_POOL_SIZE": "4",
        "WHARF_JOBSERVICE__QUEUE": "wharf-test",
        "WHARF_JOBSERVICE__CONCURRENCY": "2",
        "WHARF_JOBSERVICE__SCHEDULER_LOCK_SECONDS": "2",
        "WHARF_JOBSERVICE__RECONCILE_INTERVAL_SECONDS": "1",
        **more,
    }


async def wait_for(condition: Callable[[], object], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


def metrics(process: ServiceProcess) -> str:
    with urllib.request.urlopen(f"{process.url}/metrics", timeout=5) as response:  # noqa: S310
        return str(response.read().decode())


@asynccontextmanager
async def running_worker(
    database_url: str, redis_url: str, folder: Path
) -> AsyncIterator[tuple[ServiceProcess, Redis]]:
    """A worker started with `worker_env` (its data and logs under `folder`), and a Redis client;
    the worker stopped with SIGTERM at the end."""
    (folder / "data").mkdir()
    worker = jobservice_worker_process(worker_env(database_url, redis_url, folder / "data"), folder / "logs")
    redis = Redis.from_url(redis_url)
    try:
        worker.start(timeout=60)
        yield worker, redis
    finally:
        await redis.aclose()
        if worker.process is not None and worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
            worker.process.wait(timeout=30)


async def finished_report(
    request_id: str, last_report: Callable[[], Awaitable[dict[str, Any] | None]]
) -> dict[str, Any]:
    """A directory sync's report once the run answering `request_id` finished."""

    async def reported() -> dict[str, Any] | None:
        report = await last_report()
        done = report is not None and report["request_id"] == request_id and report["finished_at"]
        return report if done else None

    await wait_for(reported, 30)
    report = await reported()
    assert report is not None
    return report


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=2)
    try:
        yield database
    finally:
        await database.close()


@pytest.mark.parametrize("db_kind", ["postgresql"], indirect=True)
async def test_worker_plans_fires_and_stops(
    db: Database, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    env = worker_env(database_url, redis_url, tmp_path / "data")
    (tmp_path / "data").mkdir()
    target = await add_registry(db, "target", "http://127.0.0.1:1")
    manual = await add_policy(
        db, "nothing", dest_registry_id=target, filters=[{"type": "name", "value": "none/**"}]
    )
    workers = [jobservice_worker_process(env, tmp_path / "logs", name=f"worker-{i}") for i in range(2)]
    try:
        for worker in workers:
            worker.start(timeout=60)
        async with db.transaction() as conn:
            execution_id = await jobs.create_execution(conn, jobs.REPLICATION, manual, "manual")
        settings = Settings(redis_url=redis_url, jobservice={"queue": "wharf-test"})  # type: ignore[arg-type]
        await asyncio.to_thread(send, settings, REPLICATION_PLAN, [execution_id])

        async def ended() -> bool:
            async with db.read() as conn:
                found = await jobs.get_execution(conn, execution_id)
            return found is not None and found.status == jobs.SUCCESS

        await wait_for(ended, 30)
        # A schedule every second: fired by whichever worker leads, each second once.
        every_second = await add_policy(
            db,
            "every-second",
            dest_registry_id=target,
            trigger_type="scheduled",
            cron="* * * * * *",
            filters=[{"type": "name", "value": "none/**"}],
        )

        async def fired() -> list[str]:
            async with db.read() as conn:
                rows = await conn.execute(
                    sa.select(t.execution.c.extra).where(
                        t.execution.c.vendor_id == every_second, t.execution.c.trigger == "scheduled"
                    )
                )
                return [r.extra for r in rows]

        await wait_for(lambda: _at_least(fired, 3), 30)
        times = await fired()
        assert len(times) == len(set(times))  # no fire time twice
        leaders = [("wharf_jobservice_scheduler_leader 1.0" in metrics(w)) for w in workers]
        assert leaders.count(True) == 1
        text = metrics(workers[0]) + metrics(workers[1])
        assert "wharf_jobservice_executions_planned_total" in text
        assert "wharf_jobservice_queue_length" in text
    finally:
        for worker in workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        codes = [w.process.wait(timeout=30) if w.process is not None else None for w in workers]
        logs = "\n".join(w.tail(60) for w in workers)
    assert codes == [0, 0], logs
    assert "replication_engine_stopped" in logs


async def _at_least(query: Callable[[], object], n: int) -> bool:
    result = query()
    assert asyncio.iscoroutine(result)
    return len(await result) >= n


@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)
def test_sighup_reopens_the_audit_file_and_never_restarts_the_worker(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """logrotate's SIGHUP, before and after Celery started: its default would end the process and
    Celery's own handler would re-execute it; the worker's reopens the audit file and goes on
    serving, the same process."""
    (tmp_path / "data").mkdir()
    audit = str(tmp_path / "audit.jsonl")
    env = worker_env(database_url, redis_url, tmp_path / "data", WHARF_JOBSERVICE__AUDIT_FILE=audit)
    worker = jobservice_worker_process(env, tmp_path / "logs", name="hup")
    worker.start(timeout=60)
    try:
        assert worker.process is not None
        pid = worker.process.pid
        worker.process.send_signal(signal.SIGHUP)  # Celery may not have started yet
        deadline = time.monotonic() + 30
        while "ready." not in worker.tail(200):
            assert worker.process.poll() is None, worker.tail()
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(0.1)
        worker.process.send_signal(signal.SIGHUP)  # Celery running
        assert "wharf_jobservice_scheduler_leader" in metrics(worker)
        with urllib.request.urlopen(f"{worker.url}/health/ready", timeout=5) as response:  # noqa: S310
            assert response.status == 200
        assert worker.process.poll() is None
        assert worker.process.pid == pid
        assert "Restarting celery worker" not in worker.tail(200)
    finally:
        worker.stop()
