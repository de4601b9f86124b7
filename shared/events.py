"""Events (push, pull, delete, …) appended to one Redis stream for consumers in the job service.

Each entry carries an `id` so that consumers, which read at least once, can be idempotent.
Writes that matter (push, delete) are awaited after their transaction commits. Pulls are
many and small: they are buffered and appended in batches by a background task.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import uuid
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


class EventPublisher:
    def __init__(
        self, redis: Redis, stream: str, max_len: int, metrics: Metrics, *, flush_interval: float = 0.2
    ) -> None:
        self._redis = redis
        self._stream = stream
        self._max_len = max_len
        self._metrics = metrics
        self._flush_interval = flush_interval
        self._buffer: list[dict[str, str]] = []
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._closing = False

    @staticmethod
    def _entry(event_type: str, fields: dict[str, Any]) -> dict[str, str]:
        context = structlog.contextvars.get_contextvars()
        return {
            "id": uuid.uuid4().hex,
            "type": event_type,
            "time": dt.datetime.now(dt.UTC).isoformat(),
            "request_id": str(context.get("request_id", "")),
            "service": str(context.get("service", "")),
            "data": json.dumps(fields, separators=(",", ":"), default=str),
        }

    async def publish(self, event_type: str, **fields: Any) -> str | None:
        """Append one event now; returns its id, or None when Redis refused it (logged, counted)."""
        entry = self._entry(event_type, fields)
        try:
            await self._redis.xadd(self._stream, entry, maxlen=self._max_len, approximate=True)  # type: ignore[arg-type]
        except RedisError as exc:
            self._metrics.events_failed.labels(event_type).inc()
            log.error("event_publish_failed", type=event_type, error=str(exc), **fields)
            return None
        self._metrics.events_published.labels(event_type).inc()
        return entry["id"]

    def publish_soon(self, event_type: str, **fields: Any) -> None:
        """Queue an event for the next batch (off the request's critical path)."""
        self._buffer.append(self._entry(event_type, fields))
        if len(self._buffer) >= 500:
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
        if not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for entry in batch:
                    pipe.xadd(self._stream, entry, maxlen=self._max_len, approximate=True)  # type: ignore[arg-type]
                await pipe.execute()
        except RedisError as exc:
            for entry in batch:
                self._metrics.events_failed.labels(entry["type"]).inc()
            log.error("event_batch_failed", count=len(batch), error=str(exc))
            return
        for entry in batch:
            self._metrics.events_published.labels(entry["type"]).inc()

    async def _flush_loop(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=self._flush_interval)
            self._wakeup.clear()
            await self.flush()
