"""Tasks' life cycle in SQL on every backend: claim with a lease (a duplicate message claims
nothing), renewal by the holder only, a lapsed lease taken over (the old holder can neither renew
nor finish), finish (Success, Error, retry with backoff, Error once attempts are used up), the
execution's status following in the same transaction, the task log, and the reconciler's
queries (lapsed leases, lost messages, unplanned and unsettled executions)."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from tests.support.replication_rows import NOW, add_policy
from wharf_shared.db import jobs
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database

LEASE = 30.0


async def new_execution(db: Database, n_tasks: int = 1, *, planned: bool = True) -> tuple[int, list[int]]:
    policy_id = await add_policy(db, f"p-{n_tasks}-{planned}")
    async with db.transaction() as conn:
        execution_id = await jobs.create_execution(conn, jobs.REPLICATION, policy_id, "manual")
        tasks = [
            jobs.NewTask(jobs.COPY, f"library/app:v{i}", f"mirror/app:v{i}", {"i": i}) for i in range(n_tasks)
        ]
        ids = await jobs.add_tasks(conn, execution_id, tasks, NOW)
        if planned:
            assert await jobs.mark_planned(conn, execution_id)
        await jobs.refresh_execution(conn, execution_id)
    return execution_id, ids


async def claim(
    db: Database, task_id: int, worker: str, at: dt.datetime, attempts: int = 3
) -> jobs.ClaimedTask | None:
    return await db.run(
        lambda c: jobs.claim_task(c, task_id, worker, now=at, lease_seconds=LEASE, max_attempts=attempts)
    )


async def status_of(db: Database, execution_id: int) -> str:
    async with db.read() as conn:
        return str(
            (
                await conn.execute(sa.select(t.execution.c.status).where(t.execution.c.id == execution_id))
            ).scalar_one()
        )


async def task_row(db: Database, task_id: int) -> sa.Row[tuple[object, ...]]:
    async with db.read() as conn:
        return (await conn.execute(sa.select(t.task).where(t.task.c.id == task_id))).one()


async def test_claim_once_renew_and_succeed(db: Database) -> None:
    execution_id, [task_id] = await new_execution(db)
    claimed = await claim(db, task_id, "w1", NOW)
    assert claimed is not None
    assert (claimed.attempts, claimed.job, claimed.src_resource) == (1, {"i": 0}, "library/app:v0")
    assert await claim(db, task_id, "w2", NOW) is None  # a duplicate message
    later = NOW + dt.timedelta(seconds=10)
    assert await db.run(
        lambda c: jobs.renew_lease(c, task_id, "w1", now=later, lease_seconds=LEASE, bytes_copied=7)
    )
    assert not await db.run(lambda c: jobs.renew_lease(c, task_id, "w2", now=later, lease_seconds=LEASE))
    row = await task_row(db, task_id)
    assert (row.status, row.worker, row.bytes_copied) == (jobs.RUNNING, "w1", 7)
    assert row.lease_until == later + dt.timedelta(seconds=LEASE)
    assert await status_of(db, execution_id) == jobs.RUNNING
    assert await db.run(lambda c: jobs.finish_task(c, task_id, "w2", jobs.SUCCESS, now=later)) is None
    done = await db.run(lambda c: jobs.finish_task(c, task_id, "w1", jobs.SUCCESS, now=later, message="ok"))
    assert done == jobs.Finished(jobs.SUCCESS)
    assert await status_of(db, execution_id) == jobs.SUCCESS
    row = await task_row(db, task_id)
    assert (row.status, row.lease_until, row.end_time, row.status_message) == (
        jobs.SUCCESS,
        None,
        later,
        "ok",
    )
    assert await claim(db, task_id, "w1", later) is None  # finished: nothing to claim


async def test_lapsed_lease_is_taken_over(db: Database) -> None:
    execution_id, [task_id] = await new_execution(db)
    assert await claim(db, task_id, "w1", NOW) is not None
    assert await claim(db, task_id, "w2", NOW + dt.timedelta(seconds=LEASE - 1)) is None  # still held
    after = NOW + dt.timedelta(seconds=LEASE + 1)
    taken = await claim(db, task_id, "w2", after)
    assert taken is not None
    assert taken.attempts == 2
    # The first holder lost it: no renewal, no result.
    assert not await db.run(lambda c: jobs.renew_lease(c, task_id, "w1", now=after, lease_seconds=LEASE))
    assert await db.run(lambda c: jobs.finish_task(c, task_id, "w1", jobs.ERROR, now=after)) is None
    assert await db.run(lambda c: jobs.finish_task(c, task_id, "w2", jobs.SUCCESS, now=after)) is not None
    assert await status_of(db, execution_id) == jobs.SUCCESS


async def test_retry_with_backoff_then_give_up(db: Database) -> None:
    execution_id, [task_id, other] = await new_execution(db, 2)
    assert await claim(db, task_id, "w1", NOW, attempts=2) is not None
    retry = await db.run(
        lambda c: jobs.finish_task(
            c, task_id, "w1", jobs.PENDING, now=NOW, message="503", retry_in=4.0, max_attempts=2
        )
    )
    assert retry == jobs.Finished(jobs.PENDING, 4.0)
    row = await task_row(db, task_id)
    assert (row.status, row.worker, row.run_after, row.attempts) == (
        jobs.PENDING,
        None,
        NOW + dt.timedelta(seconds=4),
        1,
    )
    assert await claim(db, task_id, "w1", NOW + dt.timedelta(seconds=3), attempts=2) is None  # not due yet
    async with db.read() as conn:  # a message that came early is sent again for when it is due
        assert await jobs.early_by(conn, task_id, NOW + dt.timedelta(seconds=3)) == 1.0
        assert await jobs.early_by(conn, task_id, NOW + dt.timedelta(seconds=4)) is None
    second = NOW + dt.timedelta(seconds=5)
    assert await claim(db, task_id, "w1", second, attempts=2) is not None
    gave_up = await db.run(
        lambda c: jobs.finish_task(
            c, task_id, "w1", jobs.PENDING, now=second, message="503", retry_in=8.0, max_attempts=2
        )
    )
    assert gave_up == jobs.Finished(jobs.ERROR)
    row = await task_row(db, task_id)
    assert row.status == jobs.ERROR
    assert "gave up after 2 attempts" in row.status_message
    assert await status_of(db, execution_id) == jobs.RUNNING  # the other task is still pending
    assert await claim(db, other, "w1", second) is not None
    assert await db.run(lambda c: jobs.finish_task(c, other, "w1", jobs.SUCCESS, now=second)) is not None
    assert await status_of(db, execution_id) == jobs.ERROR


async def test_stopped_execution_takes_the_lease_away(db: Database) -> None:
    execution_id, [task_id, pending] = await new_execution(db, 2)
    assert await claim(db, task_id, "w1", NOW) is not None
    async with db.transaction() as conn:
        assert await jobs.stop_execution(conn, execution_id)
    assert not await db.run(lambda c: jobs.renew_lease(c, task_id, "w1", now=NOW, lease_seconds=LEASE))
    assert await db.run(lambda c: jobs.finish_task(c, task_id, "w1", jobs.SUCCESS, now=NOW)) is None
    assert await claim(db, pending, "w1", NOW) is None
    assert await status_of(db, execution_id) == jobs.STOPPED


async def test_task_log_lines(db: Database) -> None:
    _, [task_id] = await new_execution(db)
    lines = [(NOW, "copying"), (NOW + dt.timedelta(seconds=1), "done")]
    await db.run(lambda c: jobs.append_task_logs(c, task_id, lines))
    async with db.read() as conn:
        text = await jobs.task_log_text(conn, task_id)
    assert text == f"{NOW.isoformat()} copying\n{(NOW + dt.timedelta(seconds=1)).isoformat()} done\n"


async def test_reconcile_lapsed_leases(db: Database) -> None:
    execution_id, [again, exhausted, fresh] = await new_execution(db, 3)
    assert await claim(db, exhausted, "w1", NOW - dt.timedelta(seconds=LEASE + 1)) is not None
    assert await claim(db, exhausted, "w2", NOW) is not None  # its second attempt
    assert await claim(db, again, "w1", NOW) is not None
    later = NOW + dt.timedelta(seconds=LEASE + 1)
    assert await claim(db, fresh, "w2", later - dt.timedelta(seconds=5)) is not None
    ids = await db.run(lambda c: jobs.expire_leases(c, now=later, max_attempts=2))
    assert ids == [again]
    row = await task_row(db, again)
    assert (row.status, row.attempts, row.worker, row.lease_until) == (jobs.PENDING, 1, None, None)
    row = await task_row(db, exhausted)
    assert (row.status, row.attempts) == (jobs.ERROR, 2)
    assert "gave up after 2 attempts" in row.status_message
    assert (await task_row(db, fresh)).status == jobs.RUNNING
    assert await status_of(db, execution_id) == jobs.RUNNING
    assert await claim(db, again, "w1", later) is not None
    assert await db.run(lambda c: jobs.finish_task(c, again, "w1", jobs.SUCCESS, now=later)) is not None
    assert await db.run(lambda c: jobs.finish_task(c, fresh, "w2", jobs.SUCCESS, now=later)) is not None
    assert await status_of(db, execution_id) == jobs.ERROR


async def test_reconcile_lost_messages_and_executions(db: Database) -> None:
    execution_id, [task_id] = await new_execution(db)
    unplanned, _ = await new_execution(db, 0, planned=False)
    soon = NOW + dt.timedelta(seconds=5)
    assert await db.run(lambda c: jobs.lost_pending_tasks(c, now=soon, idle_seconds=60)) == []
    late = NOW + dt.timedelta(seconds=61)
    assert await db.run(lambda c: jobs.lost_pending_tasks(c, now=late, idle_seconds=60)) == [task_id]
    # Touched: not sent again at the next round.
    assert await db.run(lambda c: jobs.lost_pending_tasks(c, now=late, idle_seconds=60)) == []
    real_now = jobs.utcnow() + dt.timedelta(seconds=10)
    assert await db.run(lambda c: jobs.unplanned_executions(c, now=real_now, grace_seconds=5)) == [unplanned]
    assert await db.run(lambda c: jobs.unplanned_executions(c, now=real_now, grace_seconds=5)) == []
    # A Running execution whose tasks all ended (a refresh that was lost) is settled.
    await db.run(
        lambda c: c.execute(sa.update(t.task).where(t.task.c.id == task_id).values(status=jobs.SUCCESS))
    )
    assert await status_of(db, execution_id) == jobs.RUNNING
    assert await db.run(jobs.settle_executions) == [execution_id]
    assert await status_of(db, execution_id) == jobs.SUCCESS


def test_backoff_doubles_with_jitter_and_a_cap() -> None:
    assert jobs.backoff_seconds(1, 2.0, 300.0, 0.5) == 2.0
    assert jobs.backoff_seconds(3, 2.0, 300.0, 0.5) == 8.0
    assert jobs.backoff_seconds(3, 2.0, 300.0, 0.0) == 6.0
    assert jobs.backoff_seconds(3, 2.0, 300.0, 0.999) == pytest.approx(9.996)
    assert jobs.backoff_seconds(20, 2.0, 300.0, 0.999) == 300.0
