"""`GET /health/upstreams`: what the proxy knows of each instance behind it, for the portal's
dashboard and for people: per pool, each upstream's URL, whether it is in rotation and why not
(`state`: `in_rotation`, `ejected`, `new` until its first passing check, `leaving` for the moment
a worker still has one another already dropped), its consecutive failed requests and health
checks, and for how long it has been out. The pools are the answering worker's, which re-reads
an upstreams file within a health interval of its change.

The verdicts come from the board the worker processes share (`wharf_proxy.board`), so any worker
answers alike. The URLs are internal addresses: the route answers only whom `/metrics` answers
(`WHARF_METRICS__*`), and is a 404 for anyone else, as if it did not exist.
"""

from __future__ import annotations

import time
from typing import Any

from wharf_proxy.board import CHECK_FAILURES, OUT_SINCE, REQUEST_FAILURES
from wharf_proxy.pools import Pool, Upstream

PATH = "/health/upstreams"


def upstream_report(upstream: Upstream, now: float) -> dict[str, Any]:
    board, slot = upstream.board, upstream.slot
    in_rotation = upstream.in_rotation
    return {
        "url": upstream.url,
        "in_rotation": in_rotation,
        "state": upstream.state,
        "request_failures": int(board.get(slot, REQUEST_FAILURES)),
        "check_failures": int(board.get(slot, CHECK_FAILURES)),
        "out_seconds": None if in_rotation else round(max(0.0, now - board.get(slot, OUT_SINCE)), 1),
    }


def pools_report(pools: dict[str, Pool]) -> dict[str, Any]:
    """Every pool (those with no instance configured too: their paths are 404 here)."""
    now = time.monotonic()  # OUT_SINCE is the monotonic clock every process reads alike
    return {
        "pools": {
            name: {
                "eject_after": pool.eject_after,
                "eject_seconds": pool.eject_seconds,
                "upstreams": [upstream_report(u, now) for u in pool.upstreams],
            }
            for name, pool in pools.items()
        }
    }
