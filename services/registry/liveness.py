"""Which registry processes are alive: each one keeps a short-lived key in Redis (a heartbeat).

Every registry process (every worker) is an instance with an identity of its own, new at each
start, and refreshes `wharf:registry:alive:<instance>` (one `SET … PX` per interval, whatever
the load). The upload locks it takes name it (`uploads.py`), so a request that finds a lock held
by an instance whose key is gone knows the holder died (SIGKILL, a lost host) and takes the lock
over at once rather than waiting out the lease. A holder wrongly believed dead (a process
stalled longer than the key lives) loses only its own request: upload writes are fenced by the
lock's token, so nothing it does after the takeover is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid

from redis.asyncio import Redis
from redis.exceptions import RedisError

from wharf_shared.logging import get_logger

log = get_logger(__name__)

_PREFIX = "wharf:registry:alive:"
_CLOSE_SECONDS = 5.0


def alive_key(instance: str) -> str:
    return _PREFIX + instance


def new_instance() -> str:
    """A fresh identity: never reused, so a restarted process cannot vouch for its predecessor."""
    return uuid.uuid4().hex


class Heartbeat:
    """Keeps this process's liveness key while it runs; `close` deletes it (a clean stop is no death
    to wait out)."""

    def __init__(self, redis: Redis, *, interval_seconds: float, ttl_seconds: float) -> None:
        if ttl_seconds <= interval_seconds:
            raise ValueError("the liveness key must outlive the interval between its refreshes")
        self.instance = new_instance()
        self._redis = redis
        self._interval = interval_seconds
        self._ttl_ms = max(1, round(ttl_seconds * 1000))
        self._key = alive_key(self.instance)
        # Who the instance is, for an operator reading Redis.
        self._value = f"{socket.gethostname()} {os.getpid()}"
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        """Beat once (the instance is alive before it serves anything), then keep beating. Redis
        being down does not stop the start: the registry serves pulls without it."""
        failing = not await self._try_beat(quiet=False)
        self._task = asyncio.create_task(self._run(failing), name="registry-heartbeat")
        log.info("instance_started", instance=self.instance, pid=os.getpid())

    async def close(self) -> None:
        if self._task is not None:
            # Not cancelled mid-SET: a beat already sent could land after the DELETE (on another
            # connection) and keep the key alive for a whole TTL after a clean stop.
            self._stopping.set()
            with contextlib.suppress(TimeoutError):  # a Redis that does not answer holds no stop
                await asyncio.wait_for(self._task, _CLOSE_SECONDS)
            self._task = None
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            await asyncio.wait_for(self._redis.delete(self._key), _CLOSE_SECONDS)

    async def _try_beat(self, *, quiet: bool) -> bool:
        try:
            await self._redis.set(self._key, self._value, px=self._ttl_ms)
        except (RedisError, OSError) as exc:
            if not quiet:  # once per outage
                log.warning("heartbeat_failed", instance=self.instance, error=str(exc))
            return False
        return True

    async def _run(self, failing: bool) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)
            if self._stopping.is_set():
                return
            if not await self._try_beat(quiet=failing):
                # Others may take this instance's upload locks over meanwhile; its writes are fenced.
                failing = True
            elif failing:
                log.info("heartbeat_restored", instance=self.instance)
                failing = False
