"""Events (push, pull, delete, …) appended to one Redis stream for consumers in the job service.

A stream entry carries a batch: `events` is a JSON array of event objects, each with its own
`id` (consumers read at least once and stay idempotent by it), `type`, `time`, `request_id`,
`service` and `data`. Writes that matter (push, delete) are appended at once, one event per
entry, after their transaction commits. Pulls are many and small: they are buffered and
appended many to an entry by a background task. `decode` turns an entry back into events.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
from collections.abc import Mapping
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from wharf_shared.logging import get_logger
from wharf_shared.metrics import Metrics

log = get_logger(__name__)

PUSH = "push"
PULL = "pull"
DELETE = "delete"
_BATCH = 500


def decode(fields: Mapping[bytes | str, bytes | str]) -> list[dict[str, Any]]:
    """The events of one stream entry (as XRANGE/XREADGROUP return its fields)."""
    for key, value in fields.items():
        if (key.decode() if isinstance(key, bytes) else key) == "events":
            events: list[dict[str, Any]] = json.loads(value)
            return events
    return []


class EventPublisher:
    def __init__(
        self, redis: Redis, stream: str, max_len: int, metrics: Metrics, *, flush_interval: float = 0.2
    ) -> None:
        self._redis = redis
        self._stream = stream
        self._max_len = max_len
        self._metrics = metrics
        self._flush_interval = flush_interval
        self._buffer: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._closing = False

    @staticmethod
    def _event(event_type: str, fields: dict[str, Any]) -> dict[str, Any]:
        context = structlog.contextvars.get_contextvars()
        return {
            "id": os.urandom(16).hex(),
            "type": event_type,
            "time": dt.datetime.now(dt.UTC).isoformat(),
            "request_id": context.get("request_id", ""),
            "service": context.get("service", ""),
            "data": fields,
        }

    async def _append(self, events: list[dict[str, Any]]) -> None:
        body = json.dumps(events, separators=(",", ":"), default=str)
        await self._redis.xadd(
            self._stream,
            {"events": body, "count": len(events)},
            maxlen=self._max_len,
            approximate=True,
        )

    async def publish(self, event_type: str, **fields: Any) -> str | None:
        """Append one event now; returns its id, or None when Redis refused it (logged, counted)."""
        event = self._event(event_type, fields)
        try:
            await self._append([event])
        except RedisError as exc:
            self._metrics.events_failed.labels(event_type).inc()
            log.error("event_publish_failed", type=event_type, error=str(exc), **fields)
            return None
        self._metrics.events_published.labels(event_type).inc()
        return str(event["id"])

    def publish_soon(self, event_type: str, **fields: Any) -> None:
        """Queue an event for the next batch (off the request's critical path)."""
        self._buffer.append(self._event(event_type, fields))
        if len(self._buffer) >= _BATCH:
            self._wakeup.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._flush_loop(), name="events-flush")

    async def close(self) -> None:
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        await self.flush()

    async def flush(self) -> None:
        while self._buffer:
            batch, self._buffer = self._buffer[:_BATCH], self._buffer[_BATCH:]
            try:
                await self._append(batch)
            except RedisError as exc:
                for event in batch:
                    self._metrics.events_failed.labels(event["type"]).inc()
                log.error("event_batch_failed", count=len(batch), error=str(exc))
                continue
            counts: dict[str, int] = {}
            for event in batch:
                counts[event["type"]] = counts.get(event["type"], 0) + 1
            for event_type, count in counts.items():
                self._metrics.events_published.labels(event_type).inc(count)

    async def _flush_loop(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=self._flush_interval)
            self._wakeup.clear()
            await self.flush()
