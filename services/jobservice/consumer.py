"""The event stream read in a consumer group, a batch at a time, at least once.

Each round takes a batch of entries: first those this consumer read before and did not
acknowledge (a batch whose write failed), then, at most every `claim_idle` seconds, entries
another consumer left pending that long (it crashed or hangs: XAUTOCLAIM), then new ones
(XREADGROUP `>`, blocking up to `block_ms`). The batch's events go to `apply` together (one
transaction); the entries are acknowledged only after it returned. A failed `apply` leaves them
pending here, and the next round tries them again after a backoff. An entry that cannot be
decoded can never succeed: it is logged, counted and acknowledged.

`stop()` lets the round in hand finish (its write and its acknowledgement) and ends the loop;
a consumer that stops with nothing pending leaves the group (XGROUP DELCONSUMER), so that the
names of past processes do not pile up there.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from wharf_shared.events import decode
from wharf_shared.logging import get_logger

log = get_logger(__name__)

Event = dict[str, Any]
Apply = Callable[[list[Event]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Batch:
    entry_ids: list[bytes]
    events: list[Event]
    claimed: int  # entries taken over from another consumer


class StreamConsumer:
    def __init__(
        self,
        redis: Redis,
        stream: str,
        group: str,
        consumer: str,
        apply: Apply,
        *,
        batch: int = 100,
        block_ms: int = 1000,
        claim_idle: float = 60.0,
        backoff_max: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        on_batch: Callable[[Batch, float], None] | None = None,
        on_malformed: Callable[[], None] | None = None,
        start: str = "0",
    ) -> None:
        self._redis = redis
        self._stream = stream
        self._group = group
        self.name = consumer
        self._apply = apply
        self._batch = batch
        self._block_ms = block_ms
        self._claim_idle_ms = int(claim_idle * 1000)
        self._claim_every = claim_idle / 2
        self._backoff_max = backoff_max
        self._clock = clock
        self._on_batch = on_batch
        self._on_malformed = on_malformed
        self._start = start  # where a new group begins: "0" the stream's start, "$" its end
        self._claimed_at: float | None = None
        self._claim_cursor = "0-0"
        self._own_pending = True  # at start: read what this name left unacknowledged, if anything
        self._stopping = asyncio.Event()
        self.running = False

    async def ensure_group(self) -> None:
        """Create the group (and the stream) if missing, reading from `start` (the stream's start
        by default; "$": only what comes next)."""
        try:
            await self._redis.xgroup_create(self._stream, self._group, id=self._start, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Rounds until `stop()`; failures back off (doubling, jittered) and retry."""
        self.running = True
        failures = 0
        try:
            while not self._stopping.is_set():
                try:
                    await self.round()
                except Exception as exc:
                    failures += 1
                    self._own_pending = True  # what this round read is pending here now
                    delay = min(self._backoff_max, 0.2 * 2 ** (failures - 1)) * (0.75 + random.random() / 2)
                    log.warning(
                        "events_round_failed", error=str(exc) or type(exc).__name__, retry_in=round(delay, 3)
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                    continue
                if failures:
                    log.info("events_round_recovered", after_failures=failures)
                    failures = 0
            await self._leave_if_idle()
        finally:
            self.running = False

    async def round(self) -> int:
        """Read one batch, apply it, acknowledge it; returns how many events it held."""
        try:
            batch = await self._read()
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # Redis lost the stream and its group (restarted without persistence, or flushed):
            # start again from what the stream holds now.
            log.warning("events_group_recreated", group=self._group)
            await self.ensure_group()
            self._claim_cursor = "0-0"
            return 0
        if batch is None:
            return 0
        started = time.perf_counter()
        if batch.events:
            await self._apply(batch.events)
        if batch.entry_ids:
            await self._redis.xack(self._stream, self._group, *batch.entry_ids)
        if self._on_batch is not None:
            self._on_batch(batch, time.perf_counter() - started)
        return len(batch.events)

    async def _read(self) -> Batch | None:
        if self._own_pending:
            entries = await self._read_group("0", block=False)
            if entries:
                return self._decode(entries, claimed=0)
            self._own_pending = False
        now = self._clock()
        if self._claimed_at is None or now - self._claimed_at >= self._claim_every:
            self._claimed_at = now
            entries = await self._claim()
            if entries:
                return self._decode(entries, claimed=len(entries))
        entries = await self._read_group(">", block=True)
        if not entries:
            return None
        return self._decode(entries, claimed=0)

    async def _read_group(self, start: str, *, block: bool) -> list[tuple[Any, Any]]:
        reply: Any = await self._redis.xreadgroup(
            self._group,
            self.name,
            {self._stream: start},
            count=self._batch,
            block=self._block_ms if block else None,
        )
        entries: list[tuple[Any, Any]] = []
        for _stream, items in reply or []:
            entries.extend(items)
        return entries

    async def _claim(self) -> list[tuple[Any, Any]]:
        """Entries others left pending for `claim_idle`, walking the pending list across rounds."""
        reply: Any = await self._redis.xautoclaim(
            self._stream,
            self._group,
            self.name,
            self._claim_idle_ms,
            start_id=self._claim_cursor,
            count=self._batch,
        )
        cursor = reply[0]
        self._claim_cursor = cursor.decode() if isinstance(cursor, bytes) else str(cursor)
        entries = list(reply[1])
        if entries:
            log.info("events_claimed", count=len(entries), consumer=self.name)
        return entries

    def _decode(self, entries: Sequence[tuple[Any, Any]], *, claimed: int) -> Batch:
        ids: list[bytes] = []
        events: list[Event] = []
        for entry_id, fields in entries:
            ids.append(entry_id)
            if fields is None:
                continue  # trimmed from the stream while pending: nothing left to apply
            try:
                events.extend(_checked(decode(fields)))
            except (ValueError, TypeError, KeyError) as exc:
                log.error("events_entry_malformed", entry=str(entry_id), error=str(exc))
                if self._on_malformed is not None:
                    self._on_malformed()
        return Batch(ids, events, claimed)

    async def _leave_if_idle(self) -> None:
        try:
            summary: Any = await self._redis.xpending(self._stream, self._group)
            consumers = {
                (c["name"].decode() if isinstance(c["name"], bytes) else c["name"]): int(c["pending"])
                for c in summary.get("consumers", [])
            }
            if consumers.get(self.name, 0) == 0:
                await self._redis.xgroup_delconsumer(self._stream, self._group, self.name)
        except Exception as exc:  # leaving is tidiness, never a reason to fail a shutdown
            log.warning("events_leave_failed", error=str(exc) or type(exc).__name__)


def _checked(events: Any) -> list[Event]:
    if not isinstance(events, list) or not all(
        isinstance(e, Mapping) and isinstance(e.get("id"), str) and e["id"] for e in events
    ):
        raise ValueError("an entry's events must be a list of objects with an id")
    return [dict(e) for e in events]
