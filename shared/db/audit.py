"""The audit log's and pull counts' queries: one batch of events recorded in one transaction.

Each record carries the id of the event it comes from; `audit_log.event_id` is unique, so a batch
delivered again (a consumer that crashed before acknowledging it, a relay that appended twice)
adds nothing and counts no pull twice. Two consumers racing on the same event: the second insert
fails on the unique key, its transaction rolls back, and its retry finds the event recorded.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import and_, bindparam, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.db import tables as t
from wharf_shared.db.types import UTCDateTime

_CHUNK = 500  # ids per IN (…): well under every backend's parameter limit
_TIME = bindparam("b_time", type_=UTCDateTime())


@dataclass(frozen=True, slots=True)
class AuditRecord:
    event_id: str
    resource_type: str
    resource: str
    operation: str
    username: str
    op_time: dt.datetime
    project: str | None = None  # the project's name, resolved to its id when `project_id` is None
    project_id: int | None = None
    # A pull to count: the repository's `pull_count` and the manifest's `pull_time`.
    pulled_repository: str | None = None
    pulled_digest: str | None = None
    description: str | None = None  # `operation_description`: a login's auth backend


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


async def recorded(conn: AsyncConnection, event_ids: Sequence[str]) -> set[str]:
    """Which of these events are in the audit log already."""
    found: set[str] = set()
    for chunk in _chunks(sorted(set(event_ids))):
        query = select(t.audit_log.c.event_id).where(t.audit_log.c.event_id.in_(chunk))
        found.update((await conn.execute(query)).scalars())
    return found


async def _project_ids(conn: AsyncConnection, names: Sequence[str]) -> dict[str, int]:
    ids: dict[str, int] = {}
    for chunk in _chunks(sorted(set(names))):
        query = select(t.project.c.name, t.project.c.id).where(t.project.c.name.in_(chunk))
        ids.update({row.name: int(row.id) for row in await conn.execute(query)})
    return ids


async def record(conn: AsyncConnection, records: Sequence[AuditRecord]) -> list[AuditRecord]:
    """Write the records not written before (by event id), in the caller's transaction, and count
    their pulls; returns the records written."""
    done = await recorded(conn, [r.event_id for r in records])
    fresh: list[AuditRecord] = []
    for item in records:
        if item.event_id not in done:
            done.add(item.event_id)  # and once within the batch
            fresh.append(item)
    if not fresh:
        return []
    projects = await _project_ids(conn, [r.project for r in fresh if r.project_id is None and r.project])
    await conn.execute(
        insert(t.audit_log),
        [
            {
                "event_id": r.event_id,
                "project_id": r.project_id if r.project_id is not None else projects.get(r.project or ""),
                "resource_type": r.resource_type,
                "resource": r.resource,
                "operation": r.operation,
                "username": r.username,
                "op_time": r.op_time,
                "operation_description": r.description,
            }
            for r in fresh
        ],
    )
    await _count_pulls(conn, [r for r in fresh if r.pulled_repository])
    return fresh


async def _count_pulls(conn: AsyncConnection, pulls: Sequence[AuditRecord]) -> None:
    if not pulls:
        return
    # One statement per repository and per manifest, in a fixed order: consumers updating the
    # same rows lock them in the same order (no deadlock between them).
    counts = Counter(str(r.pulled_repository) for r in pulls)
    await conn.execute(
        update(t.repository)
        .where(t.repository.c.name == bindparam("b_repository"))
        .values(pull_count=t.repository.c.pull_count + bindparam("b_count")),
        [{"b_repository": name, "b_count": counts[name]} for name in sorted(counts)],
    )
    latest: dict[tuple[str, str], dt.datetime] = {}
    for r in pulls:
        if r.pulled_digest:
            key = (str(r.pulled_repository), r.pulled_digest)
            latest[key] = max(latest.get(key, r.op_time), r.op_time)
    if not latest:
        return
    repository_id = (
        select(t.repository.c.id).where(t.repository.c.name == bindparam("b_repository")).scalar_subquery()
    )
    await conn.execute(
        update(t.manifest)
        .where(
            and_(
                t.manifest.c.repository_id == repository_id,
                t.manifest.c.digest == bindparam("b_digest"),
                # A later pull may come first (several consumers): pull_time only moves forward.
                or_(t.manifest.c.pull_time.is_(None), t.manifest.c.pull_time < _TIME),
            )
        )
        .values(pull_time=_TIME),
        [
            {"b_repository": repo, "b_digest": digest, "b_time": when}
            for (repo, digest), when in sorted(latest.items())
        ],
    )
