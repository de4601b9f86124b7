"""`create_app(settings)`: the job service's `events` process, an app that serves only `/health`
and `/metrics` while its cleanup context runs the events consumer (audit log, pull counts).
Nothing connects at import time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from aiohttp import web

from wharf_jobservice import keys
from wharf_jobservice.audit_file import AuditFile
from wharf_jobservice.consumer import StreamConsumer
from wharf_jobservice.metrics import EventMetrics
from wharf_jobservice.routes import add_routes
from wharf_jobservice.writer import AuditWriter
from wharf_shared import keys as shared_keys
from wharf_shared.config import Settings
from wharf_shared.db.engine import Database
from wharf_shared.db.schema import check_schema
from wharf_shared.health import dependency_checks
from wharf_shared.logging import get_logger
from wharf_shared.metrics import Metrics, metrics_middleware
from wharf_shared.redis import open_redis
from wharf_shared.request_ids import request_id_middleware
from wharf_shared.runtime_watch import runtime_context

log = get_logger(__name__)


def consumer_name(settings: Settings) -> str:
    return settings.jobservice.events_consumer or f"{socket.gethostname()}-{os.getpid()}"


Context = Callable[[web.Application], AsyncIterator[None]]
Checks = Callable[[], Awaitable[dict[str, str]]]


def create_app(
    settings: Settings, *, contexts: Sequence[Context] = (), checks: Checks | None = None
) -> web.Application:
    """The events process's app; the worker adds its own `contexts` (run after the events
    consumer's, with its database and Redis) and readiness `checks`."""
    metrics = Metrics("jobservice")
    app = web.Application(middlewares=[request_id_middleware, metrics_middleware(metrics)])
    app[shared_keys.SETTINGS] = settings
    app[shared_keys.METRICS] = metrics
    app.cleanup_ctx.append(_events)
    # The runtime settings (the syncs' schedules and directories), changes heard within a second
    # as in every other service, after the context that opens the database.
    app.cleanup_ctx.append(runtime_context)
    app.cleanup_ctx.extend(contexts)
    add_routes(app, metrics, lambda: _readiness(app, checks))
    return app


async def _events(app: web.Application) -> AsyncIterator[None]:
    settings = app[shared_keys.SETTINGS]
    jobs = settings.jobservice
    # Closed in reverse whatever happens: a start that fails (Redis down: `ensure_group`) or a
    # stop that does must not leave Redis open, its connections connected until the GC finds
    # them, nor the database.
    async with contextlib.AsyncExitStack() as stack:
        db = Database(settings.effective_database_url, pool_size=min(settings.database_pool_size, 4))
        stack.push_async_callback(db.close)
        redis = open_redis(settings.redis_url, max_connections=16)
        stack.push_async_callback(redis.aclose)
        await check_schema(db)
        app[shared_keys.DB] = db
        app[shared_keys.REDIS] = redis
        event_metrics = EventMetrics(app[shared_keys.METRICS])
        audit_file = AuditFile(jobs.audit_file) if jobs.audit_file is not None else None
        if audit_file is not None:
            stack.callback(audit_file.close)
        writer = AuditWriter(db, audit_file=audit_file, on_recorded=event_metrics.records)
        consumer = StreamConsumer(
            redis,
            settings.events_stream,
            jobs.events_group,
            consumer_name(settings),
            writer.apply,
            batch=jobs.events_batch,
            block_ms=jobs.events_block_ms,
            claim_idle=jobs.events_claim_idle_seconds,
            on_batch=event_metrics.batch,
            on_malformed=event_metrics.malformed.inc,
        )
        app[keys.CONSUMER] = consumer
        loop = asyncio.get_running_loop()
        if audit_file is not None:
            app[keys.AUDIT_FILE] = audit_file  # the worker's main thread reopens it on SIGHUP
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
                loop.add_signal_handler(signal.SIGHUP, audit_file.reopen)
                stack.callback(_remove_sighup, loop)
        await consumer.ensure_group()
        task = asyncio.create_task(consumer.run(), name="events-consumer")
        log.info("events_consumer_started", group=jobs.events_group, consumer=consumer.name)
        yield
        # SIGTERM: the batch in hand is written and acknowledged, then the loop ends.
        consumer.stop()
        await task
    log.info("events_consumer_stopped", consumer=consumer.name)


def _remove_sighup(loop: asyncio.AbstractEventLoop) -> None:
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.remove_signal_handler(signal.SIGHUP)


async def _readiness(app: web.Application, more: Checks | None) -> dict[str, str]:
    checks = await dependency_checks(app[shared_keys.DB], app[shared_keys.REDIS])
    checks["events_consumer"] = "ok" if app[keys.CONSUMER].running else "error: not running"
    if more is not None:
        checks.update(await more())
    return checks
