"""A token bucket: at most `rate` bytes a second on average, in bursts of at most `burst`.

Replication's bandwidth limit (a policy's `speed_kb`) on streamed blob bytes. The clock and the
sleep are injected, so the rule is tested without waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """`rate`: bytes a second (> 0); `burst`: what may pass at once after an idle spell
        (default: a quarter of a second's worth, at least 64 KiB)."""
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(rate / 4, 64 * 1024))
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def take(self, n: int) -> None:
        """Let `n` bytes pass: at once while the bucket holds them, else after the wait that pays
        the shortfall back at the rate (the bucket runs into debt, so a take larger than the
        burst waits its share and no more)."""
        self._refill()
        self._tokens -= n
        if self._tokens < 0:
            await self._sleep(-self._tokens / self.rate)
