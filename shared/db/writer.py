"""SQLite's single writer: one connection in one thread commits queued writes together.

SQLite takes one writer at a time, so what limits write throughput is how long each writer
holds the lock. Through aiosqlite every statement (and BEGIN, COMMIT, the lock) is a hand-off
between the event loop and a thread, a wait for the GIL each under load, all while the lock is
held. Here a `run` call queues its function; the writer takes every function queued and, in one
go: takes the lock, BEGIN IMMEDIATE, runs each function in a SAVEPOINT of its own (one that
fails is rolled back alone and gets its exception), COMMIT. Each function's transaction stays
atomic; a group commits (and costs the WAL write) once.

Where the group runs: when the cross-process lock file is free, right here on the event loop
(a group is a few statements on a local file, well under a millisecond each: cheaper than
handing it to a thread, where it waits for the GIL behind the loop twice per statement, which
made the group, and the other processes waiting for the lock, several times slower); when
another process holds it, in the writer's thread, which waits for it there. On the loop the
connection waits at most `INLINE_BUSY_MS` for SQLite's own lock (held only by a writer that
does not take the lock file, such as a sqlite3 shell); a group that finds it busy is retried
in the thread.

The functions are `Database.run`'s: `fn(conn)` awaiting only statements on `conn`. Here `conn`
executes each statement synchronously and the function's coroutine is driven to completion
without an event loop; one that awaits anything else fails (RuntimeError) and is rolled back.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import random
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

T = TypeVar("T")
# Functions committed in one transaction at most: a group holds the lock while it runs.
MAX_GROUP = 64
# SQLite's busy timeout while a group runs on the event loop, and in the writer's thread.
INLINE_BUSY_MS = 50
THREAD_BUSY_MS = 30_000


class _SyncConnection:
    """What a `run` function uses of an AsyncConnection, executing at once on a sync connection."""

    def __init__(self, conn: Connection) -> None:
        self.sync_connection = conn
        self.dialect = conn.dialect

    async def execute(self, statement: Any, parameters: Any = None, **kwargs: Any) -> Any:
        return self.sync_connection.execute(statement, parameters, **kwargs)

    async def scalar(self, statement: Any, parameters: Any = None, **kwargs: Any) -> Any:
        return self.sync_connection.scalar(statement, parameters, **kwargs)


def _drive(awaitable: Awaitable[T]) -> T:
    """Run an awaitable that never suspends (it awaits only `_SyncConnection`) to its result."""
    iterator = awaitable.__await__()
    try:
        iterator.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    close = getattr(iterator, "close", None)
    if close is not None:
        close()
    raise RuntimeError("a write run by the SQLite writer awaited something other than its connection")


@dataclass(eq=False)
class _Item:
    fn: Callable[[AsyncConnection], Awaitable[Any]]
    future: asyncio.Future[Any]
    attempts: int
    retry_on: tuple[type[Exception], ...]
    attempt: int = 1
    outcome: Any = field(default=None)
    failed: bool = False


class SQLiteWriter:
    def __init__(
        self,
        url: str,
        lock: asyncio.Lock,
        lock_file: Path | None,
        *,
        configure: Callable[[Engine], None],
        is_transient: Callable[[BaseException], bool],
        echo: bool = False,
    ) -> None:
        sync_url = make_url(url).set(drivername="sqlite")
        self._engine = create_engine(
            sync_url, echo=echo, hide_parameters=True, connect_args={"timeout": THREAD_BUSY_MS / 1000}
        )
        configure(self._engine)
        self._lock = lock
        self._lock_file = lock_file
        self._lock_fd: int | None = None
        self._is_transient = is_transient
        self._conn: Connection | None = None
        self._busy_ms = THREAD_BUSY_MS  # the connection's busy timeout as last set
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._queue: deque[_Item] = deque()
        self._task: asyncio.Task[None] | None = None

    @property
    def engine(self) -> Engine:
        return self._engine

    async def run(
        self,
        fn: Callable[[AsyncConnection], Awaitable[T]],
        *,
        attempts: int,
        retry_on: tuple[type[Exception], ...],
    ) -> T:
        loop = asyncio.get_running_loop()
        item = _Item(fn, loop.create_future(), attempts, retry_on)
        self._queue.append(item)
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._drain(), name="sqlite-writer")
        return cast(T, await item.future)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            group: list[_Item] = []
            try:
                async with self._lock:
                    # Taken once the lock is held: what queued while waiting for it joins the group.
                    while self._queue and len(group) < MAX_GROUP:
                        item = self._queue.popleft()
                        if not item.future.done():  # a caller cancelled while queued: skipped
                            group.append(item)
                    if group and self._try_flock():
                        try:
                            self._commit_group(group, locked=True, busy_ms=INLINE_BUSY_MS)
                        except Exception as exc:
                            if not _is_busy(exc):
                                raise
                            for item in group:  # nothing was committed: the thread runs them
                                item.outcome, item.failed = None, False
                            await loop.run_in_executor(self._executor, self._commit_group, group)
                    elif group:
                        await loop.run_in_executor(self._executor, self._commit_group, group)
            except Exception as exc:  # the group as a whole: BEGIN or COMMIT failed
                for item in group:
                    item.outcome, item.failed = exc, True
            retry = [item for item in group if item.failed and self._retries(item)]
            for item in group:
                if item in retry or item.future.done():
                    continue
                if item.failed:
                    item.future.set_exception(item.outcome)
                else:
                    item.future.set_result(item.outcome)
            if retry:
                attempt = max(item.attempt for item in retry)
                await asyncio.sleep(min(0.5, 0.01 * 2**attempt) * (0.5 + random.random()))
                for item in reversed(retry):
                    item.attempt += 1
                    item.outcome, item.failed = None, False
                    self._queue.appendleft(item)

    def _retries(self, item: _Item) -> bool:
        exc = item.outcome
        return item.attempt < item.attempts and (self._is_transient(exc) or isinstance(exc, item.retry_on))

    # -- in the writer's thread ------------------------------------------------------------

    def _commit_group(
        self, group: Sequence[_Item], *, locked: bool = False, busy_ms: int = THREAD_BUSY_MS
    ) -> None:
        """One transaction for the group, one SAVEPOINT per function when there are several;
        `locked`: the lock file is already held (`_try_flock`). Releases it."""
        if not locked:
            self._flock()
        try:
            conn = self._connection()
            if busy_ms != self._busy_ms:
                # On the DB-API connection: through `conn` it would begin the transaction.
                dbapi = conn.connection.dbapi_connection
                assert dbapi is not None
                dbapi.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
                self._busy_ms = busy_ms
            try:
                transaction = conn.begin()
                shim = cast(AsyncConnection, _SyncConnection(conn))
                alone = len(group) == 1
                for item in group:
                    savepoint = None if alone else conn.begin_nested()
                    try:
                        item.outcome = _drive(item.fn(shim))
                    except Exception as exc:
                        item.outcome, item.failed = exc, True
                        if savepoint is not None:
                            savepoint.rollback()
                    else:
                        if savepoint is not None:
                            savepoint.commit()
                if all(item.failed for item in group):
                    transaction.rollback()
                else:
                    transaction.commit()
            except Exception:
                self._reset()
                raise
        finally:
            self._funlock()

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.invalidated or self._conn.closed:
            self._conn = self._engine.connect()
            self._busy_ms = THREAD_BUSY_MS
        return self._conn

    def _reset(self) -> None:
        """After a failed group: a fresh connection next time (this one may be in any state)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # a broken connection: nothing more to do
                conn.close()

    def _flock(self) -> None:
        if self._lock_file is None:
            return
        if self._lock_fd is None:
            self._lock_fd = os.open(self._lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)

    def _try_flock(self) -> bool:
        """Take the lock file if no other process holds it, without waiting."""
        if self._lock_file is None:
            return True
        if self._lock_fd is None:
            self._lock_fd = os.open(self._lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _funlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _close_sync(self) -> None:
        self._reset()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self._engine.dispose()

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            await self._task
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close_sync)
        self._executor.shutdown(wait=True)


def _is_busy(exc: BaseException) -> bool:
    """SQLite's lock was held by a writer outside the lock file (`database is locked`)."""
    return "database is locked" in str(exc)
