"""One task's run (`wharf.jobs.run_task`): claim, work under a renewed lease, finish.

- Claim (`jobs.claim_task`): Pending and due, or Running with a lapsed lease → Running, ours,
  attempts + 1. Nothing claimed: the message was stale or a duplicate; nothing to do.
- While the work runs, the lease is renewed every third of it (with the bytes copied so far, and
  the log lines gathered since the last write). A renewal that finds the task no longer ours
  (the execution was stopped, or another worker took it over after our lease lapsed) cancels
  the work: it ends without writing a result. `TaskProgress.check()` raises `LeaseLost` too.
- Finish: Success; Error for a permanent failure; a transient one (`exc.transient`, a
  connection error, the time limit) goes back to Pending with an exponential, jittered backoff
  (`jobs.backoff_seconds`), or Error once the attempts are used up. The execution's status
  follows in the same transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from wharf_jobservice.failures import describe, is_transient
from wharf_shared.db import jobs
from wharf_shared.db.engine import Database
from wharf_shared.logging import get_logger

log = get_logger(__name__)

STALE = "stale"  # nothing claimed
LOST = "lost"  # the lease was lost while running: no result written
RETRY = "retry"

_LOG_BATCH = 50
_LOG_FLUSH_SECONDS = 2.0


class LeaseLost(Exception):
    """The task is no longer this worker's (stopped, or taken over)."""


@dataclass(frozen=True, slots=True)
class RunLimits:
    worker: str
    lease_seconds: float
    time_limit_seconds: float
    max_attempts: int
    backoff_seconds: float
    backoff_max_seconds: float


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # Success, Error, retry, stale, lost
    retry_in: float | None = None
    message: str = ""


class TaskProgress:
    """What the copy reports to (`replication.copy.Progress`): log lines, bytes, and `check()`,
    which raises `LeaseLost` once a renewal found the task no longer ours."""

    def __init__(self, db: Database, task_id: int, limits: RunLimits, now: Callable[[], dt.datetime]) -> None:
        self._db = db
        self._task_id = task_id
        self._limits = limits
        self._now = now
        self._lines: list[tuple[dt.datetime, str]] = []
        self._flushed_at = time.monotonic()
        self.bytes_copied = 0
        self.lost = False

    async def log(self, line: str) -> None:
        self._lines.append((self._now(), line))
        if len(self._lines) >= _LOG_BATCH or time.monotonic() - self._flushed_at >= _LOG_FLUSH_SECONDS:
            await self.flush()

    def add_bytes(self, n: int) -> None:
        self.bytes_copied += n

    async def check(self) -> None:
        if self.lost:
            raise LeaseLost(f"task {self._task_id} is no longer ours")

    async def flush(self) -> None:
        lines, self._lines = self._lines, []
        self._flushed_at = time.monotonic()
        if lines:
            await self._db.run(lambda conn: jobs.append_task_logs(conn, self._task_id, lines))

    async def renew(self) -> bool:
        """Extend the lease (and write the pending lines); False once it is no longer ours."""
        limits = self._limits
        if not self.lost:
            ok = await self._db.run(
                lambda conn: jobs.renew_lease(
                    conn,
                    self._task_id,
                    limits.worker,
                    now=self._now(),
                    lease_seconds=limits.lease_seconds,
                    bytes_copied=self.bytes_copied,
                )
            )
            self.lost = not ok
        if not self.lost:
            await self.flush()
        return not self.lost


Perform = Callable[[jobs.ClaimedTask, TaskProgress], Awaitable[str]]  # a line for the status message


async def run_task(
    db: Database,
    task_id: int,
    perform: Perform,
    limits: RunLimits,
    *,
    now: Callable[[], dt.datetime],
    jitter: Callable[[], float] = random.random,
) -> Outcome:
    claimed = await db.run(
        lambda conn: jobs.claim_task(
            conn,
            task_id,
            limits.worker,
            now=now(),
            lease_seconds=limits.lease_seconds,
            max_attempts=limits.max_attempts,
        )
    )
    if claimed is None:
        return Outcome(STALE)
    bound = log.bind(task=task_id, execution=claimed.execution_id, attempt=claimed.attempts)
    bound.info(
        "task_started", operation=claimed.operation, src=claimed.src_resource, dst=claimed.dst_resource
    )
    progress = TaskProgress(db, task_id, limits, now)
    await progress.log(
        f"attempt {claimed.attempts}: {claimed.operation} {claimed.src_resource} -> {claimed.dst_resource}"
    )
    work = asyncio.create_task(_limited(perform(claimed, progress), limits.time_limit_seconds))
    renewer = asyncio.create_task(_keep_lease(progress, work, limits.lease_seconds / 3))
    try:
        message = await work
        failure: BaseException | None = None
    except asyncio.CancelledError:
        if not progress.lost:
            raise  # the worker itself is stopping
        message, failure = "", LeaseLost("lease lost")
    except Exception as exc:
        message, failure = "", exc
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer
    if progress.lost or isinstance(failure, LeaseLost):
        bound.warning("task_lease_lost")
        return Outcome(LOST)
    if failure is None:
        status, retry_in, text = jobs.SUCCESS, None, message or "done"
    elif is_transient(failure):
        status, text = jobs.PENDING, describe(failure)
        retry_in = jobs.backoff_seconds(
            claimed.attempts, limits.backoff_seconds, limits.backoff_max_seconds, jitter()
        )
    else:
        status, retry_in, text = jobs.ERROR, None, describe(failure)
    with contextlib.suppress(Exception):
        await progress.log(
            f"attempt {claimed.attempts}: {text}" + (f"; retry in {retry_in:.1f}s" if retry_in else "")
        )
        await progress.flush()
    finished = await db.run(
        lambda conn: jobs.finish_task(
            conn,
            task_id,
            limits.worker,
            status,
            now=now(),
            message=text,
            bytes_copied=progress.bytes_copied,
            retry_in=retry_in,
            max_attempts=limits.max_attempts,
        )
    )
    if finished is None:
        bound.warning("task_lease_lost")
        return Outcome(LOST)
    if finished.status == jobs.PENDING:
        bound.warning("task_retry", error=text, retry_in=round(finished.retry_in or 0, 3))
        return Outcome(RETRY, finished.retry_in, text)
    (bound.info if finished.status == jobs.SUCCESS else bound.warning)(
        "task_finished", status=finished.status, message=text
    )
    return Outcome(finished.status, None, text)


async def _limited(work: Awaitable[str], seconds: float) -> str:
    async with asyncio.timeout(seconds):
        return await work


async def _keep_lease(progress: TaskProgress, work: asyncio.Task[str], every: float) -> None:
    while not work.done():
        await asyncio.sleep(every)
        try:
            if not await progress.renew():
                work.cancel()
                return
        except Exception as exc:  # the database is unreachable: try again at the next beat
            log.warning("task_lease_renewal_failed", error=describe(exc))
