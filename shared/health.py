"""`/health` (alive), `/health/ready` (the service's own dependencies answer) and `/metrics`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from wharf_shared.db.engine import Database
from wharf_shared.metrics import Metrics


async def dependency_checks(db: Database, redis: Redis) -> dict[str, str]:
    """Readiness of the database and Redis: "ok", or the error's kind."""
    checks: dict[str, str] = {}
    try:
        async with db.read() as conn:
            await conn.exec_driver_sql("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        await redis.ping()
        checks["redis"] = "ok"
    except (RedisError, OSError) as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
    return checks


def add_health_and_metrics(
    app: web.Application, metrics: Metrics, ready: Callable[[], Awaitable[dict[str, str]]]
) -> None:
    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readiness(_request: web.Request) -> web.Response:
        checks = await ready()
        ok = all(v == "ok" for v in checks.values())
        return web.json_response(
            {"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503
        )

    async def metrics_route(_request: web.Request) -> web.Response:
        return web.Response(
            body=metrics.render(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
        )

    app.router.add_get("/health", health, name="health")
    app.router.add_get("/health/ready", readiness, name="health_ready")
    app.router.add_get("/metrics", metrics_route, name="metrics")
