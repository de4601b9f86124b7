"""Runtime-setting changes reach every process within a second: announced on a Redis pub/sub
channel after the change commits, and heard by one subscriber task per process that drops its
`RuntimeConfig` cache.

Pub/sub keeps nothing for a subscriber that is not connected, so whenever the subscription is
(re)established (the first time, after Redis came back, after redis-py reconnected on its own)
the cache is dropped too: Redis confirms each subscription with a `subscribe` message, and that
message invalidates like an announcement does. An announcement lost in any other way is covered
by `RuntimeConfig`'s periodic re-read (`WHARF_RUNTIME_REREAD_SECONDS`).

Every service wires this the same way: `app.cleanup_ctx.append(runtime_context)` after the
context that opens `DB`; handlers read `app[RUNTIME]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from wharf_shared import keys
from wharf_shared.logging import get_logger
from wharf_shared.redis import open_redis
from wharf_shared.runtime import RuntimeConfig, defaults

log = get_logger(__name__)

_POLL_SECONDS = 1.0  # how long one read waits for a message (the loop notices close() between)
_BACKOFF_FIRST = 0.1
_BACKOFF_MAX = 5.0


async def announce(redis: Redis, channel: str) -> bool:
    """Tell every process that the runtime settings changed (call after the commit). False when
    Redis could not take it: the others then see the change at their next periodic re-read."""
    for attempt in (1, 2):  # a pooled connection left over from before a Redis restart fails once
        try:
            await redis.publish(channel, b"changed")
        except (RedisError, OSError) as exc:
            if attempt == 2:
                log.warning("runtime_announce_failed", channel=channel, error=str(exc))
        else:
            return True
    return False


class RuntimeWatch:
    """The subscriber: invalidates `config` on every announcement and every (re)subscription;
    reconnects with capped, jittered backoff while Redis is away."""

    def __init__(
        self, redis: Redis, config: RuntimeConfig, channel: str, *, backoff_max: float = _BACKOFF_MAX
    ) -> None:
        self._redis = redis
        self._config = config
        self._channel = channel
        self._backoff_max = backoff_max
        self._task: asyncio.Task[None] | None = None
        # Checked between reads: a cancellation that lands as a read's own timeout expires is
        # taken by redis-py for that timeout (the read returns None), and the task would go on.
        self._closing = False
        self.subscribed = asyncio.Event()  # set while a subscription stands (tests wait on it)
        self.invalidations = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="runtime-watch")

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _invalidate(self) -> None:
        self.invalidations += 1
        self._config.invalidate()

    async def _run(self) -> None:
        delay = _BACKOFF_FIRST
        while not self._closing:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                while not self._closing:
                    message = await pubsub.get_message(timeout=_POLL_SECONDS)
                    if message is None:
                        continue
                    kind = _text(message.get("type"))
                    if kind == "subscribe":
                        self.subscribed.set()
                        delay = _BACKOFF_FIRST
                        self._invalidate()  # anything announced while we were away
                    elif kind == "message":
                        self._invalidate()
            except (RedisError, OSError) as exc:
                self.subscribed.clear()
                log.warning("runtime_watch_disconnected", channel=self._channel, error=str(exc))
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            if not self._closing:
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, self._backoff_max)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def runtime_context(app: web.Application) -> AsyncIterator[None]:
    """A `cleanup_ctx`: the process's `RuntimeConfig` at `RUNTIME`, on the app's `DB` (so it
    must come after the context that opens it), and its subscriber."""
    settings = app[keys.SETTINGS]
    config = RuntimeConfig(app[keys.DB], defaults(settings), cache_seconds=settings.runtime_reread_seconds)
    app[keys.RUNTIME] = config
    # A client of its own: the subscription holds its connection for good, and neither it nor
    # its reconnection attempts belong in the figures of the pool that serves requests.
    redis = open_redis(settings.redis_url, max_connections=4)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(redis.aclose)  # even when the watch's close fails
        watch = RuntimeWatch(redis, config, settings.runtime_channel)
        app[keys.RUNTIME_WATCH] = watch
        await watch.start()
        stack.push_async_callback(watch.close)
        yield
