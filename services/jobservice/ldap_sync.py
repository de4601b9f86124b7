"""When the leader runs the LDAP group sync (`wharf_shared.group_sync`): at the fire times of
`ldap_group_sync_schedule` while `auth_mode` is `ldap_auth`, and when an admin asks for a run
(a request id in Redis, taken by one leader). Each fire time is claimed with `SET NX`, as the
replication scheduler does, so a second leader after a takeover never fires it again; missed
fire times are skipped (the first is fired, late, once). One run at a time, in its own task, so
a slow directory never holds up the leader's loop. The clock is injectable.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from wharf_jobservice.scheduler import FIRED_TTL_SECONDS, due_fire_time
from wharf_shared import group_sync
from wharf_shared.auth.ldap import LdapError
from wharf_shared.auth.ldap_auth import NAME as LDAP_AUTH
from wharf_shared.auth.ldap_auth import LdapAuthBackend
from wharf_shared.db.engine import Database
from wharf_shared.logging import get_logger
from wharf_shared.runtime import RuntimeSettings

log = get_logger(__name__)

LAST_FIRE_KEY = "wharf:ldap_group_sync:last_fire"
FIRED_PREFIX = "wharf:ldap_group_sync:fired:"


class LdapGroupSync:
    def __init__(
        self,
        db: Database,
        redis: Redis,
        runtime: Callable[[], Awaitable[RuntimeSettings]],
        ldap: LdapAuthBackend,
        *,
        now: Callable[[], dt.datetime],
        on_report: Callable[[group_sync.SyncReport], None] | None = None,
    ) -> None:
        self._db = db
        self._on_report = on_report  # the job service's metrics
        self._redis = redis
        self._runtime = runtime
        self._ldap = ldap
        self._now = now
        self.running: asyncio.Task[group_sync.SyncReport] | None = None

    async def tick(self) -> asyncio.Task[group_sync.SyncReport] | None:
        """Start a run if one is asked for or due (call it as the leader only); its task."""
        if self.running is not None and not self.running.done():
            return None  # a request waits in Redis for the next tick
        request_id = await group_sync.take_request(self._redis)
        trigger = "manual"
        if request_id is None:
            if not await self._due():
                return None
            trigger, request_id = "schedule", ""
        self.running = asyncio.create_task(self._run(trigger, request_id), name="ldap-group-sync")
        return self.running

    async def _due(self) -> bool:
        settings = await self._runtime()
        schedule = settings.ldap.ldap_group_sync_schedule
        if settings.auth_mode != LDAP_AUTH or not schedule or not settings.ldap.ldap_url:
            return False
        now = self._now()
        raw = await self._redis.get(LAST_FIRE_KEY)
        if raw is None:  # never fired here: the first fire time after now
            await self._redis.set(LAST_FIRE_KEY, now.isoformat())
            return False
        since = dt.datetime.fromisoformat(raw.decode() if isinstance(raw, bytes) else str(raw))
        due = due_fire_time(schedule, since, now)
        if due is None:
            return False
        await self._redis.set(LAST_FIRE_KEY, max(due, now).isoformat())
        claimed = await self._redis.set(
            f"{FIRED_PREFIX}{due.isoformat()}", b"1", nx=True, ex=FIRED_TTL_SECONDS
        )
        return bool(claimed)

    async def _run(self, trigger: str, request_id: str) -> group_sync.SyncReport:
        report = group_sync.SyncReport(trigger, self._now().isoformat(), request_id)
        await group_sync.save_report(self._redis, report)
        try:
            config = await self._ldap.settings()
            if not config.ldap_url.strip():
                raise LdapError("ldap_url is not set")
            report = await group_sync.sync_ldap_groups(
                self._db, self._ldap.directory, config, trigger=trigger, request_id=request_id, now=self._now
            )
        except Exception as exc:  # settings or the database: the report says so, nothing half-done
            log.warning("ldap_group_sync_not_run", trigger=trigger, error=str(exc) or type(exc).__name__)
            report.error = str(exc) or type(exc).__name__
            report.finished_at = self._now().isoformat()
        if self._on_report is not None:
            self._on_report(report)
        log.info(
            "ldap_group_sync_done",
            trigger=trigger,
            groups=report.groups,
            failed=len(report.failed),
            added=report.added,
            removed=report.removed,
        )
        with contextlib.suppress(Exception):  # Redis away: the run itself is done and logged
            await group_sync.save_report(self._redis, report)
        return report

    async def stop(self) -> None:
        if self.running is not None and not self.running.done():
            self.running.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.running
        await self._ldap.close()
