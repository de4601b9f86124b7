"""The CMDB ownership sync on its schedule (`cmdb_schedule`, Harbor's 6-field cron, UTC; "" = off):
fired by the scheduler's leader (`engine.Engine._lead`), each fire time once across instances and
leader changes, like scheduled replication (`scheduler.py`): Redis keeps the last fire time handled
with the expression it was for (`<prefix>:last`; a changed expression starts afresh from now), and
a fire time is claimed with `SET NX` (`<prefix>:fired:<time>`) before it runs. Missed fire times:
the first is fired late, once. The run itself (`wharf_shared.cmdb.sync`) goes on in the background,
so the leader keeps renewing its lock; a fire time that comes while a run is still going is skipped.
Nothing runs while read-only mode is on. Outcomes are log lines (`cmdb_sync_done`, `…_failed`)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import Callable

import aiohttp
from redis.asyncio import Redis

from wharf_jobservice.scheduler import FIRED_TTL_SECONDS, due_fire_time
from wharf_shared import runtime
from wharf_shared.cmdb import sync
from wharf_shared.config import Settings
from wharf_shared.db.engine import Database
from wharf_shared.errors.domain import DomainError
from wharf_shared.logging import get_logger
from wharf_shared.secrets import SecretBox

log = get_logger(__name__)


class CmdbSchedule:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        redis: Redis,
        session: aiohttp.ClientSession,
        *,
        now: Callable[[], dt.datetime],
        prefix: str = "wharf:scheduler:cmdb",
        runtime_config: runtime.RuntimeConfig | None = None,
    ) -> None:
        self._settings = settings
        self._db = db
        self._redis = redis
        self._session = session
        self._now = now
        self._prefix = prefix
        self._runtime = runtime_config or runtime.RuntimeConfig(db, runtime.defaults(settings))
        self._running: asyncio.Task[sync.Report | None] | None = None

    async def fire_due(self) -> dt.datetime | None:
        """Start the run whose fire time has come (call it as the leader only); that fire time."""
        settings = await self._runtime.get()
        expression = settings.cmdb.cmdb_schedule
        if not expression or not settings.cmdb.cmdb_url or settings.read_only:
            return None
        if self._running is not None and not self._running.done():
            return None
        now = self._now()
        last_key = f"{self._prefix}:last"
        raw = await self._redis.get(last_key)
        last = json.loads(raw) if raw else {}
        if last.get("cron") != expression:  # new (or changed): the first fire time after now
            await self._redis.set(last_key, json.dumps({"cron": expression, "at": now.isoformat()}))
            return None
        due = due_fire_time(expression, dt.datetime.fromisoformat(last["at"]), now)
        if due is None:
            return None
        claimed = await self._redis.set(
            f"{self._prefix}:fired:{due.isoformat()}", b"1", nx=True, ex=FIRED_TTL_SECONDS
        )
        await self._redis.set(last_key, json.dumps({"cron": expression, "at": max(due, now).isoformat()}))
        if not claimed:
            return None
        log.info("cmdb_sync_fired", fire_time=due.isoformat(), late=(now - due).total_seconds())
        self._running = asyncio.create_task(self._run(settings.cmdb), name="cmdb-sync")
        return due

    async def _run(self, config: runtime.CmdbSettings) -> sync.Report | None:
        box = SecretBox(self._settings.secret_key_bytes())
        try:
            return await sync.run(self._db, self._session, config, box, dry_run=False)
        except DomainError as exc:  # the CMDB down, not configured: nothing changed
            log.warning("cmdb_sync_failed", error=str(exc))
        except Exception as exc:
            log.warning("cmdb_sync_failed", error=str(exc) or type(exc).__name__)
        return None

    async def idle(self) -> sync.Report | None:
        """Wait for the run in progress, if any; its report."""
        if self._running is None:
            return None
        return await self._running

    async def stop(self) -> None:
        if self._running is not None and not self._running.done():
            self._running.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._running
