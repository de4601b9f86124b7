"""When the leader runs the LDAP group sync (`wharf_shared.group_sync`): at the fire times of
`ldap_group_sync_schedule` while `auth_mode` is `ldap_auth`, and when an admin asks for a run
(a request id in Redis, taken by one leader). Fire times claimed, one run at a time, the clock
injectable: `wharf_jobservice.scheduled_sync`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from wharf_jobservice.scheduled_sync import ScheduledSync
from wharf_shared import group_sync
from wharf_shared.auth.ldap import LdapError
from wharf_shared.auth.ldap_auth import NAME as LDAP_AUTH
from wharf_shared.auth.ldap_auth import LdapAuthBackend
from wharf_shared.db.engine import Database
from wharf_shared.logging import get_logger
from wharf_shared.runtime import RuntimeSettings

log = get_logger(__name__)


class LdapGroupSync(ScheduledSync[group_sync.SyncReport]):
    name = "ldap-group-sync"

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
        super().__init__(
            redis,
            runtime,
            prefix=group_sync.PREFIX,
            report=group_sync.SyncReport,
            now=now,
            on_report=on_report,
        )
        self._db = db
        self._ldap = ldap

    def schedule(self, settings: RuntimeSettings) -> str:
        if settings.auth_mode != LDAP_AUTH or not settings.ldap.ldap_url:
            return ""
        return settings.ldap.ldap_group_sync_schedule

    async def perform(self, trigger: str, request_id: str) -> group_sync.SyncReport:
        config = await self._ldap.settings()
        if not config.ldap_url.strip():
            raise LdapError("ldap_url is not set")
        return await group_sync.sync_ldap_groups(
            self._db, self._ldap.directory, config, trigger=trigger, request_id=request_id, now=self._now
        )

    def done(self, report: group_sync.SyncReport) -> None:
        log.info(
            "ldap_group_sync_done",
            trigger=report.trigger,
            groups=report.groups,
            failed=len(report.failed),
            added=report.added,
            removed=report.removed,
        )

    async def stop(self) -> None:
        await super().stop()
        await self._ldap.close()
