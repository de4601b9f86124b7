"""Scheduled replication: the leader (`leader.LeaderLock`) fires each enabled scheduled policy at
its cron times (`wharf_shared.cron`), each fire time once across every instance and leader change.

Per policy, Redis keeps the last fire time handled (`<prefix>:last:<policy>`); the next fire time
is the first after it (or after the policy's last change, whichever is later). A fire time is
claimed with `SET NX` on `<prefix>:fired:<policy>:<time>` before its execution is made, so a
second leader (after a takeover) or a stale one never fires it again. When fire times were missed
(no leader lived), the first one is fired, late, once, and the last fire time moves to now: the
others are skipped. The clock is injectable.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared import cron
from wharf_shared.db import jobs, replication
from wharf_shared.db.engine import Database
from wharf_shared.jobs import REPLICATION_PLAN
from wharf_shared.logging import get_logger

log = get_logger(__name__)

Enqueue = Callable[[str, int], Awaitable[object]]  # (task name, id)
FIRED_TTL_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Fired:
    policy_id: int
    fire_time: dt.datetime
    execution_id: int


def due_fire_time(expression: str, since: dt.datetime, now: dt.datetime) -> dt.datetime | None:
    """The fire time to fire now: the first after `since`, if it is not in the future."""
    try:
        first = cron.next_after(expression, since)
    except (ValueError, KeyError):
        return None
    return first if first <= now else None


class Scheduler:
    def __init__(
        self,
        db: Database,
        redis: Redis,
        enqueue: Enqueue,
        *,
        now: Callable[[], dt.datetime],
        prefix: str = "wharf:scheduler",
    ) -> None:
        self._db = db
        self._redis = redis
        self._enqueue = enqueue
        self._now = now
        self._prefix = prefix

    async def fire_due(self) -> list[Fired]:
        """Fire every scheduled policy whose fire time has come (call it as the leader only)."""
        now = self._now()
        async with self._db.read() as conn:
            policies = await replication.list_policies(conn, trigger_type=replication.SCHEDULED, enabled=True)
        fired: list[Fired] = []
        for policy in policies:
            if not policy.cron:
                continue
            result = await self._fire_policy(policy, now)
            if result is not None:
                fired.append(result)
        return fired

    async def _fire_policy(self, policy: replication.Policy, now: dt.datetime) -> Fired | None:
        last_key = f"{self._prefix}:last:{policy.id}"
        raw = await self._redis.get(last_key)
        since = policy.updated_at
        if raw:
            last = dt.datetime.fromisoformat(raw.decode() if isinstance(raw, bytes) else str(raw))
            since = max(since, last)
        assert policy.cron is not None
        due = due_fire_time(policy.cron, since, now)
        if due is None:
            return None
        claimed = await self._redis.set(
            f"{self._prefix}:fired:{policy.id}:{due.isoformat()}", b"1", nx=True, ex=FIRED_TTL_SECONDS
        )
        # Handled either way: the next fire time is the first after now (missed ones skipped).
        await self._redis.set(last_key, max(due, now).isoformat())
        if not claimed:
            return None

        async def create(conn: AsyncConnection) -> int:
            return await jobs.create_execution(
                conn, jobs.REPLICATION, policy.id, replication.SCHEDULED, {"fire_time": due.isoformat()}
            )

        execution_id = await self._db.run(create)
        log.info(
            "schedule_fired",
            policy=policy.id,
            fire_time=due.isoformat(),
            execution=execution_id,
            late=(now - due).total_seconds(),
        )
        await self._enqueue(REPLICATION_PLAN, execution_id)
        return Fired(policy.id, due, execution_id)
