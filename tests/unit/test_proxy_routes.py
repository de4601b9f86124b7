"""The proxy's URL map (wharf_proxy.routes) and its one rule for holding a body for a retry
(wharf_proxy.bodies.holds)."""

from __future__ import annotations

import pytest
from aiohttp import web

from wharf_proxy.board import Board
from wharf_proxy.bodies import holds
from wharf_proxy.pools import Pool
from wharf_proxy.routes import ROUTES, add_routes
from wharf_shared.metrics import Metrics

MiB = 1024 * 1024


@pytest.mark.parametrize(
    ("length", "limit", "held"),
    [
        (0, MiB, True),
        (MiB, MiB, True),
        (MiB + 1, MiB, False),
        (None, MiB, False),  # chunked: the length is not known before it is read
        (1, 0, False),
    ],
)
def test_bodies_up_to_the_limit_are_held(length: int | None, limit: int, held: bool) -> None:
    assert holds(length, limit) is held


async def ready() -> dict[str, str]:
    return {}


@pytest.mark.parametrize("configured", [{"registry", "token", "ui"}, {"registry", "token"}, set()])
def test_every_pool_has_its_routes_whether_or_not_it_has_instances(configured: set[str]) -> None:
    """A pool may gain instances while the proxy runs (an upstreams file re-read), so its routes
    are always there; one with no instance answers 404 (relay.py, tests/service/proxy)."""
    app = web.Application()
    board = Board([(name, "http://127.0.0.1:1") for name in configured])
    pools = {
        name: Pool.of(
            name,
            ["http://127.0.0.1:1"] if name in configured else [],
            board=board,
            eject_after=3,
            eject_seconds=1,
        )
        for name in ("registry", "token", "ui")
    }
    add_routes(app, pools, Metrics("proxy"), ready)
    board.close()
    canonical = [resource.canonical for resource in app.router.resources()]
    own = ["/health", "/health/ready", "/metrics", "/health/upstreams"]
    assert canonical[:4] == own  # the proxy's own come first
    assert canonical[4:] == ["/v2", "/v2/{tail}", "/service/token", "/service/token/{tail}", "/{tail}"]
    assert canonical[-1] == "/{tail}"  # the catch-all comes last
    assert {route.pool for route in ROUTES} == {"registry", "token", "ui"}
