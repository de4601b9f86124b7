"""`create_app(settings)`: the proxy's only constructor.

`/v2/` goes to the registry pool, `/service/token` to the token pool, everything else to the
ui pool (503 with a clear body while no ui instance is configured). `/health`, `/health/ready`
and `/metrics` are the proxy's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from wharf_proxy import keys
from wharf_proxy.forward import Forwarder, NoUpstream, Truncated
from wharf_proxy.metrics import ProxyMetrics
from wharf_proxy.pools import Pool, check_forever
from wharf_shared import keys as shared_keys
from wharf_shared.config import Settings
from wharf_shared.health import add_health_and_metrics
from wharf_shared.logging import get_logger
from wharf_shared.metrics import Metrics
from wharf_shared.request_ids import REQUEST_ID, request_id_middleware

log = get_logger("wharf_proxy.access")

_OWN = frozenset({"/health", "/health/ready", "/metrics"})


def pool_for(path: str) -> str:
    if path == "/v2" or path.startswith("/v2/"):
        return "registry"
    if path == "/service/token" or path.startswith("/service/token/"):
        return "token"
    return "ui"


def unavailable(pool: str, status: int, message: str, request_id: str) -> web.Response:
    # The same `{"errors": [...]}` shape the OCI and Harbor APIs use, so every client can read it.
    body = {"errors": [{"code": "UNAVAILABLE", "message": message, "detail": {"request_id": request_id}}]}
    headers = {"Retry-After": "5", "Content-Type": "application/json; charset=utf-8"}
    if pool == "registry":
        headers["Docker-Distribution-API-Version"] = "registry/2.0"
    return web.Response(status=status, text=json.dumps(body), headers=headers)


async def proxy_handler(request: web.Request) -> web.StreamResponse:
    settings = request.app[shared_keys.SETTINGS]
    name = pool_for(request.path)
    pool = request.app[keys.POOLS][name]
    request_id = request[REQUEST_ID]
    start = time.monotonic()
    fields: dict[str, object] = {"method": request.method, "path": request.path, "pool": name}
    fields["remote"] = request.remote
    metrics = request.app[keys.PROXY_METRICS]
    if not pool.upstreams:
        message = (
            "the web UI and the /api/ service are not running here"
            if name == "ui"
            else f"no {name} instance is configured"
        )
        log.info("access", **fields, status=503, ms=_ms(start))
        return unavailable(name, 503, message, request_id)
    try:
        response, outcome = await request.app[keys.FORWARDER].forward(
            request, pool, request_id, scheme=request.scheme, external=settings.external_url.rstrip("/")
        )
    except NoUpstream as exc:
        metrics.failures.labels(name, "none").inc()
        log.warning("access", **fields, status=503, ms=_ms(start), error=exc.reason)
        return unavailable(name, 503, f"no {name} instance could take the request; try again", request_id)
    except Truncated as exc:
        log.warning("access", **fields, status=0, ms=_ms(start), error=f"upstream cut off: {exc}")
        if request.transport is not None:
            request.transport.close()
        raise web.HTTPBadGateway() from None  # the connection is already closed: nothing is sent
    metrics.requests.labels(name, outcome.upstream, str(outcome.status)).inc()
    metrics.latency.labels(name, outcome.upstream).observe(time.monotonic() - start)
    log.info(
        "access",
        **fields,
        status=outcome.status,
        upstream=outcome.upstream,
        attempts=outcome.attempts,
        bytes_in=outcome.sent_bytes,
        ms=_ms(start),
    )
    return response


def _ms(start: float) -> float:
    return round((time.monotonic() - start) * 1000, 2)


def create_app(settings: Settings) -> web.Application:
    metrics = Metrics("proxy")
    app = web.Application(
        middlewares=[request_id_middleware],
        handler_args={"max_field_size": 16384, "read_bufsize": 1024 * 1024},
        client_max_size=1024**4,  # bodies stream through; the upstream enforces its own limits
    )
    app[shared_keys.SETTINGS] = settings
    app[shared_keys.METRICS] = metrics
    app[keys.PROXY_METRICS] = ProxyMetrics(metrics)
    proxy = settings.proxy
    app[keys.POOLS] = {
        name: Pool.of(
            name,
            list(getattr(proxy.upstreams, name)),
            eject_after=proxy.eject_after_failures,
            eject_seconds=proxy.eject_seconds,
        )
        for name in ("registry", "token", "ui")
    }
    app.cleanup_ctx.append(_client)
    add_health_and_metrics(app, metrics, lambda: _readiness(app))
    app.router.add_route("*", "/{tail:.*}", proxy_handler, name="proxy")
    return app


async def _client(app: web.Application) -> AsyncIterator[None]:
    settings = app[shared_keys.SETTINGS]
    proxy = settings.proxy
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30, enable_cleanup_closed=True)
    session = aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        read_bufsize=1024 * 1024,
    )
    app[keys.FORWARDER] = Forwarder(
        session, retry_body_bytes=proxy.retry_body_bytes, connect_timeout=proxy.connect_timeout_seconds
    )
    pools = list(app[keys.POOLS].values())
    checker = asyncio.create_task(
        _watch(app, pools, session, proxy.health_interval_seconds, proxy.connect_timeout_seconds)
    )
    yield
    checker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await checker
    await session.close()


async def _watch(
    app: web.Application,
    pools: list[Pool],
    session: aiohttp.ClientSession,
    interval: float,
    check_timeout: float,
) -> None:
    metrics = app[keys.PROXY_METRICS]

    def publish() -> None:
        for pool in pools:
            for upstream in pool.upstreams:
                up = upstream.available(time.monotonic())
                metrics.healthy.labels(pool.name, upstream.url).set(1 if up else 0)

    await check_forever(pools, session, interval, check_timeout, after_round=publish)


async def _readiness(app: web.Application) -> dict[str, str]:
    """Ready while the registry and token pools each have an instance in rotation."""
    checks: dict[str, str] = {}
    for name, pool in app[keys.POOLS].items():
        if not pool.upstreams:
            continue  # not run here: its routes answer 503 with a clear message
        healthy = pool.healthy_count()
        checks[name] = "ok" if healthy else "no instance in rotation"
    return checks
