"""`create_app(settings)`: the proxy's only constructor.

The URL map is routes.py; the edge (malformed targets, error bodies, access log) middleware.py;
forwarding forward.py and bodies.py (a transfer cut off mid-body: continuation.py, spool.py);
pools and health checks pools.py; the verdicts on upstreams that the worker processes share board.py;
the pools from a file upstreams_file.py, re-read live reloader.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from wharf_proxy import keys
from wharf_proxy.board import POOL_NAMES, Board
from wharf_proxy.forward import Forwarder
from wharf_proxy.local_blobs import LocalBlobs
from wharf_proxy.metrics import ProxyMetrics, UpstreamHealth
from wharf_proxy.middleware import edge_middleware
from wharf_proxy.pools import Pool, check_forever
from wharf_proxy.reloader import Reloader
from wharf_proxy.routes import add_routes
from wharf_proxy.spool import SpoolBudget
from wharf_proxy.upstreams_file import Snapshot, initial_pools
from wharf_shared import keys as shared_keys
from wharf_shared.config import Settings
from wharf_shared.logging import get_logger
from wharf_shared.metrics import Metrics
from wharf_shared.request_ids import request_id_middleware

log = get_logger(__name__)


def create_app(
    settings: Settings,
    *,
    board: Board | None = None,
    upstreams: Snapshot | None = None,
    reload_signal: bool = False,
) -> web.Application:
    """`board`: the verdicts on upstreams shared with the other workers, made before they were
    forked (`Board.for_settings`); without one the app makes its own (a single process).
    `upstreams`: the pools it was made for (`initial_pools`, read once before the fork), else
    read here. `reload_signal`: SIGHUP re-reads the upstreams file (the served process only)."""
    metrics = Metrics("proxy")
    app = web.Application(
        middlewares=[request_id_middleware, edge_middleware],
        handler_args={"read_bufsize": 1024 * 1024},
        client_max_size=1024**4,  # bodies stream through; the upstream enforces its own limits
    )
    app[shared_keys.SETTINGS] = settings
    app[shared_keys.METRICS] = metrics
    proxy_metrics = app[keys.PROXY_METRICS] = ProxyMetrics(metrics)
    proxy = settings.proxy
    if upstreams is None:
        upstreams = initial_pools(settings)
    if board is None:
        board = Board.for_settings(settings, upstreams.lists)
        app.on_cleanup.append(lambda _app: _close(board))
    app[keys.BOARD] = board
    pools = {
        name: Pool.of(
            name,
            upstreams.lists[name],
            board=board,
            eject_after=proxy.eject_after_failures,
            eject_seconds=proxy.eject_seconds,
            metrics=proxy_metrics,
        )
        for name in POOL_NAMES
    }
    app[keys.POOLS] = pools
    app[keys.RELOADER] = Reloader(
        proxy.upstreams_file, upstreams, pools, board, proxy.upstream_slots, on_signal=reload_signal
    )
    metrics.add_live(
        UpstreamHealth(lambda: [(p.name, u.url, u.in_rotation) for p in pools.values() for u in p.upstreams])
    )
    app[keys.LOCAL_BLOBS] = _local_blobs(settings)
    app.cleanup_ctx.append(_client)
    add_routes(app, pools, metrics, lambda: _readiness(app))
    return app


async def _close(board: Board) -> None:
    board.close()


def _local_blobs(settings: Settings) -> LocalBlobs | None:
    """Blob GETs sent from the registry's storage when this host can read it (see local_blobs)."""
    root = settings.proxy_storage_root
    if root is None:
        log.info("local_blobs_off", reason="no filesystem storage on this host")
        return None
    if not root.is_dir():
        log.warning("local_blobs_off", reason="the storage root is not a directory here", root=str(root))
        return None
    log.info("local_blobs_on", root=str(root))
    return LocalBlobs(root)


async def _client(app: web.Application) -> AsyncIterator[None]:
    settings = app[shared_keys.SETTINGS]
    proxy = settings.proxy
    connector = aiohttp.TCPConnector(
        limit=0, keepalive_timeout=proxy.upstream_idle_seconds, enable_cleanup_closed=True
    )
    session = aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        read_bufsize=1024 * 1024,
        # Headers only the client may send (the body's own, its agent's); set once per session,
        # not turned into a set on every request.
        skip_auto_headers=("Content-Type", "User-Agent", "Accept-Encoding"),
    )
    app[keys.FORWARDER] = Forwarder(
        session,
        app[keys.PROXY_METRICS],
        retry_body_bytes=proxy.retry_body_bytes,
        connect_timeout=proxy.connect_timeout_seconds,
        read_timeout=proxy.read_timeout_seconds,
        external=settings.external_url,
        spools=SpoolBudget(
            proxy.spool_dir, proxy.spool_bytes, proxy.spool_total_bytes, app[keys.PROXY_METRICS]
        ),
    )
    reloader = app[keys.RELOADER]
    loop = asyncio.get_running_loop()
    if reloader.on_signal:
        loop.add_signal_handler(signal.SIGHUP, reloader.hup)
    checker = asyncio.create_task(
        check_forever(
            app[keys.BOARD],
            list(app[keys.POOLS].values()),
            session,
            proxy.health_interval_seconds,
            proxy.connect_timeout_seconds,
            before_round=reloader,
            wake=reloader.wake,
        )
    )
    yield
    if reloader.on_signal:
        loop.remove_signal_handler(signal.SIGHUP)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a reload sent as the process exits is moot
    checker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await checker
    await session.close()


async def _readiness(app: web.Application) -> dict[str, str]:
    """Ready while every configured pool has an instance in rotation."""
    checks: dict[str, str] = {}
    for name, pool in app[keys.POOLS].items():
        if not pool.upstreams:
            continue  # not run here: its paths are 404
        healthy = pool.healthy_count()
        checks[name] = "ok" if healthy else "no instance in rotation"
    return checks
