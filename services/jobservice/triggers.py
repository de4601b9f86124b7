"""Event-based replication: push events (of a tag), delete events, and the management API's tag
creations and deletions (`tag.create`, `tag.delete`) from the stream (read in
the consumer group `WHARF_JOBSERVICE__REPLICATION_GROUP`) become executions of the enabled,
event-based, push-based policies whose filters they match (a delete only for a policy that
replicates deletions). A batch's events go into one execution per policy (`extra`:
`{"events": [{"type", "repository", "digest", "tag", "kind"}, …]}`); the planner turns them into
tasks. Events already turned into executions (remembered in Redis for a week, after the commit)
are skipped; a crash between the two makes a second execution, which copies nothing new."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared import replication_filters
from wharf_shared.db import jobs, replication
from wharf_shared.db.engine import Database
from wharf_shared.events import DELETE, PUSH
from wharf_shared.jobs import REPLICATION_PLAN
from wharf_shared.logging import get_logger

log = get_logger(__name__)

Enqueue = Callable[[str, int], Awaitable[object]]
SEEN_SECONDS = 7 * 24 * 3600
API_TAG_EVENTS = {"tag.create": PUSH, "tag.delete": DELETE}


def trigger_event(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """The replication-relevant part of a stream event; None for other events."""
    kind = event.get("type")
    data = event.get("data") or {}
    if kind in API_TAG_EVENTS and isinstance(data, Mapping):
        # A tag added or removed through the management API: a push or a delete of that tag.
        kind, data = API_TAG_EVENTS[kind], {**data, "kind": "tag" if kind == "tag.delete" else None}
    if kind not in (PUSH, DELETE) or not isinstance(data, Mapping) or not data.get("repository"):
        return None
    if kind == PUSH and not data.get("tag"):
        return None  # a push by digest alone (an index's child, a referrer) is not an artifact to replicate
    if kind == DELETE and data.get("kind") == "blob":
        return None
    return {
        "type": kind,
        "repository": data.get("repository"),
        "digest": data.get("digest"),
        "tag": data.get("tag"),
        "kind": data.get("kind"),
    }


def policy_wants(policy: replication.Policy, event: Mapping[str, Any]) -> bool:
    """Whether an event (`trigger_event`'s shape) starts an execution of this policy."""
    if not (policy.enabled and policy.trigger_type == replication.EVENT_BASED and policy.push_based):
        return False
    if not replication_filters.repository_matches(policy.filters, str(event["repository"])):
        return False
    tag = event.get("tag")
    if event["type"] == PUSH:
        return replication_filters.selected_tags(policy.filters, [tag] if tag else []) is not None
    if not policy.replicate_deletion:
        return False
    if event.get("kind") == "tag":
        return bool(tag) and replication_filters.tag_matches(policy.filters, str(tag))
    return True


def executions_for(
    policies: Sequence[replication.Policy], events: Iterable[Mapping[str, Any]]
) -> dict[int, list[dict[str, Any]]]:
    """Policy id → the events (trigger_event's shape) it replicates, in order."""
    wanted: dict[int, list[dict[str, Any]]] = {}
    for raw in events:
        event = trigger_event(raw)
        if event is None:
            continue
        for policy in policies:
            if policy_wants(policy, event):
                wanted.setdefault(policy.id, []).append(event)
    return wanted


class ReplicationTrigger:
    def __init__(self, db: Database, redis: Redis, enqueue: Enqueue, *, group: str) -> None:
        self._db = db
        self._redis = redis
        self._enqueue = enqueue
        self._group = group
        self.executions = 0  # made so far (for metrics)

    def _seen_key(self, event_id: str) -> str:
        return f"wharf:replication:{self._group}:seen:{event_id}"

    async def apply(self, events: list[dict[str, Any]]) -> None:
        """A batch from the stream (the StreamConsumer's `apply`)."""
        relevant = [e for e in events if trigger_event(e) is not None and e.get("id")]
        if not relevant:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for event in relevant:
                pipe.exists(self._seen_key(str(event["id"])))
            seen = await pipe.execute()
        fresh = [e for e, done in zip(relevant, seen, strict=True) if not done]
        if not fresh:
            return
        async with self._db.read() as conn:
            policies = await replication.list_policies(
                conn, trigger_type=replication.EVENT_BASED, enabled=True
            )
        wanted = executions_for(policies, fresh)

        async def create(conn: AsyncConnection) -> list[int]:
            return [
                await jobs.create_execution(
                    conn, jobs.REPLICATION, policy_id, replication.EVENT_BASED, {"events": found}
                )
                for policy_id, found in wanted.items()
            ]

        ids = await self._db.run(create) if wanted else []
        async with self._redis.pipeline(transaction=False) as pipe:
            for event in fresh:
                pipe.set(self._seen_key(str(event["id"])), b"1", ex=SEEN_SECONDS)
            await pipe.execute()
        for execution_id in ids:
            await self._enqueue(REPLICATION_PLAN, execution_id)
        if ids:
            self.executions += len(ids)
            log.info("replication_triggered", executions=ids, events=len(fresh))
