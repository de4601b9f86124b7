"""Upstream pools: instances of one service, their health, and the order to try them in.

An instance leaves the rotation after `eject_after` consecutive failures (requests that could
not connect or were cut off, and failed health checks alike) and comes back when a health check
passes, or after `eject_seconds` at the latest so that a pool whose every instance failed is
tried again rather than refused forever. No affinity: any instance serves any request.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from wharf_shared.logging import get_logger

log = get_logger(__name__)


@dataclass
class Upstream:
    url: str  # base URL, no trailing slash
    failures: int = 0
    ejected_until: float = 0.0
    in_flight: int = 0

    def available(self, now: float) -> bool:
        return self.ejected_until <= now


@dataclass
class Pool:
    name: str
    upstreams: list[Upstream]
    eject_after: int = 3
    eject_seconds: float = 10.0
    _turn: itertools.count[int] = field(default_factory=itertools.count)

    @classmethod
    def of(cls, name: str, urls: list[str], *, eject_after: int, eject_seconds: float) -> Pool:
        return cls(name, [Upstream(u) for u in urls], eject_after, eject_seconds)

    def candidates(self) -> list[Upstream]:
        """Every instance, available ones first: round-robin start, fewest requests in flight
        breaking ties; ejected ones last (a last resort, not a refusal)."""
        if not self.upstreams:
            return []
        now = time.monotonic()
        start = next(self._turn) % len(self.upstreams)
        rotated = self.upstreams[start:] + self.upstreams[:start]
        up = [u for u in rotated if u.available(now)]
        up.sort(key=lambda u: u.in_flight)  # stable: keeps the rotation among equals
        down = [u for u in rotated if not u.available(now)]
        return up + down

    def failed(self, upstream: Upstream, reason: str) -> None:
        upstream.failures += 1
        if upstream.failures >= self.eject_after and upstream.available(time.monotonic()):
            upstream.ejected_until = time.monotonic() + self.eject_seconds
            log.warning("upstream_ejected", pool=self.name, upstream=upstream.url, reason=reason)

    def succeeded(self, upstream: Upstream) -> None:
        if upstream.failures or not upstream.available(time.monotonic()):
            if not upstream.available(time.monotonic()):
                log.info("upstream_restored", pool=self.name, upstream=upstream.url)
            upstream.failures = 0
            upstream.ejected_until = 0.0

    def healthy_count(self) -> int:
        now = time.monotonic()
        return sum(1 for u in self.upstreams if u.available(now))


async def check_forever(
    pools: list[Pool],
    session: aiohttp.ClientSession,
    interval: float,
    check_timeout: float,
    *,
    after_round: Callable[[], None] | None = None,
) -> None:
    """Active health checks: `GET <upstream>/health` on every instance, every `interval`."""
    client_timeout = aiohttp.ClientTimeout(total=check_timeout)

    async def check(pool: Pool, upstream: Upstream) -> None:
        try:
            async with session.get(f"{upstream.url}/health", timeout=client_timeout) as resp:
                await resp.read()
                ok = resp.status == 200
        except (TimeoutError, aiohttp.ClientError, OSError):
            ok = False
        if ok:
            pool.succeeded(upstream)
        else:
            pool.failed(upstream, "health check")

    while True:
        await asyncio.gather(*(check(pool, u) for pool in pools for u in pool.upstreams))
        if after_round is not None:
            after_round()
        await asyncio.sleep(interval)
