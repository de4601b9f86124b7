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

The pools may change while the proxy runs (`reload`: the upstreams file was rewritten). Each
worker swaps its own lists: an instance that stays keeps its slot on the board, and so its
verdict; one that leaves gives its slot back, while the requests already sent to it finish; one
that comes is new: out of rotation (yet tried as a last resort, like an ejected one) until its
first passing health check, then in. A host is often added to the inventory before its service
is up; in rotation at once, it would draw requests that fail (a retry elsewhere saves those that
can be sent twice, not an upload too large to hold). The instances the proxy starts with are in
rotation from the start: there is nothing else to serve with.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from wharf_proxy.board import (
    CHECK_FAILURES,
    EJECTED,
    IN_ROTATION,
    NEW,
    OUT,
    OUT_SINCE,
    REQUEST_FAILURES,
    Board,
    Ref,
)
from wharf_proxy.metrics import ProxyMetrics
from wharf_shared.logging import get_logger

log = get_logger(__name__)

READY_PATH = "/health/ready"
_READY_BODY_MAX = 16 * 1024


@dataclass
class Upstream:
    url: str  # base URL, no trailing slash
    board: Board
    ref: Ref  # its slot on the board
    in_flight: int = 0  # this process's requests to it

    @property
    def slot(self) -> int:
        return self.ref.slot

    @property
    def in_rotation(self) -> bool:
        """In rotation; not when ejected, new, or when its slot changed hands (it is leaving)."""
        return self.board.owns(self.ref) and self.board.get(self.ref.slot, OUT) == IN_ROTATION

    @property
    def state(self) -> str:
        """`in_rotation`, `ejected`, `new` (awaiting its first passing check) or `leaving`."""
        if not self.board.owns(self.ref):
            return "leaving"
        out = self.board.get(self.ref.slot, OUT)
        return "new" if out == NEW else "ejected" if out == EJECTED else "in_rotation"


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
        upstreams = [Upstream(url, board, board.claim(name, url)) for url in dict.fromkeys(urls)]
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
                if board.owns(upstream.ref):
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
            if not board.owns(upstream.ref):
                return  # it left the pools: its slot is another upstream's now
            board.set(slot, CHECK_FAILURES, 0)
            out = board.get(slot, OUT)
            out_for = now - board.get(slot, OUT_SINCE)
            admitted = out == NEW
            restored = out == EJECTED and out_for >= self.eject_seconds
            if admitted or restored:
                board.set(slot, OUT, IN_ROTATION)
                board.set(slot, REQUEST_FAILURES, 0)
        if admitted:
            log.info(
                "upstream_admitted", pool=self.name, upstream=upstream.url, after_seconds=round(out_for, 1)
            )
        if restored:
            log.info(
                "upstream_restored", pool=self.name, upstream=upstream.url, out_seconds=round(out_for, 1)
            )
            if self.metrics is not None:
                self.metrics.restorations.labels(self.name, upstream.url).inc()

    def _fail(self, upstream: Upstream, counter: int, reason: str) -> None:
        board, slot = upstream.board, upstream.slot
        with board.locked():
            if not board.owns(upstream.ref):
                return  # it left the pools: its slot is another upstream's now
            failures = board.get(slot, counter) + 1
            board.set(slot, counter, failures)
            # A new one stays out until its first passing check: there is nothing to eject.
            ejected = failures >= self.eject_after and board.get(slot, OUT) == IN_ROTATION
            if ejected:
                board.set(slot, OUT, EJECTED)
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


@dataclass(frozen=True)
class Change:
    """What a reload did, per pool: the URLs that came and those that left."""

    added: dict[str, list[str]]
    removed: dict[str, list[str]]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)


def reload(pools: dict[str, Pool], lists: dict[str, list[str]], board: Board) -> Change:
    """Make each pool's instances those `lists` names (in that order): the ones that stay keep
    their slot and verdict, those that leave give theirs back (requests in flight to them
    finish), new ones are claimed awaiting their first passing check.

    BoardFull leaves the pools as they were (slots given back are claimed again by `resync`)."""
    added: dict[str, list[str]] = {}
    removed: dict[str, list[str]] = {}
    for name, pool in pools.items():
        wanted = dict.fromkeys(lists.get(name, []))
        have = {u.url for u in pool.upstreams}
        gone = [u for u in pool.upstreams if u.url not in wanted]
        for upstream in gone:
            board.release(upstream.ref)  # first: the claims below may need the slots
        if gone:
            removed[name] = [u.url for u in gone]
        new = [url for url in wanted if url not in have]
        if new:
            added[name] = new
    # New ones wait for a passing check (this module's docstring says why), unless another
    # worker already claimed them: then they are as that one's checks left them.
    claimed = {(name, url): board.claim(name, url, new=True) for name, urls in added.items() for url in urls}
    for name, pool in pools.items():
        kept = {u.url: u for u in pool.upstreams}
        pool.upstreams = [
            kept.get(url) or Upstream(url, board, claimed[name, url])
            for url in dict.fromkeys(lists.get(name, []))
        ]
    return Change(added, removed)


def resync(pools: dict[str, Pool], board: Board, now: float) -> None:
    """Tell the board these upstreams are still in use, and claim again any whose slot changed
    hands meanwhile (another worker saw it leave in a version of the file this one skipped, or
    it sat unused so long that its slot was taken)."""
    for pool in pools.values():
        for upstream in pool.upstreams:
            if not board.owns(upstream.ref):
                upstream.ref = board.claim(pool.name, upstream.url, now=now)
        board.touch((u.ref for u in pool.upstreams), now)


async def check_forever(
    board: Board,
    pools: list[Pool],
    session: aiohttp.ClientSession,
    interval: float,
    check_timeout: float,
    *,
    before_round: Callable[[], None] | None = None,
    after_round: Callable[[], None] | None = None,
    wake: asyncio.Event | None = None,
) -> None:
    """Active health checks of every instance, every `interval`, while this process holds the
    board's lease (one worker checks for all); `before_round` and `after_round` run in every
    process, and `wake` (when set) starts the next round at once."""
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
        if before_round is not None:
            before_round()
        if board.lead(pid, time.monotonic(), lease):
            await asyncio.gather(*(check(pool, u) for pool in pools for u in pool.upstreams))
        if after_round is not None:
            after_round()
        if wake is None:
            await asyncio.sleep(interval)
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), interval)
        wake.clear()


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
