"""What an upload's body forwarded so far, kept on disk so that another instance can be sent it
again (continuation.py), within bounds.

A spool is an unnamed file: created in `spool_dir` and unlinked at once, so that it goes when its
descriptor is closed, at the end of the request whatever happened, and with the process if it is
killed. The bytes are written as they are forwarded, the chunks already in hand gathered into
batches of `BATCH` bytes that one worker-thread call writes (`pwritev`), the next batch filling
meanwhile: a thread hop per batch, no copy on the event loop. The batches are small so that
the kernel copies bytes still in the CPU's cache (a spool of 4 MiB batches cost twice the CPU of
one of 1 MiB, measured here: tests/bench/proxy_push_cpu.py), and the file's blocks are allocated
ahead, `ALLOCATE` bytes at a time (fallocate), which makes the page-cache writes cheaper on ext4.

A spool holds at most `spool_bytes` (per request) and draws on a budget of `spool_total_bytes`
(per process); past either, or when the disk fails, it gives up (`overflowed`), frees what it
held, and the request goes on without a safety net (a failure is then 503, as it always was).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

from wharf_proxy.metrics import ProxyMetrics
from wharf_shared.logging import get_logger

log = get_logger(__name__)

BATCH = 1024 * 1024
READ = 1024 * 1024
ALLOCATE = 64 * 1024 * 1024
IOV_MAX = 1024  # buffers per pwritev call (Linux's limit)
T = TypeVar("T")


class SpoolBudget:
    """The process's spools: where they live, the per-request bound and the shared total."""

    def __init__(self, directory: Path | None, per_request: int, total: int, metrics: ProxyMetrics) -> None:
        self.directory = directory
        self.per_request = per_request
        self.total = total
        self.used = 0
        self._metrics = metrics

    @property
    def enabled(self) -> bool:
        return self.per_request > 0 and self.total > 0

    def fits(self, length: int | None) -> bool:
        """Whether a body of `length` bytes (None: unknown) may be spooled at all."""
        return self.enabled and (length is None or length <= self.per_request)

    def spool(self) -> Spool:
        return Spool(self)

    def _reserve(self, size: int) -> str | None:
        """None, or the limit that refuses `size` more bytes."""
        if self.used + size > self.total:
            return "total"
        self.used += size
        self._metrics.spool_bytes.inc(size)
        return None

    def _release(self, size: int) -> None:
        self.used -= size
        self._metrics.spool_bytes.dec(size)

    def _overflowed(self, reason: str) -> None:
        self._metrics.spool_overflows.labels(reason).inc()


class Spool:
    """Bytes 0..`size` of one request body, on disk until `close`."""

    def __init__(self, budget: SpoolBudget) -> None:
        self._budget = budget
        self._fd: int | None = None
        self._allocated = 0  # bytes of the file allocated ahead
        self.size = 0  # bytes handed to `add` (written, or in a batch to be written)
        self._reserved = 0
        self._batch: list[bytes] = []
        self._batched = 0
        self._pending: asyncio.Future[None] | None = None  # the batch being written
        self._busy: set[asyncio.Future[Any]] = set()  # thread calls on the descriptor
        self.overflowed = False
        self.closed = False

    @property
    def usable(self) -> bool:
        return not (self.overflowed or self.closed)

    async def add(self, chunk: bytes) -> None:
        """Keep `chunk` (the body's next bytes); waits only while the batch before the one it
        completes is still being written."""
        if not self.usable:
            return
        if self.size + len(chunk) > self._budget.per_request:
            await self._give_up("request")
            return
        self._batch.append(chunk)
        self._batched += len(chunk)
        self.size += len(chunk)
        if self._batched >= BATCH:
            await self._flush()

    async def settle(self) -> bool:
        """Write out everything added; whether the spool holds it all."""
        if self.usable and self._batch:
            await self._flush()
        if self._pending is not None:
            await asyncio.wait({self._pending})
        return self.usable

    async def _flush(self) -> None:
        if self._pending is not None:
            await asyncio.wait({self._pending})  # disk back-pressure: one batch in flight
            if not self.usable:
                return
        refused = self._budget._reserve(self._batched)
        if refused is not None:
            await self._give_up(refused)
            return
        self._reserved += self._batched
        batch, offset = self._batch, self.size - self._batched
        self._batch, self._batched = [], 0
        self._pending = asyncio.ensure_future(self._write(batch, offset))

    async def _write(self, batch: list[bytes], offset: int) -> None:
        try:
            end = offset + sum(len(piece) for piece in batch)
            allocate = 0
            if end > self._allocated:
                allocate = (
                    min(max(end, self._allocated + ALLOCATE), self._budget.per_request) - self._allocated
                )
            self._fd = await self._run(
                _write_at, self._fd, self._budget.directory, batch, offset, self._allocated, allocate
            )
            self._allocated += allocate
        except OSError as exc:
            log.warning("spool_write_failed", error=str(exc))
            await self._give_up("error")

    async def read(self, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes start..end (exclusive) of what `settle` wrote out."""
        position = start
        while position < end:
            if self._fd is None or not self.usable:
                raise OSError("the spool is gone")
            data = await self._run(os.pread, self._fd, min(READ, end - position), position)
            if not data:
                raise OSError("the spool is shorter than what was written to it")
            position += len(data)
            yield data

    async def _give_up(self, reason: str) -> None:
        if self.overflowed:
            return
        self.overflowed = True
        self._budget._overflowed(reason)
        log.info("spool_overflowed", reason=reason, size=self.size)
        self._batch, self._batched = [], 0
        pending = self._pending
        if pending is not None and pending is not asyncio.current_task():
            await asyncio.wait({pending})  # it may be about to make the file
        await self._drop()

    async def close(self) -> None:
        """Free the spool, once no thread reads or writes it any more: its descriptor is never
        closed under a thread (the number could belong to another file by then)."""
        self.closed = True
        self._batch, self._batched = [], 0
        if self._pending is not None:
            await asyncio.wait({self._pending})
        await self._drop()

    async def _drop(self) -> None:
        busy = {future for future in self._busy if not future.done()}
        if busy:
            await asyncio.wait(busy)
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if self._reserved:
            self._budget._release(self._reserved)
            self._reserved = 0

    async def _run(self, func: Callable[..., T], *args: Any) -> T:
        """A blocking call on the spool's file in a worker thread. Cancelling the caller only
        stops its wait: the call is tracked until it ends, for `_drop`."""
        future = asyncio.get_running_loop().run_in_executor(None, func, *args)
        self._busy.add(future)
        future.add_done_callback(self._busy.discard)
        return await asyncio.shield(future)


def _write_at(
    fd: int | None, directory: Path | None, batch: list[bytes], offset: int, allocated: int, allocate: int
) -> int:
    """Write `batch` at `offset` of the spool file (made, unnamed, on the first call), after
    allocating `allocate` more bytes of it past `allocated`; its fd."""
    made = fd is None
    if fd is None:
        fd, path = tempfile.mkstemp(prefix="wharf-spool-", dir=directory)
        os.unlink(path)
    try:
        if allocate > 0:
            os.posix_fallocate(fd, allocated, allocate)
        views = [memoryview(piece) for piece in batch]
        while views:
            written = os.pwritev(fd, views[:IOV_MAX], offset)
            offset += written
            while views and written >= len(views[0]):
                written -= len(views[0])
                views.pop(0)
            if written:
                views[0] = views[0][written:]
    except BaseException:
        if made:
            os.close(fd)
        raise
    return fd
