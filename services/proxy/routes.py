"""The front door's whole URL map: its own routes, then each pool's paths.

Own routes (from wharf_shared.health): `GET /health`, `GET /health/ready`, `GET /metrics`, and
the proxy's `GET /health/upstreams` (handlers/upstreams.py); the latter two only for the
addresses and token `WHARF_METRICS__*` allows (404 for anyone else).

Every pool's routes exist, but a pool with no instance (none configured, or none left after a
reload of the upstreams file) answers 404 `NOT_FOUND`, as a path no pool owns does (relay.py);
503 means a pool has instances and none could take the request. aiohttp tries routes in order:
the ui pool's catch-all comes last.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from wharf_proxy.handlers import relay, upstreams
from wharf_proxy.pools import Pool
from wharf_shared.health import add_health_and_metrics, metrics_guard
from wharf_shared.metrics import Metrics

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    path: str
    handler: Handler
    name: str
    pool: str  # the pool whose instances serve it


ROUTES: tuple[Route, ...] = (
    Route("/v2", relay.to_registry, "registry_root", "registry"),
    Route("/v2/{tail:.*}", relay.to_registry, "registry", "registry"),
    Route("/service/token", relay.to_token, "token", "token"),
    Route("/service/token/{tail:.*}", relay.to_token, "token_tail", "token"),
    Route("/{tail:.*}", relay.to_ui, "ui", "ui"),  # /api/, /c/, the portal
)


def add_routes(
    app: web.Application,
    pools: dict[str, Pool],
    metrics: Metrics,
    ready: Callable[[], Awaitable[dict[str, str]]],
) -> None:
    add_health_and_metrics(app, metrics, ready)
    allowed = metrics_guard(app)

    async def upstream_health(request: web.Request) -> web.Response:
        if not allowed(request):
            raise web.HTTPNotFound()  # rendered by the edge, as for any unknown path
        return web.json_response(upstreams.pools_report(pools), headers={"Cache-Control": "no-store"})

    app.router.add_get(upstreams.PATH, upstream_health, name="health_upstreams", allow_head=False)
    for route in ROUTES:
        app.router.add_route("*", route.path, route.handler, name=route.name)
