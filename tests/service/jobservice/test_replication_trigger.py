"""The event-based trigger on every backend with real Redis: a batch of stream events makes one
execution per matching policy (trigger event_based, the events in `extra`), enqueues its
planning, and a redelivered batch makes nothing more. The reconciler sends lost work again."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from redis.asyncio import Redis

from tests.support.replication_rows import add_policy, add_registry
from wharf_jobservice.reconciler import Reconciler
from wharf_jobservice.triggers import ReplicationTrigger
from wharf_shared.db import jobs
from wharf_shared.db import tables as t
from wharf_shared.db.engine import Database
from wharf_shared.events import new_event


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def test_events_become_executions_once(db: Database, redis: Redis) -> None:
    target = await add_registry(db, "target", "http://127.0.0.1:1")
    library = await add_policy(
        db,
        "library",
        dest_registry_id=target,
        trigger_type="event_based",
        filters=[{"type": "name", "value": "library/**"}],
    )
    deletions = await add_policy(
        db, "deletions", dest_registry_id=target, trigger_type="event_based", replicate_deletion=True
    )
    await add_policy(db, "manual", dest_registry_id=target)
    sent: list[tuple[str, int]] = []

    async def enqueue(name: str, item: int) -> None:
        sent.append((name, item))

    trigger = ReplicationTrigger(db, redis, enqueue, group="replication")
    batch = [
        new_event("push", repository="library/app", digest="sha256:aa", tag="v1", operator="u"),
        new_event("push", repository="library/app", digest="sha256:bb", tag=None, operator="u"),
        new_event("pull", repository="library/app", digest="sha256:aa", tag="v1", operator="u"),
        new_event("delete", repository="team/x", digest="sha256:cc", tag=None, kind="manifest", operator="u"),
    ]
    await trigger.apply(batch)
    async with db.read() as conn:
        rows = (
            await conn.execute(
                sa.select(t.execution.c.id, t.execution.c.vendor_id, t.execution.c.trigger).order_by(
                    t.execution.c.id
                )
            )
        ).all()
        made = {r.vendor_id: await jobs.get_execution(conn, r.id) for r in rows}
    assert sorted(made) == sorted([library, deletions])
    assert {r.trigger for r in rows} == {"event_based"}
    library_run = made[library]
    assert library_run is not None
    assert library_run.extra == {
        "events": [
            {"type": "push", "repository": "library/app", "digest": "sha256:aa", "tag": "v1", "kind": None}
        ]
    }
    deletion_run = made[deletions]
    assert deletion_run is not None
    assert [e["type"] for e in deletion_run.extra["events"]] == ["push", "delete"]
    assert sorted(sent) == sorted(("wharf.replication.plan", r.id) for r in rows)
    await trigger.apply(batch)  # redelivered
    async with db.read() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(t.execution))).scalar_one() == 2


async def test_reconciler_resends_lost_work(db: Database) -> None:
    policy_id = await add_policy(db, "p")
    async with db.transaction() as conn:
        unplanned = await jobs.create_execution(conn, jobs.REPLICATION, policy_id, "manual")
        planned = await jobs.create_execution(conn, jobs.REPLICATION, policy_id, "manual")
        [task_id] = await jobs.add_tasks(
            conn, planned, [jobs.NewTask(jobs.COPY, "a/b:1", "a/b:1", {})], jobs.utcnow()
        )
        await jobs.mark_planned(conn, planned)
    sent: list[tuple[str, int]] = []

    async def enqueue(name: str, item: int) -> None:
        sent.append((name, item))

    later = jobs.utcnow() + dt.timedelta(seconds=120)
    reconciler = Reconciler(
        db, enqueue, now=lambda: later, max_attempts=3, pending_idle_seconds=60, plan_grace_seconds=5
    )
    result = await reconciler.run_once()
    assert (result.resent, result.replanned) == ([task_id], [unplanned])
    assert sent == [("wharf.jobs.run_task", task_id), ("wharf.replication.plan", unplanned)]
    again = await reconciler.run_once()
    assert not again.any
    # Never planned for longer than the give-up time: Error, not Running forever.
    much_later = later + dt.timedelta(hours=2)
    giving_up = Reconciler(
        db,
        enqueue,
        now=lambda: much_later,
        max_attempts=3,
        pending_idle_seconds=60,
        plan_grace_seconds=5,
        plan_give_up_seconds=3600,
    )
    assert (await giving_up.run_once()).abandoned == [unplanned]
    async with db.read() as conn:
        found = await jobs.get_execution(conn, unplanned)
    assert found is not None
    assert found.status == jobs.ERROR
