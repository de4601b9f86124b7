"""Events (push, pull, delete, …) on one Redis stream, for consumers in the job service.

A stream entry carries a batch: `events` is a JSON array of event objects, each with its own
`id`, `type`, `time`, `request_id`, `service` and `data`. Delivery is at least once: consumers
stay idempotent by the event's `id` (`EventConsumer` does that for them).

Changes that write SQL write their events in the same transaction, to the outbox table
(`write_events`), so no commit loses its event to a crash or a Redis outage; `EventRelay` moves
outbox rows to the stream, woken after a local commit and polling for rows other instances left,
and deletes them only once Redis has taken them. Pulls are many and write no SQL: they are
buffered and appended straight to the stream by `EventPublisher`. `decode` turns an entry back
into events.

The events (`type`: `data` fields). `operator` is the username of whoever acted, "" for an
anonymous caller; `repository` is the full name (`library/app`), its project the part before
the first `/`:

- `push` (registry, outbox): repository, digest, tag (None when pushed by digest), media_type,
  size, operator.
- `pull` (registry, straight to the stream): a manifest GET (blobs are not counted): repository,
  digest, tag (None when pulled by digest), media_type, operator.
- `delete` (registry, outbox): repository, digest, tag, kind (`manifest`: by digest, with its
  tags; `tag`: the tag only; `blob`: a blob unlinked), operator.
- `login` (token service, straight to the stream): a successful password check without scopes
  (what `docker login` asks for; the token requests of pushes and pulls are not logins), and
  the ui's portal sign-in: operator, address (the client's), backend (the auth backend that
  checked the password: db_auth, http_auth, ...; "" for the job service's account).
- For the management API (the ui): `<resource>.<operation>` with `operator` and the resource's
  name: `project.create` / `project.delete` (project, project_id), `project.update` (project, project_id,
  public: a visibility change), `repository.delete`
  (repository), `tag.create` / `tag.delete` (repository, tag, digest), `user.create` /
  `user.delete` (username), `user.update` (username, changed: `password`, `sysadmin` or
  `sysadmin removed`; never the password itself), `member.create` / `member.update` /
  `member.delete` (project, project_id, member; `entity_type` "g" when the member is a group),
  `user_group.create` / `.update` / `.delete` (group, group_id, group_type; an update names
  the new name), `user_group.sync` (the job service's LDAP group sync changed a group's
  members: group, group_id, group_type, added and removed usernames),
  `configuration.update` (keys: Harbor's names of the settings whose value changed),
  `registry.create` / `registry.update` / `registry.delete` (registry, registry_id),
  `replication_policy.create` / `.update` / `.delete` (policy, policy_id), `replication.start` /
  `replication.stop` (policy, policy_id, execution_id: an execution started or stopped by hand).
  The job service's audit mapping (wharf_jobservice.audit) lists what it
  records of each.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import json
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.db import outbox
from wharf_shared.db.engine import Database
from wharf_shared.logging import get_logger
from wharf_shared.metrics import Metrics

log = get_logger(__name__)

# What the audit log's rows name (Harbor's words, and Wharf's `replication` start/stop): the job
# service's mapping uses only these, and the portal's filters offer them.
AUDIT_RESOURCE_TYPES = (
    "artifact",
    "tag",
    "repository",
    "project",
    "member",
    "user",
    "user_group",
    "configuration",
    "registry",
    "replication_policy",
    "replication",
)
AUDIT_OPERATIONS = ("create", "update", "delete", "pull", "login", "start", "stop")

PUSH = "push"
PULL = "pull"
DELETE = "delete"
LOGIN = "login"
ANONYMOUS = ""  # the operator of an anonymous caller
_BATCH = 500
_COALESCE_SECONDS = 0.05


def decode(fields: Mapping[bytes | str, bytes | str]) -> list[dict[str, Any]]:
    """The events of one stream entry (as XRANGE/XREADGROUP return its fields)."""
    for key, value in fields.items():
        if (key.decode() if isinstance(key, bytes) else key) == "events":
            events: list[dict[str, Any]] = json.loads(value)
            return events
    return []


def new_event(event_type: str, **fields: Any) -> dict[str, Any]:
    """An event with a fresh id, stamped with the request it comes from."""
    context = structlog.contextvars.get_contextvars()
    return {
        "id": os.urandom(16).hex(),
        "type": event_type,
        "time": dt.datetime.now(dt.UTC).isoformat(),
        "request_id": context.get("request_id", ""),
        "service": context.get("service", ""),
        "data": fields,
    }


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


async def write_events(conn: AsyncConnection, events: Sequence[Mapping[str, Any]]) -> None:
    """Write events to the outbox in the caller's transaction; call `EventRelay.wake` after commit."""
    await outbox.add(conn, events, [_json(event) for event in events])


class EventPublisher:
    def __init__(
        self, redis: Redis, stream: str, max_len: int, metrics: Metrics, *, flush_interval: float = 0.2
    ) -> None:
        self._redis = redis
        self._stream = stream
        self._max_len = max_len
        self._published, self._failed = metrics.events_published, metrics.events_failed
        self._flush_interval = flush_interval
        self._buffer: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._closing = False

    @staticmethod
    def _event(event_type: str, fields: dict[str, Any]) -> dict[str, Any]:
        return new_event(event_type, **fields)

    async def _append(self, events: list[dict[str, Any]]) -> None:
        body = _json(events)
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
            self._failed.labels(event_type).inc()
            log.error("event_publish_failed", type=event_type, error=str(exc), **fields)
            return None
        self._published.labels(event_type).inc()
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
                    self._failed.labels(event["type"]).inc()
                log.error("event_batch_failed", count=len(batch), error=str(exc))
                continue
            counts: dict[str, int] = {}
            for event in batch:
                counts[event["type"]] = counts.get(event["type"], 0) + 1
            for event_type, count in counts.items():
                self._published.labels(event_type).inc(count)

    async def _flush_loop(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=self._flush_interval)
            self._wakeup.clear()
            await self.flush()


class EventRelay:
    """Moves outbox rows to the stream: at least once, oldest first, many instances at once.

    Woken right after a local commit that wrote outbox rows (`wake`), and polling every
    `interval` seconds for rows another instance left behind. A batch goes to Redis as one
    stream entry; its rows are deleted only after Redis took it, so a crash in between appends
    the batch again (consumers skip the event ids they have seen). On PostgreSQL and MySQL/MariaDB
    each relay locks the rows it sends (`FOR UPDATE SKIP LOCKED`), so instances share the work.
    SQLite has one writer, which must not wait on Redis: the relay reads, appends, then deletes,
    and a lock file next to the database keeps it to one relay at a time across processes.
    When Redis (or the database) fails, the relay keeps the rows and backs off, doubling the
    wait up to `backoff_max`.
    """

    def __init__(
        self,
        db: Database,
        redis: Redis,
        stream: str,
        max_len: int,
        metrics: Metrics,
        *,
        interval: float,
        backoff_max: float,
        batch: int = _BATCH,
    ) -> None:
        self._db = db
        self._redis = redis
        self._stream = stream
        self._max_len = max_len
        self._published = metrics.events_published
        self._interval = interval
        self._backoff_max = max(backoff_max, interval)
        self._batch = batch
        self._coalesce = min(_COALESCE_SECONDS, interval)
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._lock_file: Path | None = None
        if db.dialect == "sqlite":
            database = make_url(db.url).database
            if database and database != ":memory:":
                self._lock_file = Path(database + ".relay.lock")

    def wake(self) -> None:
        """A local transaction committed outbox rows: relay them now, not at the next poll."""
        self._wakeup.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="events-relay")

    async def close(self, drain_seconds: float = 2.0) -> None:
        """Stop after the round in flight, then drain for up to `drain_seconds`, so that a clean
        shutdown leaves nothing for others. A round is never cut off: a connection abandoned inside
        its transaction would keep the rows it locked (and a test's next cleanup) waiting. Rounds
        end on their own, within Redis's and the database's timeouts."""
        self._stopping.set()
        self._wakeup.set()
        if self._task is not None:
            await self._task
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_seconds
        while loop.time() < deadline:
            try:
                if await self.relay_once() < self._batch:
                    return
            except Exception as exc:
                log.warning("events_relay_drain_failed", error=str(exc) or type(exc).__name__)
                return

    async def drain(self) -> int:
        """Relay until the outbox is empty (as far as this relay can see); returns the count."""
        total = 0
        while True:
            sent = await self.relay_once()
            total += sent
            if sent < self._batch:
                return total

    async def relay_once(self) -> int:
        """Relay one batch of the oldest rows; returns how many. Raises when Redis refuses."""
        async with self._lock:
            if self._db.dialect == "sqlite":
                return await self._relay_single_writer()
            async with self._db.transaction() as conn:
                rows = await outbox.oldest(conn, self._batch, lock=True)
                if rows:
                    await self._append(rows)
                    await outbox.remove(conn, [row.id for row in rows])
            return len(rows)

    async def _relay_single_writer(self) -> int:
        async with _try_file_lock(self._lock_file) as held:
            if not held:
                return 0  # another process is relaying
            async with self._db.read() as conn:
                rows = await outbox.oldest(conn, self._batch, lock=False)
            if rows:
                await self._append(rows)
                ids = [row.id for row in rows]
                await self._db.run(lambda conn: outbox.remove(conn, ids))
            return len(rows)

    async def _append(self, rows: Sequence[outbox.OutboxRow]) -> None:
        body = "[" + ",".join(row.payload for row in rows) + "]"
        await self._redis.xadd(
            self._stream, {"events": body, "count": len(rows)}, maxlen=self._max_len, approximate=True
        )
        counts: dict[str, int] = {}
        for row in rows:
            counts[row.event_type] = counts.get(row.event_type, 0) + 1
        for event_type, count in counts.items():
            self._published.labels(event_type).inc(count)

    async def _loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                sent = await self.relay_once()
            except Exception as exc:
                failures += 1
                delay = min(self._backoff_max, self._interval * 2 ** (failures - 1))
                delay *= 0.75 + random.random() / 2  # instances that failed together retry apart
                log.warning(
                    "events_relay_failed", error=str(exc) or type(exc).__name__, retry_in=round(delay, 3)
                )
                # Wakes do not cut a backoff short (every push would hammer a Redis that is down);
                # stopping does.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                self._wakeup.clear()
                continue
            if sent:
                log.debug("events_relayed", count=sent)
            if failures:
                log.info("events_relay_recovered", after_failures=failures, count=sent)
                failures = 0
            if sent >= self._batch:
                continue  # a full batch: more are waiting
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=self._interval)
                if not self._stopping.is_set():
                    # Let the commits of a burst of pushes gather: one relay round (a read, an
                    # XADD, a delete) for many of them, not one each competing for the writer.
                    await asyncio.sleep(self._coalesce)
            self._wakeup.clear()


@contextlib.asynccontextmanager
async def _try_file_lock(path: Path | None) -> AsyncIterator[bool]:
    """An exclusive flock without waiting; yields whether it is held."""
    if path is None:
        yield True
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


Handler = Callable[[dict[str, Any]], Awaitable[None]]


class EventConsumer:
    """Reads the stream in a consumer group, at least once, and hands each event to `handler`
    once per group: ids already processed (remembered for `seen_seconds` under
    `wharf:events:seen:<group>:<id>`) are skipped, so duplicate entries (a relay that crashed
    between append and delete) and redeliveries cost nothing. An entry is acknowledged after
    all its events were handled; a handler that raises leaves it pending, to be read again."""

    def __init__(
        self,
        redis: Redis,
        stream: str,
        group: str,
        consumer: str,
        *,
        seen_seconds: int = 7 * 24 * 3600,
    ) -> None:
        self._redis = redis
        self._stream = stream
        self._group = group
        self._consumer = consumer
        self._seen_seconds = seen_seconds

    def _seen_key(self, event_id: str) -> str:
        return f"wharf:events:seen:{self._group}:{event_id}"

    async def ensure_group(self, start: str = "0") -> None:
        """Create the group (and the stream) if missing; `start` "0" reads what is already there."""
        try:
            await self._redis.xgroup_create(self._stream, self._group, id=start, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def consume(self, handler: Handler, *, count: int = 100, block_ms: int | None = None) -> int:
        """Handle this consumer's pending entries, then new ones; returns how many events ran."""
        handled = 0
        for start in ("0", ">"):
            reply: list[tuple[Any, list[tuple[Any, Mapping[Any, Any]]]]] = await self._redis.xreadgroup(
                self._group,
                self._consumer,
                {self._stream: start},
                count=count,
                block=block_ms if start == ">" else None,
            )  # type: ignore[assignment]  # RESP2 shape: [(stream, [(id, fields), …])]
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    handled += await self._handle(entry_id, fields, handler)
        return handled

    async def _handle(self, entry_id: Any, fields: Mapping[Any, Any], handler: Handler) -> int:
        events = decode(fields)
        seen = await self._already(event["id"] for event in events)
        handled = 0
        for event, done in zip(events, seen, strict=True):
            if done:
                continue
            await handler(event)
            await self._redis.set(self._seen_key(event["id"]), b"1", ex=self._seen_seconds)
            handled += 1
        await self._redis.xack(self._stream, self._group, entry_id)
        return handled

    async def _already(self, ids: Iterable[str]) -> list[bool]:
        keys = [self._seen_key(event_id) for event_id in ids]
        if not keys:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.exists(key)
            return [bool(found) for found in await pipe.execute()]
