"""When the leader runs the OIDC group sync (`wharf_shared.oidc_group_sync`): at the fire times
of `oidc_group_sync_schedule` while `auth_mode` is `oidc_auth`, and when asked for a run (a
request id in Redis, `oidc_group_sync.request`). Fire times claimed, one run at a time, the clock
injectable: `wharf_jobservice.scheduled_sync`. The OIDC client secret and the stored refresh
tokens are decrypted with the secret key; without one nothing runs (the report says so).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from wharf_jobservice.scheduled_sync import ScheduledSync
from wharf_shared import oidc_group_sync
from wharf_shared.auth.oidc import OidcClient, OidcError, decrypted_settings
from wharf_shared.db.engine import Database
from wharf_shared.logging import get_logger
from wharf_shared.oidc_group_sync import OidcSyncReport
from wharf_shared.runtime import RuntimeSettings
from wharf_shared.secrets import SecretBox

log = get_logger(__name__)

OIDC_AUTH = "oidc_auth"


class OidcGroupSync(ScheduledSync[OidcSyncReport]):
    name = "oidc-group-sync"

    def __init__(
        self,
        *,
        client: OidcClient,
        box: SecretBox | None,
        db: Database,
        redis: Redis,
        runtime: Callable[[], Awaitable[RuntimeSettings]],
        now: Callable[[], dt.datetime],
        on_report: Callable[[OidcSyncReport], None] | None = None,
    ) -> None:
        """`box`: of the secret key (None: there is none, and nothing can run)."""
        super().__init__(
            redis, runtime, prefix=oidc_group_sync.PREFIX, report=OidcSyncReport, now=now, on_report=on_report
        )
        self._db = db
        self._client = client
        self._box = box

    def schedule(self, settings: RuntimeSettings) -> str:
        return settings.oidc.oidc_group_sync_schedule if self._on(settings) else ""

    @staticmethod
    def _on(settings: RuntimeSettings) -> bool:
        return settings.auth_mode == OIDC_AUTH and bool(settings.oidc.oidc_endpoint)

    async def perform(self, trigger: str, request_id: str) -> OidcSyncReport:
        runtime = await self._runtime()
        if not self._on(runtime):
            raise OidcError(f"OIDC is not configured (auth_mode {runtime.auth_mode}, oidc_endpoint)")
        if self._box is None:
            raise OidcError("no secret key: the refresh tokens cannot be read")
        settings = decrypted_settings(dataclasses.asdict(runtime.oidc), self._box)
        return await oidc_group_sync.sync_oidc_groups(
            self._db, self._client, settings, self._box, now=self._now, trigger=trigger, request_id=request_id
        )

    def done(self, report: OidcSyncReport) -> None:
        log.info(
            "oidc_group_sync_done",
            trigger=report.trigger,
            checked=report.checked,
            changed=report.changed,
            dropped=report.dropped,
            failed=len(report.failed),
            error=report.error,
        )
