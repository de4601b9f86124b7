"""Upstream pools: instances of one service, their health, and the order to try them in.

What is known of each instance is shared by the proxy's worker processes (board.py), so that a
verdict is reached, logged (`upstream_ejected`, `upstream_restored`) and counted once per proxy,
not once per worker: only the process that changes it, under the board's lock, speaks of it.

An instance leaves the rotation after `eject_after` consecutive failed requests (could not
connect, reset, fell silent, cut off) or `eject_after` consecutive failed health checks, counted
apart: the requests an unready instance still answers must not hide its failing checks. It comes
back when a health check passes, though no sooner than `eject_seconds` after it left, so that one
that passes checks yet fails requests does not flap in and out. While out it is tried only after
every instance in rotation (a last resort, not a refusal). No affinity: any instance serves any
request.

Health checks ask each instance's readiness (`GET /health/ready`: its database, Redis and
storage answer), every `interval`, from one worker at a time: the one holding the board's lease.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from wharf_proxy.board import CHECK_FAILURES, OUT, OUT_SINCE, REQUEST_FAILURES, Board
from wharf_proxy.metrics import ProxyMetrics
from wharf_shared.logging import get_logger

log = get_logger(__name__)

READY_PATH = "/health/ready"
_READY_BODY_MAX = 16 * 1024


@dataclass
class Upstream:
    url: str  # base URL, no trailing slash
    board: Board
    slot: int
    in_flight: int = 0  # this process's requests to it

    @property
    def in_rotation(self) -> bool:
        return not self.board.get(self.slot, OUT)


@dataclass
class Pool:
    name: str
    upstreams: list[Upstream]
    eject_after: int = 3
    eject_seconds: float = 10.0
    metrics: ProxyMetrics | None = None
    _turn: itertools.count[int] = field(default_factory=itertools.count)

    @classmethod
    def of(
        cls,
        name: str,
        urls: list[str],
        *,
        board: Board,
        eject_after: int,
        eject_seconds: float,
        metrics: ProxyMetrics | None = None,
    ) -> Pool:
        upstreams = [Upstream(url, board, board.slot(name, url)) for url in urls]
        return cls(name, upstreams, eject_after, eject_seconds, metrics)

    def candidates(self) -> list[Upstream]:
        """Every instance, those in rotation first: round-robin start, fewest requests in flight
        breaking ties; ejected ones last (a last resort, not a refusal)."""
        if not self.upstreams:
            return []
        start = next(self._turn) % len(self.upstreams)
        rotated = self.upstreams[start:] + self.upstreams[:start]
        up = [u for u in rotated if u.in_rotation]
        up.sort(key=lambda u: u.in_flight)  # stable: keeps the rotation among equals
        down = [u for u in rotated if not u.in_rotation]
        return up + down

    def failed(self, upstream: Upstream, reason: str, kind: str) -> None:
        """A request to `upstream` failed; `kind` says how (connect, reset, timeout, …)."""
        if self.metrics is not None:
            self.metrics.failures.labels(self.name, upstream.url, kind).inc()
        self._fail(upstream, REQUEST_FAILURES, reason)

    def succeeded(self, upstream: Upstream) -> None:
        """A request to `upstream` got an answer (of any status)."""
        board, slot = upstream.board, upstream.slot
        if board.get(slot, REQUEST_FAILURES):  # the usual case reads one cell and is done
            with board.locked():
                board.set(slot, REQUEST_FAILURES, 0)

    def check_failed(self, upstream: Upstream, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.failures.labels(self.name, upstream.url, "health").inc()
        self._fail(upstream, CHECK_FAILURES, reason)

    def check_passed(self, upstream: Upstream) -> None:
        board, slot = upstream.board, upstream.slot
        if not board.get(slot, CHECK_FAILURES) and not board.get(slot, OUT):
            return
        now = time.monotonic()
        with board.locked():
            board.set(slot, CHECK_FAILURES, 0)
            out_for = now - board.get(slot, OUT_SINCE)
            restored = bool(board.get(slot, OUT)) and out_for >= self.eject_seconds
            if restored:
                board.set(slot, OUT, 0)
                board.set(slot, REQUEST_FAILURES, 0)
        if restored:
            log.info(
                "upstream_restored", pool=self.name, upstream=upstream.url, out_seconds=round(out_for, 1)
            )
            if self.metrics is not None:
                self.metrics.restorations.labels(self.name, upstream.url).inc()

    def _fail(self, upstream: Upstream, counter: int, reason: str) -> None:
        board, slot = upstream.board, upstream.slot
        with board.locked():
            failures = board.get(slot, counter) + 1
            board.set(slot, counter, failures)
            ejected = failures >= self.eject_after and not board.get(slot, OUT)
            if ejected:
                board.set(slot, OUT, 1)
                board.set(slot, OUT_SINCE, time.monotonic())
        if ejected:
            log.warning(
                "upstream_ejected",
                pool=self.name,
                upstream=upstream.url,
                reason=reason,
                failures=int(failures),
                by="health checks" if counter == CHECK_FAILURES else "requests",
            )
            if self.metrics is not None:
                self.metrics.ejections.labels(self.name, upstream.url).inc()

    def healthy_count(self) -> int:
        return sum(1 for u in self.upstreams if u.in_rotation)


async def check_forever(
    board: Board,
    pools: list[Pool],
    session: aiohttp.ClientSession,
    interval: float,
    check_timeout: float,
    *,
    after_round: Callable[[], None] | None = None,
) -> None:
    """Active health checks of every instance, every `interval`, while this process holds the
    board's lease (one worker checks for all); `after_round` runs in every process."""
    client_timeout = aiohttp.ClientTimeout(total=check_timeout)
    # A round takes at most check_timeout, then a sleep: a holder renews well before this ends.
    lease = 2 * (interval + check_timeout)
    pid = os.getpid()

    async def check(pool: Pool, upstream: Upstream) -> None:
        reason = await not_ready(session, upstream.url, client_timeout)
        if reason is None:
            pool.check_passed(upstream)
        else:
            pool.check_failed(upstream, reason)

    while True:
        if board.lead(pid, time.monotonic(), lease):
            await asyncio.gather(*(check(pool, u) for pool in pools for u in pool.upstreams))
        if after_round is not None:
            after_round()
        await asyncio.sleep(interval)


async def not_ready(
    session: aiohttp.ClientSession, base: str, client_timeout: aiohttp.ClientTimeout
) -> str | None:
    """None when the instance at `base` says it is ready, else why not, in a few words."""
    try:
        async with session.get(base + READY_PATH, timeout=client_timeout) as resp:
            body = await resp.content.read(_READY_BODY_MAX)
            if resp.status == 200:
                return None
            return f"not ready ({resp.status}): {_causes(body)}"
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        what = "no answer in time" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
        return f"health check failed: {what}"


def _causes(body: bytes) -> str:
    """The failing checks a readiness body names (`storage: NoSuchBucket wharf`), or its start."""
    try:
        checks = json.loads(body)["checks"]
        failing = [f"{name}: {value}" for name, value in checks.items() if value != "ok"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return body[:200].decode(errors="replace") or "no reason given"
    return "; ".join(failing) or "no failing check named"
