"""What the leader's directory syncs (LDAP groups, OIDC groups) share: a run at each fire time of
a schedule (a runtime setting) and whenever an admin asks (a request id in Redis, taken by one
leader). Each fire time is claimed with `SET NX`, as the replication scheduler does, so a second
leader after a takeover never fires it again; missed fire times are skipped (the first is fired,
late, once). One run at a time, in its own task, so a slow directory never holds up the leader's
loop; a run that cannot be done at all (settings, the database) ends with its report's `error`.
Each report is saved in Redis before the run (`finished_at` "") and after it. The clock is
injectable.

A sync subclasses `ScheduledSync` with the prefix of its Redis keys and its report type, and says
when it is on (`schedule`) and what a run does (`perform`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar

from redis.asyncio import Redis

from wharf_jobservice.scheduler import FIRED_TTL_SECONDS, due_fire_time
from wharf_shared import group_sync
from wharf_shared.logging import get_logger
from wharf_shared.runtime import RuntimeSettings

log = get_logger(__name__)


class Report(Protocol):
    error: str
    finished_at: str

    def as_dict(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=Report)


class ScheduledSync(ABC, Generic[R]):
    """`prefix`: of the sync's Redis keys, `<prefix>:requested` (a request's id),
    `<prefix>:report` (the last report), `<prefix>:last_fire` and `<prefix>:fired:<time>` (the
    schedule's); `report`: a new report of (trigger, started_at, request_id)."""

    name = "sync"  # the run's task name and the `sync` field of its log lines

    def __init__(
        self,
        redis: Redis,
        runtime: Callable[[], Awaitable[RuntimeSettings]],
        *,
        prefix: str,
        report: Callable[[str, str, str], R],
        now: Callable[[], dt.datetime],
        on_report: Callable[[R], None] | None = None,
    ) -> None:
        self._redis = redis
        self._runtime = runtime
        self._prefix = prefix
        self._report = report
        self._now = now
        self._on_report = on_report  # the job service's metrics
        self.running: asyncio.Task[R] | None = None

    @abstractmethod
    def schedule(self, settings: RuntimeSettings) -> str:
        """The cron expression to fire at under these settings, "" while the sync is off."""

    @abstractmethod
    async def perform(self, trigger: str, request_id: str) -> R:
        """The run; an exception is a run that could not be done (its report says why)."""

    async def save_report(self, report: R) -> None:
        await group_sync.save_report(self._redis, report, f"{self._prefix}:report")

    def done(self, report: R) -> None:
        """Called with each finished run's report (its log line)."""

    async def tick(self) -> asyncio.Task[R] | None:
        """Start a run if one is asked for or due (call it as the leader only); its task."""
        if self.running is not None and not self.running.done():
            return None  # a request waits in Redis for the next tick
        request_id = await group_sync.take_request(self._redis, f"{self._prefix}:requested")
        trigger = "manual"
        if request_id is None:
            if not await self._due():
                return None
            trigger, request_id = "schedule", ""
        self.running = asyncio.create_task(self._run(trigger, request_id), name=self.name)
        return self.running

    async def _due(self) -> bool:
        schedule = self.schedule(await self._runtime())
        if not schedule:
            return False
        now = self._now()
        last_fire_key = f"{self._prefix}:last_fire"
        raw = await self._redis.get(last_fire_key)
        if raw is None:  # never fired here: the first fire time after now
            await self._redis.set(last_fire_key, now.isoformat())
            return False
        since = dt.datetime.fromisoformat(raw.decode() if isinstance(raw, bytes) else str(raw))
        due = due_fire_time(schedule, since, now)
        if due is None:
            return False
        await self._redis.set(last_fire_key, max(due, now).isoformat())
        claimed = await self._redis.set(
            f"{self._prefix}:fired:{due.isoformat()}", b"1", nx=True, ex=FIRED_TTL_SECONDS
        )
        return bool(claimed)

    async def _run(self, trigger: str, request_id: str) -> R:
        report = self._report(trigger, self._now().isoformat(), request_id)
        await self.save_report(report)
        try:
            report = await self.perform(trigger, request_id)
        except Exception as exc:  # settings or the database: the report says so, nothing half-done
            error = str(exc) or type(exc).__name__
            log.warning("directory_sync_not_run", sync=self.name, trigger=trigger, error=error)
            report.error = error
            report.finished_at = self._now().isoformat()
        if self._on_report is not None:
            self._on_report(report)
        self.done(report)
        with contextlib.suppress(Exception):  # Redis away: the run itself is done and logged
            await self.save_report(report)
        return report

    async def stop(self) -> None:
        if self.running is not None and not self.running.done():
            self.running.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.running
