"""What lost workers and lost messages leave behind, put right (by the leader, every
`reconcile_interval_seconds`, and by every worker once at start-up): tasks whose lease lapsed go
back to Pending (or Error, attempts used up) and are enqueued again; due Pending tasks that sat
untouched (their message was lost) are enqueued again; executions not planned a while after
their last change are planned again (and end in Error once `plan_give_up_seconds` passed since
they started); Running executions with every task final get their status.
Nothing stays Running forever. Every step is idempotent; duplicate messages are harmless."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from wharf_shared.db import jobs
from wharf_shared.db.engine import Database
from wharf_shared.jobs import REPLICATION_PLAN, TASK_RUN
from wharf_shared.logging import get_logger

log = get_logger(__name__)

Enqueue = Callable[[str, int], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class Reconciled:
    expired: list[int]
    resent: list[int]
    replanned: list[int]
    settled: list[int]
    abandoned: list[int]

    @property
    def any(self) -> bool:
        return bool(self.expired or self.resent or self.replanned or self.settled or self.abandoned)


class Reconciler:
    def __init__(
        self,
        db: Database,
        enqueue: Enqueue,
        *,
        now: Callable[[], dt.datetime],
        max_attempts: int,
        pending_idle_seconds: float,
        plan_grace_seconds: float,
        plan_give_up_seconds: float = 3600.0,
    ) -> None:
        self._db = db
        self._enqueue = enqueue
        self._now = now
        self._max_attempts = max_attempts
        self._pending_idle = pending_idle_seconds
        self._plan_grace = plan_grace_seconds
        self._plan_give_up = plan_give_up_seconds

    async def run_once(self) -> Reconciled:
        now = self._now()
        expired = await self._db.run(
            lambda c: jobs.expire_leases(c, now=now, max_attempts=self._max_attempts)
        )
        resent = await self._db.run(
            lambda c: jobs.lost_pending_tasks(c, now=now, idle_seconds=self._pending_idle)
        )
        abandoned = await self._db.run(
            lambda c: jobs.abandon_unplanned(c, now=now, older_than_seconds=self._plan_give_up)
        )
        replanned = await self._db.run(
            lambda c: jobs.unplanned_executions(c, now=now, grace_seconds=self._plan_grace)
        )
        settled = await self._db.run(jobs.settle_executions)
        for task_id in [*expired, *resent]:
            await self._enqueue(TASK_RUN, task_id)
        for execution_id in replanned:
            await self._enqueue(REPLICATION_PLAN, execution_id)
        result = Reconciled(expired, resent, replanned, settled, abandoned)
        if result.any:
            log.info("reconciled", expired=expired, resent=resent, replanned=replanned, settled=settled)
        return result
