"""A task's run on every backend, with plain functions as the work: Success with its log lines,
a transient failure back to Pending with a backoff, a permanent one Error, the time limit a
transient failure, and a stop (the execution stopped while the task runs): the lease renewal
finds the task no longer ours, the work is cancelled and no result is written."""

from __future__ import annotations

import asyncio
import datetime as dt

import sqlalchemy as sa

from tests.support.replication_rows import add_policy
from wharf_jobservice.task_runner import LOST, RETRY, STALE, RunLimits, TaskProgress, run_task
from wharf_shared.db import jobs
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database


class Transient(Exception):
    transient = True


def limits(**changes: float) -> RunLimits:
    values = {
        "worker": "w1",
        "lease_seconds": 30.0,
        "time_limit_seconds": 30.0,
        "max_attempts": 3,
        "backoff_seconds": 2.0,
        "backoff_max_seconds": 60.0,
        **changes,
    }
    return RunLimits(**values)  # type: ignore[arg-type]


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def one_task(db: Database) -> tuple[int, int]:
    policy_id = await add_policy(db, "p")
    async with db.transaction() as conn:
        execution_id = await jobs.create_execution(conn, jobs.REPLICATION, policy_id, "manual")
        [task_id] = await jobs.add_tasks(
            conn, execution_id, [jobs.NewTask(jobs.COPY, "library/a:v1", "b/a:v1", {"x": 1})], now()
        )
        await jobs.mark_planned(conn, execution_id)
        await jobs.refresh_execution(conn, execution_id)
    return execution_id, task_id


async def row(db: Database, task_id: int) -> sa.Row[tuple[object, ...]]:
    async with db.read() as conn:
        return (await conn.execute(sa.select(t.task).where(t.task.c.id == task_id))).one()


async def log_text(db: Database, task_id: int) -> str:
    async with db.read() as conn:
        return await jobs.task_log_text(conn, task_id)


async def test_success_with_log_and_bytes(db: Database) -> None:
    execution_id, task_id = await one_task(db)

    async def work(task: jobs.ClaimedTask, progress: TaskProgress) -> str:
        assert task.job == {"x": 1}
        await progress.log("blob 1 of 1")
        progress.add_bytes(1234)
        await progress.check()
        return "copied"

    outcome = await run_task(db, task_id, work, limits(), now=now)
    assert outcome.status == jobs.SUCCESS
    found = await row(db, task_id)
    assert (found.status, found.status_message, found.bytes_copied, found.attempts) == (
        jobs.SUCCESS,
        "copied",
        1234,
        1,
    )
    text = await log_text(db, task_id)
    assert "attempt 1: copy library/a:v1 -> b/a:v1" in text
    assert "blob 1 of 1" in text
    assert (await run_task(db, task_id, work, limits(), now=now)).status == STALE  # a duplicate message
    async with db.read() as conn:
        execution = await jobs.get_execution(conn, execution_id)
    assert execution is not None
    assert execution.status == jobs.SUCCESS


async def test_transient_retries_permanent_fails(db: Database) -> None:
    _, task_id = await one_task(db)
    calls = 0

    async def flaky(_task: jobs.ClaimedTask, _progress: TaskProgress) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Transient("503 from the destination")
        raise ValueError("manifest invalid")

    first = await run_task(db, task_id, flaky, limits(), now=now, jitter=lambda: 0.5)
    assert (first.status, first.retry_in) == (RETRY, 2.0)
    found = await row(db, task_id)
    assert (found.status, found.worker) == (jobs.PENDING, None)
    assert found.run_after is not None
    assert (await run_task(db, task_id, flaky, limits(), now=now)).status == STALE  # not due yet
    later = now() + dt.timedelta(seconds=3)
    second = await run_task(db, task_id, flaky, limits(), now=lambda: later)
    assert second.status == jobs.ERROR
    found = await row(db, task_id)
    assert (found.status, found.attempts) == (jobs.ERROR, 2)
    assert "ValueError: manifest invalid" in found.status_message
    assert "retry in 2.0s" in await log_text(db, task_id)


async def test_time_limit_is_a_transient_failure(db: Database) -> None:
    _, task_id = await one_task(db)

    async def slow(_task: jobs.ClaimedTask, _progress: TaskProgress) -> str:
        await asyncio.sleep(30)
        return "never"

    outcome = await run_task(db, task_id, slow, limits(time_limit_seconds=0.2), now=now)
    assert outcome.status == RETRY
    assert (await row(db, task_id)).status_message == "timed out"


async def test_stop_takes_the_task_away_mid_run(db: Database) -> None:
    execution_id, task_id = await one_task(db)
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def long(_task: jobs.ClaimedTask, _progress: TaskProgress) -> str:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    running = asyncio.create_task(run_task(db, task_id, long, limits(lease_seconds=0.3), now=now))
    await started.wait()
    async with db.transaction() as conn:
        assert await jobs.stop_execution(conn, execution_id)
    outcome = await asyncio.wait_for(running, timeout=10)
    assert outcome.status == LOST
    assert cancelled.is_set()
    found = await row(db, task_id)
    assert (found.status, found.status_message) == (jobs.STOPPED, "stopped")
