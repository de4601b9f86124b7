"""`create_app(settings)`: the registry's only constructor. Nothing connects at import time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from wharf_registry import keys
from wharf_registry.auth import Authorizer
from wharf_registry.blobs import Blobs
from wharf_registry.cache import ManifestCache
from wharf_registry.liveness import Heartbeat
from wharf_registry.manifests import Manifests
from wharf_registry.middleware import auth_middleware, errors_middleware
from wharf_registry.routes import add_routes
from wharf_registry.uploads import Uploads
from wharf_shared import keys as shared_keys
from wharf_shared.addresses import parse_networks
from wharf_shared.config import Settings
from wharf_shared.db.engine import Database
from wharf_shared.db.schema import check_schema
from wharf_shared.events import EventPublisher, EventRelay
from wharf_shared.health import Unready, add_health_and_metrics, dependency_probes, run_checks
from wharf_shared.logging import get_logger
from wharf_shared.metrics import Metrics, metrics_middleware
from wharf_shared.redis import open_redis
from wharf_shared.request_ids import request_id_middleware
from wharf_shared.runtime_watch import runtime_context
from wharf_shared.storage.base import StorageError
from wharf_shared.storage.factory import open_storage

log = get_logger(__name__)


def create_app(settings: Settings, *, clock: Callable[[], float] = time.time) -> web.Application:
    """`clock` (wall-clock seconds) is what token expiry is checked against: tests move it."""
    metrics = Metrics("registry")
    app = web.Application(
        middlewares=[request_id_middleware, metrics_middleware(metrics), errors_middleware, auth_middleware],
        # Read request bodies in large pieces: a 64 KiB buffer pauses and resumes the socket
        # every 128 KiB of a blob upload.
        handler_args={"max_field_size": 16384, "read_bufsize": 256 * 1024},
    )
    app[shared_keys.SETTINGS] = settings
    app[shared_keys.METRICS] = metrics
    reg = settings.registry
    app[keys.AUTHORIZER] = Authorizer(
        reg.auth,
        realm=settings.token_realm,
        service=settings.token.service,
        issuer=settings.token.issuer,
        keys_file=settings.token_keys_path if reg.auth == "token" else None,
        upload_grace_seconds=reg.upload_token_grace_seconds,
        clock=clock,
    )
    app[keys.STORAGE] = open_storage(settings, metrics)
    app[keys.TRUSTED_PROXIES] = parse_networks(settings.trusted_proxies)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_redis)
    app.cleanup_ctx.append(runtime_context)  # read-only mode
    app.cleanup_ctx.append(_purger)
    add_routes(app)
    add_health_and_metrics(app, metrics, lambda: _readiness(app))
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[shared_keys.SETTINGS]
    db = Database(
        settings.effective_database_url,
        pool_size=settings.database_pool_size,
        metrics=app[shared_keys.METRICS],
    )
    try:
        await check_schema(db)
    except BaseException:
        await db.close()
        raise
    app[shared_keys.DB] = db
    yield
    await db.close()


async def _redis(app: web.Application) -> AsyncIterator[None]:
    settings = app[shared_keys.SETTINGS]
    # Closed in reverse whatever happens: a closer that fails (or a start that does) must not
    # leave the client below it open, its connections connected until the GC finds them.
    async with contextlib.AsyncExitStack() as stack:
        redis = open_redis(settings.redis_url, metrics=app[shared_keys.METRICS])
        stack.push_async_callback(redis.aclose)
        events = EventPublisher(
            redis, settings.events_stream, settings.events_max_len, app[shared_keys.METRICS]
        )
        app[shared_keys.REDIS] = redis
        app[shared_keys.EVENTS] = events
        db = app[shared_keys.DB]
        cache = ManifestCache(redis, settings.registry.cache_ttl_seconds)
        app[keys.MANIFEST_CACHE] = cache
        reg = settings.registry
        heartbeat = Heartbeat(
            redis, interval_seconds=reg.liveness_interval_seconds, ttl_seconds=reg.liveness_ttl_seconds
        )
        app[keys.UPLOADS] = Uploads(
            redis,
            app[keys.STORAGE],
            db,
            expiry_seconds=reg.upload_expiry_seconds,
            lock_lease_ms=max(1, round(reg.upload_lease_seconds * 1000)),
            instance=heartbeat.instance,
        )
        # Every registry process relays the outbox (the job service does not exist yet).
        relay = EventRelay(
            db,
            redis,
            settings.events_stream,
            settings.events_max_len,
            app[shared_keys.METRICS],
            interval=settings.events_relay_interval_seconds,
            backoff_max=settings.events_relay_backoff_max_seconds,
        )
        app[keys.MANIFESTS] = Manifests(
            db, app[keys.STORAGE], cache, events, relay, max_bytes=settings.registry.manifest_max_bytes
        )
        app[keys.BLOBS] = Blobs(db, relay)
        # Requests in flight are done (and their locks released) when the heartbeat closes: this
        # instance is no holder to wait for.
        await heartbeat.start()
        stack.push_async_callback(heartbeat.close)
        await events.start()
        stack.push_async_callback(events.close)
        await relay.start()
        stack.push_async_callback(relay.close)
        yield


async def _purger(app: web.Application) -> AsyncIterator[None]:
    interval = app[shared_keys.SETTINGS].registry.upload_purge_interval_seconds
    uploads = app[keys.UPLOADS]

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await uploads.purge(interval)
            except Exception:
                log.exception("upload_purge_failed")

    task = asyncio.create_task(loop(), name="upload-purger")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _readiness(app: web.Application) -> dict[str, str]:
    storage = app[keys.STORAGE]

    async def storage_probe() -> None:
        # A write and a read back: storage that only answers stat would still fail pushes.
        path = f"_health/{socket.gethostname()}-{os.getpid()}"
        try:
            await storage.put_content(path, b"ok")
            await storage.get_content(path)
        except StorageError as exc:
            raise Unready(exc.reason) from exc

    probes = dependency_probes(app[shared_keys.DB], app[shared_keys.REDIS])
    return await run_checks({**probes, "storage": storage_probe})
