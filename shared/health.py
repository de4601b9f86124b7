"""`/health` (alive), `/health/ready` (the service's own dependencies answer) and `/metrics`.

Readiness runs each dependency's probe at once, each bounded by `CHECK_SECONDS` (below the
proxy's check timeout, so that the proxy hears why rather than nothing), and answers 503 naming
the cause of each failure: `{"checks": {"storage": "NoSuchBucket wharf", "redis": "ok", …}}`.

Drain: while the file `WHARF_DRAIN_FILE` names exists (`wharf drain on`), readiness also answers
503, with `"drain": "draining"` beside the other checks, so that the proxies (and any load
balancer checking readiness) take the instance out of rotation before it stops; it still serves
every request it gets. One stat per readiness call; nothing is cached, so `wharf drain off` puts
it back at the next check.

`/metrics` names internal addresses and counts, so it answers only whom `WHARF_METRICS__*`
allows: a request carrying the bearer token (`WHARF_METRICS__TOKEN`), or one straight from an
allowed address (`WHARF_METRICS__ALLOW`, loopback by default). A relayed request (one with
`X-Forwarded-For` or `Forwarded`, as every proxy in front adds) needs the token, since its peer
address is the proxy's. Anyone else gets the 404 of a route that does not exist.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from aiohttp import web

from wharf_shared import keys as shared_keys
from wharf_shared.addresses import Network, is_trusted, parse_networks
from wharf_shared.config import MetricsSettings, mask_url
from wharf_shared.drain import draining

if TYPE_CHECKING:  # the proxy serves these routes too, without SQL or Redis
    from redis.asyncio import Redis

    from wharf_shared.db.engine import Database
    from wharf_shared.metrics import Metrics

RELAYED = ("X-Forwarded-For", "Forwarded")


CHECK_SECONDS = 2.0
_CAUSE_MAX = 200
DRAINING = "draining"  # the `drain` check's verdict while the drain file exists

Probe = Callable[[], Awaitable[object]]


class Unready(Exception):
    """Raised by a probe in its own words (`NoSuchBucket wharf`), shown as they are."""


def cause(exc: BaseException) -> str:
    """Why a probe failed, in one short line, with any URL password masked."""
    text = str(exc).strip()
    if not isinstance(exc, Unready):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return mask_url(text.splitlines()[0])[:_CAUSE_MAX]


async def run_checks(probes: Mapping[str, Probe]) -> dict[str, str]:
    """Each probe's verdict: "ok", or its cause."""

    async def verdict(probe: Probe) -> str:
        try:
            async with asyncio.timeout(CHECK_SECONDS):
                await probe()
        except TimeoutError:
            return f"no answer within {CHECK_SECONDS:g} s"
        except Exception as exc:
            return cause(exc)
        return "ok"

    results = await asyncio.gather(*(verdict(probe) for probe in probes.values()))
    return dict(zip(probes, results, strict=True))


def dependency_probes(db: Database, redis: Redis) -> dict[str, Probe]:
    """The probes of the database and Redis."""

    async def database() -> None:
        async with db.read() as conn:
            await conn.exec_driver_sql("SELECT 1")

    return {"database": database, "redis": redis.ping}


async def dependency_checks(db: Database, redis: Redis) -> dict[str, str]:
    """Readiness of the database and Redis."""
    return await run_checks(dependency_probes(db, redis))


def metrics_allowed(request: web.Request, allow: Sequence[Network], token: str | None) -> bool:
    if token:
        sent = request.headers.get("Authorization", "")
        if hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            return True
    if any(name in request.headers for name in RELAYED):
        return False
    return is_trusted(request.remote or "", allow)


def metrics_guard(app: web.Application) -> Callable[[web.Request], bool]:
    """Whether a request may read what `/metrics` shows (and other internal state, such as the
    proxy's `/health/upstreams`): the `WHARF_METRICS__*` settings, read once."""
    settings = app.get(shared_keys.SETTINGS)
    access = settings.metrics if settings is not None else MetricsSettings()
    allow = parse_networks(access.allow)
    token = access.token.get_secret_value() if access.token is not None else None
    return lambda request: metrics_allowed(request, allow, token)


def add_health_and_metrics(
    app: web.Application, metrics: Metrics, ready: Callable[[], Awaitable[dict[str, str]]]
) -> None:
    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    settings = app.get(shared_keys.SETTINGS)
    drain_file = settings.drain_path if settings is not None else None

    async def readiness(_request: web.Request) -> web.Response:
        checks = dict(await ready())
        if drain_file is not None and draining(drain_file):
            checks["drain"] = DRAINING
        ok = all(v == "ok" for v in checks.values())
        return web.json_response(
            {"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503
        )

    allowed = metrics_guard(app)

    async def metrics_route(request: web.Request) -> web.Response:
        if not allowed(request):
            raise web.HTTPNotFound()  # rendered by the service's edge, as for any unknown path
        return web.Response(
            body=metrics.render(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
        )

    app.router.add_get("/health", health, name="health")
    app.router.add_get("/health/ready", readiness, name="health_ready")
    app.router.add_get("/metrics", metrics_route, name="metrics")
