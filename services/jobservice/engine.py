"""The replication engine's side of a `wharf-jobservice worker` process, on its event loop: one
aiohttp ClientSession for every registry call, the replication trigger's consumer group on the
event stream, the scheduler (while this process leads) and the reconciler, and the coroutines the
Celery task bodies run (`plan`, `run_task`). It lives in the app's cleanup context, after the
events consumer's, and uses that context's database and Redis."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import socket
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web
from prometheus_client import Counter, Gauge
from redis.asyncio import Redis

from wharf_jobservice.cmdb import CmdbSchedule
from wharf_jobservice.consumer import StreamConsumer
from wharf_jobservice.ldap_sync import LdapGroupSync
from wharf_jobservice.leader import LeaderLock
from wharf_jobservice.oidc_sync import OidcGroupSync
from wharf_jobservice.planning import plan_execution
from wharf_jobservice.reconciler import Reconciler
from wharf_jobservice.scheduler import Scheduler
from wharf_jobservice.task_runner import RETRY, STALE, RunLimits, run_task
from wharf_jobservice.transfers import Transfers, destination_repository
from wharf_jobservice.triggers import ReplicationTrigger
from wharf_shared import jobs as job_queue
from wharf_shared import keys as shared_keys
from wharf_shared import runtime
from wharf_shared.auth.ldap_auth import LdapAuthBackend
from wharf_shared.auth.oidc import OidcClient
from wharf_shared.config import Settings
from wharf_shared.db import jobs as jobs_db
from wharf_shared.db.engine import Database
from wharf_shared.db.types import utcnow
from wharf_shared.group_sync import SyncReport
from wharf_shared.logging import get_logger
from wharf_shared.metrics import Metrics
from wharf_shared.oidc_group_sync import OidcSyncReport
from wharf_shared.redis import open_redis
from wharf_shared.secrets import SecretBox

log = get_logger(__name__)

LOCK_KEY = "wharf:scheduler:lock"


def worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class EngineMetrics:
    def __init__(self, metrics: Metrics) -> None:
        registry = metrics.registry
        self.queue_length = Gauge(
            "wharf_jobservice_queue_length", "Messages waiting in the Celery queue", registry=registry
        )
        self.tasks_running = Gauge(
            "wharf_jobservice_tasks_running", "Tasks running in this process", registry=registry
        )
        self.task_outcomes = Counter(
            "wharf_jobservice_task_outcomes",
            "Task runs by outcome (Success, Error, retry, lost, stale)",
            ["outcome"],
            registry=registry,
        )
        self.executions_planned = Counter(
            "wharf_jobservice_executions_planned", "Executions planned here", registry=registry
        )
        self.executions_triggered = Counter(
            "wharf_jobservice_executions_triggered",
            "Executions made here by a schedule or events",
            ["trigger"],
            registry=registry,
        )
        self.leader = Gauge(
            "wharf_jobservice_scheduler_leader", "1 while this process runs the scheduler", registry=registry
        )
        self.ldap_group_syncs = Counter(
            "wharf_jobservice_ldap_group_syncs",
            "LDAP group sync runs by outcome (ok, partial: some groups left unchanged, error)",
            ["outcome"],
            registry=registry,
        )
        self.ldap_groups_unsynced = Counter(
            "wharf_jobservice_ldap_groups_unsynced",
            "LDAP groups a sync left unchanged because the directory did not answer for them",
            registry=registry,
        )

        self.oidc_group_syncs = Counter(
            "wharf_jobservice_oidc_group_syncs",
            "OIDC group sync runs by outcome (ok, partial: some users left unchanged, error: none changed)",
            ["outcome"],
            registry=registry,
        )

    def oidc_group_sync(self, report: OidcSyncReport) -> None:
        outcome = "error" if report.error else "partial" if report.failed else "ok"
        self.oidc_group_syncs.labels(outcome).inc()

    def ldap_group_sync(self, report: SyncReport) -> None:
        outcome = "error" if report.error else "partial" if report.failed else "ok"
        self.ldap_group_syncs.labels(outcome).inc()
        self.ldap_groups_unsynced.inc(len(report.failed))


class Engine:
    """What runs on the worker's loop, built with its dependencies once they are open."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        redis: Redis,
        broker: Redis,
        session: aiohttp.ClientSession,
        metrics: EngineMetrics,
        runtime_config: runtime.RuntimeConfig,
        *,
        worker: str,
        now: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        jobs = settings.jobservice
        self.settings = settings
        self.now = now
        self.worker = worker
        self._db = db
        self._broker = broker
        self._metrics = metrics
        self._transfers = Transfers(db, redis, settings, session)
        self._trigger = ReplicationTrigger(db, redis, self.enqueue, group=jobs.replication_group)
        self.consumer = StreamConsumer(
            redis,
            settings.events_stream,
            jobs.replication_group,
            worker,
            self._apply_events,
            batch=jobs.events_batch,
            block_ms=jobs.events_block_ms,
            claim_idle=jobs.events_claim_idle_seconds,
            start="$",  # a new group replicates what is pushed from now on, not the stream's history
        )
        self.lock = LeaderLock(redis, LOCK_KEY, worker, jobs.scheduler_lock_seconds)
        self._scheduler = Scheduler(db, redis, self.enqueue, now=now)
        self._cmdb = CmdbSchedule(settings, db, redis, session, now=now, runtime_config=runtime_config)
        # The LDAP and OIDC group syncs: their schedules and directories are runtime settings,
        # read through the process's cache, which hears every change (`runtime_watch`).
        settings_now = runtime_config.get
        ldap = LdapAuthBackend(db, settings_now, _secret_key(settings))
        self.ldap_sync = LdapGroupSync(
            db, redis, settings_now, ldap, now=now, on_report=metrics.ldap_group_sync
        )
        # The OIDC group sync (its schedule too), with the process's HTTP client.
        key = _secret_key(settings)
        self.oidc_sync = OidcGroupSync(
            db=db,
            redis=redis,
            runtime=settings_now,
            client=OidcClient(session),
            box=SecretBox(key) if key else None,
            now=now,
            on_report=metrics.oidc_group_sync,
        )
        self._reconciler = Reconciler(
            db,
            self.enqueue,
            now=now,
            max_attempts=jobs.retry_max_attempts,
            pending_idle_seconds=max(4 * jobs.reconcile_interval_seconds, 2 * jobs.task_lease_seconds),
            plan_grace_seconds=max(5.0, jobs.reconcile_interval_seconds),
            plan_give_up_seconds=jobs.task_time_limit_seconds,
        )
        self._limits = RunLimits(
            worker=worker,
            lease_seconds=jobs.task_lease_seconds,
            time_limit_seconds=jobs.task_time_limit_seconds,
            max_attempts=jobs.retry_max_attempts,
            backoff_seconds=jobs.retry_backoff_seconds,
            backoff_max_seconds=jobs.retry_backoff_max_seconds,
        )
        self._stopping = asyncio.Event()
        self._background: list[asyncio.Task[None]] = []
        self.beat_at = 0.0  # when the scheduler loop last went round (monotonic)

    async def start(self) -> None:
        await self.consumer.ensure_group()
        self._background = [
            asyncio.create_task(self.consumer.run(), name="replication-trigger"),
            asyncio.create_task(self._lead(), name="scheduler"),
        ]

    async def stop(self) -> None:
        self._stopping.set()
        self.consumer.stop()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=10)
        await self._cmdb.stop()
        await self.ldap_sync.stop()
        await self.oidc_sync.stop()
        with contextlib.suppress(Exception):
            await self.lock.release()
        self._metrics.leader.set(0)

    # -- what the Celery task bodies run ---------------------------------------------------------

    async def plan(self, execution_id: int) -> None:
        try:
            planned = await plan_execution(
                self._db,
                self.settings,
                execution_id,
                naming=destination_repository,
                list_remote=self._transfers.list_remote,
                now=self.now,
            )
        except Exception as exc:  # the source is down, say: the reconciler plans it again later
            log.warning(
                "execution_plan_deferred", execution=execution_id, error=str(exc) or type(exc).__name__
            )
            return
        if planned is None:
            return
        self._metrics.executions_planned.inc()
        for task_id in planned.task_ids:
            await self.enqueue(job_queue.TASK_RUN, task_id)

    async def run_task(self, task_id: int) -> str:
        self._metrics.tasks_running.inc()
        try:
            outcome = await run_task(self._db, task_id, self._transfers.perform, self._limits, now=self.now)
        finally:
            self._metrics.tasks_running.dec()
        self._metrics.task_outcomes.labels(outcome.status).inc()
        if outcome.status == RETRY:
            await self.enqueue(job_queue.TASK_RUN, task_id, countdown=outcome.retry_in)
        elif outcome.status == STALE:
            async with self._db.read() as conn:
                wait = await jobs_db.early_by(conn, task_id, self.now())
            if wait is not None:  # came before its backoff ended: again for then
                await self.enqueue(job_queue.TASK_RUN, task_id, countdown=wait)
        return outcome.status

    # -- helpers ---------------------------------------------------------------------------------

    async def enqueue(self, name: str, item_id: int, *, countdown: float | None = None) -> bool:
        """Send a message after commit; a failure is logged (the reconciler sends it again)."""
        try:
            await asyncio.to_thread(job_queue.send, self.settings, name, [item_id], countdown=countdown)
        except Exception as exc:
            log.warning("enqueue_failed", task=name, id=item_id, error=str(exc) or type(exc).__name__)
            return False
        return True

    async def _apply_events(self, events: list[dict[str, object]]) -> None:
        before = self._trigger.executions
        await self._trigger.apply(events)
        if self._trigger.executions > before:
            self._metrics.executions_triggered.labels("event_based").inc(self._trigger.executions - before)

    async def _fire_cmdb(self) -> None:
        try:
            await self._cmdb.fire_due()
        except Exception as exc:  # Redis or SQL away: the replication schedules still go on
            log.warning("cmdb_schedule_failed", error=str(exc) or type(exc).__name__)

    async def _lead(self) -> None:
        """Leadership, schedules and reconciling; once a second (or a third of the lock's lease)."""
        jobs = self.settings.jobservice
        beat = min(1.0, jobs.scheduler_lock_seconds / 3)
        reconciled_at: float | None = None
        first = True
        while not self._stopping.is_set():
            self.beat_at = time.monotonic()
            try:
                leader = await self.lock.hold()
                self._metrics.leader.set(1 if leader else 0)
                if leader:
                    fired = await self._scheduler.fire_due()
                    if fired:
                        self._metrics.executions_triggered.labels("scheduled").inc(len(fired))
                    await self._fire_cmdb()
                    await self.ldap_sync.tick()
                    await self.oidc_sync.tick()
                now = time.monotonic()
                due = reconciled_at is None or now - reconciled_at >= jobs.reconcile_interval_seconds
                if first or (leader and due):  # every worker once at start; then the leader
                    await self._reconciler.run_once()
                    reconciled_at, first = now, False
                self._metrics.queue_length.set(await self._broker.llen(jobs.queue))
            except Exception as exc:
                log.warning("scheduler_round_failed", error=str(exc) or type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=beat)


def _secret_key(settings: Settings) -> bytes | None:
    try:
        return settings.secret_key_bytes() or None
    except OSError:
        return None


class EngineHost:
    """The engine's place in the app: made in the app's cleanup context (after the events
    consumer's, whose database and Redis it uses), closed at its end; `engine` for the Celery
    task bodies; `checks` for /health/ready."""

    def __init__(self, settings: Settings, *, now: Callable[[], dt.datetime] = utcnow) -> None:
        self.settings = settings
        self.now = now
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("the replication engine is not running")
        return self._engine

    async def context(self, app: web.Application) -> AsyncIterator[None]:
        settings = self.settings
        redis = app[shared_keys.REDIS]
        own_broker = settings.effective_broker_url != settings.redis_url
        # Closed in reverse whatever happens: the engine failing to start or to stop must not
        # leave the broker's client open, its connections connected until the GC finds them.
        async with contextlib.AsyncExitStack() as stack:
            broker = redis
            if own_broker:
                broker = open_redis(settings.effective_broker_url, max_connections=4)
                stack.push_async_callback(broker.aclose)
            session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, connect=30, sock_read=300),
                connector=aiohttp.TCPConnector(limit=max(16, 4 * settings.jobservice.concurrency)),
            )
            stack.push_async_callback(session.close)
            engine = Engine(
                settings,
                app[shared_keys.DB],
                redis,
                broker,
                session,
                EngineMetrics(app[shared_keys.METRICS]),
                app[shared_keys.RUNTIME],
                worker=worker_id(),
                now=self.now,
            )
            stack.callback(log.info, "replication_engine_stopped", worker=engine.worker)
            stack.push_async_callback(engine.stop)
            stack.callback(self._forget)
            await engine.start()
            self._engine = engine
            log.info(
                "replication_engine_started",
                worker=engine.worker,
                group=settings.jobservice.replication_group,
            )
            yield

    def _forget(self) -> None:
        self._engine = None

    async def checks(self) -> dict[str, str]:
        engine = self._engine
        if engine is None:
            return {"replication_engine": "error: not running"}
        stale_after = max(10.0, 3 * self.settings.jobservice.scheduler_lock_seconds)
        return {
            "replication_trigger": "ok" if engine.consumer.running else "error: not running",
            "scheduler_loop": "ok"
            if time.monotonic() - engine.beat_at < stale_after
            else "error: the scheduler loop is stuck",
        }
